// Journal: run_dir/spawner/spawner.journal, the children a spawner started, so a spawner started
// after a full restart can find the survivors (docs/processes.md). Written temp + rename, no fsync
// (it has to survive process kills, not machine crashes: docs/crash-survival.md).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/proto/schema.hpp"
#include "common/util/result.hpp"

namespace provisr::spawner {

// One line: `key generation pid start_time_ticks started_at_ms` — the documented five fields —
// then the log sinks, so an adopting spawner resumes writing the same files: `stdout_path
// stderr_path max_size_bytes max_backups max_age_days compress timestamps` with paths
// percent-escaped and "-" for an empty path. A reader of the first five fields only is unaffected.
struct JournalEntry {
  std::string key;
  std::uint64_t generation = 0;
  pid_t pid = 0;
  std::uint64_t startTicks = 0;
  std::int64_t startedAtMs = 0;
  proto::LogSinks log;
  bool hasLog = false;  // false for a line written with the five documented fields only
  bool operator==(const JournalEntry&) const = default;
};

std::string formatJournalLine(const JournalEntry& e);
// nullopt-like failure for a line that does not parse (the loader skips it and counts it).
Result<JournalEntry> parseJournalLine(const std::string& line);

struct JournalContents {
  std::vector<JournalEntry> entries;
  std::size_t badLines = 0;
};

// A missing journal is an empty one; unreadable lines are skipped (a torn write cannot happen
// with rename, but a hand-edited file can hold anything).
Result<JournalContents> loadJournal(const std::string& path);
// Replaces the journal atomically: `path.tmp`, then rename over `path` (no fsync: see above).
Status writeJournal(const std::string& path, const std::vector<JournalEntry>& entries);

}  // namespace provisr::spawner

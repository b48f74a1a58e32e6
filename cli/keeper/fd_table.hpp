// The fd store's table (DESIGN §2, §4 item 3): for every managed child (key, generation) the fds
// the spawner deposited — pipe read ends, pidfd — its pid, and the exit the keeper reaped while no
// spawner held it. Pure: no sockets; tests drive it with pipes.
#pragma once

#include <sys/types.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/proto/schema.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::keeper {

struct FdKey {
  std::string key;
  std::uint64_t generation = 0;
  auto operator<=>(const FdKey&) const = default;
};

struct FdEntry {
  std::vector<proto::FdKind> kinds;  // kinds[i] describes fds[i]; each kind at most once
  std::vector<UniqueFd> fds;
  pid_t pid = 0;  // 0 until the Deposit after the fork
  std::optional<proto::Exited> exit;  // reaped by the keeper, not yet released by a spawner
};

// One WithdrawChunk to send: its message and the fds (still owned by the table) riding with it.
struct WithdrawChunkPlan {
  proto::WithdrawChunk msg;
  std::vector<int> fds;
  std::optional<FdKey> lastKey;  // the cursor for the next chunk
};

inline constexpr std::size_t kMaxKeyLength = 256;

class FdTable {
 public:
  // Takes `fds` (one per d.kinds entry). A second Deposit for the same (key, generation) adds to
  // the entry; a kind deposited again replaces the older fd. Invalid input closes the fds and is
  // an error (kInvalidArgument) that leaves the table unchanged.
  Status deposit(const proto::Deposit& d, std::vector<UniqueFd> fds);
  // Closes the entry's fds; false when there is no such entry.
  bool release(const FdKey& k);

  const FdEntry* find(const FdKey& k) const;
  std::optional<FdKey> keyOfPid(pid_t pid) const;

  // The keeper reaped `pid`: the Exited to hand a spawner, or nullopt when the pid is not a
  // managed child (an orphaned descendant: nothing to report).
  std::optional<proto::Exited> recordExit(pid_t pid, int rawStatus, std::int64_t atMs);
  // Every reaped exit whose entry is not yet released, in key order.
  std::vector<proto::Exited> pendingExits() const;

  // The next WithdrawChunk after `after` (from the start when unset): whole entries, at most
  // `maxFds` fds in all (an entry is never split). `msg.last` is set on the final chunk; an
  // empty table gives one empty chunk with last = true.
  WithdrawChunkPlan nextChunk(const std::optional<FdKey>& after, std::size_t maxFds = proto::kMaxFdsPerMessage) const;

  // Process groups of managed children (pid = pgid): live entries, and groups released while a
  // member still ran (pruned with pruneGroups()).
  std::vector<pid_t> groups() const;
  // Forgets released groups for which `alive(pgid)` is false.
  template <class Alive>
  void pruneGroups(Alive alive) {
    for (auto it = releasedGroups_.begin(); it != releasedGroups_.end();) it = alive(*it) ? std::next(it) : releasedGroups_.erase(it);
  }
  void rememberGroup(pid_t pgid) { releasedGroups_.insert(pgid); }

  std::size_t size() const { return entries_.size(); }
  std::size_t fdCount() const;

 private:
  std::map<FdKey, FdEntry> entries_;
  std::map<pid_t, FdKey> byPid_;
  std::set<pid_t> releasedGroups_;
};

// True for a key the spawner may use: 1..kMaxKeyLength of [A-Za-z0-9._-].
bool validKey(const std::string& key);

}  // namespace provisr::keeper

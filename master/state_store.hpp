// Persisted runtime intent (DESIGN §3): user stop/start per instance, scale overrides, restart counters,
// in run_dir/master.state — batched (mark dirty, flush once per loop turn) and written atomically.
//
// File format, one record per line, names being [A-Za-z0-9._-]:
//   provisr-master-state 1
//   intent <instance> started|stopped|restarting
//   scale <program> <instances>
//   restarts <instance> <count>
//   generations <floor>      (every child generation the master ever sent is below it)
//   end <records> <fnv1a64 of every byte before this line, 16 hex digits>
// The trailer makes a truncated or scribbled file detectable; such a file is reported and the
// master starts from the config (SPEC §2.1: like a reboot), never from half a state.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace provisr::master {

// kRestarting: a user restart whose new child has not run yet (it outlives a master killed between
// the restart's stop and its start).
enum class Intent : std::uint8_t { kStarted, kStopped, kRestarting };

struct PersistedState {
  std::map<std::string, Intent> intents;          // instance -> what its user last asked for
  std::map<std::string, int> scale;               // program -> instance count set at runtime
  std::map<std::string, std::uint64_t> restarts;  // instance -> automatic restarts so far
  // Above every generation ever sent to the spawner: a restarted master starts the instances the
  // spawner no longer holds from here, so a spawn is never mistaken for a re-sent old one.
  std::uint64_t generationFloor = 0;
  bool operator==(const PersistedState&) const = default;
  bool empty() const { return intents.empty() && scale.empty() && restarts.empty(); }
};

std::string encodeState(const PersistedState& state);
Result<PersistedState> decodeState(std::string_view text);

class StateStore {
 public:
  explicit StateStore(std::string path) : path_(std::move(path)) {}

  struct Loaded {
    PersistedState state;
    std::optional<Error> problem;  // set when the file existed but could not be used
  };
  // A missing file is a first start: empty state, no problem. An unreadable or corrupt one gives an
  // empty state and says why. Either way the store then holds what was loaded, clean.
  Loaded load();

  // Changes only mark the store dirty; nothing touches the disk before flush(). A change to the
  // value already held does not dirty it. A name outside [A-Za-z0-9._-]{1,128} is refused.
  Status setIntent(const std::string& instance, Intent intent);
  Status setScale(const std::string& program, int instances);
  Status setRestarts(const std::string& instance, std::uint64_t restarts);
  void raiseGenerationFloor(std::uint64_t floor);  // only ever raises it
  void clearIntent(const std::string& instance);
  void clearScale(const std::string& program);
  void forgetInstance(const std::string& instance);  // its intent and counter (removed by a reload)

  // One atomic write if dirty (temp → fsync → rename → fsync dir); nothing otherwise. On failure
  // the store stays dirty, so the next turn retries. Restart counters are not user intent: a
  // change to them alone waits for flushCounters() (the master calls it within a second, and at
  // exit), so a restart does not pay two fsyncs; any other write carries them along.
  Status flush();
  Status flushCounters();

  bool dirty() const { return dirty_; }
  bool countersDirty() const { return countersDirty_; }
  const PersistedState& state() const { return state_; }
  std::optional<Intent> intent(const std::string& instance) const;
  std::uint64_t writes() const { return writes_; }  // successful flushes, for tests and metrics
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  PersistedState state_;
  bool dirty_ = false;
  bool countersDirty_ = false;
  std::uint64_t writes_ = 0;
};

// Writes `bytes` to `path` so that a crash leaves either the old or the new file: a temp file in
// the same directory, fsync, rename over, fsync the directory.
Status writeFileAtomically(const std::string& path, std::string_view bytes);

}  // namespace provisr::master

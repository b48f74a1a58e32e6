// The lifecycle of one instance (SPEC §2.1): one table state × event → (actions, next state), pure.
//
// The contract, in short (the table in lifecycle.cpp is the authority, cell by cell):
//   stopped  --start-->  starting  --(alive start_duration)-->  running  --stop-->  stopping --exit--> stopped
//   starting --failed attempt--> backoff --retry timer--> starting     (retry_count times, then fatal)
//   running  --exit, restart policy says yes--> backoff --restart timer--> starting   (restarts += 1)
//   running  --exit, policy says no--> exited
//   exited/fatal are left only by an explicit start; a stop of a backoff cancels its timer (stopped).
//   stopped/exited/fatal --adopted (spawner snapshot after a master restart)--> running
// A request on a mid-transition instance (starting, stopping) is queued — the last one wins — and
// runs when the transition ends. Start of running/backoff and stop of stopped/exited/fatal do
// nothing; restart = stop, then start. A user stop is never undone by a restart policy: an exit
// while stopping ends in `stopped`. `restarts` counts only restart-timer spawns (not retries, not
// user restarts). With restart_backoff the restart delay is restart_interval × factor^k capped at
// max, then ± jitter × delay; k grows per consecutive restart and resets once the child ran
// reset_after. Every spawn has a new generation; events of another generation are stale and
// ignored, so a late exit or timer can never move a newer child's state.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/model.hpp"
#include "common/util/clock.hpp"

namespace provisr::master {

enum class State : std::uint8_t { kStopped, kStarting, kRunning, kBackoff, kStopping, kExited, kFatal };
inline constexpr std::size_t kStateCount = 7;

// Requests come from users (or the scheduler on their behalf); the rest from the spawner and timers.
enum class EventKind : std::uint8_t {
  kStartRequested,
  kStopRequested,
  kRestartRequested,      // a user restart: stop, then start (not counted in `restarts`)
  kSpawned,               // spawner: ChildStarted{pid}
  kSpawnFailed,           // spawner: the exec (or anything before it) failed
  kExited,                // spawner: ChildExited{code, signal}
  kStartDurationElapsed,  // timer: the child stayed alive start_duration
  kRetryTimer,            // timer: retry_interval after a failed start attempt
  kRestartTimer,          // timer: restart delay after a running instance exited
  kStopTimeout,           // timer: stop_timeout after stop_signal
  kAdopted,               // spawner Snapshot after a master restart: this child is alive
};
inline constexpr std::size_t kEventCount = 11;

enum class TimerKind : std::uint8_t { kStartDuration, kRetry, kRestart, kStopTimeout };

struct Event {
  EventKind kind = EventKind::kStartRequested;
  std::uint64_t generation = 0;  // spawner events and timers: the spawn they belong to
  pid_t pid = 0;                 // kSpawned
  std::optional<int> exit_code;  // kExited: set when the child exited normally
  std::optional<int> exit_signal;  // kExited: set when a signal killed it
  std::string error;             // kSpawnFailed: why
  std::optional<WallTime> started_at;  // kAdopted: when the spawner started the child

  static Event of(EventKind k) {
    Event e;
    e.kind = k;
    return e;
  }
  static Event start() { return of(EventKind::kStartRequested); }
  static Event stop() { return of(EventKind::kStopRequested); }
  static Event restart() { return of(EventKind::kRestartRequested); }
  static Event spawned(std::uint64_t gen, pid_t pid);
  static Event spawnFailed(std::uint64_t gen, std::string why);
  static Event exitedCode(std::uint64_t gen, int code);
  static Event exitedSignal(std::uint64_t gen, int sig);
  static Event timer(EventKind kind, std::uint64_t gen);
  // The generation is the spawner's: adoption is how a restarted master learns it.
  static Event adopted(std::uint64_t gen, pid_t pid, std::optional<WallTime> started_at);
};

enum class ActionKind : std::uint8_t {
  kSpawn,              // ask the spawner for a child of `generation`
  kSendStopSignal,     // `signal` to the child's process group
  kSigKill,            // SIGKILL to the whole process group
  kArmTimer,           // `timer` fires after `delay`, delivered back with `generation`
  kCancelTimer,        // `timer` must not fire any more
  kIncrementRestarts,  // Instance::restarts() grew: the persisted counter is dirty
};

struct Action {
  ActionKind kind = ActionKind::kSpawn;
  TimerKind timer = TimerKind::kStartDuration;
  Duration delay{0};
  std::uint64_t generation = 0;
  int signal = 0;

  static Action spawn(std::uint64_t gen) { return Action{ActionKind::kSpawn, {}, {}, gen, 0}; }
  static Action stopSignal(int sig) { return Action{ActionKind::kSendStopSignal, {}, {}, 0, sig}; }
  static Action sigKill() { return Action{ActionKind::kSigKill, {}, {}, 0, 0}; }
  static Action arm(TimerKind t, Duration d, std::uint64_t gen) { return Action{ActionKind::kArmTimer, t, d, gen, 0}; }
  static Action cancel(TimerKind t) { return Action{ActionKind::kCancelTimer, t, {}, 0, 0}; }
  static Action incrementRestarts() { return Action{ActionKind::kIncrementRestarts, {}, {}, 0, 0}; }
  bool operator==(const Action&) const = default;
};

// How a table cell treats its event.
enum class Disposition : std::uint8_t {
  kTransition,  // actions and/or a state change
  kQueued,      // a request kept for when the current transition ends
  kNoop,        // a request that is already satisfied (start of running, stop of stopped)
  kIgnored,     // an event that may legitimately arrive late (a timer, a stale exit): dropped
  kInvalid,     // cannot happen for the current generation; dropped and reported (a bug upstream)
};

// What one apply() did. `actions` are in the order the master must carry them out.
struct Effects {
  Disposition disposition = Disposition::kIgnored;
  State from = State::kStopped;
  State to = State::kStopped;
  std::vector<Action> actions;
  bool changed() const { return from != to; }
};

// The knobs of ProgramSpec the lifecycle reads (SPEC §1.4), copied so an Instance owns its policy.
struct LifecyclePolicy {
  Duration start_duration{0};
  int retry_count = 0;
  Duration retry_interval = std::chrono::seconds(1);
  config::AutoRestart auto_restart = config::AutoRestart::kNever;
  Duration restart_interval = std::chrono::seconds(1);
  std::optional<config::RestartBackoff> restart_backoff;
  std::vector<int> success_exit_codes{0};
  int stop_signal = 15;
  Duration stop_timeout = std::chrono::seconds(10);

  static LifecyclePolicy from(const config::ProgramSpec& spec);
  bool isSuccess(std::optional<int> code, std::optional<int> signal) const;
};

// Uniform in [0, 1): the jitter source. Injected so tests are deterministic; the master passes a
// seeded engine. The default (0.5) means "no jitter".
using RandomSource = std::function<double()>;

enum class Request : std::uint8_t { kStart, kStop, kRestart };

class Instance {
 public:
  Instance(std::string name, LifecyclePolicy policy, RandomSource random = {});

  Effects apply(const Event& event, const Clock& clock);

  // Reload of an unchanged program, or metadata-only changes: new knobs, same child.
  void setPolicy(LifecyclePolicy policy) { policy_ = std::move(policy); }
  // Restored from master.state (SPEC §2.2: `restarts` survives master restarts).
  void setRestarts(std::uint64_t n) { restarts_ = n; }
  // After a master restart: the spawner's last generation for this key, so the next spawn gets a
  // number it has never seen (spawns are idempotent per generation). Only ever raises it.
  void seedGeneration(std::uint64_t g) { generation_ = std::max(generation_, g); }
  // The scheduler keeps this instance stopped (a failed dependency): say why in status.
  void setLastStartError(std::string why) { last_start_error_ = std::move(why); }

  const std::string& name() const { return name_; }
  const LifecyclePolicy& policy() const { return policy_; }
  State state() const { return state_; }
  std::uint64_t generation() const { return generation_; }
  std::optional<pid_t> pid() const { return pid_; }  // last known; nullopt before the first spawn
  std::optional<WallTime> startedAt() const { return started_at_; }
  std::optional<WallTime> stoppedAt() const { return stopped_at_; }
  std::optional<MonoTime> spawnedAtMono() const { return spawned_mono_; }
  std::optional<MonoTime> runningSince() const { return running_since_; }  // for uptime_ms
  std::uint64_t restarts() const { return restarts_; }
  int retriesUsed() const { return retries_used_; }
  int backoffStep() const { return backoff_step_; }  // k of interval × factor^k
  std::optional<int> exitCode() const { return exit_code_; }
  std::optional<int> exitSignal() const { return exit_signal_; }
  const std::string& lastStartError() const { return last_start_error_; }
  std::optional<Request> pending() const { return pending_; }
  // Ended on its own with a success exit (SPEC §1.4: a satisfied one-shot dependency).
  bool exitedSuccessfully() const;
  // Status `exit_error` (SPEC §2.2): "exited with code 3" / "killed by signal 9" for the last exit
  // that was not a success exit; nullopt when there was none.
  std::optional<std::string> exitError() const;

 private:
  friend struct Machine;  // the table's handlers (lifecycle.cpp)

  std::string name_;
  LifecyclePolicy policy_;
  RandomSource random_;
  State state_ = State::kStopped;
  std::uint64_t generation_ = 0;
  std::optional<pid_t> pid_;
  bool alive_ = false;  // a child of the current generation is known to be running
  std::optional<WallTime> started_at_;
  std::optional<WallTime> stopped_at_;
  std::optional<MonoTime> spawned_mono_;
  std::optional<MonoTime> running_since_;
  std::uint64_t restarts_ = 0;
  int retries_used_ = 0;
  int backoff_step_ = 0;
  TimerKind backoff_timer_ = TimerKind::kRetry;  // which timer a backoff waits on
  std::optional<int> exit_code_;
  std::optional<int> exit_signal_;
  std::string last_start_error_;
  std::optional<Request> pending_;
};

// The table itself, for tests and `--explain` style tooling: what a cell does and why.
struct CellInfo {
  Disposition disposition;
  std::string_view what;  // one line: the effect, in the contract's words
};
CellInfo describeCell(State s, EventKind e);
// The whole table as text, one line per cell grouped by state (for docs and debugging).
std::string renderLifecycleTable();

std::string_view stateName(State s);  // the SPEC's spelling: "stopped", "starting", ...
std::optional<State> parseState(std::string_view s);
std::string_view eventName(EventKind e);
std::string_view dispositionName(Disposition d);
std::string_view timerName(TimerKind t);

}  // namespace provisr::master

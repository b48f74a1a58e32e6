// The keeper's pure core for its three components: who runs, when a dead one comes back (at once
// after a healthy run, else 100 ms doubling to 5 s), what an exit means, and components.json.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/util/clock.hpp"

namespace provisr::keeper {

using namespace std::chrono_literals;

enum class Component : std::uint8_t { kSpawner, kMaster, kGateway };
// In start order; shutdown stops the master first, then the other two.
inline constexpr std::array kComponents = {Component::kSpawner, Component::kMaster, Component::kGateway};
std::string_view componentName(Component c);  // "spawner"

enum class ComponentState : std::uint8_t { kStopped, kRunning, kRestarting };
std::string_view stateName(ComponentState s);  // as components.json writes it

// A component's exit code meaning "do not restart me" (s6's permanent failure).
inline constexpr int kExitPermanent = 100;

// Crash-loop backoff: a component that ran at least kHealthyRun comes back at once (and the delay
// starts over); one that died sooner waits kFirstDelay, doubling up to kMaxDelay.
class Backoff {
 public:
  static constexpr Duration kFirstDelay = 100ms;
  static constexpr Duration kMaxDelay = 5s;
  static constexpr Duration kHealthyRun = 1s;

  // The delay before the next start of a component that ran for `ran`.
  Duration afterExit(Duration ran);

 private:
  Duration next_ = kFirstDelay;
};

struct ComponentStatus {
  std::optional<pid_t> pid;                 // last known; unset before the first start
  std::optional<std::int64_t> startedAtMs;  // wall clock, ms since the epoch
  std::uint32_t restarts = 0;               // automatic restarts after an exit
  ComponentState state = ComponentState::kStopped;
  bool adopted = false;  // a spawner that outlived the previous keeper: not our child
};

// What the keeper does after a component exited.
enum class ExitVerdict : std::uint8_t {
  kRestart,    // start it again after `delay`
  kShutdown,   // the master exited 0 on its own: a requested shutdown of everything
  kPermanent,  // exit code 100: report it, do not restart, shut everything down
  kStopped,    // the keeper is shutting down: it stays down
};

struct ExitDecision {
  ExitVerdict verdict = ExitVerdict::kRestart;
  Duration delay = Duration::zero();
};

class Supervision {
 public:
  explicit Supervision(Clock& clock);

  // The component runs as `pid` from now (adopted: found running, not started by us, in which
  // case `startedAtMs` says when it really started).
  void started(Component c, pid_t pid, bool adopted = false, std::optional<std::int64_t> startedAtMs = std::nullopt);
  // It ended: `exitCode` is its exit(2) code, unset when a signal killed it or the status is
  // unknown (an adopted spawner). `shuttingDown`: the keeper is stopping everything.
  ExitDecision exited(Component c, std::optional<int> exitCode, bool shuttingDown);

  // A component that waits for a restart stays down (the keeper is shutting down).
  void markStopped(Component c) { status_[index(c)].state = ComponentState::kStopped; }

  const ComponentStatus& status(Component c) const { return status_[index(c)]; }
  bool running(Component c) const { return status(c).state == ComponentState::kRunning; }
  bool anyRunning() const;

  // components.json: {"keeper": C, "spawner": C, "master": C, "gateway": C}, C = {"pid",
  // "started_at_ms", "restarts", "state"}; `keeperState` is the keeper's own.
  std::string renderJson(pid_t keeperPid, std::int64_t keeperStartedAtMs, ComponentState keeperState) const;

 private:
  static std::size_t index(Component c) { return static_cast<std::size_t>(c); }

  Clock& clock_;
  std::array<ComponentStatus, 3> status_{};
  std::array<MonoTime, 3> startedMono_{};
  std::array<Backoff, 3> backoff_{};
};

}  // namespace provisr::keeper

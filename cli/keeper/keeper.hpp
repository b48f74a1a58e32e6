// The keeper's shell: takes the run_dir, starts spawner -> master -> gateway with the secret,
// restarts them (Supervision decides when), serves the fd store, reaps what the subreaper inherits
// and runs the shutdown sequence — all on one EventLoop driven by a signalfd.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <array>
#include <memory>
#include <optional>
#include <string>

#include "cli/keeper/fd_store.hpp"
#include "cli/keeper/run_dir.hpp"
#include "cli/keeper/supervision.hpp"
#include "common/util/clock.hpp"
#include "common/util/event_loop.hpp"

namespace provisr::keeper {

struct Options {
  std::string config;      // absolute path of the validated config
  std::string runDir;      // absolute
  std::string libexecDir;  // where provisr-spawner, -master and -gateway live
  bool daemonize = false;
  std::string pidFile;
  std::string logFile;
};

// Grace given to inherited stragglers (SIGTERM) before SIGKILL at the end of a shutdown, and the
// time after which the keeper exits even if something could not be reaped.
inline constexpr Duration kStragglerGrace = 5s;
inline constexpr Duration kDrainGiveUp = 5s;

class Keeper {
 public:
  // Everything that can refuse a start: run_dir checks, the lock (another keeper), the fd store
  // socket, the signalfd, a surviving spawner whose secret cannot be read.
  static Result<std::unique_ptr<Keeper>> create(const Options& opts, Clock& clock);
  Keeper(const Keeper&) = delete;
  Keeper& operator=(const Keeper&) = delete;
  ~Keeper();

  // Starts the components and runs until everything is down; returns the exit code: 0 after a
  // requested shutdown, 1 after a forced one, 100 when a component asked not to be restarted.
  int run();

 private:
  enum class Phase : std::uint8_t { kRunning, kStoppingMaster, kStoppingOthers, kDraining, kDone };

  Keeper(const Options& opts, Clock& clock, RunDir runDir);
  Status init();
  void startComponent(Component c);
  void adoptSpawner(pid_t pid, UniqueFd pidfd);
  bool waitForPreviousMaster();  // true: a master of the previous keeper still runs; start later
  void onComponentExit(Component c, std::optional<int> exitCode, std::optional<int> signal);
  void signalComponent(Component c, int signo);
  void onTerminate(const char* why);
  void beginShutdown();
  void forceShutdown();
  void progressShutdown();
  void startDrain();
  void finish();
  bool reapAll();  // true when the keeper has no child left (ECHILD)
  void writeComponents();
  std::optional<Component> componentOfPid(pid_t pid) const;

  Options opts_;
  Clock& clock_;
  RunDir runDir_;
  UniqueFd keeperDir_;
  UniqueFd lock_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<FdStore> store_;
  Supervision sup_;
  std::string secret_;
  rlimit startNofile_{};
  std::int64_t startedAtMs_ = 0;
  std::array<std::optional<EventLoop::TimerId>, 3> restartTimers_{};
  UniqueFd adoptedPidfd_;  // the surviving spawner, not our child
  UniqueFd oldMasterPidfd_;  // a master of the previous keeper that has not exited yet
  Phase phase_ = Phase::kRunning;
  bool forced_ = false;
  int exitCode_ = 0;
};

}  // namespace provisr::keeper

// The keeper's shell around Supervision and the fd store: fork/exec, signals, reaping, shutdown.
#include "cli/keeper/keeper.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cli/keeper/log.hpp"
#include "cli/keeper/process.hpp"
#include "common/util/nofile.hpp"

namespace provisr::keeper {
namespace {

std::string describeExit(std::optional<int> code, std::optional<int> signal) {
  if (code) return "exited with code " + std::to_string(*code);
  if (signal) return std::string("was killed by signal ") + std::to_string(*signal) + " (" + ::strsignal(*signal) + ")";
  return "exited (status unknown: not our child)";
}

// Raw syscalls: glibc 2.36's <sys/pidfd.h> lacks extern "C" and does not link from C++.
int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfdSendSignal(int pidfd, int signo) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signo, nullptr, 0)); }

std::string ms(Duration d) { return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms"; }

}  // namespace

Result<std::unique_ptr<Keeper>> Keeper::create(const Options& opts, Clock& clock) {
  auto rd = RunDir::open(opts.runDir);
  if (!rd) return rd.error();
  std::unique_ptr<Keeper> k(new Keeper(opts, clock, std::move(*rd)));
  if (auto st = k->init(); !st) return st.error();
  return k;
}

Keeper::Keeper(const Options& opts, Clock& clock, RunDir runDir)
    : opts_(opts), clock_(clock), runDir_(std::move(runDir)), sup_(clock) {}

Keeper::~Keeper() {
  // The store unlinks its socket; the lock goes with its fd.
  store_.reset();
}

Status Keeper::init() {
  auto kd = runDir_.subdir("keeper");
  if (!kd) return kd.error();
  keeperDir_ = std::move(*kd);
  auto lock = takeKeeperLock(keeperDir_.get(), runDir_.path() + "/keeper/keeper.lock");
  if (!lock) return lock.error();
  lock_ = std::move(*lock);
  startedAtMs_ = unixMs(clock_.wallNow());

  // Orphans of the spawner (its managed children) are re-parented to us, not to init.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) return makeError(ErrorCode::kInternal, std::string("PR_SET_CHILD_SUBREAPER: ") + std::strerror(errno));
  // The fd store holds up to three fds per managed child.
  ::getrlimit(RLIMIT_NOFILE, &startNofile_);
  if (std::string err = raiseNofile(); !err.empty()) logLine(err);

  auto loop = EventLoop::create(clock_);
  if (!loop) return loop.error();
  loop_ = std::move(*loop);
  auto store = FdStore::listen(*loop_, runDir_.path() + "/keeper/fdstore.sock");
  if (!store) return store.error();
  store_ = std::move(*store);

  for (int s : {SIGTERM, SIGINT}) {
    if (auto st = loop_->onSignal(s, [this](const signalfd_siginfo& si) {
          onTerminate(si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        });
        !st)
      return st;
  }
  for (int s : {SIGHUP, SIGUSR1}) {
    if (auto st = loop_->onSignal(s, [this](const signalfd_siginfo& si) {
          const int signo = static_cast<int>(si.ssi_signo);
          if (sup_.running(Component::kMaster) && phase_ == Phase::kRunning) {
            logLine(std::string(signo == SIGHUP ? "SIGHUP: reload" : "SIGUSR1: reopen logs") + ", forwarded to the master");
            signalComponent(Component::kMaster, signo);
          } else {
            logLine(std::string(signo == SIGHUP ? "SIGHUP" : "SIGUSR1") + " ignored: no master running");
          }
        });
        !st)
      return st;
  }
  if (auto st = loop_->onSignal(SIGCHLD, [this](const signalfd_siginfo&) { reapAll(); }); !st) return st;
  // SIGPIPE: sends use MSG_NOSIGNAL; a stray one must not kill the root of the tree.
  if (auto st = loop_->onSignal(SIGPIPE, [](const signalfd_siginfo&) {}); !st) return st;

  // A spawner that outlived the previous keeper keeps its children: talk to it, do not start one.
  UniqueFd spawnerDir(::openat(runDir_.fd(), "spawner", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (spawnerDir) {
    if (auto holder = lockHolder(spawnerDir.get(), "spawner.lock")) {
      UniqueFd pidfd(pidfdOpen(*holder));
      if (pidfd) {
        auto secret = readSecretFile(spawnerDir.get(), "secret");
        if (!secret) {
          return makeError(ErrorCode::kUnavailable, "a spawner (pid " + std::to_string(*holder) + ") still runs on " +
                                                        runDir_.path() + " but its secret cannot be used: " +
                                                        secret.error().message);
        }
        secret_ = std::move(*secret);
        adoptSpawner(*holder, std::move(pidfd));
      }
    }
  }
  if (secret_.empty()) {
    auto secret = makeSecret();
    if (!secret) return secret.error();
    secret_ = std::move(*secret);
  }
  return {};
}

void Keeper::adoptSpawner(pid_t pid, UniqueFd pidfd) {
  logLine("a spawner (pid " + std::to_string(pid) + ") survived the previous keeper: using it, watching it through a pidfd");
  adoptedPidfd_ = std::move(pidfd);
  sup_.started(Component::kSpawner, pid, true, startedAtMs(pid));
  const int fd = adoptedPidfd_.get();
  (void)loop_->addFd(fd, EventLoop::kReadable, [this, fd](std::uint32_t) {
    loop_->removeFd(fd);
    adoptedPidfd_.reset();
    onComponentExit(Component::kSpawner, std::nullopt, std::nullopt);
  });
  // What it deposited died with the previous keeper's fd store: it reconnects to ours (listening
  // already) and deposits its children's pidfds and pipes again.
  if (pidfdSendSignal(fd, SIGWINCH) != 0) logLine(std::string("cannot ask the spawner to deposit again: ") + std::strerror(errno));
}

int Keeper::run() {
  logLine("started on " + runDir_.path() + " (config " + opts_.config + ", components from " + opts_.libexecDir + ")");
  for (Component c : kComponents) {
    if (c == Component::kSpawner && sup_.running(c)) continue;  // adopted
    startComponent(c);
  }
  writeComponents();
  if (phase_ != Phase::kDone) loop_->run();
  logLine("exiting with code " + std::to_string(exitCode_));
  return exitCode_;
}

bool Keeper::waitForPreviousMaster() {
  // After a keeper crash its master exits (PR_SET_PDEATHSIG), but maybe not yet: a new master
  // would find master.lock taken and exit 100, which shuts everything down. Wait for it instead.
  UniqueFd dir(::openat(runDir_.fd(), "master", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return false;
  const auto holder = lockHolder(dir.get(), "master.lock");
  if (!holder) return false;
  UniqueFd pidfd(pidfdOpen(*holder));
  if (!pidfd) return false;
  logLine("a master of the previous keeper (pid " + std::to_string(*holder) + ") still holds master.lock: starting ours when it exits");
  oldMasterPidfd_ = std::move(pidfd);
  const int fd = oldMasterPidfd_.get();
  (void)loop_->addFd(fd, EventLoop::kReadable, [this, fd](std::uint32_t) {
    loop_->removeFd(fd);
    oldMasterPidfd_.reset();
    if (phase_ == Phase::kRunning) startComponent(Component::kMaster);
  });
  return true;
}

void Keeper::startComponent(Component c) {
  restartTimers_[static_cast<std::size_t>(c)].reset();
  if (c == Component::kMaster && !oldMasterPidfd_ && waitForPreviousMaster()) return;
  const std::string name(componentName(c));
  LaunchSpec spec;
  spec.nofile = startNofile_;
  // Master and gateway go with the keeper (DESIGN §4 item 4); the spawner outlives it.
  spec.diesWithKeeper = c != Component::kSpawner;
  spec.argv = {opts_.libexecDir + "/provisr-" + name};
  auto add = [&spec](std::initializer_list<std::string> more) { spec.argv.insert(spec.argv.end(), more); };
  switch (c) {
    case Component::kSpawner:
      add({"--run-dir", runDir_.path(), "--secret-fd", std::to_string(kSecretFd), "--fdstore",
           runDir_.path() + "/keeper/fdstore.sock"});
      spec.secret = secret_;
      break;
    case Component::kMaster:
      add({"--config", opts_.config, "--run-dir", runDir_.path(), "--secret-fd", std::to_string(kSecretFd)});
      spec.secret = secret_;
      break;
    case Component::kGateway:
      add({"--config", opts_.config, "--run-dir", runDir_.path()});
      break;
  }
  auto launched = launch(spec);
  if (!launched) {
    // No child at all (fork failed): as if it had crashed at once.
    logLine("cannot start " + name + ": " + launched.error().message);
    sup_.started(c, 0);
    onComponentExit(c, std::nullopt, std::nullopt);
    return;
  }
  sup_.started(c, launched->pid);
  if (!launched->execError.empty()) {
    logLine("cannot start " + name + ": " + launched->execError);  // it exits 127; reaped as a crash
  } else {
    logLine("started " + name + " (pid " + std::to_string(launched->pid) + ")");
  }
  writeComponents();
}

std::optional<Component> Keeper::componentOfPid(pid_t pid) const {
  for (Component c : kComponents) {
    const auto& s = sup_.status(c);
    if (s.state == ComponentState::kRunning && !s.adopted && s.pid == pid) return c;
  }
  return std::nullopt;
}

bool Keeper::reapAll() {
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid < 0) {
      if (phase_ == Phase::kDraining) finish();
      return true;
    }
    if (pid == 0) return false;
    if (auto c = componentOfPid(pid)) {
      onComponentExit(*c, WIFEXITED(status) ? std::optional<int>(WEXITSTATUS(status)) : std::nullopt,
                      WIFSIGNALED(status) ? std::optional<int>(WTERMSIG(status)) : std::nullopt);
    } else if (store_->onReaped(pid, status, unixMs(clock_.wallNow()))) {
      logLine("reaped managed child pid " + std::to_string(pid) + " (" +
              describeExit(WIFEXITED(status) ? std::optional<int>(WEXITSTATUS(status)) : std::nullopt,
                           WIFSIGNALED(status) ? std::optional<int>(WTERMSIG(status)) : std::nullopt) +
              "); its exit waits for the spawner");
    } else {
      logLine("reaped inherited orphan pid " + std::to_string(pid));
    }
  }
}

void Keeper::onComponentExit(Component c, std::optional<int> exitCode, std::optional<int> signal) {
  const std::string name(componentName(c));
  const auto decision = sup_.exited(c, exitCode, phase_ != Phase::kRunning);
  switch (decision.verdict) {
    case ExitVerdict::kRestart:
      if (decision.delay == Duration::zero()) {
        logLine(name + " " + describeExit(exitCode, signal) + "; restarting it now");
        startComponent(c);
      } else {
        logLine(name + " " + describeExit(exitCode, signal) + "; restarting it in " + ms(decision.delay) + " (crash loop)");
        restartTimers_[static_cast<std::size_t>(c)] = loop_->addTimer(decision.delay, [this, c] {
          restartTimers_[static_cast<std::size_t>(c)].reset();
          if (phase_ == Phase::kRunning) startComponent(c);
        });
      }
      break;
    case ExitVerdict::kShutdown:
      logLine("master exited 0 on its own: a requested shutdown");
      beginShutdown();
      break;
    case ExitVerdict::kPermanent:
      logLine(name + " exited with code 100 (do not restart): shutting everything down");
      exitCode_ = kExitPermanent;
      beginShutdown();
      break;
    case ExitVerdict::kStopped:
      logLine(name + " " + describeExit(exitCode, signal) + " (shutting down)");
      break;
  }
  writeComponents();
  progressShutdown();
}

void Keeper::signalComponent(Component c, int signo) {
  const auto& s = sup_.status(c);
  if (s.state != ComponentState::kRunning || !s.pid || *s.pid <= 0) return;
  if (s.adopted && adoptedPidfd_) {
    pidfdSendSignal(adoptedPidfd_.get(), signo);
  } else {
    ::kill(*s.pid, signo);
  }
}

void Keeper::onTerminate(const char* why) {
  if (phase_ == Phase::kRunning) {
    logLine(std::string(why) + ": graceful shutdown");
    beginShutdown();
  } else if (!forced_) {
    logLine(std::string(why) + " during shutdown: killing everything");
    forceShutdown();
  }
}

void Keeper::beginShutdown() {
  if (phase_ != Phase::kRunning) return;
  phase_ = Phase::kStoppingMaster;
  for (Component c : kComponents) {
    auto& t = restartTimers_[static_cast<std::size_t>(c)];
    if (t) {
      loop_->cancelTimer(*t);
      t.reset();
      sup_.markStopped(c);
    }
  }
  if (oldMasterPidfd_) {
    loop_->removeFd(oldMasterPidfd_.get());
    oldMasterPidfd_.reset();
  }
  if (sup_.running(Component::kMaster)) {
    logLine("stopping the master (it stops every program in reverse priority)");
    signalComponent(Component::kMaster, SIGTERM);
  }
  writeComponents();
  progressShutdown();
}

void Keeper::forceShutdown() {
  forced_ = true;
  if (exitCode_ == 0) exitCode_ = 1;
  for (const GroupRef& g : store_->table().groupRefs()) {
    if (signalGroup(g, SIGKILL)) logLine("killed process group " + std::to_string(g.pgid));
  }
  for (Component c : kComponents) {
    const auto& s = sup_.status(c);
    if (s.state != ComponentState::kRunning || !s.pid || *s.pid <= 0) continue;
    signalComponent(c, SIGKILL);
    if (!s.adopted) ::kill(-*s.pid, SIGKILL);
  }
  for (pid_t p : childrenOf(::getpid())) ::kill(p, SIGKILL);
  loop_->addTimer(kDrainGiveUp, [this] {
    logLine("giving up on processes that do not die");
    finish();
  });
  if (phase_ != Phase::kDraining) {
    phase_ = Phase::kStoppingOthers;
    progressShutdown();
  }
}

void Keeper::progressShutdown() {
  if (phase_ == Phase::kStoppingMaster && !sup_.running(Component::kMaster)) {
    phase_ = Phase::kStoppingOthers;
    for (Component c : {Component::kGateway, Component::kSpawner}) {
      if (sup_.running(c)) {
        logLine("stopping the " + std::string(componentName(c)));
        signalComponent(c, forced_ ? SIGKILL : SIGTERM);
      }
    }
  }
  if (phase_ == Phase::kStoppingOthers && !sup_.anyRunning()) startDrain();
}

void Keeper::startDrain() {
  phase_ = Phase::kDraining;
  // The master stopped every program; what is left of a managed process group is a leftover.
  // Each group is named through its leader's pidfd (or checked first), so an id reused after pid
  // wraparound by an unrelated group is left alone (fd_table.hpp, signalGroup).
  store_->table().pruneGroups([](const GroupRef& g) { return groupAlive(g); });
  for (const GroupRef& g : store_->table().groupRefs()) {
    if (signalGroup(g, SIGKILL)) logLine("killed leftovers of process group " + std::to_string(g.pgid));
  }
  // Anything else we inherited (a daemon that left its group with setsid) gets a grace period.
  const auto stragglers = childrenOf(::getpid());
  if (!stragglers.empty()) {
    logLine("waiting for " + std::to_string(stragglers.size()) + " inherited process(es)");
    for (pid_t p : stragglers) ::kill(p, SIGTERM);
    loop_->addTimer(kStragglerGrace, [this] {
      for (pid_t p : childrenOf(::getpid())) {
        logLine("killing straggler pid " + std::to_string(p));
        ::kill(p, SIGKILL);
      }
      loop_->addTimer(kDrainGiveUp, [this] {
        logLine("giving up on processes that do not die");
        finish();
      });
    });
  }
  reapAll();  // finishes at once when no child is left
}

void Keeper::finish() {
  if (phase_ == Phase::kDone) return;
  phase_ = Phase::kDone;
  writeComponents();
  loop_->stop();
}

void Keeper::writeComponents() {
  const auto state = phase_ == Phase::kDone ? ComponentState::kStopped : ComponentState::kRunning;
  if (auto st = runDir_.writeAtomic("components.json", sup_.renderJson(::getpid(), startedAtMs_, state), 0644); !st)
    logLine("cannot write components.json: " + st.error().message);
}

}  // namespace provisr::keeper

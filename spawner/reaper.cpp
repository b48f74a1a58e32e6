// Reaper: waitid(P_PIDFD) with WNOWAIT to read exits, a separate reap, group signals, orphan reaping.
#include "spawner/reaper.hpp"

#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
// P_PIDFD lives only in the kernel header (DEPS.md); include it after glibc's so its P_* macros,
// equal to glibc's enum values, do not break glibc's declarations.
#include <linux/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

namespace provisr::spawner {
namespace {

constexpr auto kIdPidfd = static_cast<idtype_t>(P_PIDFD);
// How long release() waits for a killed leaf to empty before leaving its removal for later.
constexpr std::chrono::milliseconds kLeafDrainWait{200};

Error sysError(const std::string& what, int err) {
  return makeError(ErrorCode::kInternal, what + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")");
}

}  // namespace

ExitStatus ExitStatus::fromSiginfo(int siCode, int siStatus) {
  ExitStatus s;
  if (siCode == CLD_EXITED) {
    s.exited = true;
    s.code = siStatus;
  } else {
    s.signal = siStatus;
    s.coreDumped = siCode == CLD_DUMPED;
  }
  return s;
}

ExitStatus ExitStatus::fromWaitStatus(int status) {
  ExitStatus s;
  if (WIFEXITED(status)) {
    s.exited = true;
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
    s.coreDumped = WCOREDUMP(status);
  }
  return s;
}

ManagedChild::ManagedChild(pid_t pid, UniqueFd pidfd, std::uint64_t startTicks)
    : pid_(pid), pidfd_(std::move(pidfd)), startTicks_(startTicks), cgroup_(cgroup::membershipOf(pid)) {}

ManagedChild::ManagedChild(ManagedChild&& o) noexcept
    : pid_(o.pid_),
      pidfd_(std::move(o.pidfd_)),
      startTicks_(o.startTicks_),
      released_(o.released_),
      stopRequested_(o.stopRequested_),
      cgroup_(std::exchange(o.cgroup_, cgroup::Membership{})) {}

ManagedChild& ManagedChild::operator=(ManagedChild&& o) noexcept {
  if (this != &o) {
    abandon();
    pid_ = o.pid_;
    pidfd_ = std::move(o.pidfd_);
    startTicks_ = o.startTicks_;
    released_ = o.released_;
    stopRequested_ = o.stopRequested_;
    cgroup_ = std::exchange(o.cgroup_, cgroup::Membership{});
  }
  return *this;
}

ManagedChild::~ManagedChild() { abandon(); }

void ManagedChild::abandon() {
  if (released_ || cgroup_.empty()) return;
  // Dropped unreleased: an adopted child whose exit the keeper reaped, or the spawner shutting down.
  // After a stop whose leader is gone, nothing of the program may stay: kill the rest of the leaf.
  // Otherwise (a running child the next spawner adopts) the leaf is removed only if already empty.
  const bool finishStop = stopRequested_ && leaderGone();
  if (finishStop) cgroup::killAll(cgroup_);
  cgroup::remove(cgroup_, finishStop ? kLeafDrainWait : std::chrono::milliseconds(0));
}

bool ManagedChild::leaderGone() const {
  // A pidfd polls readable once its process has exited (reaped or not, whoever its parent is).
  pollfd p{pidfd_.get(), POLLIN, 0};
  return pidfd_.valid() && ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0;
}

Result<std::optional<ExitStatus>> ManagedChild::peekExit() const {
  if (released_) return makeError(ErrorCode::kInternal, "peekExit after release of pid " + std::to_string(pid_));
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(kIdPidfd, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOWAIT | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return sysError("waitid(P_PIDFD) for pid " + std::to_string(pid_), errno);
  if (info.si_pid == 0) return std::optional<ExitStatus>{};  // still running
  return std::optional<ExitStatus>{ExitStatus::fromSiginfo(info.si_code, info.si_status)};
}

Status ManagedChild::release() {
  if (released_) return {};
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(kIdPidfd, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return sysError("waitid(P_PIDFD) reap of pid " + std::to_string(pid_), errno);
  if (info.si_pid == 0) return makeError(ErrorCode::kConflict, "pid " + std::to_string(pid_) + " has not exited");
  released_ = true;
  if (!cgroup_.empty()) {
    // A stopped program leaves nothing behind; after an exit of its own, descendants it left
    // running keep their leaf until they are gone (it is retried later).
    if (stopRequested_) cgroup::killAll(cgroup_);
    cgroup::remove(cgroup_, stopRequested_ ? kLeafDrainWait : std::chrono::milliseconds(0));
  }
  return {};
}

Status ManagedChild::signalLeader(int sig) const {
  // A raw syscall: glibc 2.36's <sys/pidfd.h> lacks C linkage declarations for C++.
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0U) != 0) {
    return sysError("pidfd_send_signal to pid " + std::to_string(pid_), errno);
  }
  return {};
}

Status ManagedChild::signalGroup(int sig) const {
  if (::kill(-pgid(), sig) != 0) {
    return sysError("kill(-" + std::to_string(pgid()) + ", " + std::to_string(sig) + ")", errno);
  }
  return {};
}

Status ManagedChild::beginStop(int sig) {
  stopRequested_ = true;
  // Descendants that left the group (setsid) get the stop signal too.
  if (!cgroup_.empty()) cgroup::signalOutside(cgroup_, sig, pgid());
  // ESRCH: the group is already gone, which is what a stop wants.
  if (::kill(-pgid(), sig) != 0 && errno != ESRCH) return sysError("stop of group " + std::to_string(pgid()), errno);
  return {};
}

Status ManagedChild::killGroup() const {
  if (!cgroup_.empty()) cgroup::killAll(cgroup_);
  if (::kill(-pgid(), SIGKILL) != 0 && errno != ESRCH) return sysError("SIGKILL to group " + std::to_string(pgid()), errno);
  return {};
}

bool ManagedChild::groupAlive() const {
  if (::kill(-pgid(), 0) == 0 || errno == EPERM) return true;
  return !released_ && cgroup::populated(cgroup_);
}

std::vector<pid_t> listChildren() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
    long pid = 0;
    while (in >> pid) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

std::vector<ReapedOrphan> reapOrphans(const std::function<bool(pid_t)>& isManaged) {
  std::vector<ReapedOrphan> out;
  for (pid_t pid : listChildren()) {
    if (isManaged(pid)) continue;
    int status = 0;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid) out.push_back(ReapedOrphan{pid, ExitStatus::fromWaitStatus(status)});
  }
  return out;
}

}  // namespace provisr::spawner

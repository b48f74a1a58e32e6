// Reaper: waitid(P_PIDFD) with WNOWAIT to read exits, a separate reap, group signals, orphan reaping.
#include "spawner/reaper.hpp"

#include <dirent.h>
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

namespace provisr::spawner {
namespace {

constexpr auto kIdPidfd = static_cast<idtype_t>(P_PIDFD);

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
  // ESRCH: the group is already gone, which is what a stop wants.
  if (::kill(-pgid(), sig) != 0 && errno != ESRCH) return sysError("stop of group " + std::to_string(pgid()), errno);
  return {};
}

Status ManagedChild::killGroup() const {
  if (::kill(-pgid(), SIGKILL) != 0 && errno != ESRCH) return sysError("SIGKILL to group " + std::to_string(pgid()), errno);
  return {};
}

bool ManagedChild::groupAlive() const { return ::kill(-pgid(), 0) == 0 || errno == EPERM; }

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

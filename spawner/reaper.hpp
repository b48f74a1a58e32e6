// Reaper: read a managed child's exit without reaping it, release it once acknowledged, signal its
// process group, and reap orphaned descendants that are not managed (DESIGN.md §2, §4).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "spawner/cgroup.hpp"

namespace provisr::spawner {

// How a process ended: exactly one of code (exited) or signal (killed) is meaningful.
struct ExitStatus {
  bool exited = false;     // true: normal exit with `code`; false: killed by `signal`
  int code = 0;
  int signal = 0;
  bool coreDumped = false;

  static ExitStatus fromSiginfo(int siCode, int siStatus);
  static ExitStatus fromWaitStatus(int status);  // the keeper hands these over (Exited{status})
  bool operator==(const ExitStatus&) const = default;
};

// A managed child: the leader of its own process group, known through a pidfd. Its exit can be
// read any number of times (WNOWAIT); the zombie stays until release(), so the pid — and the
// process group id — cannot be reused before the master has acknowledged the exit.
// When the child is in a provisr cgroup leaf (spawner/cgroup.hpp; found from /proc/<pid>/cgroup,
// so an adopted child keeps the leaf its first spawner made), a stop reaches every process in the
// leaf, setsid'd descendants included, and the leaf is removed once the child is released.
class ManagedChild {
 public:
  ManagedChild(pid_t pid, UniqueFd pidfd, std::uint64_t startTicks);
  ~ManagedChild();
  ManagedChild(const ManagedChild&) = delete;
  ManagedChild& operator=(const ManagedChild&) = delete;
  // A moved-from child owns nothing (no pidfd, no leaf): its destructor does nothing.
  ManagedChild(ManagedChild&& o) noexcept;
  ManagedChild& operator=(ManagedChild&& o) noexcept;

  pid_t pid() const { return pid_; }
  pid_t pgid() const { return pid_; }  // the launcher makes every child lead its own group
  int pidfd() const { return pidfd_.get(); }  // readable (POLLIN) once the child has exited
  std::uint64_t startTicks() const { return startTicks_; }
  bool released() const { return released_; }

  // The exit, if it has happened; never reaps. Errors (e.g. ECHILD for an adopted child that is not
  // ours) come back as values.
  Result<std::optional<ExitStatus>> peekExit() const;

  // Reaps the zombie (after the master acknowledged the exit). Idempotent. After a stop, whatever
  // is left in the child's cgroup leaf is killed; the leaf is removed once empty.
  Status release();

  // The leader only, through the pidfd (never a reused pid).
  Status signalLeader(int sig) const;
  // The whole process group: the leader and every descendant that did not leave the group. Safe
  // until release(): the zombie leader keeps the group id from being reused.
  Status signalGroup(int sig) const;

  // Stop: send `sig` to the group now (and to members of the cgroup leaf outside the group); the
  // caller arms a timer for the stop timeout and calls killGroup() when it fires (if the group is
  // still there). stopRequested() tells the loop whether a kill timer is owed.
  Status beginStop(int sig);
  // SIGKILL to the group and to everything in the cgroup leaf.
  Status killGroup() const;
  bool stopRequested() const { return stopRequested_; }
  // True while any process is in the group (an unreleased zombie leader counts) or in the leaf.
  bool groupAlive() const;
  // The cgroup leaf, empty when the child is in none of provisr's.
  const cgroup::Membership& cgroup() const { return cgroup_; }

 private:
  pid_t pid_;
  UniqueFd pidfd_;
  std::uint64_t startTicks_;
  bool released_ = false;
  bool stopRequested_ = false;
  cgroup::Membership cgroup_;

  bool leaderGone() const;
  void abandon();  // the destructor's leaf cleanup
};

// One orphan that was reaped: a descendant re-parented to us (PR_SET_CHILD_SUBREAPER).
struct ReapedOrphan {
  pid_t pid = -1;
  ExitStatus status;
};

// Reaps every exited child of this process that is not managed, by pid. Never waits on P_ALL, so a
// managed zombie awaiting acknowledgment is never taken. The child list comes from
// /proc/self/task/*/children.
std::vector<ReapedOrphan> reapOrphans(const std::function<bool(pid_t)>& isManaged);

// Our direct children, as the kernel lists them.
std::vector<pid_t> listChildren();

}  // namespace provisr::spawner

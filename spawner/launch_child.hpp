// The code a launched child runs between clone and execve, shared by the in-process launcher and
// the fork server (spawner/fork_server.hpp). Internal to spawner/: only async-signal-safe calls.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

namespace provisr::spawner::detail {

// Stages the child reports when it fails; the parent turns them into words (stageName).
enum class Stage : int { kSetpgid = 1, kSignals, kRlimit, kSetgroups, kSetgid, kSetuid, kChdir, kDup, kExec, kCgroup };
const char* stageName(int stage);

// Written by a child that fails before execve, read by the parent once the CLONE_VFORK clone
// returns (the child shares the parent's memory until it execs; a successful exec writes nothing).
struct ChildReport {
  int stage = 0;  // 0: the child did not report a failure
  int err = 0;
};

// Everything the child reads, prepared by the parent. The child shares the parent's memory
// (CLONE_VM) and must not allocate, so all of it is plain pointers into storage the parent keeps
// alive until clone returns.
struct ChildArgs {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* cwd = nullptr;  // nullptr: the parent's
  bool changeIds = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  std::size_t ngroups = 0;
  mode_t umask = 022;
  int devNull = -1;  // all three >= 3, so no dup2 onto 0/1/2 overwrites a later source
  int out = -1;
  int err = -1;
  const int* cgroupProcs = nullptr;  // cgroup.procs of each leaf the child joins by writing "0"
  std::size_t ncgroupProcs = 0;
  ChildReport* report = nullptr;
};

// The child's body: setpgid, cgroup joins, default signal dispositions, soft RLIMIT_NOFILE 1024,
// ids, umask, cwd, fds 0/1/2 (everything else close-on-exec), empty signal mask, execve.
int childMain(void* args);

// The soft RLIMIT_NOFILE every child gets (DESIGN.md §4 item 7).
inline constexpr unsigned long kChildNofile = 1024;
// The hard RLIMIT_NOFILE children get back: the one the spawner started with, before it raised
// its own for the descriptors it holds per child (0: keep the spawner's). Set once at start,
// before the fork server is forked.
inline unsigned long childNofileMax = 0;
inline constexpr std::size_t kChildStackSize = 256 * 1024;

// clone3 with the CLONE_* flags below, the child running fn(arg) on the given stack and exiting
// with its result. Returns the pid or -errno (-ENOSYS where this build has no clone3 stub).
struct CloneArgs {  // struct clone_args of <linux/sched.h> up to `cgroup` (CLONE_ARGS_SIZE_VER2)
  std::uint64_t flags = 0;
  std::uint64_t pidfd = 0;
  std::uint64_t childTid = 0;
  std::uint64_t parentTid = 0;
  std::uint64_t exitSignal = 0;
  std::uint64_t stack = 0;
  std::uint64_t stackSize = 0;
  std::uint64_t tls = 0;
  std::uint64_t setTid = 0;
  std::uint64_t setTidSize = 0;
  std::uint64_t cgroup = 0;
};
static_assert(sizeof(CloneArgs) == 88);
long clone3Run(CloneArgs* args, int (*fn)(void*), void* arg);
inline constexpr std::uint64_t kCloneIntoCgroup = 0x200000000ULL;  // Linux 5.7

}  // namespace provisr::spawner::detail

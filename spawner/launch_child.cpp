// The launched child between clone and execve (see launch_child.hpp), and the clone3 stub.
#include "spawner/launch_child.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#if defined(__x86_64__)
// clone3 for a CLONE_VM child on its own stack, as glibc's internal clone3 does it: the child
// starts on the new stack, calls fn(arg) and exits with its result. glibc exports no wrapper.
// long provisrClone3(clone_args*, size_t, int (*fn)(void*), void* arg): pid, or -errno.
extern "C" long provisrClone3(void* args, std::size_t size, int (*fn)(void*), void* arg);
asm(R"(
  .text
  .globl provisrClone3
  .hidden provisrClone3
  .type provisrClone3, @function
provisrClone3:
  mov %rcx, %r8
  mov %rdx, %r9
  mov $435, %eax
  syscall
  test %rax, %rax
  jnz 1f
  xor %ebp, %ebp
  mov %r8, %rdi
  call *%r9
  mov %eax, %edi
  mov $60, %eax
  syscall
  hlt
1:
  ret
  .size provisrClone3, .-provisrClone3
)");
#define PROVISR_HAVE_CLONE3 1
#endif

namespace provisr::spawner::detail {
namespace {

constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC, Linux 5.11

// The child runs on its parent's memory: sanitizer bookkeeping in it (stack poisoning, no-return
// handling) would corrupt the parent's shadow state, so its functions are left uninstrumented.
#define PROVISR_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))

[[noreturn]] PROVISR_CHILD_CODE void childFail(const ChildArgs& a, Stage stage, int err) {
  // The parent reads this once clone returns (CLONE_VFORK: after our _exit).
  volatile ChildReport* r = a.report;
  r->err = err;
  r->stage = static_cast<int>(stage);
  ::_exit(127);
}

// Moves fd to `target` (dup2 clears CLOEXEC on the copy); if fd already is target, clear the flag.
PROVISR_CHILD_CODE bool placeFd(int fd, int target) {
  if (fd == target) {
    int flags = ::fcntl(fd, F_GETFD);
    return flags >= 0 && ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) == 0;
  }
  return ::dup2(fd, target) == target;
}

}  // namespace

const char* stageName(int stage) {
  switch (static_cast<Stage>(stage)) {
    case Stage::kSetpgid: return "setpgid";
    case Stage::kSignals: return "signals";
    case Stage::kRlimit: return "setrlimit";
    case Stage::kSetgroups: return "setgroups";
    case Stage::kSetgid: return "setgid";
    case Stage::kSetuid: return "setuid";
    case Stage::kChdir: return "chdir";
    case Stage::kDup: return "dup2";
    case Stage::kExec: return "exec";
    case Stage::kCgroup: return "cgroup";
  }
  return "child";
}

// Only async-signal-safe calls; raw syscalls for id changes, because glibc's setuid wrappers
// broadcast to every thread of the "process" — which, under CLONE_VM, is the parent's.
PROVISR_CHILD_CODE int childMain(void* arg) {
  const auto& a = *static_cast<const ChildArgs*>(arg);
  if (::setpgid(0, 0) != 0) childFail(a, Stage::kSetpgid, errno);
  // Into the leaf before anything else runs as this process: "0" names the writer.
  for (std::size_t i = 0; i < a.ncgroupProcs; ++i) {
    if (::write(a.cgroupProcs[i], "0", 1) != 1) childFail(a, Stage::kCgroup, errno);
  }

  // Default disposition for every signal (the parent blocked all signals around clone, so no
  // parent handler can run on this stack before the reset), then an empty mask.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // glibc-internal signals refuse: EINVAL is fine
  }

  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rl.rlim_cur != kChildNofile || (childNofileMax != 0 && rl.rlim_max > childNofileMax))) {
    if (childNofileMax != 0 && rl.rlim_max > childNofileMax) rl.rlim_max = childNofileMax;
    rl.rlim_cur = rl.rlim_max < kChildNofile ? rl.rlim_max : kChildNofile;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) childFail(a, Stage::kRlimit, errno);
  }

  if (a.changeIds) {
    if (::syscall(SYS_setgroups, a.ngroups, a.groups) != 0) childFail(a, Stage::kSetgroups, errno);
    if (::syscall(SYS_setresgid, a.gid, a.gid, a.gid) != 0) childFail(a, Stage::kSetgid, errno);
    if (::syscall(SYS_setresuid, a.uid, a.uid, a.uid) != 0) childFail(a, Stage::kSetuid, errno);
  }
  ::umask(a.umask);
  if (a.cwd != nullptr && ::chdir(a.cwd) != 0) childFail(a, Stage::kChdir, errno);

  // The sources are all >= 3 (the parent guaranteed it), so no dup2 overwrites a later source.
  if (!placeFd(a.devNull, 0) || !placeFd(a.out, 1) || !placeFd(a.err, 2)) childFail(a, Stage::kDup, errno);
  // Belt and braces for §4 item 7: any fd >= 3 someone opened without O_CLOEXEC closes at exec.
  ::syscall(SYS_close_range, 3U, ~0U, kCloseRangeCloexec);

  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(a.path, a.argv, a.envp);
  childFail(a, Stage::kExec, errno);
}

long clone3Run(CloneArgs* args, int (*fn)(void*), void* arg) {
#if PROVISR_HAVE_CLONE3
  return provisrClone3(args, sizeof *args, fn, arg);
#else
  (void)args;
  (void)fn;
  (void)arg;
  return -ENOSYS;
#endif
}

}  // namespace provisr::spawner::detail

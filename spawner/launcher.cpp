// Launcher: clone(CLONE_VM|CLONE_VFORK) a child that only makes async-signal-safe calls, then execve.
#include "spawner/launcher.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <unordered_map>

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

namespace provisr::spawner {
namespace {

#if PROVISR_HAVE_CLONE3
// struct clone_args of <linux/sched.h> up to `cgroup` (CLONE_ARGS_SIZE_VER2), spelled out here:
// that header's CLONE_* macros clash with glibc's <sched.h>.
struct CloneArgs {
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
constexpr std::uint64_t kCloneIntoCgroup = 0x200000000ULL;  // Linux 5.7
// Cleared once the kernel refuses clone3 or CLONE_INTO_CGROUP: then the child joins by writing.
std::atomic<bool> clone3Works{true};
#endif

constexpr std::size_t kChildStackSize = 256 * 1024;
constexpr rlim_t kChildNofile = 1024;
constexpr std::size_t kOutputPipeSize = 256 * 1024;
constexpr unsigned kCloseRangeCloexec = 1U << 2;  // CLOSE_RANGE_CLOEXEC, Linux 5.11
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

// Stages the child reports through the error pipe; the parent turns them into words.
enum class Stage : int { kSetpgid = 1, kSignals, kRlimit, kSetgroups, kSetgid, kSetuid, kChdir, kDup, kExec, kCgroup };

const char* stageName(Stage s) {
  switch (s) {
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

struct ChildReport {
  int stage = 0;
  int err = 0;
};

// Everything the child reads, prepared in the parent. The child shares our memory (CLONE_VM) and
// must not allocate, so all of it is plain pointers into storage the parent keeps alive.
struct ChildArgs {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* cwd = nullptr;
  bool changeIds = false;
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  std::size_t ngroups = 0;
  mode_t umask = 022;
  int devNull = -1;
  int out = -1;
  int err = -1;
  int reportFd = -1;
  const int* cgroupProcs = nullptr;  // cgroup.procs of each leaf dir, opened by the parent
  std::size_t ncgroupProcs = 0;
};

// The child runs on our memory: sanitizer bookkeeping in it (stack poisoning, no-return handling)
// would corrupt the parent's shadow state, so its functions are left uninstrumented.
#define PROVISR_CHILD_CODE __attribute__((no_sanitize("address", "undefined")))

[[noreturn]] PROVISR_CHILD_CODE void childFail(const ChildArgs& a, Stage stage, int err) {
  ChildReport r{static_cast<int>(stage), err};
  // Nothing useful can be done if this write fails: the parent then sees a clean exec EOF and
  // the child's exit code 127 tells the rest.
  [[maybe_unused]] ssize_t n = ::write(a.reportFd, &r, sizeof r);
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

// The child. Only async-signal-safe calls; raw syscalls for id changes, because glibc's setuid
// wrappers broadcast to every thread of the "process" — which, under CLONE_VM, is the spawner's.
PROVISR_CHILD_CODE int childMain(void* arg) {
  const auto& a = *static_cast<const ChildArgs*>(arg);
  if (::setpgid(0, 0) != 0) childFail(a, Stage::kSetpgid, errno);
  // Into the leaf before anything else runs as this process: "0" names the writer.
  for (std::size_t i = 0; i < a.ncgroupProcs; ++i) {
    if (::write(a.cgroupProcs[i], "0", 1) != 1) childFail(a, Stage::kCgroup, errno);
  }

  // Default disposition for every signal (the parent blocked all signals around clone, so no
  // spawner handler can run on this stack before the reset), then an empty mask.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    ::sigaction(sig, &dfl, nullptr);  // glibc-internal signals refuse: EINVAL is fine
  }

  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != kChildNofile) {
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
  // Belt and braces for §4 item 7: any fd >= 3 someone opened without O_CLOEXEC closes at exec
  // too. CLOEXEC rather than close, so the report pipe stays open until execve succeeds.
  ::syscall(SYS_close_range, 3U, ~0U, kCloseRangeCloexec);

  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(a.path, a.argv, a.envp);
  childFail(a, Stage::kExec, errno);
}

std::string errnoText(int err) {
  std::array<char, 128> buf{};
  // GNU strerror_r returns the message pointer, which may not be buf.
  const char* s = ::strerror_r(err, buf.data(), buf.size());
  return std::string(s) + " (errno " + std::to_string(err) + ")";
}

Error fail(LaunchFailure* failure, std::string stage, int err, const std::string& what) {
  std::string msg = what + ": " + errnoText(err);
  if (failure != nullptr) *failure = LaunchFailure{std::move(stage), err};
  return makeError(ErrorCode::kSpawnFailed, std::move(msg));
}

Error failNoErrno(LaunchFailure* failure, std::string stage, int err, const std::string& what) {
  if (failure != nullptr) *failure = LaunchFailure{std::move(stage), err};
  return makeError(ErrorCode::kSpawnFailed, what);
}

std::string envValue(const std::vector<std::string>& env, std::string_view key) {
  std::string value;
  bool found = false;
  for (const auto& kv : env) {  // later wins, as with the env layering of SPEC §1.5
    if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=') {
      value = kv.substr(key.size() + 1);
      found = true;
    }
  }
  return found ? value : std::string();
}

void setEnv(std::vector<std::string>& env, const std::string& key, const std::string& value) {
  std::vector<std::string> out;
  out.reserve(env.size() + 1);
  for (auto& kv : env) {
    if (!(kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')) {
      out.push_back(std::move(kv));
    }
  }
  out.push_back(key + "=" + value);
  env = std::move(out);
}

// One entry per name, the later value winning (SPEC §1.5): getenv would return the first.
std::vector<std::string> dedupeEnv(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  out.reserve(in.size());
  std::unordered_map<std::string_view, std::size_t> at;
  for (const auto& kv : in) {
    std::string_view key(kv.data(), kv.find('='));
    auto [it, fresh] = at.emplace(key, out.size());
    if (fresh) {
      out.push_back(kv);
    } else {
      out[it->second] = kv;
    }
  }
  return out;
}

bool isExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Blocks every signal for the lifetime of the guard: while the CLONE_VM child runs on our memory,
// a spawner signal handler must not run in it.
class SignalBlock {
 public:
  SignalBlock() {
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_SETMASK, &all, &old_);
  }
  ~SignalBlock() { ::pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SignalBlock(const SignalBlock&) = delete;
  SignalBlock& operator=(const SignalBlock&) = delete;

 private:
  sigset_t old_{};
};

class StackMap {
 public:
  explicit StackMap(std::size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : p;
  }
  ~StackMap() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  StackMap(const StackMap&) = delete;
  StackMap& operator=(const StackMap&) = delete;
  void* top() const { return static_cast<char*>(base_) + size_; }  // stacks grow down on x86/arm
  void* base() const { return base_; }
  std::size_t size() const { return size_; }
  bool ok() const { return base_ != nullptr; }

 private:
  void* base_ = nullptr;
  std::size_t size_;
};

// A copy of fd at 3 or above, so dup2 onto 0/1/2 in the child never clobbers another source.
Result<UniqueFd> aboveStdio(int fd, LaunchFailure* failure) {
  int c = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (c < 0) return fail(failure, "pipe", errno, "cannot duplicate an output fd");
  return UniqueFd(c);
}

}  // namespace

std::string resolveExecutable(const std::string& name, const std::vector<std::string>& env) {
  if (name.empty()) return {};
  if (name.find('/') != std::string::npos) return name;  // relative to the child's cwd, as execve
  std::string path = envValue(env, "PATH");
  if (path.empty()) path = kDefaultPath;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";  // POSIX: an empty PATH entry is the current directory
    std::string candidate = dir + "/" + name;
    if (isExecutableFile(candidate)) return candidate;
    start = end + 1;
  }
  return {};
}

std::uint64_t readStartTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  // comm (field 2) may hold spaces and ')' — fields after it start past the last ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // The rest starts at field 3; field 22 is the 20th token from here.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) return 0;
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return 0;
  }
}

Result<PipePair> makeOutputPipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return makeError(ErrorCode::kSpawnFailed, "pipe2: " + errnoText(errno));
  }
  PipePair p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  // Bigger than the 64 KiB default: a burst does not block the child, and the log writer moves
  // more per syscall. Best effort (a non-root user past pipe-user-pages-soft gets less).
  ::fcntl(p.write.get(), F_SETPIPE_SZ, static_cast<int>(kOutputPipeSize));
  int fl = ::fcntl(p.read.get(), F_GETFL);
  ::fcntl(p.read.get(), F_SETFL, fl | O_NONBLOCK);
  return p;
}

Result<Launched> launch(const LaunchRequest& req, LaunchFailure* failure) {
  if (req.argv.empty() || req.argv[0].empty()) {
    return failNoErrno(failure, "request", EINVAL, "empty argv");
  }
  for (const auto& kv : req.env) {
    if (kv.find('=') == std::string::npos || kv.front() == '=') {
      return failNoErrno(failure, "request", EINVAL, "malformed env entry '" + kv + "' (want K=V)");
    }
  }

  std::vector<std::string> env = dedupeEnv(req.env);
  ChildArgs a;
  std::vector<gid_t> groups;
  if (req.user || req.group) {
    a.changeIds = true;
    // Lookups happen here, in the parent: NSS is not async-signal-safe.
    std::vector<char> buf(16384);
    if (req.user) {
      struct passwd pw {};
      struct passwd* res = nullptr;
      int rc = ::getpwnam_r(req.user->c_str(), &pw, buf.data(), buf.size(), &res);
      if (res == nullptr) {
        return rc != 0 ? fail(failure, "user", rc, "cannot look up user '" + *req.user + "'")
                       : failNoErrno(failure, "user", ENOENT, "unknown user '" + *req.user + "'");
      }
      a.uid = pw.pw_uid;
      a.gid = pw.pw_gid;
      setEnv(env, "HOME", pw.pw_dir);
      setEnv(env, "USER", pw.pw_name);
      setEnv(env, "LOGNAME", pw.pw_name);
      setEnv(env, "SHELL", pw.pw_shell != nullptr && *pw.pw_shell != '\0' ? pw.pw_shell : "/bin/sh");
      std::string name = pw.pw_name;
      if (!req.group) {
        int n = 64;
        groups.resize(static_cast<std::size_t>(n));
        while (::getgrouplist(name.c_str(), a.gid, groups.data(), &n) < 0) {
          groups.resize(static_cast<std::size_t>(n));
        }
        groups.resize(static_cast<std::size_t>(n));
      }
    } else {
      a.uid = ::geteuid();
    }
    if (req.group) {
      struct group gr {};
      struct group* res = nullptr;
      int rc = ::getgrnam_r(req.group->c_str(), &gr, buf.data(), buf.size(), &res);
      if (res == nullptr) {
        return rc != 0 ? fail(failure, "group", rc, "cannot look up group '" + *req.group + "'")
                       : failNoErrno(failure, "group", ENOENT, "unknown group '" + *req.group + "'");
      }
      a.gid = gr.gr_gid;
      groups.assign(1, gr.gr_gid);  // an explicit group is the only one: no supplementary leak
    }
    a.groups = groups.data();
    a.ngroups = groups.size();
  }

  std::string path = resolveExecutable(req.argv[0], env);
  if (path.empty()) {
    return fail(failure, "exec", ENOENT, "'" + req.argv[0] + "' not found in PATH");
  }

  // Storage the child points into; stays alive until clone returns (the child has exec'd then).
  std::vector<char*> argv;
  argv.reserve(req.argv.size() + 1);
  for (const auto& s : req.argv) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(env.size() + 1);
  for (const auto& s : env) envp.push_back(const_cast<char*>(s.c_str()));
  envp.push_back(nullptr);

  Launched out;
  UniqueFd outWrite;
  UniqueFd errWrite;
  if (req.stdoutWrite >= 0) {
    auto d = aboveStdio(req.stdoutWrite, failure);
    if (!d) return d.error();
    outWrite = std::move(*d);
  } else {
    auto p = makeOutputPipe();
    if (!p) return fail(failure, "pipe", errno, "cannot create the stdout pipe");
    out.stdoutRead = std::move(p->read);
    auto d = aboveStdio(p->write.get(), failure);
    if (!d) return d.error();
    outWrite = std::move(*d);
  }
  if (req.stderrWrite >= 0) {
    auto d = aboveStdio(req.stderrWrite, failure);
    if (!d) return d.error();
    errWrite = std::move(*d);
  } else {
    auto p = makeOutputPipe();
    if (!p) return fail(failure, "pipe", errno, "cannot create the stderr pipe");
    out.stderrRead = std::move(p->read);
    auto d = aboveStdio(p->write.get(), failure);
    if (!d) return d.error();
    errWrite = std::move(*d);
  }
  UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull) return fail(failure, "stdin", errno, "cannot open /dev/null");
  if (devNull.get() < 3) {
    auto d = aboveStdio(devNull.get(), failure);
    if (!d) return d.error();
    devNull = std::move(*d);
  }
  std::array<int, 2> report{};
  if (::pipe2(report.data(), O_CLOEXEC) != 0) return fail(failure, "pipe", errno, "cannot create the report pipe");
  UniqueFd reportRead(report[0]);
  UniqueFd reportWrite(report[1]);

  a.path = path.c_str();
  a.argv = argv.data();
  a.envp = envp.data();
  a.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  a.umask = req.umask;
  a.devNull = devNull.get();
  a.out = outWrite.get();
  a.err = errWrite.get();
  a.reportFd = reportWrite.get();

  cgroup::Leaf leaf;
  if (req.useCgroup) {
    std::string leafName = req.cgroupName;
    if (leafName.empty()) leafName = envValue(env, "PROVISR_NAME");
    if (leafName.empty()) leafName = path.substr(path.find_last_of('/') + 1);
    int cgErr = 0;
    auto prepared = cgroup::prepare(leafName, req.caps, &cgErr);
    if (!prepared) return failNoErrno(failure, "cgroup", cgErr, prepared.error().message);
    leaf = std::move(*prepared);
  }
  // A launch that fails from here on leaves no leaf behind (its child, if any, is reaped first).
  struct LeafGuard {
    const cgroup::Leaf& leaf;
    bool keep = false;
    ~LeafGuard() {
      if (!keep) cgroup::discard(leaf);
    }
  } leafGuard{leaf};
  std::vector<int> cgroupFds;
  for (const auto& fd : leaf.procs) cgroupFds.push_back(fd.get());
  a.cgroupProcs = cgroupFds.data();
  a.ncgroupProcs = cgroupFds.size();

  StackMap stack(kChildStackSize);
  if (!stack.ok()) return fail(failure, "clone", errno, "cannot map the child stack");
  int pidfd = -1;
  pid_t pid = -1;
  {
    SignalBlock block;
    bool cloned = false;
#if PROVISR_HAVE_CLONE3
    // Born in its cgroup2 leaf: no migration afterwards (a cgroup.procs write waits for an RCU
    // grace period, ~2 ms, on every launch). Only the v1 leaves, if any, are joined by writing.
    if (leaf.v2Dir && clone3Works.load(std::memory_order_relaxed)) {
      CloneArgs ca;
      ca.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | kCloneIntoCgroup;
      ca.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
      ca.exitSignal = SIGCHLD;
      ca.stack = reinterpret_cast<std::uintptr_t>(stack.base());
      ca.stackSize = stack.size();
      ca.cgroup = static_cast<std::uint64_t>(leaf.v2Dir.get());
      a.cgroupProcs = cgroupFds.data() + 1;  // the v2 leaf is the first
      a.ncgroupProcs = cgroupFds.size() - 1;
      const long r = provisrClone3(&ca, sizeof ca, childMain, &a);
      if (r >= 0 || (r != -ENOSYS && r != -E2BIG && r != -EINVAL)) {
        cloned = true;
        pid = r >= 0 ? static_cast<pid_t>(r) : -1;
        if (r < 0) errno = static_cast<int>(-r);
      } else {
        clone3Works.store(false, std::memory_order_relaxed);
        a.cgroupProcs = cgroupFds.data();
        a.ncgroupProcs = cgroupFds.size();
      }
    }
#endif
    // CLONE_VFORK: we resume once the child has exec'd or exited, so `a` and the stack stay valid.
    if (!cloned) pid = ::clone(childMain, stack.top(), CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
  }
  if (pid < 0) return fail(failure, "clone", errno, "clone failed");
  out.pid = pid;
  out.pidfd.reset(pidfd);
  reportWrite.reset();

  ChildReport r;
  ssize_t n;
  do {
    n = ::read(reportRead.get(), &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof r)) {
    // The child has _exit(127)ed: reap it here, it never became a managed process.
    siginfo_t info{};
    ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED);
    Stage st = static_cast<Stage>(r.stage);
    std::string what = std::string(stageName(st)) + " failed for '" + req.argv[0] + "'";
    if (st == Stage::kChdir) what = "cannot change directory to '" + req.cwd + "'";
    if (st == Stage::kExec) what = "cannot execute '" + path + "'";
    return fail(failure, stageName(st), r.err, what);
  }
  out.startTicks = readStartTicks(pid);
  leafGuard.keep = true;
  if (!leaf.empty()) out.cgroup = leaf.dirs.front();
  out.pidsCapped = leaf.pidsCapped;
  out.memoryCapped = leaf.memoryCapped;
  return out;
}

}  // namespace provisr::spawner

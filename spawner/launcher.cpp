// Launcher: everything a launch needs is resolved here; the child itself (spawner/launch_child.cpp)
// is cloned by the fork server (spawner/fork_server.hpp) or, without one, here with
// clone(CLONE_VM|CLONE_VFORK), and only makes async-signal-safe calls before execve.
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
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string_view>
#include <unordered_map>

#include "spawner/fork_server.hpp"
#include "spawner/launch_child.hpp"

namespace provisr::spawner {
namespace {

using detail::ChildArgs;
using detail::ChildReport;
using detail::CloneArgs;

// Cleared once the kernel refuses clone3 or CLONE_INTO_CGROUP: then the child joins by writing.
std::atomic<bool> clone3Works{true};

constexpr std::size_t kOutputPipeSize = 256 * 1024;
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";

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

// One stack for children launched in process, mapped once: a map and unmap per launch would
// cost a TLB shootdown in a process with threads. In-process launches take turns on its mutex.
struct SharedStack {
  std::mutex mu;
  void* base = nullptr;
};
SharedStack& sharedStack() {
  static auto* s = new SharedStack();  // never unmapped: a launch may run during exit
  return *s;
}

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
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd) return 0;
  std::array<char, 1024> buf{};
  ssize_t n;
  do {
    n = ::read(fd.get(), buf.data(), buf.size() - 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return 0;
  const std::string_view line(buf.data(), static_cast<std::size_t>(n));
  // comm (field 2) may hold spaces and ')' — fields after it start past the last ')'.
  auto close = line.rfind(')');
  if (close == std::string_view::npos) return 0;
  std::size_t at = close + 1;
  // The rest starts at field 3; field 22 is the 20th field from here.
  for (int field = 3; field <= 22; ++field) {
    while (at < line.size() && line[at] == ' ') ++at;
    if (at >= line.size()) return 0;
    if (field == 22) break;
    while (at < line.size() && line[at] != ' ') ++at;
  }
  std::uint64_t v = 0;
  bool any = false;
  for (; at < line.size() && line[at] >= '0' && line[at] <= '9'; ++at) {
    v = v * 10 + static_cast<std::uint64_t>(line[at] - '0');
    any = true;
  }
  return any ? v : 0;
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
  // The child's stdout/stderr: the caller's pipes, or pipes made here.
  int outFd = req.stdoutWrite;
  int errFd = req.stderrWrite;
  UniqueFd madeOut;
  UniqueFd madeErr;
  if (outFd < 0) {
    auto p = makeOutputPipe();
    if (!p) return fail(failure, "pipe", errno, "cannot create the stdout pipe");
    out.stdoutRead = std::move(p->read);
    madeOut = std::move(p->write);
    outFd = madeOut.get();
  }
  if (errFd < 0) {
    auto p = makeOutputPipe();
    if (!p) return fail(failure, "pipe", errno, "cannot create the stderr pipe");
    out.stderrRead = std::move(p->read);
    madeErr = std::move(p->write);
    errFd = madeErr.get();
  }

  a.path = path.c_str();
  a.argv = argv.data();
  a.envp = envp.data();
  a.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  a.umask = req.umask;

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
  std::vector<int> cgroupFds;  // the leaves the child joins by writing: v1 ones (and cgroup2's without clone3)
  for (const auto& fd : leaf.procs) cgroupFds.push_back(fd.get());

  auto childFailed = [&](const ChildReport& r) {
    std::string what = std::string(detail::stageName(r.stage)) + " failed for '" + req.argv[0] + "'";
    if (r.stage == static_cast<int>(detail::Stage::kChdir)) what = "cannot change directory to '" + req.cwd + "'";
    if (r.stage == static_cast<int>(detail::Stage::kExec)) what = "cannot execute '" + path + "'";
    return fail(failure, detail::stageName(r.stage), r.err, what);
  };
  auto launched = [&](pid_t pid, UniqueFd pidfd) -> Result<Launched> {
    out.pid = pid;
    out.pidfd = std::move(pidfd);
    out.startTicks = readStartTicks(pid);
    leafGuard.keep = true;
    if (!leaf.empty()) out.cgroup = leaf.dirs.front();
    out.pidsCapped = leaf.pidsCapped;
    out.memoryCapped = leaf.memoryCapped;
    return std::move(out);
  };

  // Through the fork server when there is one: its fd table is a handful, ours is thousands.
  {
    a.out = outFd;
    a.err = errFd;
    a.cgroupProcs = cgroupFds.data();
    a.ncgroupProcs = cgroupFds.size();
    const int v2Dir = leaf.v2Dir && clone3Works.load(std::memory_order_relaxed) ? leaf.v2Dir.get() : -1;
    auto via = forkserver::launch(a, v2Dir);
    switch (via.outcome) {
      case forkserver::Outcome::kLaunched: return launched(via.pid, std::move(via.pidfd));
      case forkserver::Outcome::kChildFailed: return childFailed(via.report);
      case forkserver::Outcome::kCloneFailed: return fail(failure, "clone", via.cloneErrno, "clone failed");
      case forkserver::Outcome::kUnavailable: break;
    }
  }

  // In process. The child's sources for fds 0/1/2 must be >= 3, so dup2 onto 0/1/2 never
  // clobbers a later source.
  UniqueFd outCopy;
  UniqueFd errCopy;
  if (outFd < 3) {
    auto d = aboveStdio(outFd, failure);
    if (!d) return d.error();
    outCopy = std::move(*d);
    outFd = outCopy.get();
  }
  if (errFd < 3) {
    auto d = aboveStdio(errFd, failure);
    if (!d) return d.error();
    errCopy = std::move(*d);
    errFd = errCopy.get();
  }
  UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull) return fail(failure, "stdin", errno, "cannot open /dev/null");
  if (devNull.get() < 3) {
    auto d = aboveStdio(devNull.get(), failure);
    if (!d) return d.error();
    devNull = std::move(*d);
  }
  a.devNull = devNull.get();
  a.out = outFd;
  a.err = errFd;
  ChildReport report;
  a.report = &report;
  UniqueFd v2Procs;  // cgroup2's cgroup.procs, for a kernel without CLONE_INTO_CGROUP

  SharedStack& stack = sharedStack();
  std::lock_guard stackLock(stack.mu);
  if (stack.base == nullptr) {
    void* p = ::mmap(nullptr, detail::kChildStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) return fail(failure, "clone", errno, "cannot map the child stack");
    stack.base = p;
  }
  int pidfd = -1;
  pid_t pid = -1;
  {
    SignalBlock block;
    bool cloned = false;
    // Born in its cgroup2 leaf: no migration afterwards (a cgroup.procs write waits for an RCU
    // grace period, ~2 ms, on every launch). Only the v1 leaves, if any, are joined by writing.
    if (leaf.v2Dir && clone3Works.load(std::memory_order_relaxed)) {
      CloneArgs ca;
      ca.flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | detail::kCloneIntoCgroup;
      ca.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd);
      ca.exitSignal = SIGCHLD;
      ca.stack = reinterpret_cast<std::uintptr_t>(stack.base);
      ca.stackSize = detail::kChildStackSize;
      ca.cgroup = static_cast<std::uint64_t>(leaf.v2Dir.get());
      const long r = detail::clone3Run(&ca, detail::childMain, &a);
      if (r >= 0 || (r != -ENOSYS && r != -E2BIG && r != -EINVAL)) {
        cloned = true;
        pid = r >= 0 ? static_cast<pid_t>(r) : -1;
        if (r < 0) errno = static_cast<int>(-r);
      } else {
        clone3Works.store(false, std::memory_order_relaxed);
      }
    }
    if (!cloned && leaf.v2Dir) {
      v2Procs.reset(::openat(leaf.v2Dir.get(), "cgroup.procs", O_WRONLY | O_CLOEXEC));
      if (!v2Procs) return fail(failure, "cgroup", errno, "cannot open cgroup.procs of " + leaf.dirs.front());
      cgroupFds.insert(cgroupFds.begin(), v2Procs.get());
      a.cgroupProcs = cgroupFds.data();
      a.ncgroupProcs = cgroupFds.size();
    }
    // CLONE_VFORK: we resume once the child has exec'd or exited, so `a` and the stack stay valid.
    if (!cloned) {
      void* top = static_cast<char*>(stack.base) + detail::kChildStackSize;  // stacks grow down
      pid = ::clone(detail::childMain, top, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
    }
  }
  if (pid < 0) return fail(failure, "clone", errno, "clone failed");
  UniqueFd ownedPidfd(pidfd);
  if (report.stage != 0) {
    // The child has _exit(127)ed: reap it here, it never became a managed process.
    siginfo_t info{};
    ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED);
    return childFailed(report);
  }
  return launched(pid, std::move(ownedPidfd));
}

}  // namespace provisr::spawner

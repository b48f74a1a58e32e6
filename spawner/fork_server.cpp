// The fork server (see fork_server.hpp): the helper's loop, and the client the launcher calls.
#include "spawner/fork_server.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common/util/scm.hpp"
#include "spawner/reaper.hpp"

namespace provisr::spawner::forkserver {
namespace {

constexpr std::uint32_t kMagic = 0x31534650;  // "PFS1"
constexpr std::size_t kMaxRequest = 256 * 1024;
constexpr std::size_t kMaxPointers = 16 * 1024;  // argv + env entries with their two terminators
constexpr int kMaxFds = 6;                       // out, err, the cgroup2 leaf, v1 cgroup.procs
constexpr int kRlimits = RLIM_NLIMITS;
constexpr auto kRestartInterval = std::chrono::seconds(1);
constexpr auto kReplyDeadline = std::chrono::seconds(120);
constexpr int kStopWaitMs = 1000;
constexpr int kIdPidfd = 3;  // P_PIDFD of <linux/wait.h>

struct Limit {
  std::uint64_t cur = 0;
  std::uint64_t max = 0;
  bool operator==(const Limit&) const = default;
};

// One launch, one datagram: this header, then gid_t groups[ngroups], path, cwd (when cwdLen > 0),
// argc argv strings and envc env strings, each NUL-terminated. Fds (SCM_RIGHTS): out, err, the
// cgroup2 leaf (hasV2Dir), then ncgroupProcs cgroup.procs files.
struct RequestHeader {
  std::uint32_t magic = kMagic;
  std::uint32_t argc = 0;
  std::uint32_t envc = 0;
  std::uint32_t ngroups = 0;
  std::uint32_t pathLen = 0;  // with the NUL
  std::uint32_t cwdLen = 0;   // with the NUL; 0: the server's (= the spawner's) cwd
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t umask = 0;
  std::uint32_t changeIds = 0;
  std::uint32_t hasV2Dir = 0;
  std::uint32_t ncgroupProcs = 0;
  std::uint32_t payloadLen = 0;
  std::uint32_t pad = 0;
  Limit limits[kRlimits];  // the spawner's rlimits now: the child inherits them, as in process
};
static_assert(sizeof(RequestHeader) % alignof(gid_t) == 0);

enum Kind : std::int32_t { kOk = 0, kChildFailedKind = 1, kCloneFailedKind = 2, kBadRequest = 3, kUnsupported = 4 };
struct Reply {
  std::uint32_t magic = kMagic;
  std::int32_t kind = kOk;
  std::int32_t pid = -1;
  std::int32_t stage = 0;
  std::int32_t err = 0;
};

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfdSignal(int pidfd, int sig) { return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

// ---- the server ------------------------------------------------------------------------------
// It is forked from a process that may have threads: from the fork on it makes raw system calls
// only (no allocation, no locks), and leaves with _exit (never exit: the atexit handlers are the
// spawner's).

alignas(16) char gRequest[kMaxRequest];
bool gDieAfterClone = false;  // copied into the server by fork
char* gPointers[kMaxPointers];

bool sendWithFd(int sock, const void* data, std::size_t len, int fd) {
  iovec iov{const_cast<void*>(data), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(len);
}

// Reads the NUL-terminated string at *at (bounded by end); nullptr when it runs past the end.
char* takeString(char*& at, char* end) {
  char* s = at;
  char* nul = static_cast<char*>(std::memchr(at, '\0', static_cast<std::size_t>(end - at)));
  if (nul == nullptr) return nullptr;
  at = nul + 1;
  return s;
}

// Runs one launch; returns the reply and sets *pidfd for a cloned child.
Reply serveOne(std::size_t len, const int* fds, int nfds, int devNull, void* stack, Limit* own, int* pidfd) {
  Reply r;
  r.kind = kBadRequest;
  if (len < sizeof(RequestHeader)) return r;
  RequestHeader h;
  std::memcpy(&h, gRequest, sizeof h);
  if (h.magic != kMagic || h.payloadLen != len - sizeof h || h.ncgroupProcs > 3) return r;
  if (nfds != 2 + static_cast<int>(h.hasV2Dir != 0) + static_cast<int>(h.ncgroupProcs)) return r;
  if (static_cast<std::size_t>(h.argc) + h.envc + 2 > kMaxPointers || h.argc == 0) return r;
  char* at = gRequest + sizeof h;
  char* const end = gRequest + len;
  if (static_cast<std::size_t>(end - at) / sizeof(gid_t) < h.ngroups) return r;
  const gid_t* groups = reinterpret_cast<const gid_t*>(at);
  at += h.ngroups * sizeof(gid_t);
  const char* path = takeString(at, end);
  const char* cwd = nullptr;
  if (h.cwdLen > 0 && path != nullptr) cwd = takeString(at, end);
  if (path == nullptr || (h.cwdLen > 0 && cwd == nullptr)) return r;
  for (std::uint32_t i = 0; i < h.argc; ++i) {
    if ((gPointers[i] = takeString(at, end)) == nullptr) return r;
  }
  gPointers[h.argc] = nullptr;
  char** envp = gPointers + h.argc + 1;
  for (std::uint32_t i = 0; i < h.envc; ++i) {
    if ((envp[i] = takeString(at, end)) == nullptr) return r;
  }
  envp[h.envc] = nullptr;

  // The spawner's limits, so the child inherits what it would have inherited in process.
  for (int i = 0; i < kRlimits; ++i) {
    if (h.limits[i] == own[i]) continue;
    rlimit rl{static_cast<rlim_t>(h.limits[i].cur), static_cast<rlim_t>(h.limits[i].max)};
    if (::setrlimit(i, &rl) == 0) own[i] = h.limits[i];
  }

  detail::ChildReport report;
  detail::ChildArgs a;
  a.path = path;
  a.argv = gPointers;
  a.envp = envp;
  a.cwd = cwd;
  a.changeIds = h.changeIds != 0;
  a.uid = h.uid;
  a.gid = h.gid;
  a.groups = groups;
  a.ngroups = h.ngroups;
  a.umask = static_cast<mode_t>(h.umask);
  a.devNull = devNull;
  a.out = fds[0];
  a.err = fds[1];
  const int v2Dir = h.hasV2Dir != 0 ? fds[2] : -1;
  a.cgroupProcs = fds + 2 + (h.hasV2Dir != 0 ? 1 : 0);
  a.ncgroupProcs = h.ncgroupProcs;
  a.report = &report;

  detail::CloneArgs ca;
  // CLONE_PARENT: the child is the spawner's, not ours.
  ca.flags = CLONE_PARENT | CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (v2Dir >= 0 ? detail::kCloneIntoCgroup : 0);
  ca.pidfd = reinterpret_cast<std::uintptr_t>(pidfd);
  ca.exitSignal = 0;  // clone3 refuses one with CLONE_PARENT: the child gets ours, SIGCHLD (fork's)
  ca.stack = reinterpret_cast<std::uintptr_t>(stack);
  ca.stackSize = detail::kChildStackSize;
  if (v2Dir >= 0) ca.cgroup = static_cast<std::uint64_t>(v2Dir);
  const long pid = detail::clone3Run(&ca, detail::childMain, &a);
  if (pid < 0) {
    *pidfd = -1;
    const bool unsupported = pid == -ENOSYS || pid == -E2BIG || (pid == -EINVAL && v2Dir >= 0);
    r.kind = unsupported ? kUnsupported : kCloneFailedKind;
    r.err = static_cast<int>(-pid);
    return r;
  }
  if (gDieAfterClone) ::_exit(9);
  r.pid = static_cast<std::int32_t>(pid);
  r.kind = report.stage != 0 ? kChildFailedKind : kOk;
  r.stage = report.stage;
  r.err = report.err;
  return r;
}

[[noreturn]] void serve(int sock, pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(0);  // the spawner died before the line above
  ::prctl(PR_SET_NAME, "provisr-forksrv");
  sigset_t all;
  ::sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);
  // Only the socket stays: every launch copies this table.
  if (sock > 3) ::syscall(SYS_close_range, 3U, static_cast<unsigned>(sock - 1), 0U);
  ::syscall(SYS_close_range, static_cast<unsigned>(sock + 1), ~0U, 0U);
  for (int fd = 0; fd < 3; ++fd) {  // so that received fds land at 3 and above
    if (::fcntl(fd, F_GETFD) < 0) ::open("/dev/null", O_RDWR);
  }
  const int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  void* stackBase = ::mmap(nullptr, detail::kChildStackSize, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (devNull < 0 || stackBase == MAP_FAILED) ::_exit(1);
  Limit own[kRlimits];
  for (int i = 0; i < kRlimits; ++i) {
    rlimit rl{};
    if (::getrlimit(i, &rl) == 0) own[i] = Limit{rl.rlim_cur, rl.rlim_max};
  }
  for (;;) {
    iovec iov{gRequest, sizeof gRequest};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    const ssize_t n = ::recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    if (n == 0) ::_exit(0);  // the spawner closed its end
    if (n < 0) {
      if (errno == EINTR) continue;
      ::_exit(1);
    }
    int fds[kMaxFds];
    int nfds = 0;
    bool tooMany = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (nfds < kMaxFds) {
          fds[nfds++] = fd;
        } else {
          ::close(fd);
          tooMany = true;
        }
      }
    }
    int pidfd = -1;
    Reply r;
    r.kind = kBadRequest;
    if (!tooMany && (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0) {
      r = serveOne(static_cast<std::size_t>(n), fds, nfds, devNull, stackBase, own, &pidfd);
    }
    for (int i = 0; i < nfds; ++i) ::close(fds[i]);
    const bool sent = sendWithFd(sock, &r, sizeof r, pidfd);
    if (pidfd >= 0) ::close(pidfd);
    if (!sent) ::_exit(0);
  }
}

// ---- the client ------------------------------------------------------------------------------

struct Client {
  std::mutex mu;
  bool enabled = false;  // start() was called, and the kernel does what the server needs
  bool everStarted = false;
  UniqueFd sock;
  UniqueFd serverPidfd;
  pid_t serverPid = -1;
  std::chrono::steady_clock::time_point lastFork{};
  Stats stats;
};

Client& client() {
  static Client* c = new Client();  // outlives every static destructor that might launch
  return *c;
}

bool forkLocked(Client& c) {
  c.lastFork = std::chrono::steady_clock::now();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return false;
  // A launch is one datagram, which must fit the sender's buffer.
  int size = static_cast<int>(kMaxRequest + 64 * 1024);
  if (::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0) {
    (void)::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  const pid_t parent = ::getpid();
  const pid_t p = ::fork();
  if (p < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    return false;
  }
  if (p == 0) serve(sv[1], parent);
  ::close(sv[1]);
  const int pfd = pidfdOpen(p);
  if (pfd < 0) {  // not reaped yet: the pid is still ours
    ::close(sv[0]);
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
    return false;
  }
  c.sock.reset(sv[0]);
  c.serverPidfd.reset(pfd);
  c.serverPid = p;
  if (c.everStarted) ++c.stats.restarts;
  c.everStarted = true;
  return true;
}

// Waits up to waitMs for the server to exit (SIGKILL first when kill), then reaps it — unless
// this process's orphan reaper already did (ECHILD).
void endServerLocked(Client& c, bool kill, int waitMs) {
  c.sock.reset();
  if (c.serverPidfd) {
    pollfd p{c.serverPidfd.get(), POLLIN, 0};
    if (kill) pidfdSignal(c.serverPidfd.get(), SIGKILL);
    int rc;
    do {
      rc = ::poll(&p, 1, waitMs);
    } while (rc < 0 && errno == EINTR);
    if (rc == 0 && !kill) {
      pidfdSignal(c.serverPidfd.get(), SIGKILL);
      do {
        rc = ::poll(&p, 1, waitMs);
      } while (rc < 0 && errno == EINTR);
    }
    siginfo_t si{};
    (void)::waitid(static_cast<idtype_t>(kIdPidfd), static_cast<id_t>(c.serverPidfd.get()), &si, WEXITED | WNOHANG);
  }
  c.serverPidfd.reset();
  c.serverPid = -1;
}

void appendString(std::vector<char>& buf, const char* s) {
  buf.insert(buf.end(), s, s + std::strlen(s) + 1);
}

// The reply to the launch just sent, with its fd; false when the server died or hung.
bool receiveReply(Client& c, Reply* r, int* fd) {
  *fd = -1;
  const auto deadline = std::chrono::steady_clock::now() + kReplyDeadline;
  for (;;) {
    pollfd p{c.sock.get(), POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (rc < 0 && errno != EINTR) return false;
    if (rc > 0) break;
  }
  RecvWithFds got;
  do {
    got = recvWithFds(c.sock.get(), reinterpret_cast<char*>(r), sizeof *r, MSG_DONTWAIT);
  } while (got.n < 0 && errno == EINTR);
  if (got.n != static_cast<ssize_t>(sizeof *r) || r->magic != kMagic) return false;  // any fd closes with `got`
  if (!got.fds.empty()) *fd = got.fds.front().release();
  return true;
}

// After a server died in the middle of a launch: the child it may have cloned is ours (CLONE_PARENT)
// and holds the stdout pipe; find it so it is managed rather than started a second time.
pid_t findHolder(int pipeFd, pid_t skip) {
  struct stat st {};
  if (::fstat(pipeFd, &st) != 0 || !S_ISFIFO(st.st_mode)) return -1;
  const std::string want = "pipe:[" + std::to_string(st.st_ino) + "]";
  for (pid_t p : listChildren()) {
    if (p == skip) continue;
    const std::string dir = "/proc/" + std::to_string(p) + "/fd";
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) continue;
    bool found = false;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char link[64];
      const ssize_t n = ::readlinkat(::dirfd(d), e->d_name, link, sizeof link);
      if (n == static_cast<ssize_t>(want.size()) && std::memcmp(link, want.data(), want.size()) == 0) {
        found = true;
        break;
      }
    }
    ::closedir(d);
    if (found) return p;
  }
  return -1;
}

}  // namespace

Status start() {
  Client& c = client();
  std::lock_guard lock(c.mu);
  c.enabled = true;
  if (c.sock) return {};
  if (!forkLocked(c)) return makeError(ErrorCode::kInternal, std::string("cannot start the fork server: ") + std::strerror(errno));
  return {};
}

void stop() {
  Client& c = client();
  std::lock_guard lock(c.mu);
  c.enabled = false;
  endServerLocked(c, false, kStopWaitMs);
}

pid_t pid() {
  Client& c = client();
  std::lock_guard lock(c.mu);
  return c.sock ? c.serverPid : -1;
}

void dieAfterCloneForTests(bool on) {
  Client& c = client();
  std::lock_guard lock(c.mu);
  gDieAfterClone = on;
}

Stats stats() {
  Client& c = client();
  std::lock_guard lock(c.mu);
  return c.stats;
}

Result launch(const detail::ChildArgs& a, int v2Dir) {
  Result res;
  Client& c = client();
  std::lock_guard lock(c.mu);
  if (!c.enabled) return res;

  RequestHeader h;
  std::vector<char> buf(sizeof h);
  buf.reserve(4096);
  for (const gid_t* g = a.groups; g != nullptr && g != a.groups + a.ngroups; ++g) {
    const char* b = reinterpret_cast<const char*>(g);
    buf.insert(buf.end(), b, b + sizeof *g);
  }
  h.ngroups = static_cast<std::uint32_t>(a.groups != nullptr ? a.ngroups : 0);
  appendString(buf, a.path);
  h.pathLen = static_cast<std::uint32_t>(std::strlen(a.path) + 1);
  if (a.cwd != nullptr) {
    appendString(buf, a.cwd);
    h.cwdLen = static_cast<std::uint32_t>(std::strlen(a.cwd) + 1);
  }
  for (char* const* s = a.argv; *s != nullptr; ++s, ++h.argc) appendString(buf, *s);
  for (char* const* s = a.envp; *s != nullptr; ++s, ++h.envc) appendString(buf, *s);
  h.uid = a.uid;
  h.gid = a.gid;
  h.umask = a.umask;
  h.changeIds = a.changeIds ? 1 : 0;
  h.hasV2Dir = v2Dir >= 0 ? 1 : 0;
  h.ncgroupProcs = static_cast<std::uint32_t>(a.ncgroupProcs);
  h.payloadLen = static_cast<std::uint32_t>(buf.size() - sizeof h);
  for (int i = 0; i < kRlimits; ++i) {
    rlimit rl{};
    if (::getrlimit(i, &rl) == 0) h.limits[i] = Limit{rl.rlim_cur, rl.rlim_max};
  }
  std::memcpy(buf.data(), &h, sizeof h);
  if (buf.size() > kMaxRequest || static_cast<std::size_t>(h.argc) + h.envc + 2 > kMaxPointers || a.ncgroupProcs > 3) {
    ++c.stats.fallbacks;  // too big for one datagram: in process
    return res;
  }
  std::vector<int> fds{a.out, a.err};
  if (v2Dir >= 0) fds.push_back(v2Dir);
  for (std::size_t i = 0; i < a.ncgroupProcs; ++i) fds.push_back(a.cgroupProcs[i]);

  bool sent = false;
  for (int attempt = 0; attempt < 2 && !sent; ++attempt) {
    if (!c.sock) {
      if (std::chrono::steady_clock::now() - c.lastFork < kRestartInterval) break;  // a crash loop, or fork fails
      if (!forkLocked(c)) break;
    }
    ssize_t n;
    do {
      n = sendWithFds(c.sock.get(), std::string_view(buf.data(), buf.size()), fds, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(buf.size())) {
      sent = true;
    } else if (n < 0 && (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN)) {
      endServerLocked(c, true, kStopWaitMs);  // it died before reading: nothing ran
    } else {
      break;  // EMSGSIZE, ENOBUFS, ETOOMANYREFS...: this one goes in process
    }
  }
  if (!sent) {
    ++c.stats.fallbacks;
    return res;
  }

  Reply r;
  int fd = -1;
  if (!receiveReply(c, &r, &fd)) {
    // It died (or hung) with the launch in hand: a child may exist. Find it before anything is
    // launched again, so no program runs twice.
    const pid_t old = c.serverPid;
    endServerLocked(c, true, kStopWaitMs);
    const pid_t holder = findHolder(a.out, old);
    if (holder > 0) {
      res.pidfd.reset(pidfdOpen(holder));
      if (res.pidfd) {
        ++c.stats.recovered;
        res.outcome = Outcome::kLaunched;
        res.pid = holder;
        return res;
      }
      ::kill(holder, SIGKILL);  // our unreaped child: unmanageable without a pidfd
    }
    ++c.stats.fallbacks;
    return res;
  }
  UniqueFd pidfd(fd);
  ++c.stats.launches;
  switch (r.kind) {
    case kOk:
      if (!pidfd) {
        // The pidfd could not be delivered (this process is out of fds): the child cannot be
        // managed, so it is stopped now; the launch fails as a clone out of fds would.
        ::kill(r.pid, SIGKILL);
        ::waitpid(r.pid, nullptr, 0);
        res.outcome = Outcome::kCloneFailed;
        res.cloneErrno = EMFILE;
        return res;
      }
      res.outcome = Outcome::kLaunched;
      res.pid = r.pid;
      res.pidfd = std::move(pidfd);
      return res;
    case kChildFailedKind: {
      // It has _exit(127)ed and never became a managed process: reap it here.
      siginfo_t si{};
      if (pidfd) {
        (void)::waitid(static_cast<idtype_t>(kIdPidfd), static_cast<id_t>(pidfd.get()), &si, WEXITED);
      } else {
        ::waitpid(r.pid, nullptr, 0);
      }
      res.outcome = Outcome::kChildFailed;
      res.pid = r.pid;
      res.report.stage = r.stage;
      res.report.err = r.err;
      return res;
    }
    case kCloneFailedKind:
      res.outcome = Outcome::kCloneFailed;
      res.cloneErrno = r.err;
      return res;
    case kUnsupported:
      // This kernel cannot clone what the server asks for: launch in process from now on.
      c.enabled = false;
      endServerLocked(c, false, kStopWaitMs);
      [[fallthrough]];
    default:
      --c.stats.launches;
      ++c.stats.fallbacks;
      return res;
  }
}

}  // namespace provisr::spawner::forkserver

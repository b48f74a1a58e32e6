// provisr-spawner: flags, run_dir, lock, secret, sockets and the loop around SpawnerCore (thin shell).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"
#include "common/util/clock.hpp"
#include "common/util/event_loop.hpp"
#include "common/util/fd.hpp"
#include "common/util/nofile.hpp"
#include "spawner/cgroup.hpp"
#include "spawner/fd_store_client.hpp"
#include "spawner/fork_server.hpp"
#include "spawner/journal.hpp"
#include "spawner/launch_child.hpp"
#include "spawner/spawner_core.hpp"

namespace provisr::spawner {
namespace {

constexpr int kExitFatal = 1;
constexpr int kExitPermanent = 100;  // s6's convention: do not restart (another instance, bad usage)
constexpr std::size_t kMaxSecretBytes = 4096;
constexpr std::size_t kMaxIpcPath = 107;
constexpr int kMessagesPerWake = 256;  // then other sources get their turn

void logLine(const std::string& msg) {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t t = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  std::string line = std::string(stamp) + " provisr-spawner[" + std::to_string(::getpid()) + "]: " + msg + "\n";
  // One write per line, so lines of concurrent components never interleave mid-line.
  [[maybe_unused]] ssize_t n = ::write(2, line.data(), line.size());
}

[[noreturn]] void die(int code, const std::string& msg) {
  logLine(msg);
  std::exit(code);
}

struct Flags {
  std::string runDir;
  int secretFd = -1;
  std::optional<std::string> fdStore;
};

Flags parseFlags(int argc, char** argv) {
  const std::string usage = "usage: provisr-spawner --run-dir DIR --secret-fd N [--fdstore PATH]";
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(kExitPermanent, std::string(a) + " needs a value; " + usage);
      return argv[++i];
    };
    if (a == "--run-dir") {
      f.runDir = value();
    } else if (a == "--secret-fd") {
      std::string v = value();
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end != '\0' || n < 0 || n > 1'000'000) die(kExitPermanent, "--secret-fd '" + v + "' is not an fd number");
      f.secretFd = static_cast<int>(n);
    } else if (a == "--fdstore") {
      f.fdStore = value();
    } else {
      die(kExitPermanent, "unknown argument '" + std::string(a) + "'; " + usage);
    }
  }
  if (f.runDir.empty() || f.secretFd < 0) die(kExitPermanent, "--run-dir and --secret-fd are required; " + usage);
  if (f.runDir.front() != '/') die(kExitPermanent, "--run-dir must be an absolute path, got '" + f.runDir + "'");
  return f;
}

std::string readSecret(int fd) {
  std::string s;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die(kExitFatal, "cannot read the secret from fd " + std::to_string(fd) + ": " + std::strerror(errno));
    if (n == 0) break;
    s.append(buf, static_cast<std::size_t>(n));
    if (s.size() > kMaxSecretBytes) die(kExitFatal, "the secret on fd " + std::to_string(fd) + " is over 4096 bytes");
    if (s.find('\n') != std::string::npos) break;
  }
  ::close(fd);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.empty()) die(kExitFatal, "the secret on fd " + std::to_string(fd) + " is empty");
  return s;
}

void makeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    die(kExitFatal, "cannot create " + path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) die(kExitFatal, path + " is not a directory");
}

// The lock is held for the process's whole life (the fd is never closed).
UniqueFd takeLock(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) die(kExitFatal, "cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) die(kExitFatal, "cannot lock " + path + ": " + std::strerror(errno));
    char buf[32] = {};
    ssize_t n = ::pread(fd.get(), buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
    while (!holder.empty() && holder.back() == '\n') holder.pop_back();
    die(kExitPermanent, "another provisr-spawner (pid " + holder + ") already serves this run_dir (" + path +
                            " is locked); not starting a second one");
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    logLine("cannot write the pid into " + path + ": " + std::strerror(errno));
  }
  return fd;
}

void writeSecretFile(const std::string& path, const std::string& secret) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) die(kExitFatal, "cannot write " + tmp + ": " + std::strerror(errno));
  ::fchmod(fd.get(), 0600);
  std::string text = secret + "\n";
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) || ::fsync(fd.get()) != 0) {
    die(kExitFatal, "cannot write " + tmp + ": " + std::strerror(errno));
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) die(kExitFatal, "cannot rename " + tmp + ": " + std::strerror(errno));
}

// The socket is ours alone (0600), unless `provisr serve` gave spawner/ the group of `[daemon]
// user` (root:<group>, group r-x, nothing for others): then the master, dropped to that user,
// must reach it through the group (0660), and nobody else can pass the directory.
void shareSocket(const std::string& dir, const std::string& sockPath) {
  struct stat st {};
  const bool daemonGroup = ::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid() &&
                           st.st_gid != ::getegid() && (st.st_mode & 0077) == 0050;
  if (daemonGroup && ::chown(sockPath.c_str(), static_cast<uid_t>(-1), st.st_gid) == 0 && ::chmod(sockPath.c_str(), 0660) == 0) {
    logLine("spawner.sock is reachable by group " + std::to_string(st.st_gid) + " (the daemon user's)");
    return;
  }
  ::chmod(sockPath.c_str(), 0600);
}

int run(int argc, char** argv) {
  Flags flags = parseFlags(argc, argv);
  ::umask(077);  // sockets and files are born private; children get their own umask
  std::string secret = readSecret(flags.secretFd);

  while (flags.runDir.size() > 1 && flags.runDir.back() == '/') flags.runDir.pop_back();
  makeDir(flags.runDir);
  const std::string dir = flags.runDir + "/spawner";
  makeDir(dir);
  const std::string sockPath = dir + "/spawner.sock";
  if (sockPath.size() > kMaxIpcPath) die(kExitPermanent, "socket path " + sockPath + " is over 107 bytes");
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) detail::childNofileMax = rl.rlim_max;
  if (std::string err = provisr::raiseNofile(); !err.empty()) logLine(err);
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    logLine(std::string("PR_SET_CHILD_SUBREAPER failed: ") + std::strerror(errno));
  }
  ::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error value; children get SIG_DFL back
  // The cgroup layout first (it may move this process into provisr's supervisor leaf), then the
  // fork server, while this process holds a few fds and no threads: it is forked from here and
  // launches every child (spawner/fork_server.hpp). PROVISR_SPAWNER_FORK_SERVER=0 launches in
  // process instead.
  (void)cgroup::layout();
  if (const char* fs = std::getenv("PROVISR_SPAWNER_FORK_SERVER"); fs == nullptr || std::string_view(fs) != "0") {
    if (Status st = forkserver::start(); !st.ok()) logLine(st.error().message + "; launching in process");
  }

  SystemClock clock;
  auto loopR = EventLoop::create(clock);
  if (!loopR) die(kExitFatal, "cannot create the event loop: " + loopR.error().message);
  std::unique_ptr<EventLoop> loop = std::move(*loopR);
  // Signals before any thread exists (ZeroMQ's, the compressor's), so every thread blocks them.
  bool running = true;
  std::string stopReason;
  SpawnerCore* corePtr = nullptr;
  for (int sig : {SIGTERM, SIGINT}) {
    (void)loop->onSignal(sig, [&](const signalfd_siginfo& si) {
      running = false;
      stopReason = si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT";
    });
  }
  (void)loop->onSignal(SIGCHLD, [&](const signalfd_siginfo&) {
    if (corePtr != nullptr) corePtr->onSigchld();
  });
  (void)loop->onSignal(SIGHUP, [](const signalfd_siginfo&) { logLine("SIGHUP ignored (the keeper reloads)"); });
  // SIGWINCH: a new keeper took over this spawner (it outlived the previous one): reconnect to
  // the fd store at the same path and deposit everything again. Its default disposition is to
  // ignore it, so it never harms a spawner that has no handler yet.
  std::function<void()> onNewKeeper;
  (void)loop->onSignal(SIGWINCH, [&](const signalfd_siginfo&) {
    if (onNewKeeper) onNewKeeper();
  });

  // The lock after the signal handlers: a keeper that finds it held may signal us (SIGWINCH).
  UniqueFd lock = takeLock(dir + "/spawner.lock");
  writeSecretFile(dir + "/secret", secret);

  zmq::context_t ctx(1);
  auto sockR = proto::openSocket(ctx, zmq::socket_type::router);
  if (!sockR) die(kExitFatal, "cannot open the ROUTER socket: " + sockR.error().message);
  zmq::socket_t sock = std::move(*sockR);
  ::unlink(sockPath.c_str());  // a stale file of a dead spawner; we hold the lock
  if (Status st = proto::bindSocket(sock, "ipc://" + sockPath); !st.ok()) {
    die(kExitFatal, "cannot bind ipc://" + sockPath + ": " + st.error().message);
  }
  shareSocket(dir, sockPath);

  std::optional<FdStoreClient> fdStore;
  WithdrawResult withdrawn;
  if (flags.fdStore) {
    auto c = FdStoreClient::connect(*flags.fdStore);
    if (!c) {
      logLine("fd store unavailable (" + c.error().message + "); running without it");
    } else {
      fdStore.emplace(std::move(*c));
      auto w = fdStore->withdraw();
      if (!w) {
        logLine("fd store Withdraw failed: " + w.error().message);
      } else {
        withdrawn = std::move(*w);
      }
    }
  }

  CoreConfig cfg;
  cfg.secret = secret;
  cfg.journalPath = dir + "/spawner.journal";
  cfg.selfPid = ::getpid();
  if (flags.fdStore) cfg.keeperPid = ::getppid();
  SpawnerCore core(
      *loop, cfg,
      [&sock](const std::vector<std::string>& route, const std::string& bytes) {
        return proto::sendMessage(sock, route, bytes).ok();
      },
      logLine, fdStore ? &*fdStore : nullptr);
  corePtr = &core;

  auto journal = loadJournal(cfg.journalPath);
  if (!journal) {
    logLine("cannot read the journal: " + journal.error().message);
    journal = JournalContents{};
  } else if (journal->badLines > 0) {
    logLine("journal: skipped " + std::to_string(journal->badLines) + " unreadable lines");
  }
  const std::size_t fromStore = withdrawn.entries.size();
  auto rep = core.adopt(journal->entries, std::move(withdrawn.entries), withdrawn.exits);
  for (const auto& ex : withdrawn.exits) core.onKeeperExited(ex);
  if (!journal->entries.empty() || fromStore > 0) {
    logLine("adoption: " + std::to_string(rep.adopted) + " adopted (" + std::to_string(rep.withPipes) +
            " with their pipes), " + std::to_string(rep.gone) + " gone, " + std::to_string(rep.reused) +
            " pids reused, " + std::to_string(rep.dropped) + " fd store entries without a pidfd");
  }
  core.endOfTurn();
  core.onSigchld();  // orphans that exited before the signalfd existed

  // Exited messages from the keeper; a closed connection (the keeper died) is dropped.
  auto drainFdStore = [&](int fd) {
    for (;;) {
      auto ex = fdStore->readExited();
      if (!ex) {
        logLine("fd store: " + ex.error().message + "; going on without it");
        loop->removeFd(fd);
        return;
      }
      if (!ex->has_value()) return;
      core.onKeeperExited(**ex);
    }
  };
  auto watchFdStore = [&] {
    const int fd = fdStore->fd();
    (void)loop->addFd(fd, EventLoop::kReadable, [&drainFdStore, fd](std::uint32_t) { drainFdStore(fd); });
  };
  if (fdStore && fdStore->connected()) watchFdStore();
  onNewKeeper = [&] {
    if (!flags.fdStore) return;
    if (fdStore && fdStore->connected()) {
      drainFdStore(fdStore->fd());  // notices a connection whose keeper is gone
      if (fdStore->connected()) return;
    }
    auto c = FdStoreClient::connect(*flags.fdStore);
    if (!c) {
      logLine("a new keeper asked for a deposit, but its fd store is unavailable: " + c.error().message);
      return;
    }
    fdStore.emplace(std::move(*c));
    const std::size_t n = core.redeposit(&*fdStore);
    if (fdStore->connected()) watchFdStore();
    logLine("reconnected to the fd store of a new keeper; deposited " + std::to_string(n) + " children again");
  };

  Status watched = proto::watchSocket(*loop, sock, EventLoop::kReadable, [&](std::uint32_t) {
    for (int i = 0; i < kMessagesPerWake; ++i) {
      auto m = proto::recvMessage(sock);
      if (!m) {
        if (m.error().code == ErrorCode::kMalformed) continue;  // too many frames: dropped whole
        return;
      }
      if (!m->has_value()) return;
      auto reply = core.onMessage((*m)->route, (*m)->data());
      if (reply) (void)proto::sendMessage(sock, (*m)->route, *reply);
    }
  });
  if (!watched.ok()) die(kExitFatal, "cannot watch the socket: " + watched.error().message);

  logLine("serving ipc://" + sockPath + (fdStore ? " with the fd store " + *flags.fdStore : "") +
          (forkserver::pid() > 0 ? "; fork server pid " + std::to_string(forkserver::pid()) : "; no fork server"));
  while (running) {
    loop->runOnce(std::nullopt);
    core.endOfTurn();
  }
  core.shutdown();
  std::size_t live = 0;
  core.children().forEach([&](const Child& c) { live += c.alive() ? 1u : 0u; });
  const auto fs = forkserver::stats();
  forkserver::stop();
  logLine("exiting on " + stopReason + "; " + std::to_string(live) + " children keep running; fork server: " +
          std::to_string(fs.launches) + " launches, " + std::to_string(fs.fallbacks) + " in process, " +
          std::to_string(fs.restarts) + " restarts");
  proto::unwatchSocket(*loop, sock);
  corePtr = nullptr;
  return 0;
}

}  // namespace
}  // namespace provisr::spawner

int main(int argc, char** argv) { return provisr::spawner::run(argc, argv); }

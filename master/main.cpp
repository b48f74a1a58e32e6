// provisr-master: flags, the lock, the sockets and the signalfd around MasterCore; one loop.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>

#include <zmq.hpp>

#include "common/config/loader.hpp"
#include "common/config/privilege.hpp"
#include "common/proto/zmq_util.hpp"
#include "common/util/event_loop.hpp"
#include "master/master_core.hpp"
#include "master/spawner_link.hpp"
#include "master/state_store.hpp"

namespace {

using namespace provisr;

void logLine(const std::string& msg) {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::fprintf(stderr, "%s.%03dZ provisr-master[%d]: %s\n", buf, static_cast<int>(ms % 1000), static_cast<int>(::getpid()),
               msg.c_str());
  std::fflush(stderr);
}

struct Args {
  std::string config;
  std::string runDir;
  int secretFd = -1;
};

std::optional<Args> parseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return std::nullopt;
    const std::string v = argv[++i];
    if (k == "--config") {
      a.config = v;
    } else if (k == "--run-dir") {
      a.runDir = v;
    } else if (k == "--secret-fd") {
      a.secretFd = std::atoi(v.c_str());
    } else {
      return std::nullopt;
    }
  }
  if (a.config.empty() || a.runDir.empty() || a.secretFd < 0) return std::nullopt;
  return a;
}

std::string readSecret(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > 4096) break;
  }
  ::close(fd);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = parseArgs(argc, argv);
  if (!args) {
    std::fprintf(stderr, "usage: provisr-master --config FILE --run-dir DIR --secret-fd N\n");
    return 2;
  }
  const pid_t parent = ::getppid();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) return 1;  // the keeper died before the death signal was armed

  const std::string secret = readSecret(args->secretFd);
  auto loaded = config::loadConfig(args->config);
  if (!loaded.ok()) {
    for (const auto& d : loaded.errors()) logLine(d.str());
    return 1;
  }
  for (const auto& w : loaded.warnings()) logLine(w.str());

  // Started as root with `[daemon] user`: master/ (and a pid_dir we create) become the user's,
  // then we drop to it before opening anything else (DESIGN §2, §6).
  auto account = config::daemonAccount(loaded.config->daemon.user);
  if (!account) {
    logLine("daemon.user: " + account.error().message);
    return 1;
  }
  const std::string dir = args->runDir + "/master";
  if (loaded.config->pid_dir && ::mkdir(loaded.config->pid_dir->c_str(), 0755) == 0 && *account) {
    if (::chown(loaded.config->pid_dir->c_str(), (*account)->uid, (*account)->gid) != 0)
      logLine("chown " + *loaded.config->pid_dir + ": " + std::strerror(errno));
  }
  ::mkdir(args->runDir.c_str(), 0700);
  ::mkdir(dir.c_str(), 0700);
  if (*account) {
    const config::Account& acc = **account;
    UniqueFd dirFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dirFd) {
      logLine("open " + dir + ": " + std::strerror(errno));
      return 1;
    }
    if (Status st = config::ownDirectory(dirFd.get(), dir, acc); !st.ok()) {
      logLine(st.error().message);
      return 1;
    }
    if (Status st = config::dropPrivileges(acc, SIGKILL, parent); !st.ok()) {
      logLine("cannot drop to " + acc.name + ": " + st.error().message);
      return 1;
    }
    logLine("running as " + acc.name + " (uid " + std::to_string(acc.uid) + ", gid " + std::to_string(acc.gid) + ")");
  }
  UniqueFd lock(::open((dir + "/master.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    logLine("another master holds " + dir + "/master.lock");
    return 100;
  }
  const std::string pidText = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock.get(), 0) != 0 || ::write(lock.get(), pidText.data(), pidText.size()) < 0) {
    logLine("cannot write the lock file");
  }

  master::StateStore store(dir + "/master.state");
  auto persisted = store.load();
  if (persisted.problem) logLine("master.state ignored: " + persisted.problem->message);

  SystemClock clock;
  auto loopR = EventLoop::create(clock);
  if (!loopR) {
    logLine("event loop: " + loopR.error().message);
    return 1;
  }
  EventLoop& loop = **loopR;

  zmq::context_t ctx(1);
  auto router = proto::openSocket(ctx, zmq::socket_type::router);
  if (!router) {
    logLine(router.error().message);
    return 1;
  }
  const std::string sockPath = dir + "/master.sock";
  ::unlink(sockPath.c_str());
  if (Status st = proto::bindSocket(*router, "ipc://" + sockPath); !st.ok()) {
    logLine("bind " + sockPath + ": " + st.error().message);
    return 1;
  }
  ::chmod(sockPath.c_str(), 0600);

  master::SpawnerLink link(ctx, "ipc://" + args->runDir + "/spawner/spawner.sock");
  if (Status st = link.open(); !st.ok()) {
    logLine("spawner socket: " + st.error().message);
    return 1;
  }

  master::CoreOptions opts;
  opts.secret = secret;
  opts.pid = ::getpid();
  master::MasterCore core(std::move(*loaded.config), persisted.state, clock, std::move(opts));
  core.setStore(std::move(store));

  std::optional<EventLoop::TimerId> timer;
  std::optional<EventLoop::TimerId> countersTimer;
  auto flushCounters = [&] {
    if (Status st = core.store().flushCounters(); !st.ok()) logLine("master.state: " + st.error().message);
  };
  std::function<void(master::CoreEffects)> dispatch;
  dispatch = [&](master::CoreEffects fx) {
    for (const auto& l : fx.logs) logLine(l);
    for (const auto& f : fx.files) {
      if (f.content) {
        if (Status st = master::writeFileAtomically(f.path, *f.content); !st.ok()) logLine("write " + f.path + ": " + st.error().message);
      } else if (::unlink(f.path.c_str()) != 0 && errno != ENOENT) {
        logLine("remove " + f.path + ": " + std::strerror(errno));
      }
    }
    // User intent is on disk before anything is acknowledged (DESIGN §3).
    if (Status st = core.store().flush(); !st.ok()) logLine("master.state: " + st.error().message);
    if (core.store().countersDirty() && !countersTimer) {
      countersTimer = loop.addTimer(std::chrono::seconds(1), [&] {
        countersTimer.reset();
        flushCounters();
      });
    }
    for (const auto& m : fx.toSpawner) link.send(m);
    for (const auto& m : fx.toClients) {
      if (Status st = proto::sendMessage(*router, m.route, m.bytes); !st.ok()) {
        core.dropSubscriber(m.route);  // a gateway that went away: its messages have nowhere to go
      }
    }
    if (timer) loop.cancelTimer(*timer);
    timer.reset();
    if (auto d = core.nextDeadline()) {
      timer = loop.addTimerAt(*d, [&] {
        timer.reset();
        dispatch(core.tick());
      });
    }
    if (fx.exit) {
      logLine("every program is stopped: exiting");
      loop.stop();
    }
  };

  (void)proto::watchSocket(loop, *router, EventLoop::kReadable, [&](std::uint32_t) {
    master::CoreEffects all;
    for (int i = 0; i < 1000; ++i) {
      auto m = proto::recvMessage(*router);
      if (!m) {
        if (m.error().code == ErrorCode::kUnavailable) break;
        continue;
      }
      if (!m->has_value()) break;
      all.merge(core.onClientMessage((*m)->route, (*m)->data()));
    }
    dispatch(std::move(all));
  });
  link.watch(loop, [&](std::string_view bytes) { return core.onSpawnerMessage(bytes); },
             [&](master::CoreEffects fx) { dispatch(std::move(fx)); });
  link.watchConnection(loop, [&](bool up) { dispatch(core.onSpawnerConnection(up)); });

  (void)loop.onSignal(SIGTERM, [&](const signalfd_siginfo&) { dispatch(core.shutdown()); });
  (void)loop.onSignal(SIGINT, [&](const signalfd_siginfo&) { dispatch(core.shutdown()); });
  (void)loop.onSignal(SIGHUP, [&](const signalfd_siginfo&) { dispatch(core.reload()); });
  (void)loop.onSignal(SIGUSR1, [&](const signalfd_siginfo&) { dispatch(core.reopenLogs()); });
  ::signal(SIGPIPE, SIG_IGN);

  logLine("serving on ipc://" + sockPath);
  dispatch(core.start());
  loop.run();
  flushCounters();
  proto::unwatchSocket(loop, *router);
  link.close(loop);
  return 0;
}

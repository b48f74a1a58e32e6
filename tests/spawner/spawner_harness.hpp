// Test harness for the spawner process tests: starts the real provisr-spawner on a temp run_dir
// (secret through an inherited pipe, stderr to a file), a DEALER acting as the master, and
// cleanup of every process group a test learns about — by pid, never by name.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"
#include "tests/spawner/test_support.hpp"

namespace provisr::spawner::test {

inline const std::string kSecret = "0123456789abcdef0123456789abcdef";

// /proc/<pid>/stat state letter, or 0 when the pid is gone.
inline char procState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return 0;
  return line[close + 2];
}

inline bool pidAlive(pid_t pid) {
  char s = procState(pid);
  return s != 0 && s != 'Z' && s != 'X';
}

// Makes the test process the subreaper for one test, as the keeper is in production: children of
// a spawner the test killed come to us and are reaped (by GroupReaper), not left to pid 1.
class SubreaperScope {
 public:
  SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); }
  SubreaperScope(const SubreaperScope&) = delete;
  SubreaperScope& operator=(const SubreaperScope&) = delete;
};

// Kills every process group it is told of at the end of the test, then reaps, by pid, the members
// of those groups that became our children (SubreaperScope).
class GroupReaper {
 public:
  GroupReaper() = default;
  GroupReaper(const GroupReaper&) = delete;
  GroupReaper& operator=(const GroupReaper&) = delete;
  ~GroupReaper() {
    for (pid_t g : groups_) ::kill(-g, SIGKILL);
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      bool left = false;
      for (pid_t p : listChildren()) {
        if (groups_.count(::getpgid(p)) == 0 && groups_.count(p) == 0) continue;
        if (::waitpid(p, nullptr, WNOHANG) != p) left = true;
      }
      if (!left || std::chrono::steady_clock::now() > end) break;
      ::poll(nullptr, 0, 5);
    }
  }
  void add(pid_t pgid) {
    if (pgid > 0) groups_.insert(pgid);
  }

 private:
  std::set<pid_t> groups_;
};

// The spawner's fork server (provisr-forksrv) dies with the spawner and, under SubreaperScope,
// becomes our child: reap it so no zombie outlives the test (later cases count our children).
inline void reapForkServers() {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    bool left = false;
    for (pid_t p : listChildren()) {
      std::ifstream comm("/proc/" + std::to_string(p) + "/comm");
      std::string name;
      std::getline(comm, name);
      if (name == "provisr-forksrv" && ::waitpid(p, nullptr, WNOHANG) != p) left = true;
    }
    if (!left || std::chrono::steady_clock::now() > end) return;
    ::poll(nullptr, 0, 5);
  }
}

// One running provisr-spawner. SIGKILLed and reaped by pid in the destructor.
class SpawnerProcess {
 public:
  explicit SpawnerProcess(const std::string& runDir, const std::string& secret = kSecret,
                          std::optional<std::string> fdStore = std::nullopt, const std::string& errPath = "") {
    errPath_ = errPath.empty() ? runDir + "-spawner-" + std::to_string(++counter()) + ".err" : errPath;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    std::vector<std::string> args = {std::string(PROVISR_BIN_DIR) + "/provisr-spawner", "--run-dir", runDir,
                                     "--secret-fd", "3"};
    if (fdStore) {
      args.push_back("--fdstore");
      args.push_back(*fdStore);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    // Opened here, not in the child: a child slow to run must not create it after the test ended.
    int err = ::open(errPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    REQUIRE(err >= 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Above 3 first: dup2 onto itself would keep CLOEXEC, and the secret fd would close at exec.
      int secretFd = ::fcntl(p[0], F_DUPFD, 10);
      if (secretFd < 0 || ::dup2(err, 2) != 2 || ::dup2(secretFd, 3) != 3) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(err);
    ::close(p[0]);
    std::string s = secret + "\n";
    REQUIRE(::write(p[1], s.data(), s.size()) == static_cast<ssize_t>(s.size()));
    ::close(p[1]);
  }
  ~SpawnerProcess() { kill(SIGKILL); }
  SpawnerProcess(const SpawnerProcess&) = delete;
  SpawnerProcess& operator=(const SpawnerProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `sig` and, for a fatal one, waits for the exit. Returns the exit code (-1: signalled).
  int kill(int sig) {
    if (pid_ <= 0) return exitCode_;
    ::kill(pid_, sig);
    return wait(std::chrono::seconds(10));
  }
  // Waits for the process to exit on its own; nullopt-like -2 on timeout.
  int wait(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return exitCode_;
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      pid_t r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        exitCode_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        pid_ = -1;
        reapForkServers();
        return exitCode_;
      }
      if (std::chrono::steady_clock::now() > end) return -2;
      ::poll(nullptr, 0, 5);
    }
  }
  std::string stderrText() const {
    std::ifstream in(errPath_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  pid_t pid_ = -1;
  int exitCode_ = -1;
  std::string errPath_;
};

// A DEALER speaking the schema as the master would.
class FakeMaster {
 public:
  explicit FakeMaster(const std::string& runDir, std::string routingId = "master") {
    proto::SocketOptions o;
    o.routing_id = std::move(routingId);
    auto s = proto::openSocket(ctx_, zmq::socket_type::dealer, o);
    REQUIRE(s.ok());
    sock_ = std::move(*s);
    REQUIRE(proto::connectSocket(sock_, "ipc://" + runDir + "/spawner/spawner.sock").ok());
  }

  template <class T>
  std::uint64_t send(const T& msg) {
    std::uint64_t id = ++nextId_;
    sendRaw(proto::encode(msg, id));
    return id;
  }
  void sendRaw(const std::string& bytes) { REQUIRE(proto::sendMessage(sock_, bytes).ok()); }

  // The next message within `timeout`, decoded as an envelope; nullopt on timeout.
  std::optional<proto::Envelope> recv(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto m = proto::recvMessage(sock_);
      REQUIRE(m.ok());
      if (m->has_value()) {
        auto env = proto::decodeEnvelope((*m)->payload.data(), (*m)->payload.size());
        REQUIRE(env.ok());
        return std::move(*env);
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      zmq::pollitem_t item{sock_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::min<std::chrono::milliseconds>(left, std::chrono::milliseconds(100)));
    }
  }

  // Receives until a message of type T arrives (events of other types are kept in `events`).
  template <class T>
  T expect(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      INFO("waiting for " << proto::msgTypeName(T::kType));
      REQUIRE(left.count() > 0);
      auto env = recv(left);
      REQUIRE(env.has_value());
      if (env->type == T::kType) {
        auto b = proto::decodeBody<T>(*env);
        REQUIRE(b.ok());
        return std::move(*b);
      }
      if (env->type == proto::MsgType::kErrorReply && T::kType != proto::MsgType::kErrorReply) {
        auto e = proto::decodeBody<proto::ErrorReply>(*env);
        FAIL("unexpected ErrorReply " << static_cast<int>(e->code) << ": " << e->message);
      }
      stash(*env);
    }
  }

  // Hello with the secret; returns the epoch.
  std::uint64_t hello(const std::string& secret = kSecret) {
    proto::Hello h;
    h.secret = secret;
    h.pid = static_cast<std::int32_t>(::getpid());
    send(h);
    auto r = expect<proto::HelloReply>();
    epoch_ = r.epoch;
    return r.epoch;
  }
  proto::SnapshotReply snapshot() {
    proto::Snapshot s;
    s.epoch = epoch_;
    send(s);
    return expect<proto::SnapshotReply>();
  }
  void ack(std::uint64_t seq) {
    proto::Ack a;
    a.epoch = epoch_;
    a.seq = seq;
    send(a);
  }

  // Events seen while waiting for something else, and the next ChildStarted/ChildExited by key.
  template <class T>
  std::optional<T> takeStashed(const std::string& key) {
    for (auto it = stashed_.begin(); it != stashed_.end(); ++it) {
      if (it->type != T::kType) continue;
      auto b = proto::decodeBody<T>(*it);
      if (b.ok() && b->key == key) {
        stashed_.erase(it);
        return std::move(*b);
      }
    }
    return std::nullopt;
  }
  template <class T>
  T event(const std::string& key, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    if (auto s = takeStashed<T>(key)) return *s;
    auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      INFO("waiting for " << proto::msgTypeName(T::kType) << " of " << key);
      REQUIRE(left.count() > 0);
      auto env = recv(left);
      REQUIRE(env.has_value());
      stash(*env);
      if (auto s = takeStashed<T>(key)) return *s;
    }
  }

  std::uint64_t epoch() const { return epoch_; }
  void setEpoch(std::uint64_t e) { epoch_ = e; }

 private:
  void stash(const proto::Envelope& env) { stashed_.push_back(env); }

  zmq::context_t ctx_{1};
  zmq::socket_t sock_;
  std::uint64_t nextId_ = 0;
  std::uint64_t epoch_ = 0;
  std::vector<proto::Envelope> stashed_;
};

inline proto::ChildSpec childSpec(const std::string& key, std::uint64_t gen, std::vector<std::string> argv,
                                  const std::string& logDir = "") {
  proto::ChildSpec c;
  c.key = key;
  c.generation = gen;
  c.argv = std::move(argv);
  c.env = {"PATH=/usr/bin:/bin"};
  if (!logDir.empty()) {
    c.log.stdout_path = logDir + "/" + key + ".out.log";
    c.log.stderr_path = logDir + "/" + key + ".err.log";
  }
  return c;
}

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace provisr::spawner::test

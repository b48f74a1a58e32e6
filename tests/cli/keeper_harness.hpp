// Test support for keeper process tests: a real provisr-keeper on its own temp run_dir with the
// fake_component helper standing in for spawner, master and gateway; waits poll with deadlines;
// every process started is killed by pid on the way out, whatever the test did.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/util/scm.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::test {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while `pid` exists and is not a zombie.
inline bool processAlive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

inline pid_t parentOf(pid_t pid) {
  const std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return ppid;
}

struct FakeEvent {
  std::string name;  // spawner, master, gateway
  pid_t pid = 0;
  std::string what;  // "start secret=... fds=...", "signal 15", "exit 0"
  // The value of `key=` in a start line.
  std::string field(const std::string& key) const {
    const auto at = what.find(" " + key + "=");
    if (at == std::string::npos) return "";
    const auto from = at + key.size() + 2;
    if (key == "args") return what.substr(from);
    return what.substr(from, what.find(' ', from) - from);
  }
};

class KeeperRun {
 public:
  KeeperRun() {
    std::filesystem::create_directories(tmp_.path() / "lib");
    std::filesystem::create_directories(tmp_.path() / "ctl");
    for (const char* n : {"spawner", "master", "gateway"})
      std::filesystem::create_symlink(std::string(PROVISR_TEST_HELPERS) + "/fake_component",
                                      tmp_.path() / "lib" / (std::string("provisr-") + n));
    config_ = tmp_.write("config.toml", "# the keeper only passes this path on\n");
  }
  KeeperRun(const KeeperRun&) = delete;
  KeeperRun& operator=(const KeeperRun&) = delete;
  ~KeeperRun() { cleanup(); }

  std::string dir() const { return tmp_.str(); }
  std::string runDir() const { return tmp_.str() + "/run"; }
  std::string ctl(const std::string& name) const { return tmp_.str() + "/ctl/" + name; }
  std::string logPath() const { return tmp_.str() + "/keeper.log"; }
  std::string log() const { return slurp(logPath()); }
  void order(const std::string& file, const std::string& text) const { tmp_.write("ctl/" + file, text); }
  void unorder(const std::string& file) const { std::filesystem::remove(ctl(file)); }

  std::vector<std::string> args(const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> a = {binPath("provisr-keeper"), "--config", config_, "--run-dir", runDir()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::map<std::string, std::string> env() const {
    return {{"PROVISR_LIBEXEC_DIR", tmp_.str() + "/lib"}, {"FAKE_COMPONENT_DIR", tmp_.str() + "/ctl"}};
  }

  // Starts the keeper in the background, its stderr appended to keeper.log.
  pid_t start(const std::vector<std::string>& extra = {}) {
    const auto argv = args(extra);
    const auto environment = env();
    const std::string logFile = logPath();
    std::vector<char*> cargv;
    for (const auto& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
    cargv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      const int fd = ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      for (const auto& [k, v] : environment) ::setenv(k.c_str(), v.c_str(), 1);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    keepers_.push_back(pid);
    return pid;
  }

  // The exit code of keeper `pid` (our child), or nullopt when it did not exit in time.
  std::optional<int> waitExit(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    std::optional<int> code;
    waitFor(
        [&] {
          int st = 0;
          if (::waitpid(pid, &st, WNOHANG) != pid) return false;
          code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
          return true;
        },
        timeout);
    return code;
  }

  std::vector<FakeEvent> events() const {
    std::vector<FakeEvent> out;
    std::istringstream in(slurp(ctl("events")));
    for (std::string line; std::getline(in, line);) {
      std::istringstream ls(line);
      FakeEvent e;
      ls >> e.name >> e.pid;
      std::getline(ls >> std::ws, e.what);
      out.push_back(e);
    }
    return out;
  }
  std::vector<FakeEvent> starts(const std::string& name) const {
    std::vector<FakeEvent> out;
    for (auto& e : events())
      if (e.name == name && e.what.rfind("start", 0) == 0) out.push_back(e);
    return out;
  }
  bool hasEvent(const std::string& name, pid_t pid, const std::string& what) const {
    for (auto& e : events())
      if (e.name == name && e.pid == pid && e.what == what) return true;
    return false;
  }
  // Index of the first matching event, or -1.
  long indexOf(const std::string& name, const std::string& what) const {
    const auto ev = events();
    for (std::size_t i = 0; i < ev.size(); ++i)
      if (ev[i].name == name && ev[i].what == what) return static_cast<long>(i);
    return -1;
  }

  nlohmann::json components() const {
    const auto text = slurp(runDir() + "/components.json");
    return nlohmann::json::parse(text, nullptr, false);
  }

  // Kills every process this run started (by pid): the keepers, each fake component and the
  // kid a fake spawner forked — only those still running our helper binary.
  void cleanup() {
    for (pid_t k : keepers_) {
      if (::kill(k, SIGKILL) == 0) ::waitpid(k, nullptr, 0);
    }
    keepers_.clear();
    std::vector<pid_t> pids;
    for (const auto& e : events()) pids.push_back(e.pid);
    if (auto kid = std::atoi(slurp(ctl("kid.pid")).c_str()); kid > 0) pids.push_back(kid);
    for (pid_t p : pids) {
      char exe[4096];
      const ssize_t n = ::readlink(("/proc/" + std::to_string(p) + "/exe").c_str(), exe, sizeof exe - 1);
      if (n > 0 && std::string(exe, static_cast<std::size_t>(n)).find("fake_component") != std::string::npos) ::kill(p, SIGKILL);
    }
    for (pid_t d : extraPids_) ::kill(d, SIGKILL);
    extraPids_.clear();
  }
  void adopt(pid_t pid) { extraPids_.push_back(pid); }  // killed at cleanup

 private:
  TempDir tmp_;
  std::string config_;
  std::vector<pid_t> keepers_;
  std::vector<pid_t> extraPids_;
};

// A client of the keeper's fd store, as a spawner would be.
class FdStoreClient {
 public:
  explicit FdStoreClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  }
  FdStoreClient(const FdStoreClient&) = delete;
  FdStoreClient& operator=(const FdStoreClient&) = delete;
  ~FdStoreClient() { ::close(fd_); }
  bool connected() const { return connected_; }

  bool send(const std::string& bytes, const std::vector<int>& fds = {}) {
    return sendWithFds(fd_, bytes, fds, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // Without blocking: false when the socket buffer is full.
  bool sendNow(const std::string& bytes, const std::vector<int>& fds = {}) {
    return sendWithFds(fd_, bytes, fds, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(bytes.size());
  }

  // Whether a datagram waits, without reading it.
  bool readable(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
  }

  struct Received {
    std::string bytes;
    std::vector<int> fds;  // owned by the caller
  };
  // One datagram, or nullopt after `timeout` (or when the keeper closed the connection).
  std::optional<Received> receive(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::vector<char> buf(65536);
    auto got = recvWithFds(fd_, buf.data(), buf.size(), 0);
    if (got.n <= 0) return std::nullopt;
    Received r;
    r.bytes.assign(buf.data(), static_cast<std::size_t>(got.n));
    for (auto& fd : got.fds) r.fds.push_back(fd.release());
    return r;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// True once the keeper accepts connections on its fd store (the socket file appears at bind,
// a moment before listen).
inline bool fdStoreReady(const std::string& path) {
  FdStoreClient probe(path);
  return probe.connected();
}

}  // namespace provisr::test

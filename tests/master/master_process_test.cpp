// Integration tests of provisr-master: the real spawner and master binaries on a temp run_dir, the
// test talking to master.sock as a DEALER like the gateway does.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"
#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A component started with its secret on fd 3 (a pipe), in its own process group.
class Component {
 public:
  Component() = default;
  Component(const Component&) = delete;
  Component& operator=(const Component&) = delete;
  ~Component() { kill9(); }

  void start(const std::vector<std::string>& argv, const std::string& secret, const std::string& logPath) {
    int p[2];
    REQUIRE(::pipe(p) == 0);
    REQUIRE(::write(p[1], secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()));
    ::close(p[1]);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::setpgid(0, 0);
      int fd = ::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, 2);
      ::dup2(p[0], 3);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(p[0]);
    ::setpgid(pid_, pid_);
  }
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Waits for a requested exit; returns the exit code or -1.
  int waitExit(std::chrono::milliseconds deadline) {
    int code = -1;
    bool done = test::waitFor(
        [&] {
          int st = 0;
          if (::waitpid(pid_, &st, WNOHANG) == pid_) {
            code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
            pid_ = -1;
            return true;
          }
          return false;
        },
        deadline);
    return done ? code : -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

// The spawner and the master on one run_dir, and a DEALER client of the master.
class Trio {
 public:
  explicit Trio(const std::string& configPath) : config_(configPath) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    runDir_ = dir_.str() + "/run";
    ::mkdir(runDir_.c_str(), 0700);
    spawner_.start({bin("provisr-spawner"), "--run-dir", runDir_, "--secret-fd", "3"}, secret_, dir_.str() + "/spawner.log");
    startMaster();
  }
  ~Trio() {
    client_.reset();
    master_.kill9();
    spawner_.kill9();
    test::Daemon::killOrphans();
  }

  static std::string bin(const std::string& name) { return std::string(PROVISR_BIN_DIR) + "/" + name; }
  const std::string& runDir() const { return runDir_; }
  const test::TempDir& dir() const { return dir_; }
  Component& master() { return master_; }

  void restartSpawner() {
    spawner_.kill9();
    spawner_.start({bin("provisr-spawner"), "--run-dir", runDir_, "--secret-fd", "3"}, secret_,
                   dir_.str() + "/spawner.log");
  }

  void startMaster() {
    master_.start({bin("provisr-master"), "--config", config_, "--run-dir", runDir_, "--secret-fd", "3"}, secret_,
                  dir_.str() + "/master.log");
    client_.reset();
    auto s = proto::openSocket(ctx_, zmq::socket_type::dealer);
    REQUIRE(s.ok());
    client_.emplace(std::move(*s));
    REQUIRE(proto::connectSocket(*client_, "ipc://" + runDir_ + "/master/master.sock").ok());
  }

  // One request, its reply (pushes and stale replies are skipped); kUnavailable after `wait`.
  template <class Reply, class Req>
  Result<Reply> call(const Req& req, std::chrono::milliseconds wait = 5s) {
    const std::uint64_t id = ++nextId_;
    if (Status st = proto::sendMessage(*client_, proto::encode(req, id)); !st.ok()) return st.error();
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      zmq::pollitem_t item{static_cast<void*>(*client_), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      auto m = proto::recvMessage(*client_);
      if (!m || !m->has_value()) continue;
      auto env = proto::decodeEnvelope((*m)->payload.data(), (*m)->payload.size());
      if (!env || env->id != id) continue;
      return proto::decodeReply<Reply>(*env);
    }
    return makeError(ErrorCode::kUnavailable, "no reply from the master");
  }

  std::map<std::string, proto::InstanceStatus> statuses() {
    std::map<std::string, proto::InstanceStatus> out;
    auto r = call<proto::StatusReply>(proto::StatusRequest{{proto::SelectorKind::kAll, ""}, false}, 1s);
    if (!r) return out;
    for (auto& s : r->instances) out[s.name] = s;
    return out;
  }
  std::string logs() const { return readFile(dir_.str() + "/master.log") + readFile(dir_.str() + "/spawner.log"); }

 private:
  test::TempDir dir_;
  std::string config_;
  std::string runDir_;
  std::string secret_ = "0123456789abcdef0123456789abcdef";
  Component spawner_;
  Component master_;
  zmq::context_t ctx_{1};
  std::optional<zmq::socket_t> client_;
  std::uint64_t nextId_ = 0;
};

// The seed example, rewritten into `dir` with short durations and logs under `dir`.
std::string copySeedExample(const test::TempDir& dir) {
  const fs::path src = fs::path(PROVISR_SOURCE_DIR) / "examples/programs_directory";
  const std::string logs = dir.str() + "/logs";
  auto rewrite = [&](std::string text) {
    text = std::regex_replace(text, std::regex("/tmp/provisr-programs-demo"), logs);
    text = std::regex_replace(text, std::regex("sleep [0-9]+"), "sleep 0.2");
    text = std::regex_replace(text, std::regex("-le 60"), "-le 3");
    // start_duration of every program: 300ms; restart_interval of api-server: 500ms.
    text = std::regex_replace(text, std::regex("(start_duration\"?\\s*[:=]\\s*\"?)[0-9.]+m?s"), "$01300ms");
    text = std::regex_replace(text, std::regex("(\"restart_interval\": \")3s"), "$01500ms");
    return text;
  };
  std::string cfg = rewrite(readFile((src / "config.toml").string()));
  const std::string cfgPath = dir.write("seed/config.toml", cfg);
  for (const auto& e : fs::directory_iterator(src / "programs")) {
    dir.write("seed/programs/" + e.path().filename().string(), rewrite(readFile(e.path().string())));
  }
  return cfgPath;
}

// Dead, or a zombie (children of a killed spawner are re-parented to the test process).
bool gone(pid_t pid) {
  std::string stat = readFile("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  return close == std::string::npos || stat.compare(close + 1, 2, " Z") == 0;
}

bool allSettled(const std::map<std::string, proto::InstanceStatus>& st, std::size_t n) {
  if (st.size() != n) return false;
  for (const auto& [k, s] : st) {
    if (s.state != proto::InstanceState::kRunning && s.state != proto::InstanceState::kExited) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("the seed example starts in priority order — exits and crashes follow policy", "[master]") {
  test::TempDir cfgDir;
  const std::string cfg = copySeedExample(cfgDir);
  Trio t(cfg);
  std::map<std::string, proto::InstanceStatus> st;
  // Workers run 3 jobs of 0.2 s each, so everything is running or exited within a few seconds.
  bool ok = test::waitFor(
      [&] {
        st = t.statuses();
        return allSettled(st, 9) && st["worker-1"].state == proto::InstanceState::kExited &&
               st["worker-2"].state == proto::InstanceState::kExited &&
               st["worker-3"].state == proto::InstanceState::kExited;
      },
      30s);
  INFO(t.logs());
  REQUIRE(ok);

  const std::vector<std::vector<std::string>> bands = {
      {"database"}, {"cache-redis"}, {"api-server-1", "api-server-2"}, {"frontend"}, {"scheduler"},
      {"worker-1", "worker-2", "worker-3"}};
  for (std::size_t b = 1; b < bands.size(); ++b) {
    std::int64_t prevMax = 0;
    std::int64_t curMin = INT64_MAX;
    for (const auto& n : bands[b - 1]) prevMax = std::max(prevMax, st[n].started_at.value_or(0));
    for (const auto& n : bands[b]) curMin = std::min(curMin, st[n].started_at.value_or(0));
    INFO(bands[b][0] << " started " << (curMin - prevMax) << " ms after the band before");
    CHECK(curMin >= prevMax + 250);  // the band before had to run its 300 ms start_duration
  }
  for (const char* w : {"worker-1", "worker-2", "worker-3"}) {
    CHECK(st[w].exit_code == 0);
    CHECK(st[w].restarts == 0);
  }

  // A killed api-server instance comes back after restart_interval with restarts = 1.
  const pid_t victim = *st["api-server-1"].pid;
  REQUIRE(::kill(victim, SIGKILL) == 0);
  ok = test::waitFor(
      [&] {
        st = t.statuses();
        auto& s = st["api-server-1"];
        return s.state == proto::InstanceState::kRunning && s.pid && *s.pid != victim && s.restarts == 1;
      },
      15s);
  INFO(t.logs());
  CHECK(ok);
  CHECK(st["api-server-2"].restarts == 0);
  for (const char* w : {"worker-1", "worker-2", "worker-3"}) CHECK(st[w].state == proto::InstanceState::kExited);

  // Groups, as the seed README uses them.
  auto gs = t.call<proto::GroupStatusReply>(proto::GroupStatus{"web-services"});
  REQUIRE(gs.ok());
  CHECK(gs->members.at("api-server").size() == 2);

  // Shutdown: reply, everything stopped, exit 0.
  auto sd = t.call<proto::OkReply>(proto::Shutdown{});
  CHECK(sd.ok());
  CHECK(t.master().waitExit(20s) == 0);
  for (const auto& [n, s] : st) {
    if (s.state == proto::InstanceState::kRunning && s.pid) CHECK(gone(*s.pid));
  }
}

TEST_CASE("a crasher with retry_count = 2 ends fatal after exactly 3 attempts", "[master]") {
  test::TempDir cfgDir;
  const std::string attempts = cfgDir.str() + "/attempts";
  cfgDir.write("programs/crasher.toml",
               "[spec]\nname = \"crasher\"\nargs = [\"/bin/sh\", \"-c\", \"echo x >> " + attempts + "; exec " +
                   std::string(PROVISR_TEST_HELPERS) + "/crasher 1 100\"]\n"
                   "retry_count = 2\nretry_interval = \"200ms\"\nstart_duration = \"1s\"\n");
  const std::string cfg = cfgDir.write("config.toml", "programs_directory = \"programs\"\n[log]\ndir = \"" +
                                                          cfgDir.str() + "/logs\"\n");
  Trio t(cfg);
  std::map<std::string, proto::InstanceStatus> st;
  bool ok = test::waitFor(
      [&] {
        st = t.statuses();
        return st.count("crasher") && st["crasher"].state == proto::InstanceState::kFatal;
      },
      20s);
  INFO(t.logs());
  REQUIRE(ok);
  std::string lines = readFile(attempts);
  CHECK(std::count(lines.begin(), lines.end(), '\n') == 3);
  REQUIRE(st["crasher"].last_start_error);
  CHECK(st["crasher"].last_start_error->find("3 attempts") != std::string::npos);
  CHECK(st["crasher"].restarts == 0);
  // Start of a missing instance is kNotFound; stop of nothing matched succeeds.
  auto nf = t.call<proto::ActionReply>(proto::Start{{proto::SelectorKind::kName, "nope"}, std::nullopt, false});
  REQUIRE_FALSE(nf.ok());
  CHECK(nf.error().code == ErrorCode::kNotFound);
  CHECK(t.call<proto::ActionReply>(proto::Stop{{proto::SelectorKind::kWildcard, "zz*"}, std::nullopt, false}).ok());
}

TEST_CASE("a new master adopts the children of a master killed with -9", "[master]") {
  test::TempDir cfgDir;
  cfgDir.write("programs/sleepy.toml", "[spec]\nname = \"sleepy\"\nargs = [\"" + std::string(PROVISR_TEST_HELPERS) +
                                           "/sleeper\"]\ninstances = 2\nauto_restart = true\n");
  const std::string cfg = cfgDir.write("config.toml", "programs_directory = \"programs\"\n[log]\ndir = \"" +
                                                          cfgDir.str() + "/logs\"\n");
  Trio t(cfg);
  std::map<std::string, proto::InstanceStatus> before;
  REQUIRE(test::waitFor(
      [&] {
        before = t.statuses();
        return allSettled(before, 2);
      },
      15s));
  // A user stop of one instance must survive the master restart too.
  auto stop = t.call<proto::ActionReply>(proto::Stop{{proto::SelectorKind::kName, "sleepy-2"}, 5000, false}, 10s);
  REQUIRE(stop.ok());
  CHECK(stop->instances.at(0).state == proto::InstanceState::kStopped);

  t.master().kill9();
  t.startMaster();
  std::map<std::string, proto::InstanceStatus> after;
  bool ok = test::waitFor(
      [&] {
        after = t.statuses();
        return after.size() == 2 && after["sleepy-1"].state == proto::InstanceState::kRunning;
      },
      15s);
  INFO(t.logs());
  REQUIRE(ok);
  CHECK(after["sleepy-1"].pid == before["sleepy-1"].pid);
  CHECK(after["sleepy-1"].restarts == 0);
  CHECK(after["sleepy-2"].state == proto::InstanceState::kStopped);
  CHECK_FALSE(gone(*before["sleepy-1"].pid));
  CHECK(t.logs().find("adopted sleepy-1") != std::string::npos);
}

TEST_CASE("the master reconnects to a restarted spawner and keeps state — logs are relayed", "[master]") {
  test::TempDir cfgDir;
  cfgDir.write("programs/talker.toml",
               "[spec]\nname = \"talker\"\ncommand = \"sh -c 'echo hello from $PROVISR_NAME; exec " +
                   std::string(PROVISR_TEST_HELPERS) + "/sleeper'\"\ninstances = 2\n");
  const std::string cfg = cfgDir.write("config.toml", "programs_directory = \"programs\"\n[log]\ndir = \"" +
                                                          cfgDir.str() + "/logs\"\n");
  Trio t(cfg);
  std::map<std::string, proto::InstanceStatus> before;
  REQUIRE(test::waitFor(
      [&] {
        before = t.statuses();
        return allSettled(before, 2);
      },
      15s));

  // Logs of a program: lines of every instance, tagged, `next` per instance.
  proto::LogsReply logs;
  bool ok = test::waitFor(
      [&] {
        auto r = t.call<proto::LogsReply>(proto::Logs{"talker", std::nullopt, 100, proto::LogStreams::kBoth}, 2s);
        if (!r) return false;
        logs = *r;
        return logs.lines.size() >= 2;
      },
      10s);
  INFO(t.logs());
  REQUIRE(ok);
  std::set<std::string> tagged;
  for (const auto& l : logs.lines) tagged.insert(l.instance + ": " + l.text);
  CHECK(tagged.count("talker-1: hello from talker-1") == 1);
  CHECK(tagged.count("talker-2: hello from talker-2") == 1);
  CHECK(logs.next.size() == 2);

  t.restartSpawner();
  ok = test::waitFor([&] { return t.logs().find("the spawner restarted") != std::string::npos; }, 15s);
  INFO(t.logs());
  REQUIRE(ok);
  auto after = t.statuses();
  CHECK(after["talker-1"].pid == before["talker-1"].pid);
  CHECK(after["talker-1"].state == proto::InstanceState::kRunning);
  // The new spawner obeys this master: a stop goes through and is waited for.
  auto stop = t.call<proto::ActionReply>(proto::Stop{{proto::SelectorKind::kName, "talker-1"}, 3000, false}, 10s);
  REQUIRE(stop.ok());
  CHECK(stop->instances.at(0).state == proto::InstanceState::kStopped);
  CHECK_FALSE(stop->timed_out);
  CHECK(test::waitFor([&] { return gone(*before["talker-1"].pid); }, 5s));
  CHECK_FALSE(gone(*before["talker-2"].pid));
}

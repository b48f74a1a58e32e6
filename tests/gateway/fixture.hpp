// Test fixture for the real provisr-gateway binary: a temp run_dir and config, free loopback
// ports, a fake master (a ROUTER on run_dir/master/master.sock answering canned replies per
// message type) and the gateway process, killed by pid and waited for whatever happens.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::test::gw {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

inline int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

using provisr::test::waitFor;

inline proto::InstanceStatus status(std::string name, std::string program, proto::InstanceState st) {
  proto::InstanceStatus s;
  s.name = std::move(name);
  s.program = std::move(program);
  s.state = st;
  s.running = st == proto::InstanceState::kRunning;
  s.pid = s.running ? std::optional<std::int32_t>(4242) : std::nullopt;
  s.started_at = 1795791845123;
  s.uptime_ms = s.running ? 12500 : 0;
  s.groups = {"g1"};
  s.log = {"/var/log/" + s.name + ".stdout.log", "/var/log/" + s.name + ".stderr.log"};
  return s;
}

// Canned master: web (2 instances: web-1 running, web-2 stopped), db (1, stopped), cfg
// (config-managed: mutations conflict); group g1 = [web, db]; anything named "nope" is unknown.
class FakeMaster {
 public:
  explicit FakeMaster(const std::string& run_dir) : endpoint_("ipc://" + run_dir + "/master/master.sock") {
    std::filesystem::create_directories(run_dir + "/master");
    start();
  }
  ~FakeMaster() { stopThread(); }

  void start() {
    stop_ = false;
    std::promise<void> bound;
    auto f = bound.get_future();
    thread_ = std::thread([this, &bound] { run(bound); });
    f.wait();
  }
  void stopThread() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  std::atomic<bool> silent{false};

  std::vector<proto::MsgType> received() {
    std::lock_guard l(mu_);
    return received_;
  }
  std::size_t count(proto::MsgType t) {
    std::lock_guard l(mu_);
    return static_cast<std::size_t>(std::count(received_.begin(), received_.end(), t));
  }
  std::vector<std::string> topics() {
    std::lock_guard l(mu_);
    return topics_;
  }
  std::size_t subscribes() { return count(proto::MsgType::kSubscribe); }
  // Last request body of type T.
  template <class T>
  std::optional<T> last() {
    std::lock_guard l(mu_);
    for (auto it = bodies_.rbegin(); it != bodies_.rend(); ++it) {
      if (it->first != T::kType) continue;
      auto env = proto::decodeEnvelope(it->second.data(), it->second.size());
      if (!env) return std::nullopt;
      auto b = proto::decodeBody<T>(*env);
      if (!b) return std::nullopt;
      return *b;
    }
    return std::nullopt;
  }
  // Pushes a message to the peer that subscribed last.
  template <class T>
  void push(const T& msg) {
    std::lock_guard l(mu_);
    pushes_.push_back(proto::encode(msg, 0));
  }

 private:
  std::string reply(const proto::Envelope& env) {
    using namespace proto;
    using IS = InstanceState;
    const auto web1 = status("web-1", "web", IS::kRunning);
    const auto web2 = status("web-2", "web", IS::kStopped);
    auto db = status("db", "db", IS::kStopped);
    db.instance = 1;
    auto notFound = [&](const std::string& what) { return encodeError(env.id, ErrorCode::kNotFound, "no such " + what); };
    auto conflict = [&] { return encodeError(env.id, ErrorCode::kConflict, "cfg is config-managed (read-only through the API)"); };
    auto action = [&](std::vector<InstanceStatus> in) {
      ActionReply r;
      r.instances = std::move(in);
      r.plan = {PlanStep{PlanAction::kStart, "web", {"web-1"}, 0, "requested"}};
      return encode(r, env.id);
    };
    auto bySelector = [&](const Selector& s) -> std::optional<std::vector<InstanceStatus>> {
      if (s.value == "nope") return std::nullopt;
      if (s.kind == SelectorKind::kAll || s.value == "*") return std::vector<InstanceStatus>{web2, db, web1};
      if (s.value == "web-1") return std::vector<InstanceStatus>{web1};
      if (s.value == "web" || s.value == "web*") return std::vector<InstanceStatus>{web2, web1};
      if (s.value == "db") return std::vector<InstanceStatus>{db};
      if (s.value == "cfg") return std::vector<InstanceStatus>{status("cfg", "cfg", IS::kRunning)};
      return std::vector<InstanceStatus>{};
    };
    switch (env.type) {
      case MsgType::kStatus: {
        auto m = decodeBody<StatusRequest>(env);
        auto list = bySelector(m->selector);
        if (!list) return notFound("instance or program: nope");
        if (m->sample) {
          for (auto& s : *list) {
            s.rss_bytes = 1048576;
            s.cpu_seconds = 1.5;
          }
        }
        StatusReply r{*list, m->selector.kind == SelectorKind::kName && list->size() == 1};
        return encode(r, env.id);
      }
      case MsgType::kStart:
      case MsgType::kRestart:
      case MsgType::kStop: {
        const Selector sel = env.type == MsgType::kStart   ? decodeBody<Start>(env)->selector
                             : env.type == MsgType::kStop ? decodeBody<Stop>(env)->selector
                                                          : decodeBody<Restart>(env)->selector;
        const auto* m = &sel;
        if (m->value == "slow") return {};  // never answers
        if (m->value == "nope") return notFound("instance");
        return action(*bySelector(sel));
      }
      case MsgType::kScale: {
        auto m = decodeBody<Scale>(env);
        if (m->program == "nope") return notFound("program");
        if (m->program == "cfg") return conflict();
        return action({web1});
      }
      case MsgType::kRegister:
      case MsgType::kUpdate: {
        const std::string spec = env.type == MsgType::kRegister ? decodeBody<Register>(env)->spec_json
                                                                : decodeBody<Update>(env)->spec_json;
        if (spec.find("\"cfg\"") != std::string::npos) return conflict();
        if (spec.find("\"nope\"") != std::string::npos) return notFound("program nope");
        return action({web1});
      }
      case MsgType::kUnregister: {
        auto m = decodeBody<Unregister>(env);
        if (m->selector.value == "cfg") return conflict();
        if (m->selector.value == "nope") return notFound("program");
        return action({});
      }
      case MsgType::kGroups: return encode(GroupsReply{{{"g1", {"web", "db"}}}}, env.id);
      case MsgType::kGroupStatus: {
        auto m = decodeBody<GroupStatus>(env);
        if (m->group != "g1") return notFound("group " + m->group);
        GroupStatusReply r;
        r.members["web"] = {web2, web1};
        r.members["db"] = {db};
        return encode(r, env.id);
      }
      case MsgType::kGroupStart:
      case MsgType::kGroupStop: {
        const std::string group = env.type == MsgType::kGroupStart ? decodeBody<GroupStart>(env)->group
                                                                   : decodeBody<GroupStop>(env)->group;
        const auto* m = &group;
        if (*m != "g1") return notFound("group " + *m);
        return action({web1, db});
      }
      case MsgType::kLogs: {
        auto m = decodeBody<Logs>(env);
        if (m->name == "nope") return notFound("instance nope");
        LogsReply r;
        if (m->name == "web-1") {
          r.lines = {{7, LogStream::kStdout, "hello", "web-1"}, {8, LogStream::kStderr, "oops", "web-1"}};
          r.next = {{"web-1", 9}};
        } else {
          r.lines = {{7, LogStream::kStdout, "a", "web-1"}, {3, LogStream::kStdout, "b", "web-2"}};
          r.next = {{"web-1", 8}, {"web-2", 4}};
        }
        return encode(r, env.id);
      }
      case MsgType::kSpec: {
        auto m = decodeBody<Spec>(env);
        if (m->name != "web" && m->name != "cfg") return notFound("program " + m->name);
        return encode(SpecReply{R"({"name":")" + m->name + R"(","command":"sleep 100","instances":2})",
                                m->name == "cfg" ? "config" : "api", ""},
                      env.id);
      }
      case MsgType::kSettings: return encode(SettingsReply{R"({"configured_group_count":1,"run_dir":"/x"})"}, env.id);
      case MsgType::kReload: {
        auto m = decodeBody<Reload>(env);
        ReloadReply r;
        r.applied = !m->dry_run;
        r.plan = {PlanStep{PlanAction::kRestart, "web", {"web-1", "web-2"}, 0, "changed: command"}};
        r.restart_needed = {"server.listen"};
        return encode(r, env.id);
      }
      case MsgType::kReopenLogs:
      case MsgType::kShutdown: return encode(OkReply{}, env.id);
      case MsgType::kSubscribe: {
        auto m = decodeBody<Subscribe>(env);
        topics_ = m->topics;
        return encode(OkReply{}, env.id);
      }
      default: return encodeError(env.id, ErrorCode::kUnknownMessage, "fake master does not know this");
    }
  }

  void run(std::promise<void>& bound) {
    zmq::context_t ctx(1);
    auto sock = proto::openSocket(ctx, zmq::socket_type::router);
    if (!sock || !proto::bindSocket(*sock, endpoint_)) throw std::runtime_error("fake master bind failed");
    bound.set_value();
    std::vector<std::string> subscriber;
    while (!stop_) {
      zmq::pollitem_t item{sock->handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10));
      for (;;) {
        auto msg = proto::recvMessage(*sock);
        if (!msg || !*msg) break;
        auto& m = **msg;
        auto env = proto::decodeEnvelope(m.payload.data(), m.payload.size());
        if (!env) continue;
        std::string out;
        {
          std::lock_guard l(mu_);
          received_.push_back(env->type);
          bodies_.emplace_back(env->type, std::string(m.data()));
          if (env->type == proto::MsgType::kSubscribe) subscriber = m.route;
          if (silent) continue;
          out = reply(*env);
        }
        if (!out.empty()) (void)proto::sendMessage(*sock, m.route, out);
      }
      std::vector<std::string> pushes;
      {
        std::lock_guard l(mu_);
        pushes.swap(pushes_);
      }
      for (const auto& p : pushes) {
        if (!subscriber.empty()) (void)proto::sendMessage(*sock, subscriber, p);
      }
    }
  }

  std::string endpoint_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<proto::MsgType> received_;
  std::vector<std::pair<proto::MsgType, std::string>> bodies_;
  std::vector<std::string> topics_;
  std::vector<std::string> pushes_;
};

struct GatewayOptions {
  std::string auth;          // extra lines for [server.auth]
  std::string server_extra;  // extra lines for [server]
  std::string listen_host = "127.0.0.1";
  std::string zmq_host = "127.0.0.1";
  bool zmq = true;
  bool metrics = true;
  std::string base_path = "/api";
  std::vector<std::string> extra_args = {"--sse-ping-ms", "100", "--max-streams", "3"};
};

// The gateway binary on a temp run_dir with a fresh config and free ports.
class Gateway {
 public:
  explicit Gateway(const TempDir& dir, GatewayOptions opts = {}) : dir_(dir) {
    port = freePort();
    metrics_port = freePort();
    zmq_port = freePort();
    events_port = freePort();
    run_dir = dir.str() + "/run";
    std::filesystem::create_directories(run_dir + "/master");
    std::ostringstream c;
    c << "programs_directory = \"" << dir.str() << "/programs\"\n"
      << "[[groups]]\nname = \"g1\"\nmembers = []\n"
      << "[server]\nlisten = \"" << opts.listen_host << ":" << port << "\"\nbase_path = \"" << opts.base_path << "\"\n";
    if (opts.zmq) {
      c << "zmq_listen = \"tcp://" << opts.zmq_host << ":" << zmq_port << "\"\nzmq_events = \"tcp://127.0.0.1:" << events_port
        << "\"\n";
    }
    c << opts.server_extra;
    if (!opts.auth.empty()) c << "[server.auth]\n" << opts.auth;
    if (opts.metrics) c << "[metrics]\nenabled = true\nlisten = \"127.0.0.1:" << metrics_port << "\"\n";
    std::filesystem::create_directories(dir.str() + "/programs");
    config = dir.write("config.toml", c.str());
    stderr_path = dir.str() + "/gateway.stderr";
    std::vector<std::string> argv = {binPath("provisr-gateway"), "--config", config, "--run-dir", run_dir};
    argv.insert(argv.end(), opts.extra_args.begin(), opts.extra_args.end());
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      int fd = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(fd, 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(a.data());
      cargv.push_back(nullptr);
      ::execv(cargv[0], cargv.data());
      ::_exit(127);
    }
    const bool up = waitFor([&] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_connection_timeout(0, 200000);
      auto r = cli.Get("/__ready");
      return static_cast<bool>(r) || exited();
    }, 10000ms);
    if (!up || exited()) {
      const auto err = stderrText();
      stop();
      throw std::runtime_error("gateway did not come up: " + err);
    }
  }
  ~Gateway() { stop(); }

  bool exited() {
    if (pid <= 0) return true;
    int st = 0;
    pid_t r = ::waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      exit_status = st;
      pid = -1;
      return true;
    }
    return false;
  }

  // SIGTERM, then SIGKILL after the deadline; returns the exit code (-1: killed).
  int stop(std::chrono::milliseconds deadline = 5000ms) {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      if (!waitFor([&] { return exited(); }, deadline)) {
        ::kill(pid, SIGKILL);
        int st = 0;
        ::waitpid(pid, &st, 0);
        pid = -1;
        return -1;
      }
    }
    return WIFEXITED(exit_status) ? WEXITSTATUS(exit_status) : -1;
  }

  std::string stderrText() const {
    std::ifstream in(stderr_path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(2, 0);
    c.set_read_timeout(10, 0);
    return c;
  }

  const TempDir& dir_;
  int port = 0, metrics_port = 0, zmq_port = 0, events_port = 0;
  std::string run_dir, config, stderr_path;
  pid_t pid = -1;
  int exit_status = 0;
};

}  // namespace provisr::test::gw

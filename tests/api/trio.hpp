// Support for the API suite: a real `provisr serve` (keeper, spawner, master, gateway) on a temp
// run_dir with free loopback ports for HTTP, Prometheus and the public ZeroMQ API, and small
// HTTP/SSE/ZeroMQ clients to talk to it.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::test::api {

using nlohmann::json;
using namespace std::chrono_literals;

inline const char* kToken = "s3cret-full-token";
inline const char* kReadToken = "r3ad-only-token";

inline std::string helper(const std::string& name) { return std::string(PROVISR_TEST_HELPERS) + "/" + name; }

// A program `web` with two `sleeper` instances (web-1, web-2), for the Trio's `extra` config.
inline std::string twoWebSleepers() {
  return "[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.instances = 2\nspec.args = [\"" +
         helper("sleeper") + "\"]\n";
}

struct TrioOptions {
  bool auth = true;             // [server.auth] token + read_only_token
  bool token_file = false;      // the full token from a file instead of inline
  bool zmq = true;              // zmq_listen / zmq_events on loopback tcp
  bool allow_root_programs = true;
  std::string extra;            // more config text (programs, groups...)
};

// The daemon and its addresses. Stops the whole tree in the destructor (Daemon).
class Trio {
 public:
  explicit Trio(TrioOptions o = {}) : opts_(std::move(o)) {
    port = freePort();
    metrics_port = freePort();
    zmq_port = freePort();
    events_port = freePort();
    std::ostringstream cfg;
    cfg << "[log]\ndir = \"" << dir.str() << "/logs\"\n"
        << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n";
    if (opts_.zmq) {
      cfg << "zmq_listen = \"tcp://127.0.0.1:" << zmq_port << "\"\n"
          << "zmq_events = \"tcp://127.0.0.1:" << events_port << "\"\n";
    }
    if (opts_.allow_root_programs) cfg << "allow_root_programs = true\n";
    if (opts_.auth) {
      cfg << "[server.auth]\n";
      if (opts_.token_file) {
        cfg << "token_file = \"" << dir.write("token", std::string(kToken) + "\n") << "\"\n";
      } else {
        cfg << "token = \"" << kToken << "\"\n";
      }
      cfg << "read_only_token = \"" << kReadToken << "\"\n";
    }
    cfg << "[metrics]\nenabled = true\nlisten = \"127.0.0.1:" << metrics_port << "\"\n" << opts_.extra;
    config = dir.write("config.toml", cfg.str());
    run_dir = dir.str() + "/run";
    daemon = std::make_unique<Daemon>(config, run_dir, dir.str() + "/serve.log");
  }

  // Waits until the gateway answers and the master is connected.
  bool ready(std::chrono::milliseconds deadline = 20s) {
    return waitFor(
        [&] {
          auto r = get("/status?wildcard=*");
          return r && r->status == 200;
        },
        deadline);
  }

  std::unique_ptr<httplib::Client> client(std::optional<std::string> token = std::string(kToken)) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(15s);
    c->set_connection_timeout(5s);
    if (token && opts_.auth) c->set_default_headers({{"Authorization", "Bearer " + *token}});
    return c;
  }

  httplib::Result get(const std::string& path, std::optional<std::string> token = std::string(kToken)) const {
    return client(std::move(token))->Get(("/api" + path).c_str());
  }
  httplib::Result post(const std::string& path, const std::string& body = "",
                       std::optional<std::string> token = std::string(kToken)) const {
    return client(std::move(token))->Post(("/api" + path).c_str(), body, "application/json");
  }

  // The JSON state of one instance ("" when unknown).
  std::string state(const std::string& name) const {
    auto r = get("/status?name=" + name);
    if (!r || r->status != 200) return "";
    auto j = json::parse(r->body, nullptr, false);
    return j.is_object() ? j.value("state", "") : "";
  }
  bool waitState(const std::string& name, const std::string& want, std::chrono::milliseconds d = 15s) const {
    return waitFor([&] { return state(name) == want; }, d);
  }
  std::optional<int> pid(const std::string& name) const {
    auto r = get("/status?name=" + name);
    if (!r || r->status != 200) return std::nullopt;
    auto j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j["pid"].is_number_integer()) return std::nullopt;
    return j["pid"].get<int>();
  }

  std::string log() const { return daemon->log(); }

  TempDir dir;
  int port = 0, metrics_port = 0, zmq_port = 0, events_port = 0;
  std::string config, run_dir;
  std::unique_ptr<Daemon> daemon;

 private:
  TrioOptions opts_;
};

inline json body(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }

// A raw loopback TCP connection for requests httplib would not send (half requests, bad methods).
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  bool send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Reads until the peer closes, `until` appears in what was read, or the deadline passes.
  std::string read(std::chrono::milliseconds deadline, std::string_view until = {}) {
    std::string out;
    const auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        closed_ = true;
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    return out;
  }
  bool peerClosed() const { return closed_; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool closed_ = false;
};

// The status line's code of a raw HTTP response ("HTTP/1.1 405 ..." → 405), 0 when none.
inline int statusOf(const std::string& raw) {
  if (raw.rfind("HTTP/1.", 0) != 0 || raw.size() < 12) return 0;
  return std::atoi(raw.substr(9, 3).c_str());
}

// An SSE stream on a raw connection: the response head, then events as they come.
class SseStream {
 public:
  SseStream(int port, const std::string& path, std::optional<std::string> token = std::string(kToken))
      : conn_(port) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
    if (token) req += "Authorization: Bearer " + *token + "\r\n";
    req += "\r\n";
    conn_.send(req);
  }
  // Reads the response head (and the first chunk); returns the status code (0 when none came).
  int open(std::chrono::milliseconds deadline = 5s) {
    buf_ += conn_.read(deadline, "\r\n\r\n");
    status_ = statusOf(buf_);
    return status_;
  }
  // Waits until `needle` appeared in the stream.
  bool waitFor(std::string_view needle, std::chrono::milliseconds deadline) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (buf_.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || conn_.peerClosed()) return false;
      buf_ += conn_.read(std::min<std::chrono::milliseconds>(left, 200ms), needle);
    }
    return true;
  }
  const std::string& text() const { return buf_; }
  void close() { conn_.close(); }

 private:
  RawConn conn_;
  std::string buf_;
  int status_ = 0;
};

// Public ZeroMQ API client: a DEALER (replies matched by id) with a receive deadline.
class ZmqApi {
 public:
  ZmqApi(zmq::context_t& ctx, int port) : sock_(ctx, zmq::socket_type::dealer) {
    sock_.set(zmq::sockopt::linger, 0);
    sock_.set(zmq::sockopt::rcvtimeo, 10000);
    sock_.connect("tcp://127.0.0.1:" + std::to_string(port));
  }
  // Sends {v, id, op, args, token} and returns the decoded reply as JSON (null on timeout).
  json call(const std::string& op, const json& args = json::object(),
            std::optional<std::string> token = std::string(kToken)) {
    const std::uint64_t id = ++id_;
    json req = {{"v", 1}, {"id", id}, {"op", op}, {"args", args}};
    if (token) req["token"] = *token;
    auto bytes = json::to_msgpack(req);
    sock_.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
    for (;;) {
      zmq::message_t m;
      if (!sock_.recv(m, zmq::recv_flags::none)) return json();
      if (m.size() == 0) continue;  // a delimiter frame, if any
      auto j = json::from_msgpack(static_cast<const std::uint8_t*>(m.data()),
                                  static_cast<const std::uint8_t*>(m.data()) + m.size(), true, false);
      if (j.is_discarded()) return json();
      if (j.value("id", std::uint64_t{0}) == id) return j;
    }
  }
  zmq::socket_t& socket() { return sock_; }

 private:
  zmq::socket_t sock_;
  std::uint64_t id_ = 0;
};

}  // namespace provisr::test::api

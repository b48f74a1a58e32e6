// SSE streams (GET /events, logs?follow=1), their cap and slot release, the ZeroMQ API (REQ and
// DEALER) and the events PUB, against the real gateway and a fake master.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/gateway/fixture.hpp"

using namespace provisr;
using namespace provisr::test;
using namespace provisr::test::gw;
using Json = nlohmann::json;

namespace {

// An SSE client on its own thread; the stream ends when the object dies.
class SseClient {
 public:
  SseClient(int port, std::string path, std::string token = "") {
    thread_ = std::thread([this, port, path = std::move(path), token = std::move(token)] {
      httplib::Client c("127.0.0.1", port);
      c.set_read_timeout(5, 0);
      httplib::Headers h;
      if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
      auto r = c.Get(path, h, [this](const char* d, std::size_t n) {
        std::lock_guard l(mu_);
        data_.append(d, n);
        return !stop_.load();
      });
      status_ = r ? r->status : (stop_ ? 0 : -1);
      done_ = true;
    });
  }
  ~SseClient() { close(); }
  void close() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::string text() {
    std::lock_guard l(mu_);
    return data_;
  }
  bool contains(const std::string& s) { return text().find(s) != std::string::npos; }
  bool done() const { return done_; }
  int status() const { return status_; }

 private:
  std::thread thread_;
  std::mutex mu_;
  std::string data_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<int> status_{0};
};

proto::StateChanged stateChanged(const std::string& inst) {
  return proto::StateChanged{inst, proto::InstanceState::kStarting, proto::InstanceState::kRunning, 1795791845123,
                             status(inst, "web", proto::InstanceState::kRunning)};
}

bool hasTopic(FakeMaster& m, const std::string& t) {
  auto ts = m.topics();
  return std::find(ts.begin(), ts.end(), t) != ts.end();
}

std::string packRequest(std::uint64_t id, const std::string& op, Json args, std::optional<std::string> token = {}) {
  Json req{{"v", 1}, {"id", id}, {"op", op}, {"args", std::move(args)}};
  if (token) req["token"] = *token;
  auto b = Json::to_msgpack(req);
  return std::string(b.begin(), b.end());
}

Json recvJson(zmq::socket_t& s, std::chrono::milliseconds deadline = 5000ms) {
  zmq::pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, deadline) <= 0) return Json();
  zmq::message_t m;
  (void)s.recv(m);
  while (m.more() && m.size() == 0) (void)s.recv(m);  // a DEALER sees no delimiter; be lenient
  return Json::from_msgpack(std::string(static_cast<const char*>(m.data()), m.size()));
}

}  // namespace

TEST_CASE("SSE: state events, log follow, the stream cap and slot release", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);  // --max-streams 3, --sse-ping-ms 100

  SseClient events(gw.port, "/api/events");
  REQUIRE(waitFor([&] { return hasTopic(master, "state."); }));
  REQUIRE(waitFor([&] { return events.contains(": subscribed state."); }));
  master.push(stateChanged("web-1"));
  REQUIRE(waitFor([&] { return events.contains("event: state.web-1\ndata: "); }));
  {
    const auto t = events.text();
    const auto pos = t.find("data: ");
    auto j = Json::parse(t.substr(pos + 6, t.find("\n\n", pos) - pos - 6));
    CHECK(j["to"] == "running");
    CHECK(j["from"] == "starting");
    CHECK(j["status"]["name"] == "web-1");
    CHECK(j["at"] == "2026-11-27T15:04:05.123Z");
  }

  SseClient logs(gw.port, "/api/processes/web/logs?follow=1");
  REQUIRE(waitFor([&] { return hasTopic(master, "log.web") && hasTopic(master, "state."); }));
  REQUIRE(waitFor([&] { return logs.contains(": subscribed log.web"); }));
  master.push(proto::LogLines{"webapp-1", {{1, proto::LogStream::kStdout, "not mine", "webapp-1"}}, 0});
  master.push(proto::LogLines{"web-2", {{5, proto::LogStream::kStderr, "boom", "web-2"}}, 1});
  REQUIRE(waitFor([&] { return logs.contains("event: log.web-2\ndata: "); }));
  CHECK(logs.contains("\"boom\""));
  CHECK_FALSE(logs.contains("not mine"));
  CHECK_FALSE(events.contains("boom"));  // state stream does not get log lines

  // The cap: a third stream fits, a fourth gets 503.
  SseClient third(gw.port, "/api/events");
  REQUIRE(waitFor([&] { return third.contains(": subscribed"); }));
  SseClient fourth(gw.port, "/api/events");
  REQUIRE(waitFor([&] { return fourth.done(); }));
  CHECK(fourth.status() == 503);
  CHECK(fourth.contains("too many open event streams"));

  // A client that goes away frees its slot (noticed at the next keep-alive write).
  logs.close();
  REQUIRE(waitFor([&] { return !hasTopic(master, "log.web"); }));  // unsubscribed upstream too
  SseClient fifth(gw.port, "/api/events");
  REQUIRE(waitFor([&] { return fifth.contains(": subscribed") || fifth.done(); }));
  CHECK_FALSE(fifth.done());

  // A restarted master gets the subscription again.
  const auto before = master.subscribes();
  master.stopThread();
  master.start();
  REQUIRE(waitFor([&] { return master.subscribes() > before && hasTopic(master, "state."); }, 8000ms));
  master.push(stateChanged("db"));
  REQUIRE(waitFor([&] { return events.contains("event: state.db\n"); }));
  // Requests work again through the pooled DEALERs once the master is back.
  REQUIRE(waitFor([&] {
    auto r = gw.client().Get("/api/status?name=db");
    return r && r->status == 200;
  }, 8000ms));

  events.close();
  third.close();
  fifth.close();
  CHECK(gw.stop() == 0);
}

TEST_CASE("ZeroMQ API: REQ and DEALER round trips, errors, token", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  zmq::context_t ctx(1);
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(gw.zmq_port);

  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(ep);
  req.send(zmq::buffer(packRequest(7, "status", Json{{"name", "web-1"}})), zmq::send_flags::none);
  auto r = recvJson(req);
  REQUIRE(r.is_object());
  CHECK(r["id"] == 7);
  CHECK(r["ok"] == true);
  CHECK(r["v"] == 1);
  CHECK(r["result"]["name"] == "web-1");
  CHECK(r["result"]["started_at"] == "2026-11-27T15:04:05.123Z");

  req.send(zmq::buffer(packRequest(8, "status", Json::object())), zmq::send_flags::none);
  r = recvJson(req);
  CHECK(r["result"].size() == 3);  // no selector over ZeroMQ: every instance

  req.send(zmq::buffer(packRequest(9, "status", Json{{"name", "nope"}})), zmq::send_flags::none);
  r = recvJson(req);
  CHECK(r["ok"] == false);
  CHECK(r["error"]["code"] == "not_found");

  req.send(zmq::buffer(packRequest(10, "frobnicate", Json::object())), zmq::send_flags::none);
  r = recvJson(req);
  CHECK(r["error"]["code"] == "unknown_message");

  req.send(zmq::buffer(std::string("\xc1garbage")), zmq::send_flags::none);
  r = recvJson(req);
  CHECK(r["ok"] == false);
  CHECK(r["error"]["code"] == "malformed");

  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(ep);
  dealer.send(zmq::buffer(packRequest(21, "stop", Json{{"name", "web"}, {"wait_ms", 1500}})), zmq::send_flags::none);
  dealer.send(zmq::buffer(packRequest(22, "group_status", Json{{"group", "g1"}})), zmq::send_flags::none);
  dealer.send(zmq::buffer(packRequest(23, "logs", Json{{"name", "web-1"}, {"limit", 10}})), zmq::send_flags::none);
  std::map<std::uint64_t, Json> replies;
  for (int i = 0; i < 3; ++i) {
    auto j = recvJson(dealer);
    REQUIRE(j.is_object());
    replies[j["id"].get<std::uint64_t>()] = j;
  }
  CHECK(replies[21]["result"]["ok"] == true);
  CHECK(master.last<proto::Stop>()->wait_ms == std::optional<std::uint64_t>(1500));
  CHECK(replies[22]["result"]["web"].size() == 2);
  CHECK(replies[23]["result"]["next"] == 9);
  CHECK(master.last<proto::Logs>()->limit == 10);

  dealer.send(zmq::buffer(packRequest(24, "health", Json::object())), zmq::send_flags::none);
  auto h = recvJson(dealer);
  CHECK(h["error"]["code"] == "unavailable");  // no components.json in this run_dir
  dealer.send(zmq::buffer(packRequest(25, "version", Json::object())), zmq::send_flags::none);
  CHECK(recvJson(dealer)["result"].contains("version"));
  CHECK(gw.stop() == 0);
}

TEST_CASE("ZeroMQ events PUB: two frames per event, subscription forwarded to the master", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  zmq::context_t ctx(1);
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::subscribe, "state.");
  sub.connect("tcp://127.0.0.1:" + std::to_string(gw.events_port));
  REQUIRE(waitFor([&] { return hasTopic(master, "state."); }));
  master.push(stateChanged("web-1"));
  zmq::pollitem_t item{sub.handle(), 0, ZMQ_POLLIN, 0};
  REQUIRE(zmq::poll(&item, 1, std::chrono::milliseconds(5000)) == 1);
  zmq::message_t topic, payload;
  (void)sub.recv(topic);
  REQUIRE(topic.more());
  (void)sub.recv(payload);
  CHECK_FALSE(payload.more());
  CHECK(topic.to_string() == "state.web-1");
  auto j = Json::from_msgpack(payload.to_string());
  CHECK(j["instance"] == "web-1");
  CHECK(j["to"] == "running");
  CHECK(j["status"]["running"] == true);

  sub.set(zmq::sockopt::unsubscribe, "state.");
  REQUIRE(waitFor([&] { return !hasTopic(master, "state."); }));
  CHECK(gw.stop() == 0);
}

TEST_CASE("SIGTERM with an open SSE stream: the stream ends, exit 0", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  GatewayOptions opts;
  opts.extra_args = {"--sse-ping-ms", "60000"};  // the stream would otherwise sit silent for a minute
  Gateway gw(dir, opts);
  SseClient events(gw.port, "/api/events");
  REQUIRE(waitFor([&] { return events.contains(": subscribed"); }));
  const auto t0 = SteadyClock::now();
  CHECK(gw.stop() == 0);
  CHECK(SteadyClock::now() - t0 < 3s);
  REQUIRE(waitFor([&] { return events.done(); }));
}

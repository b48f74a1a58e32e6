// The public ZeroMQ API against the real trio on loopback tcp: status/start/stop round trips from
// DEALER and REQ clients, access rules, the events PUB, and hostile frames at the gateway's
// ROUTER and at the master's and spawner's sockets — every component keeps running.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include "tests/api/trio.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

namespace {

// component → pid from run_dir/components.json.
std::map<std::string, int> componentPids(const Trio& t) {
  std::ifstream in(t.run_dir + "/components.json");
  std::map<std::string, int> out;
  auto j = json::parse(in, nullptr, false);
  if (!j.is_object()) return out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.value().is_object() && it.value().contains("pid") && it.value()["pid"].is_number_integer()) {
      out[it.key()] = it.value()["pid"].get<int>();
    }
  }
  return out;
}

}  // namespace

TEST_CASE("ZeroMQ API: status, start, stop round trip over tcp", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web-1", "running"));
  INFO(t.log());
  zmq::context_t ctx;
  ZmqApi api(ctx, t.zmq_port);

  auto st = api.call("status", {{"name", "web-1"}});
  REQUIRE(st.is_object());
  CHECK(st["ok"] == true);
  CHECK(st["result"]["name"] == "web-1");
  CHECK(st["result"]["state"] == "running");
  auto all = api.call("status", {{"name", "web"}});
  CHECK(all["result"].size() == 2);

  auto stop = api.call("stop", {{"name", "web-1"}, {"wait_ms", 5000}});
  CHECK(stop["ok"] == true);
  CHECK(t.state("web-1") == "stopped");
  auto start = api.call("start", {{"name", "web-1"}, {"wait_ms", 5000}});
  CHECK(start["ok"] == true);
  CHECK(t.state("web-1") == "running");

  // Errors are values with a code.
  auto unknown = api.call("status", {{"name", "nosuch"}});
  CHECK(unknown["ok"] == false);
  CHECK(unknown["error"]["code"] == "not_found");
  auto badOp = api.call("frobnicate");
  CHECK(badOp["error"]["code"] == "unknown_message");
  auto badName = api.call("start", {{"name", "../etc"}});
  CHECK(badName["error"]["code"] == "invalid_argument");
  // Access: the token is a request field.
  auto anon = api.call("stop", {{"name", "web-1"}}, std::nullopt);
  CHECK(anon["error"]["code"] == "unauthorized");
  auto ro = api.call("stop", {{"name", "web-1"}}, std::string(kReadToken));
  CHECK(ro["error"]["code"] == "forbidden");
  CHECK(api.call("status", {{"name", "web-1"}}, std::string(kReadToken))["ok"] == true);
  CHECK(t.state("web-1") == "running");

  // A REQ client (empty delimiter frame) gets the same answer.
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.set(zmq::sockopt::rcvtimeo, 10000);
  req.connect("tcp://127.0.0.1:" + std::to_string(t.zmq_port));
  auto bytes = json::to_msgpack(json{{"v", 1}, {"id", 9}, {"op", "status"}, {"args", {{"name", "web-2"}}}, {"token", kToken}});
  req.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::none);
  zmq::message_t m;
  REQUIRE(req.recv(m, zmq::recv_flags::none));
  auto reply = json::from_msgpack(static_cast<const std::uint8_t*>(m.data()),
                                  static_cast<const std::uint8_t*>(m.data()) + m.size(), true, false);
  CHECK(reply["id"] == 9);
  CHECK(reply["result"]["name"] == "web-2");
}

TEST_CASE("ZeroMQ events: a SUB on zmq_events gets state changes as two frames", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web-2", "running"));
  INFO(t.log());
  zmq::context_t ctx;
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::rcvtimeo, 500);
  sub.set(zmq::sockopt::subscribe, "state.web-2");
  sub.connect("tcp://127.0.0.1:" + std::to_string(t.events_port));

  // The subscription travels SUB → XPUB → master asynchronously: restart until an event arrives.
  std::string topic;
  json ev;
  REQUIRE(waitFor(
      [&] {
        t.post("/restart?name=web-2&wait=5s");
        for (int i = 0; i < 6; ++i) {
          zmq::message_t f1, f2;
          if (!sub.recv(f1, zmq::recv_flags::none)) return false;
          REQUIRE(f1.more());
          REQUIRE(sub.recv(f2, zmq::recv_flags::none));
          topic = f1.to_string();
          ev = json::from_msgpack(static_cast<const std::uint8_t*>(f2.data()),
                                  static_cast<const std::uint8_t*>(f2.data()) + f2.size(), true, false);
          if (ev.is_object() && ev.value("to", "") == "running") return true;
        }
        return false;
      },
      20s));
  CHECK(topic == "state.web-2");
  CHECK(ev["instance"] == "web-2");
  CHECK(ev["status"]["name"] == "web-2");
}

TEST_CASE("hostile frames at the gateway ROUTER, the master and the spawner: nothing changes", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web-1", "running"));
  REQUIRE(t.waitState("web-2", "running"));
  INFO(t.log());
  REQUIRE(waitFor([&] { return componentPids(t).size() == 4; }, 10s));
  const auto pidsBefore = componentPids(t);
  const auto web1 = t.pid("web-1");
  const auto web2 = t.pid("web-2");
  REQUIRE(web1);

  std::mt19937 rng(9);
  std::vector<std::string> junk = {
      "",                                          // empty frame
      "\xc1",                                      // never-used msgpack byte
      "\x93\x01\x02",                              // truncated array
      "\xdd\xff\xff\xff\xff",                      // array header claiming 4 G elements
      "\xdf\xff\xff\xff\xff",                      // map header claiming 4 G pairs
      "\xdb\xff\xff\xff\xff" "abc",                // str claiming 4 GB
      std::string("\x84\xa1v\x01\xa2id\x01\xa4type\xcd\x00\xc8\xa4" "body", 21),  // cut before the body
      "not msgpack at all",
      std::string(1, '\x80'),                      // an empty map: no op, no type
  };
  // A nested array 10000 levels deep.
  junk.push_back(std::string(10000, '\x91') + "\x01");
  for (int i = 0; i < 200; ++i) {
    std::string r(rng() % 200, '\0');
    for (auto& c : r) c = static_cast<char>(rng());
    junk.push_back(r);
  }
  // A well-formed envelope of an unknown type, and a status request with a wrong-typed body.
  junk.push_back(std::string("\x84\xa1v\x01\xa2id\x07\xa4type\xcd\x7f\xff\xa4" "body\x80", 22));
  junk.push_back(std::string("\x84\xa1v\x01\xa2id\x08\xa4type\xcc\xc8\xa4" "body\x93\x01\x02\x03", 24));

  zmq::context_t ctx;
  auto spray = [&](const std::string& endpoint, zmq::socket_type type) {
    zmq::socket_t s(ctx, type);
    s.set(zmq::sockopt::linger, 0);
    s.set(zmq::sockopt::sndtimeo, 1000);
    s.connect(endpoint);
    for (const auto& j : junk) (void)s.send(zmq::buffer(j.data(), j.size()), zmq::send_flags::dontwait);
    // Multi-frame garbage too.
    for (int i = 0; i < 20; ++i) {
      (void)s.send(zmq::str_buffer("a"), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      (void)s.send(zmq::str_buffer("\xc1\xc1"), zmq::send_flags::dontwait);
    }
  };
  spray("tcp://127.0.0.1:" + std::to_string(t.zmq_port), zmq::socket_type::dealer);
  spray("ipc://" + t.run_dir + "/master/master.sock", zmq::socket_type::dealer);
  spray("ipc://" + t.run_dir + "/spawner/spawner.sock", zmq::socket_type::dealer);

  // The gateway answers garbage with `malformed` and keeps serving.
  ZmqApi api(ctx, t.zmq_port);
  auto raw = std::string("\x93\x01\x02", 3);
  api.socket().send(zmq::buffer(raw.data(), raw.size()), zmq::send_flags::none);
  zmq::message_t m;
  REQUIRE(api.socket().recv(m, zmq::recv_flags::none));
  auto reply = json::from_msgpack(static_cast<const std::uint8_t*>(m.data()),
                                  static_cast<const std::uint8_t*>(m.data()) + m.size(), true, false);
  CHECK(reply["ok"] == false);
  CHECK(reply["error"]["code"] == "malformed");
  CHECK(api.call("status", {{"name", "web-1"}})["ok"] == true);

  // A frame over the 16 MiB limit: the connection is dropped, the gateway stays.
  {
    zmq::socket_t big(ctx, zmq::socket_type::dealer);
    big.set(zmq::sockopt::linger, 0);
    big.connect("tcp://127.0.0.1:" + std::to_string(t.zmq_port));
    std::string huge(17u << 20, 'x');
    (void)big.send(zmq::buffer(huge.data(), huge.size()), zmq::send_flags::dontwait);
  }

  // Every component is the same process, the API answers, the children were not touched.
  CHECK(waitFor([&] { return t.get("/status?name=web-1") && t.get("/status?name=web-1")->status == 200; }, 10s));
  CHECK(componentPids(t) == pidsBefore);
  CHECK(t.pid("web-1") == web1);
  CHECK(t.pid("web-2") == web2);
  CHECK(t.state("web-1") == "running");
  auto health = body(t.get("/health", std::nullopt));
  CHECK(health["ok"] == true);
  CHECK(api.call("status", {{"name", "web-2"}})["result"]["pid"] == *web2);
}

// ZeroMQ CURVE on the public API (DESIGN §6, §7; issue 9) with the real binaries: with
// `[server.zmq_curve]`, a client whose public key is in client_keys_dir gets answers over
// 127.0.0.1; an unlisted key and a plain client get nothing, and the refusal is logged.
#include <catch2/catch.hpp>

#include <zmq.hpp>

#include <httplib.h>

#include "tests/security/security.hpp"

using namespace provisr::test;
using namespace provisr::test::security;

namespace {

struct KeyPair {
  std::string pub, secret;
  KeyPair() {
    char p[41] = {}, s[41] = {};
    if (zmq_curve_keypair(p, s) != 0) throw std::runtime_error("zmq_curve_keypair failed");
    pub = p;
    secret = s;
  }
};

// One request {v, id, op, args} on a DEALER; the decoded reply, or null when none came in time.
json call(zmq::context_t& ctx, int port, const std::string& op, const std::optional<KeyPair>& client,
          const std::string& serverPublic, std::chrono::milliseconds wait) {
  zmq::socket_t s(ctx, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, static_cast<int>(wait.count()));
  if (client) {
    s.set(zmq::sockopt::curve_serverkey, serverPublic);
    s.set(zmq::sockopt::curve_publickey, client->pub);
    s.set(zmq::sockopt::curve_secretkey, client->secret);
  }
  s.connect("tcp://127.0.0.1:" + std::to_string(port));
  const json req = {{"v", 1}, {"id", 7}, {"op", op}, {"args", json::object()}};
  const auto bytes = json::to_msgpack(req);
  s.send(zmq::buffer(bytes.data(), bytes.size()), zmq::send_flags::dontwait);
  for (;;) {
    zmq::message_t m;
    if (!s.recv(m, zmq::recv_flags::none)) return json();
    if (m.size() == 0) continue;
    return json::from_msgpack(static_cast<const std::uint8_t*>(m.data()), static_cast<const std::uint8_t*>(m.data()) + m.size(),
                              true, false);
  }
}

}  // namespace

TEST_CASE("curve: listed client keys get answers, others get nothing", "[security][curve]") {
  TempDir dir;
  KeyPair server, allowed, other;
  dir.write("curve/server.key", "# the gateway's CURVE key pair (zcert-style)\npublic-key = \"" + server.pub +
                                    "\"\nsecret-key = \"" + server.secret + "\"\n");
  dir.write("curve/clients/allowed.key", "# a client allowed in\n" + allowed.pub + "\n");
  dir.write("curve/clients/.ignored", other.pub + "\n");  // hidden files are not keys
  const int port = freePort(), zport = freePort();
  const std::string cfg = dir.write(
      "config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                         "\"\nzmq_listen = \"tcp://127.0.0.1:" + std::to_string(zport) +
                         "\"\n[server.zmq_curve]\nserver_key_file = \"curve/server.key\"\nclient_keys_dir = \"curve/clients\"\n"
                         "[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.args = [\"" +
                         helper("sleeper") + "\"]\n");
  Daemon d(cfg, dir.str() + "/run", dir.str() + "/serve.log");
  INFO(d.log());
  zmq::context_t ctx;
  json ok;
  REQUIRE(waitFor(
      [&] {
        ok = call(ctx, zport, "status", allowed, server.pub, 2s);
        return ok.is_object() && ok.value("ok", false);
      },
      20s));
  CHECK(ok.value("id", 0) == 7);
  CHECK(ok.contains("result"));

  const json refused = call(ctx, zport, "status", other, server.pub, 1500ms);
  CHECK(refused.is_null());
  const json plain = call(ctx, zport, "status", std::nullopt, server.pub, 1500ms);
  CHECK(plain.is_null());
  CHECK(waitFor([&] { return d.log().find("refused a CURVE client from 127.0.0.1 (key " + other.pub + ")") != std::string::npos; },
                5s));
  // The listed key still works after the refusals.
  const json again = call(ctx, zport, "status", allowed, server.pub, 5s);
  CHECK(again.value("ok", false));
}

TEST_CASE("curve: a non-loopback ZeroMQ API without keys is a config error", "[security][curve]") {
  TempDir dir;
  const std::string cfg =
      dir.write("config.toml", "[server]\nlisten = \"127.0.0.1:1\"\nzmq_listen = \"tcp://0.0.0.0:5555\"\nzmq_events = \"tcp://*:5556\"\n");
  auto v = run({binPath("provisr"), "validate", cfg});
  CHECK(v.exit_code == 1);
  CHECK(v.err.find("server.zmq_listen: `tcp://0.0.0.0:5555` is not a loopback address") != std::string::npos);
  CHECK(v.err.find("server.zmq_events: `tcp://*:5556` is not a loopback address") != std::string::npos);
  // Loopback and ipc stay open without CURVE.
  const std::string local = dir.write("local.toml", "[server]\nlisten = \"127.0.0.1:1\"\nzmq_listen = \"tcp://127.0.0.1:5555\"\n"
                                                   "zmq_events = \"ipc://" + dir.str() + "/events.sock\"\n");
  auto l = run({binPath("provisr"), "validate", local});
  INFO(l.err);
  CHECK(l.exit_code == 0);
}

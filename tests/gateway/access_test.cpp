// Access rules: unit tests of the pure decisions, then the real gateway with auth on (tokens on
// HTTP, ZeroMQ and /metrics), the registration routes, protected mode and allow_insecure.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <nlohmann/json.hpp>

#include "gateway/access.hpp"
#include "tests/gateway/fixture.hpp"

using namespace provisr;
using namespace provisr::gateway;
using namespace provisr::test;
using namespace provisr::test::gw;
using Json = nlohmann::json;

TEST_CASE("access decisions", "[gateway]") {
  AccessPolicy p;
  p.token = "full";
  p.read_only_token = "ro";
  const std::optional<std::string> none, full("full"), ro("ro"), wrong("fullx");
  CHECK_FALSE(checkAccess(p, Access::kStatus, none, true, true));  // the health check
  CHECK_FALSE(checkAccess(p, Access::kOpen, none, true, false));
  CHECK(checkAccess(p, Access::kStatus, none, true, false)->code == ErrorCode::kUnauthorized);
  CHECK(checkAccess(p, Access::kRead, wrong, true, false)->code == ErrorCode::kUnauthorized);
  CHECK_FALSE(checkAccess(p, Access::kRead, ro, true, false));
  CHECK(checkAccess(p, Access::kFull, ro, true, false)->code == ErrorCode::kForbidden);
  CHECK_FALSE(checkAccess(p, Access::kRegistration, full, false, false));

  AccessPolicy open;
  open.root_without_auth = true;
  CHECK_FALSE(checkAccess(open, Access::kFull, none, true, false));
  CHECK(checkAccess(open, Access::kRegistration, none, true, false)->code == ErrorCode::kForbidden);
  open.protected_mode = true;
  CHECK(checkAccess(open, Access::kRead, none, false, false)->code == ErrorCode::kForbidden);
  CHECK_FALSE(checkAccess(open, Access::kStatus, none, false, true));

  CHECK(bearerToken("Bearer abc") == std::optional<std::string>("abc"));
  CHECK(bearerToken("bearer  abc ") == std::optional<std::string>("abc"));
  CHECK_FALSE(bearerToken("Basic abc"));
  CHECK_FALSE(bearerToken("Bearer "));
  CHECK(constantTimeEquals("abc", "abc"));
  CHECK_FALSE(constantTimeEquals("abc", "abd"));
  CHECK_FALSE(constantTimeEquals("ab", "abc"));
  CHECK_FALSE(constantTimeEquals("", "abc"));
  CHECK(isLoopbackAddress("127.0.0.1"));
  CHECK(isLoopbackAddress("::1"));
  CHECK(isLoopbackAddress("::ffff:127.0.0.1"));
  CHECK_FALSE(isLoopbackAddress("10.0.0.1"));
  CHECK(listenHost("0.0.0.0:8080") == "0.0.0.0");
  CHECK(listenHost(":8080").empty());
  CHECK(listenHost("[::1]:8080") == "::1");

  config::ServerConfig s;
  s.listen = "0.0.0.0:8080";
  auto pol = makeAccessPolicy(s, s.listen, 1000);
  REQUIRE(pol);
  CHECK(pol->protected_mode);
  CHECK_FALSE(pol->root_without_auth);
  s.allow_insecure = true;
  CHECK_FALSE(makeAccessPolicy(s, s.listen, 0)->protected_mode);
  CHECK(makeAccessPolicy(s, s.listen, 0)->root_without_auth);
  s.auth.token_file = "/nonexistent/token";
  CHECK_FALSE(makeAccessPolicy(s, s.listen, 0));
}

TEST_CASE("auth on: tokens on HTTP, registration routes, ZeroMQ and metrics", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  const auto tokenFile = dir.write("token", "s3cret\n");
  GatewayOptions opts;
  opts.auth = "token_file = \"" + tokenFile + "\"\nread_only_token = \"ro-token\"\n";
  Gateway gw(dir, opts);
  auto cli = gw.client();
  const httplib::Headers full{{"Authorization", "Bearer s3cret"}};
  const httplib::Headers ro{{"Authorization", "Bearer ro-token"}};
  const httplib::Headers bad{{"Authorization", "Bearer nope"}};

  CHECK(cli.Get("/api/status")->status == 200);  // health checks stay open
  CHECK(cli.Get("/api/health")->status == 503);   // open (503: no components.json)
  auto r = cli.Get("/api/status?name=web-1");
  CHECK(r->status == 401);
  CHECK(Json::parse(r->body)["code"] == "unauthorized");
  CHECK(cli.Get("/api/status?name=web-1", bad)->status == 401);
  CHECK(cli.Get("/api/status?name=web-1", ro)->status == 200);
  CHECK(cli.Get("/api/processes/web-1/logs", ro)->status == 200);
  CHECK(cli.Get("/api/processes/web/spec", ro)->status == 403);  // specs may hold secrets
  CHECK(cli.Post("/api/start?name=web-1", ro, "", "application/json")->status == 403);
  CHECK(cli.Post("/api/start?name=web-1", "", "application/json")->status == 401);
  CHECK(cli.Post("/api/start?name=web-1", full, "", "application/json")->status == 200);
  CHECK(cli.Get("/api/settings/status", full)->status == 200);
  CHECK(Json::parse(cli.Get("/api/settings/status", full)->body)["auth_enabled"] == true);

  // Registration routes (allowed with auth even as root, for a spec that does not run as root).
  r = cli.Post("/api/register", full, R"({"name":"x","command":"sleep 1","user":"nobody"})", "application/json");
  CHECK(r->status == 200);
  auto reg = master.last<proto::Register>();
  REQUIRE(reg);
  CHECK(Json::parse(reg->spec_json)["command"] == "sleep 1");
  r = cli.Post("/api/register", full, "{\n \"name\": \"x\",\n \"command\": }", "application/json");
  CHECK(r->status == 400);
  CHECK_THAT(Json::parse(r->body)["error"].get<std::string>(), Catch::Contains("line 3, column"));
  CHECK(cli.Post("/api/register", full, R"(["not an object"])", "application/json")->status == 400);
  CHECK(cli.Post("/api/register", full, "", "application/json")->status == 400);
  CHECK(cli.Post("/api/register", full, R"({"name":"cfg","command":"x","user":"nobody"})", "application/json")->status == 409);
  CHECK(cli.Post("/api/update?wait=2s", full, R"({"name":"x","command":"sleep 2","user":"nobody"})", "application/json")->status == 200);
  CHECK(master.last<proto::Update>()->wait_ms == std::optional<std::uint64_t>(2000));
  CHECK(cli.Post("/api/update", full, R"({"name":"cfg","command":"x","user":"nobody"})", "application/json")->status == 409);
  CHECK(cli.Post("/api/update", full, R"({"name":"nope","command":"x","user":"nobody"})", "application/json")->status == 400);
  CHECK(cli.Post("/api/unregister?name=x", full, "", "application/json")->status == 200);
  CHECK(cli.Post("/api/unregister?name=cfg", full, "", "application/json")->status == 409);
  CHECK(cli.Post("/api/unregister?name=nope", full, "", "application/json")->status == 400);
  CHECK(cli.Post("/api/unregister", full, "", "application/json")->status == 400);

  // SSE needs a token too.
  httplib::Client sc("127.0.0.1", gw.port);
  CHECK(sc.Get("/api/events")->status == 401);

  // ZeroMQ: the token is a request field.
  zmq::context_t ctx(1);
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect("tcp://127.0.0.1:" + std::to_string(gw.zmq_port));
  auto ask = [&](Json msg) {
    auto b = Json::to_msgpack(msg);
    req.send(zmq::buffer(std::string(b.begin(), b.end())), zmq::send_flags::none);
    zmq::message_t m;
    zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
    REQUIRE(zmq::poll(&item, 1, std::chrono::milliseconds(5000)) == 1);
    (void)req.recv(m);
    return Json::from_msgpack(m.to_string());
  };
  CHECK(ask(Json{{"id", 1}, {"op", "status"}, {"args", {{"name", "web-1"}}}})["error"]["code"] == "unauthorized");
  CHECK(ask(Json{{"id", 2}, {"op", "status"}, {"args", {{"name", "web-1"}}}, {"token", "ro-token"}})["ok"] == true);
  CHECK(ask(Json{{"id", 3}, {"op", "start"}, {"args", {{"name", "web-1"}}}, {"token", "ro-token"}})["error"]["code"] ==
        "forbidden");
  CHECK(ask(Json{{"id", 4}, {"op", "start"}, {"args", {{"name", "web-1"}}}, {"token", "s3cret"}})["ok"] == true);
  CHECK(ask(Json{{"id", 5}, {"op", "register"}, {"args", {{"spec", {{"name", "z"}, {"command", "true"}, {"user", "nobody"}}}}}, {"token", "s3cret"}})["ok"] == true);
  CHECK(Json::parse(master.last<proto::Register>()->spec_json)["name"] == "z");

  // Prometheus: read-only or full token.
  httplib::Client mc("127.0.0.1", gw.metrics_port);
  CHECK(mc.Get("/metrics")->status == 401);
  CHECK(mc.Get("/metrics", ro)->status == 200);
  CHECK(gw.stop() == 0);
}

// Tests send traffic to loopback only, so a non-loopback peer is judged by the unit test above
// ("access decisions"); here the daemon side: a non-loopback HTTP listen without auth starts in
// protected mode, says so, and keeps answering loopback clients on HTTP and ZeroMQ. (A
// non-loopback ZeroMQ listen needs CURVE keys: without them the config is refused, see
// tests/security.)
TEST_CASE("protected mode: a non-loopback listen without auth starts, warns, answers loopback", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  GatewayOptions opts;
  opts.listen_host = "0.0.0.0";
  Gateway gw(dir, opts);
  zmq::context_t ctx(1);
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect("tcp://127.0.0.1:" + std::to_string(gw.zmq_port));
  auto b = Json::to_msgpack(Json{{"id", 1}, {"op", "status"}, {"args", {{"name", "web-1"}}}});
  req.send(zmq::buffer(std::string(b.begin(), b.end())), zmq::send_flags::none);
  zmq::pollitem_t item{req.handle(), 0, ZMQ_POLLIN, 0};
  REQUIRE(zmq::poll(&item, 1, std::chrono::milliseconds(5000)) == 1);
  zmq::message_t m;
  (void)req.recv(m);
  CHECK(Json::from_msgpack(m.to_string())["ok"] == true);
  CHECK(gw.client().Get("/api/status?name=web-1")->status == 200);
  CHECK_THAT(gw.stderrText(), Catch::Contains("protected mode"));
  CHECK_THAT(gw.stderrText(), Catch::Contains("allow_insecure"));
}

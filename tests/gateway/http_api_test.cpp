// The real provisr-gateway over HTTP against a fake master: every route's success and error
// cases, Go status codes, body limits, 503 when the master is silent, SIGTERM exit 0.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "tests/gateway/fixture.hpp"

using namespace provisr;
using namespace provisr::test;
using namespace provisr::test::gw;
using Json = nlohmann::json;

namespace {

Json body(const httplib::Result& r) {
  REQUIRE(r);
  return Json::parse(r->body);
}

}  // namespace

TEST_CASE("HTTP routes against a fake master", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  auto cli = gw.client();

  SECTION("GET /status: health check, object, array, unknown, selector errors") {
    auto r = cli.Get("/api/status");
    CHECK(r->status == 200);
    CHECK(body(r) == Json{{"ok", true}});
    CHECK(master.count(proto::MsgType::kStatus) == 0);  // the health check does not ask the master

    r = cli.Get("/api/status?name=web-1");
    REQUIRE(r->status == 200);
    auto one = body(r);
    CHECK(one.is_object());
    CHECK(one["name"] == "web-1");
    CHECK(one["started_at"] == "2026-11-27T15:04:05.123Z");
    CHECK(one["stopped_at"].is_null());
    CHECK(one["pid"] == 4242);

    r = cli.Get("/api/status?name=web");
    auto many = body(r);
    REQUIRE(many.is_array());
    REQUIRE(many.size() == 2);
    CHECK(many[0]["name"] == "web-1");  // sorted by name
    CHECK(many[1]["pid"].is_null());

    r = cli.Get("/api/status?wildcard=*");
    CHECK(body(r).size() == 3);
    r = cli.Get("/api/status?base=web");
    CHECK(body(r)[1]["name"] == "web-2");

    r = cli.Get("/api/status?name=nope");
    CHECK(r->status == 400);  // Go: unknown name on /status is 400
    CHECK(body(r)["code"] == "not_found");
    r = cli.Get("/api/status?name=a&base=b");
    CHECK(r->status == 400);
    CHECK(body(r)["code"] == "invalid_argument");
    r = cli.Get("/api/status?name=..%2Fetc");
    CHECK(r->status == 400);
  }

  SECTION("POST /start, /stop, /restart") {
    auto r = cli.Post("/api/start?name=web-1", "", "application/json");
    REQUIRE(r->status == 200);
    auto j = body(r);
    CHECK(j["ok"] == true);
    CHECK(j["instances"][0]["name"] == "web-1");
    CHECK(j["plan"][0]["action"] == "start");
    CHECK(j["timed_out"] == false);

    r = cli.Post("/api/start?name=nope", "", "application/json");
    CHECK(r->status == 400);
    r = cli.Post("/api/start", "", "application/json");
    CHECK(r->status == 400);
    CHECK_THAT(body(r)["error"].get<std::string>(), Catch::Contains("exactly one"));

    r = cli.Post("/api/stop?name=web-1&wait=3s", "", "application/json");
    CHECK(r->status == 200);
    auto stop = master.last<proto::Stop>();
    REQUIRE(stop);
    CHECK(stop->wait_ms == std::optional<std::uint64_t>(3000));
    r = cli.Post("/api/stop?name=nope", "", "application/json");
    CHECK(r->status == 200);  // Go: a stop that matched nothing succeeds
    CHECK(body(r)["ok"] == true);
    r = cli.Post("/api/stop?name=web&wait=soon", "", "application/json");
    CHECK(r->status == 400);

    r = cli.Post("/api/restart?wildcard=web*&dry_run=1", "", "application/json");
    CHECK(r->status == 200);
    auto restart = master.last<proto::Restart>();
    REQUIRE(restart);
    CHECK(restart->dry_run);
    CHECK(restart->selector.kind == proto::SelectorKind::kWildcard);
    r = cli.Post("/api/restart?name=nope", "", "application/json");
    CHECK(r->status == 404);  // a new endpoint: 404
  }

  SECTION("register / update / unregister (root without auth: 403; see auth tests for the rest)") {
    if (::geteuid() == 0) {
      auto r = cli.Post("/api/register", R"({"name":"x","command":"sleep 1"})", "application/json");
      CHECK(r->status == 403);
      CHECK(body(r)["code"] == "forbidden");
      CHECK_THAT(body(r)["error"].get<std::string>(), Catch::Contains("root"));
      CHECK(master.count(proto::MsgType::kRegister) == 0);
    }
  }

  SECTION("groups") {
    auto r = cli.Get("/api/groups");
    REQUIRE(r->status == 200);
    auto g = body(r);
    REQUIRE(g.size() == 1);
    CHECK(g[0]["name"] == "g1");
    CHECK(g[0]["state"] == "degraded");
    CHECK(g[0]["running"] == 1);
    CHECK(g[0]["total"] == 3);
    CHECK(g[0]["members"][0] == Json{{"name", "web"}, {"instances", 2}});

    r = cli.Get("/api/group/status?group=g1");
    REQUIRE(r->status == 200);
    auto gs = body(r);
    CHECK(gs["web"].size() == 2);
    CHECK(gs["db"][0]["name"] == "db");
    r = cli.Get("/api/group/status?group=zzz");
    CHECK(r->status == 404);
    r = cli.Get("/api/group/status");
    CHECK(r->status == 400);
    r = cli.Get("/api/group/status?group=a%2Fb");
    CHECK(r->status == 400);

    r = cli.Post("/api/group/start?group=g1", "", "application/json");
    CHECK(r->status == 200);
    r = cli.Post("/api/group/stop?group=g1&wait=3s", "", "application/json");
    CHECK(r->status == 200);
    auto gstop = master.last<proto::GroupStop>();
    REQUIRE(gstop);
    CHECK(gstop->wait_ms == std::optional<std::uint64_t>(3000));
    r = cli.Post("/api/group/start?group=zzz", "", "application/json");
    CHECK(r->status == 404);
  }

  SECTION("debug, logs, spec, settings") {
    auto r = cli.Get("/api/debug/processes?pattern=*");
    REQUIRE(r->status == 200);
    auto d = body(r);
    CHECK(d.size() == 3);
    CHECK(d[1]["health_check"] == "healthy");
    CHECK(d[1]["status"]["name"] == "web-1");
    CHECK(d[0]["health_check"] == "not_running");

    r = cli.Get("/api/processes/web-1/logs?since=7&limit=5000");
    REQUIRE(r->status == 200);
    auto l = body(r);
    CHECK(l["next"] == 9);
    CHECK(l["lines"][1] == Json{{"offset", 8}, {"stream", "stderr"}, {"text", "oops"}});
    auto logs = master.last<proto::Logs>();
    REQUIRE(logs);
    CHECK(logs->limit == 1000);  // capped
    CHECK(logs->since == std::optional<std::uint64_t>(7));
    r = cli.Get("/api/processes/web/logs");
    auto pl = body(r);
    CHECK(pl["next"]["web-2"] == 4);
    CHECK(pl["lines"][1]["instance"] == "web-2");
    r = cli.Get("/api/processes/nope/logs");
    CHECK(r->status == 400);
    r = cli.Get("/api/processes/web/logs?since=x");
    CHECK(r->status == 400);

    r = cli.Get("/api/processes/web/spec");
    REQUIRE(r->status == 200);
    auto s = body(r);
    CHECK(s["command"] == "sleep 100");
    CHECK(s["provisioned"] == false);
    r = cli.Get("/api/processes/cfg/spec");
    CHECK(body(r)["provisioned"] == true);
    r = cli.Get("/api/processes/zzz/spec");
    CHECK(r->status == 404);

    r = cli.Get("/api/settings/status");
    REQUIRE(r->status == 200);
    auto st = body(r);
    for (const char* k : {"auth_enabled", "metrics_enabled", "history_enabled", "cron_scheduler_enabled",
                          "program_persistence", "configured_group_count"}) {
      INFO(k);
      CHECK(st.contains(k));
    }
    CHECK(st["metrics_enabled"] == true);
    CHECK(st["auth_enabled"] == false);
  }

  SECTION("scale, reload, reopen-logs, shutdown, version, health") {
    auto r = cli.Post("/api/scale?name=web&instances=3", "", "application/json");
    CHECK(r->status == 200);
    auto sc = master.last<proto::Scale>();
    REQUIRE(sc);
    CHECK(sc->instances == 3);
    r = cli.Post("/api/scale?name=nope&instances=3", "", "application/json");
    CHECK(r->status == 404);
    r = cli.Post("/api/scale?name=cfg&instances=3", "", "application/json");
    CHECK(r->status == 409);
    r = cli.Post("/api/scale?name=web", "", "application/json");
    CHECK(r->status == 400);

    r = cli.Post("/api/reload?dry_run=1", "", "application/json");
    REQUIRE(r->status == 200);
    auto rl = body(r);
    CHECK(rl["applied"] == false);
    CHECK(rl["plan"][0]["action"] == "restart");
    CHECK(rl["restart_needed"][0] == "server.listen");

    CHECK(cli.Post("/api/reopen-logs", "", "application/json")->status == 200);
    CHECK(master.count(proto::MsgType::kReopenLogs) == 1);
    CHECK(cli.Post("/api/shutdown", "", "application/json")->status == 200);
    CHECK(master.count(proto::MsgType::kShutdown) == 1);

    r = cli.Get("/api/version");
    CHECK(body(r).contains("version"));

    r = cli.Get("/api/health");
    CHECK(r->status == 503);  // no components.json yet
    dir.write("run/components.json",
              R"({"keeper":{"pid":1,"started_at_ms":1795791845123,"restarts":0,"state":"running"},)"
              R"("master":{"pid":2,"started_at_ms":1795791845123,"restarts":2,"state":"restarting"}})");
    r = cli.Get("/api/health");
    REQUIRE(r->status == 200);
    auto h = body(r);
    CHECK(h["ok"] == false);
    CHECK(h["components"]["master"]["restarts"] == 2);
    CHECK(h["components"]["keeper"]["started_at"] == "2026-11-27T15:04:05.123Z");
  }

  SECTION("removed and unknown routes, method mismatch, body limit") {
    for (const char* p : {"/api/metrics", "/api/metrics/group", "/api/metrics/history"}) {
      auto r = cli.Get(p);
      CHECK(r->status == 404);
      CHECK_THAT(body(r)["error"].get<std::string>(), Catch::Contains("Prometheus"));
    }
    auto r = cli.Get("/api/nothing-here");
    CHECK(r->status == 404);
    CHECK(body(r)["code"] == "not_found");
    r = cli.Get("/api/start?name=web");  // POST only
    CHECK(r->status == 405);
    CHECK(r->get_header_value("Allow") == "POST");
    r = cli.Post("/api/update", std::string(2u << 20, ' '), "application/json");
    CHECK(r->status == 413);
  }
}

TEST_CASE("a silent or absent master gives 503 within a bounded time", "[gateway]") {
  TempDir dir;
  Gateway gw(dir);
  auto cli = gw.client();
  auto t0 = SteadyClock::now();
  auto r = cli.Get("/api/status?name=web");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK_THAT(Json::parse(r->body)["error"].get<std::string>(), Catch::StartsWith("master unavailable: "));
  CHECK(SteadyClock::now() - t0 < 4s);

  FakeMaster master(dir.str() + "/run");
  master.silent = true;
  t0 = SteadyClock::now();
  r = cli.Get("/api/status?name=web");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(SteadyClock::now() - t0 < 4s);
  // A late reply to the timed-out request must not be taken for the next one.
  master.silent = false;
  r = cli.Get("/api/status?name=db");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK(Json::parse(r->body)["name"] == "db");
  CHECK(gw.stop() == 0);
}

TEST_CASE("SIGTERM: graceful exit 0 and a startup line on stderr", "[gateway]") {
  TempDir dir;
  Gateway gw(dir);
  CHECK(gw.stop() == 0);
  const auto err = gw.stderrText();
  CHECK_THAT(err, Catch::Contains("provisr-gateway["));
  CHECK_THAT(err, Catch::Contains("listening on http://127.0.0.1:"));
  CHECK_THAT(err, Catch::Contains("warning: no [server.auth] token"));
}

TEST_CASE("a bad config or missing flags refuse to start", "[gateway]") {
  TempDir dir;
  auto cfg = dir.write("bad.toml", "[server]\nlisten = 5\n");
  auto r = run({binPath("provisr-gateway"), "--config", cfg, "--run-dir", dir.str()}, "", {}, 10s);
  CHECK(r.exit_code == 1);
  r = run({binPath("provisr-gateway")}, "", {}, 10s);
  CHECK(r.exit_code == 2);
}

// The gateway's HTTP API against the real trio (keeper, spawner, master, gateway): the Go-era
// routes with their shapes and status codes, the added ones, and Prometheus metrics.
#include <catch2/catch.hpp>

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr::test;
using nlohmann::json;

TEST_CASE("HTTP API routes against the real daemon", "[integration]") {
  TempDir dir;
  int port = freePort();
  int metrics_port = freePort();
  std::ostringstream cfg;
  cfg << "[log]\ndir = \"" << dir.str() << "/logs\"\n"
      << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
      << "[metrics]\nenabled = true\nlisten = \"127.0.0.1:" << metrics_port << "\"\n"
      << "[[groups]]\nname = \"web\"\nmembers = [\"api\", \"front\"]\n"
      << "[[processes]]\ntype = \"process\"\nspec.name = \"api\"\nspec.instances = 2\n"
      << "spec.command = \"sh -c 'echo up $PROVISR_NAME; exec sleep 1000'\"\n"
      << "[[processes]]\ntype = \"process\"\nspec.name = \"front\"\nspec.priority = 5\n"
      << "spec.command = \"sleep 1000\"\n";
  auto config = dir.write("config.toml", cfg.str());
  Daemon daemon(config, dir.str() + "/run", dir.str() + "/serve.log");
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(std::chrono::seconds(10));
  auto get = [&](const std::string& path) { return http.Get(("/api" + path).c_str()); };
  auto post = [&](const std::string& path) { return http.Post(("/api" + path).c_str(), "", "application/json"); };
  auto body = [](const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); };

  REQUIRE(waitFor(
      [&] {
        auto r = get("/status?wildcard=*");
        if (!r || r->status != 200) return false;
        auto rows = body(r);
        if (!rows.is_array() || rows.size() != 3) return false;
        for (const auto& row : rows)
          if (row["state"] != "running") return false;
        return true;
      },
      std::chrono::seconds(20)));
  INFO(daemon.log());

  // GET /status: health check without a selector; an object for one instance, arrays otherwise.
  CHECK(body(get("/status")) == json{{"ok", true}});
  auto one = body(get("/status?name=front"));
  REQUIRE(one.is_object());
  CHECK(one["name"] == "front");
  CHECK(one["running"] == true);
  CHECK(one["provisioned"] == true);
  CHECK(one["started_at"].get<std::string>().back() == 'Z');
  CHECK(body(get("/status?name=api")).size() == 2);
  CHECK(body(get("/status?base=api")).size() == 2);
  CHECK(body(get("/status?wildcard=a*")).size() == 2);
  CHECK(get("/status?name=nosuch")->status == 400);
  CHECK(get("/status?name=api&base=api")->status == 400);

  // Groups.
  auto groups = body(get("/groups"));
  REQUIRE(groups.is_array());
  REQUIRE(groups.size() == 1);
  CHECK(groups[0]["name"] == "web");
  CHECK(groups[0]["state"] == "running");
  auto gs = body(get("/group/status?group=web"));
  CHECK(gs["api"].size() == 2);
  CHECK(gs["front"].size() == 1);
  CHECK(get("/group/status?group=nosuch")->status == 404);

  // Logs, spec, debug, settings, health, version.
  REQUIRE(waitFor([&] { return body(get("/processes/api-2/logs?limit=5"))["lines"].size() >= 1; },
                  std::chrono::seconds(10)));
  CHECK(body(get("/processes/api-2/logs?limit=5"))["lines"][0]["text"] == "up api-2");
  auto spec = get("/processes/front/spec");
  REQUIRE(spec);
  CHECK(spec->status == 200);
  CHECK(body(spec)["provisioned"] == true);
  CHECK(get("/processes/nosuch/spec")->status == 404);
  CHECK(body(get("/debug/processes")).size() == 3);
  CHECK(body(get("/settings/status")).contains("auth_enabled"));
  auto health = get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(get("/version")->status == 200);
  CHECK(get("/metrics")->status == 404);  // the Go JSON metrics: Prometheus replaced them

  // Actions: Go status codes.
  CHECK(post("/stop?name=nosuch")->status == 200);  // nothing matched is fine
  CHECK(post("/start?name=nosuch")->status == 400);
  CHECK(post("/start")->status == 400);  // no selector
  auto stop = post("/stop?name=front&wait=5s");
  REQUIRE(stop);
  CHECK(stop->status == 200);
  CHECK(body(get("/status?name=front"))["state"] == "stopped");
  CHECK(body(get("/groups"))[0]["state"] == "degraded");
  CHECK(post("/start?name=front")->status == 200);
  // Registration changes what runs: refused as root without auth (SPEC §4).
  if (::geteuid() == 0) {
    auto reg = http.Post("/api/register", R"({"name":"x","command":"sleep 1"})", "application/json");
    REQUIRE(reg);
    CHECK(reg->status == 403);
  }

  // Prometheus: one state series per instance, at scrape time.
  httplib::Client prom("127.0.0.1", metrics_port);
  auto m = prom.Get("/metrics");
  REQUIRE(m);
  CHECK(m->status == 200);
  CHECK(m->body.find("provisr_process_state{name=\"api-1\"") != std::string::npos);
  CHECK(m->body.find("# TYPE provisr_process_restarts_total") != std::string::npos);
}

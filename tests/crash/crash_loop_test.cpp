// DESIGN §4 / issue 7 item 7: a component that cannot start crash-loops with backoff (100 ms
// doubling), is reported in components.json, /health and /metrics, and the children keep running
// and logging meanwhile; once it can start again everything is as before.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: a master that cannot start backs off and is reported while the children keep running", "[crash]") {
  const int metricsPort = provisr::test::freePort();
  Tree t({{"tick", helper("ticker") + " 5 7 crash-l-tick", ""},
          {"svc", helper("sleeper") + " -1 crash-l-svc", "spec.instances = 2\n"}},
         "[metrics]\nenabled = true\nlisten = \"127.0.0.1:" + std::to_string(metricsPort) + "\"\n");
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tick", "svc-1", "svc-2"}); }, 30s));
  INFO(t.serveLogs());
  const auto before = t.runningPids();
  REQUIRE(t.waitSettled("master"));

  t.breakComponent("master");
  const pid_t master = t.componentPid("master");
  REQUIRE(::kill(master, SIGKILL) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  // `restarts` counts exits the keeper decided to restart after: the first at once (a healthy
  // run), then after 100, 200, 400 ms. The fifth exit comes after at least 700 ms.
  REQUIRE(waitFor([&] { return t.components()["master"]["restarts"].get<int>() >= 5; }, 10s));
  const double elapsed = msSince(t0);
  std::fprintf(stderr, "[measure] master crash loop: 5 exits after %.0f ms (backoff 0+100+200+400)\n", elapsed);
  CHECK(elapsed >= 650);
  const std::string keeperLog = t.serveLogs();
  CHECK(keeperLog.find("restarting it in 100 ms (crash loop)") != std::string::npos);
  CHECK(keeperLog.find("restarting it in 200 ms (crash loop)") != std::string::npos);
  CHECK(keeperLog.find("restarting it in 400 ms (crash loop)") != std::string::npos);

  // Reported: /health (the gateway reads components.json; it works without a master) and
  // Prometheus; the process API says the master is unavailable.
  auto health = t.get("/health");
  REQUIRE(health);
  auto h = json::parse(health->body, nullptr, false);
  INFO(health->body);
  CHECK(h["ok"] == false);
  CHECK(h["components"]["master"]["restarts"].get<int>() >= 4);
  CHECK(h["components"]["spawner"]["state"] == "running");
  httplib::Client prom("127.0.0.1", metricsPort);
  prom.set_bearer_token_auth(kToken);
  prom.set_read_timeout(5, 0);
  auto m = prom.Get("/metrics");
  REQUIRE(m);
  INFO(m->body);
  const auto restartsAt = m->body.find("provisr_component_restarts_total{component=\"master\"} ");
  REQUIRE(restartsAt != std::string::npos);
  CHECK(std::atoi(m->body.c_str() + restartsAt + std::strlen("provisr_component_restarts_total{component=\"master\"} ")) >= 4);
  auto cli = provisr::test::run({provisr::test::binPath("provisr"), "status", "--api-url", t.apiUrl(), "--token", kToken});
  INFO(cli.out << cli.err);
  CHECK(cli.exit_code == 3);

  // The children do not notice: same processes, tick's log keeps growing.
  const long seq = checkTicks(t.stdoutLog("tick")).last;
  CHECK(waitFor([&] { return checkTicks(t.stdoutLog("tick")).last > seq + 40; }, 5s));
  for (const auto& [n, p] : before) CHECK(alive(p));
  CHECK(alive(keeper));

  t.restoreComponent("master");
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(waitFor([&] { return t.runningPids() == before; }, 15s));
  std::fprintf(stderr, "[measure] master restored during backoff -> same status over HTTP: %.0f ms\n", msSince(t1));
  CHECK(t.componentState("master") == "running");
  const auto seq2 = checkTicks(t.stdoutLog("tick"));
  INFO(seq2.problem);
  CHECK(seq2.gapFree);
}

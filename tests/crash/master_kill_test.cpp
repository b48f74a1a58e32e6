// DESIGN §4 item 2: SIGKILL of the master restarts, signals or duplicates no child; an exit during
// the outage is applied from the spawner's queue when it is back (an auto-restart program is
// restarted exactly once); user intent (stopped, registered, scaled) is kept.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: master killed - no child touched and an exit meanwhile restarts once and user intent is kept", "[crash]") {
  Tree t({{"keep", helper("ticker") + " 10 7 crash-m-keep", ""},
          {"stopme", helper("sleeper") + " -1 crash-m-stopme", ""},
          {"scaled", helper("sleeper") + " -1 crash-m-scaled", "spec.instances = 2\n"},
          {"flappy", helper("ticker") + " 10 7 crash-m-flappy",
           "spec.auto_restart = true\nspec.restart_interval = \"100ms\"\n"}});
  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"keep", "stopme", "scaled-1", "scaled-2", "flappy"}); }, 30s));
  INFO(t.serveLogs());

  // User intent: one program stopped, one registered, one scaled up.
  auto r = t.post("/stop?name=stopme&wait=5s");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  r = t.post("/register", json{{"name", "reg"}, {"command", helper("sleeper") + " -1 crash-m-reg"}}.dump());
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  r = t.post("/scale?name=scaled&instances=3");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  REQUIRE(waitFor([&] { return t.allRunning({"keep", "reg", "scaled-1", "scaled-2", "scaled-3", "flappy"}); }, 20s));
  const auto before = t.runningPids();
  std::map<pid_t, std::uint64_t> ticks;
  for (const auto& [n, p] : before) ticks[p] = startTicks(p);
  const int flappyRestarts = t.statusOf("flappy")["restarts"].get<int>();
  const pid_t flappy = before.at("flappy");

  // A plain kill first: the master is back at once and nothing changes.
  REQUIRE(t.waitSettled("master"));
  pid_t master = t.componentPid("master");
  REQUIRE(::kill(master, SIGKILL) == 0);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(waitFor([&] { return t.componentPid("master") != master && t.runningPids() == before; }, 10s));
  std::fprintf(stderr, "[measure] master SIGKILL -> same status over HTTP: %.0f ms\n", msSince(t0));

  // Now an outage the test controls: the master cannot start until restored. Meanwhile flappy
  // exits (code 7 on SIGTERM) and the spawner queues that exit.
  t.breakComponent("master");
  master = t.componentPid("master");
  REQUIRE(::kill(master, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return gone(master); }, 5s));
  REQUIRE(::kill(flappy, SIGTERM) == 0);
  REQUIRE(waitFor([&] { return gone(flappy); }, 5s));
  // Nobody restarts it while the master is away, and the gateway says the master is unavailable.
  CHECK_FALSE(waitFor([&] { return livePidsWith("crash-m-flappy").size() == 1; }, 500ms));
  auto down = t.get("/status?wildcard=*");
  CHECK((!down || down->status == 503));
  t.restoreComponent("master");
  t0 = std::chrono::steady_clock::now();
  REQUIRE(waitFor([&] {
    auto s = t.statusOf("flappy");
    return s.is_object() && s.value("state", "") == "running" && s["pid"] != flappy;
  }, 15s));
  std::fprintf(stderr, "[measure] master restored -> queued exit applied, flappy restarted: %.0f ms\n", msSince(t0));
  // Exactly once: one more restart, one live copy, and it stays that way.
  CHECK(t.statusOf("flappy")["restarts"].get<int>() == flappyRestarts + 1);
  CHECK(livePidsWith("crash-m-flappy").size() == 1);
  CHECK_FALSE(waitFor([&] { return t.statusOf("flappy")["restarts"].get<int>() != flappyRestarts + 1 ||
                                   livePidsWith("crash-m-flappy").size() != 1; },
                      700ms));

  // Everything else is the same processes, and user intent held.
  auto after = t.runningPids();
  for (const auto& [n, p] : before) {
    if (n == "flappy") continue;
    CHECK(after[n] == p);
    CHECK(alive(p));
    CHECK(startTicks(p) == ticks[p]);
  }
  CHECK(t.statusOf("stopme").value("state", "") == "stopped");
  CHECK(livePidsWith("crash-m-stopme").empty());
  CHECK(livePidsWith("crash-m-scaled").size() == 3);
  CHECK(livePidsWith("crash-m-reg").size() == 1);
  CHECK(livePidsWith("crash-m-keep").size() == 1);
  CHECK(t.components()["master"]["restarts"].get<int>() >= 3);
}

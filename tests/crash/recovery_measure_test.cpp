// Recovery time, kill -9 → the component answering again, per component over several rounds
// (median and max). Hidden from the default run ([.]): `tests_crash "[measure]"` prints the
// numbers; the invariants themselves are checked by the other cases of this suite.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: recovery time per component from kill -9 to answering again", "[.][measure]") {
  const int rounds = std::getenv("PROVISR_CRASH_ROUNDS") ? std::atoi(std::getenv("PROVISR_CRASH_ROUNDS")) : 5;
  Tree t({{"tick", helper("ticker") + " 5 7 crash-r-tick", ""},
          {"svc", helper("sleeper") + " -1 crash-r-svc", "spec.instances = 3\n"}});
  pid_t keeper = t.serve();
  const std::vector<std::string> names = {"tick", "svc-1", "svc-2", "svc-3"};
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning(names); }, 30s));
  INFO(t.serveLogs());
  const auto before = t.runningPids();
  std::map<std::string, std::vector<double>> ms;

  auto answering = [&](const std::string& c, pid_t old) {
    if (t.componentPid(c) == old || !alive(t.componentPid(c))) return false;
    if (c == "spawner") {
      auto logs = t.get("/processes/tick/logs?limit=1");
      if (!logs || logs->status != 200) return false;
    }
    return t.runningPids() == before;
  };
  for (int round = 0; round < rounds; ++round) {
    for (const std::string c : {"gateway", "master", "spawner"}) {
      REQUIRE(t.waitSettled(c));
      const pid_t old = t.componentPid(c);
      REQUIRE(::kill(old, SIGKILL) == 0);
      const auto t0 = std::chrono::steady_clock::now();
      REQUIRE(waitFor([&] { return answering(c, old); }, 15s));
      ms[c].push_back(msSince(t0));
    }
    // The keeper alone, then the next serve.
    REQUIRE(::kill(keeper, SIGKILL) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(t.reapKeeper(keeper, 5s));
    keeper = t.serve();
    REQUIRE(waitFor([&] { return t.componentsUp() && t.runningPids() == before; }, 30s));
    ms["keeper (next serve)"].push_back(msSince(t0));
  }
  // The whole tree, twice: the next serve adopts from the journal.
  for (int round = 0; round < 2; ++round) {
    std::vector<pid_t> tree = {keeper, t.componentPid("spawner"), t.componentPid("master"), t.componentPid("gateway")};
    for (pid_t p : tree) REQUIRE(::kill(p, SIGKILL) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    REQUIRE(t.reapKeeper(keeper, 5s));
    REQUIRE(waitFor([&] { return std::all_of(tree.begin(), tree.end(), gone); }, 5s));
    keeper = t.serve();
    REQUIRE(waitFor([&] { return t.componentsUp() && t.runningPids() == before; }, 30s));
    ms["whole tree (next serve)"].push_back(msSince(t0));
  }
  for (const auto& [c, v] : ms) std::fprintf(stderr, "[measure] %s: %s\n", c.c_str(), summary(v).c_str());
  for (const auto& [n, p] : before) CHECK(alive(p));
  CHECK(livePidsWith("crash-r-svc").size() == 3);
  CHECK(livePidsWith("crash-r-tick").size() == 1);
}

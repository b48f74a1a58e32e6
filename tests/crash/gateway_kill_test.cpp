// DESIGN §4 item 1: SIGKILL of the gateway touches no child; the keeper restarts it at once and a
// client retrying for at most 2 s sees the same state as before.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

namespace {

// What a client compares before and after: each instance's state, pid and restarts.
std::map<std::string, std::string> essentials(const std::map<std::string, json>& status) {
  std::map<std::string, std::string> out;
  for (const auto& [n, row] : status) out[n] = row.value("state", "") + " " + row["pid"].dump() + " " + row["restarts"].dump();
  return out;
}

}  // namespace

TEST_CASE("crash: gateway killed - children untouched and the same answers within 2 s", "[crash]") {
  Tree t({{"tick", helper("ticker") + " 10 7 crash-gw-tick", ""},
          {"sleep", helper("sleeper") + " -1 crash-gw-sleep", "spec.instances = 2\n"},
          {"idle", helper("sleeper") + " -1 crash-gw-idle", ""}});
  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tick", "sleep-1", "sleep-2", "idle"}); }, 30s));
  INFO(t.serveLogs());
  // A stopped instance is part of the state the client must see again.
  auto stop = t.post("/stop?name=idle&wait=5s");
  REQUIRE(stop);
  REQUIRE(stop->status == 200);
  const auto before = t.status();
  const auto beforePids = t.runningPids();
  REQUIRE(beforePids.size() == 3);
  std::map<pid_t, std::uint64_t> ticks;
  for (const auto& [n, p] : beforePids) ticks[p] = startTicks(p);

  std::vector<double> recovery;
  for (int round = 0; round < 2; ++round) {
    const pid_t gw = t.componentPid("gateway");
    const auto restarts = t.components()["gateway"]["restarts"].get<int>();
    REQUIRE(t.waitSettled("gateway"));
    REQUIRE(::kill(gw, SIGKILL) == 0);
    const auto t0 = std::chrono::steady_clock::now();
    // The client retries for at most 2 s and then sees exactly what it saw before.
    const bool same = waitFor([&] { return essentials(t.status()) == essentials(before); }, 2s);
    recovery.push_back(msSince(t0));
    CHECK(same);
    CHECK(t.componentPid("gateway") != gw);
    CHECK(t.components()["gateway"]["restarts"].get<int>() == restarts + 1);
  }
  std::fprintf(stderr, "[measure] gateway SIGKILL -> same status over HTTP: %s\n", summary(recovery).c_str());

  // The children were never touched: same processes, still the spawner's.
  const pid_t spawner = t.componentPid("spawner");
  for (const auto& [p, tk] : ticks) {
    CHECK(alive(p));
    CHECK(startTicks(p) == tk);
    CHECK(parentOf(p) == spawner);
  }
  CHECK(t.runningPids() == beforePids);
  CHECK(livePidsWith("crash-gw-idle").empty());
  CHECK(livePidsWith("crash-gw-tick").size() == 1);
}

// DESIGN §4 item 3: SIGKILL of the spawner leaves its children running (re-parented to the
// keeper); the next spawner takes their pidfds and pipes back from the keeper's fd store, re-adopts
// them with the same pid, signals them through the pidfd, reports their exit codes (also one that
// happened while no spawner ran) and goes on writing their logs without losing or doubling a line.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: spawner killed - children keep running and are re-adopted with their pipes and no log line is lost", "[crash]") {
  Tree t({{"tick", helper("ticker") + " 5 7 crash-s-tick", ""},
          {"tock", helper("ticker") + " 20 7 crash-s-tock", ""},
          {"victim", helper("ticker") + " 20 7 crash-s-victim", ""}});
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tick", "tock", "victim"}); }, 30s));
  INFO(t.serveLogs());
  REQUIRE(waitFor([&] { return checkTicks(t.stdoutLog("tick")).count >= 20; }, 10s));
  const auto before = t.runningPids();
  std::map<pid_t, std::uint64_t> ticks;
  for (const auto& [n, p] : before) ticks[p] = startTicks(p);

  // 1. A plain kill: the keeper restarts the spawner at once; it re-adopts all three.
  REQUIRE(t.waitSettled("spawner"));
  pid_t spawner = t.componentPid("spawner");
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(waitFor([&] {
    const pid_t now = t.componentPid("spawner");
    if (now == spawner || !alive(now)) return false;
    auto logs = t.get("/processes/tick/logs?limit=1");  // master -> new spawner -> ring
    return logs && logs->status == 200;
  }, 10s));
  std::fprintf(stderr, "[measure] spawner SIGKILL -> new spawner answering a log tail: %.0f ms\n", msSince(t0));
  for (const auto& [n, p] : before) {
    CHECK(alive(p));
    CHECK(startTicks(p) == ticks[p]);
    CHECK(parentOf(p) == keeper);  // the subreaper keeps them for good
  }
  REQUIRE(waitFor([&] { return t.runningPids() == before; }, 10s));
  CHECK_FALSE(t.statusOf("tick").value("adopted", false));  // exit codes and pipes kept

  // 2. An outage the test controls: the spawner cannot start until restored. victim exits
  //    meanwhile (code 7 on SIGTERM); the keeper reaps it and keeps its exit for the next spawner.
  t.breakComponent("spawner");
  spawner = t.componentPid("spawner");
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return gone(spawner); }, 5s));
  const pid_t victim = before.at("victim");
  REQUIRE(::kill(victim, SIGTERM) == 0);
  REQUIRE(waitFor([&] { return gone(victim); }, 5s));
  // tick goes on writing into the pipe while no spawner reads it.
  const long seqAtOutage = checkTicks(t.stdoutLog("tick")).last;
  REQUIRE(waitFor([&] { return t.serveLogs().find("provisr-spawner disabled") != std::string::npos; }, 5s));
  t.restoreComponent("spawner");
  t0 = std::chrono::steady_clock::now();
  REQUIRE(waitFor([&] {
    auto s = t.statusOf("victim");
    return s.is_object() && s.value("state", "") != "running";
  }, 15s));
  std::fprintf(stderr, "[measure] spawner restored -> exit during the outage reported: %.0f ms\n", msSince(t0));
  auto v = t.statusOf("victim");
  CHECK(v.value("state", "") == "exited");
  CHECK(v["exit_code"] == 7);
  CHECK(livePidsWith("crash-s-victim").empty());

  // The others: same pids, running, logs resumed from the same pipe.
  REQUIRE(waitFor([&] { return t.allRunning({"tick", "tock"}); }, 10s));
  CHECK(t.runningPids()["tick"] == before.at("tick"));
  CHECK(t.runningPids()["tock"] == before.at("tock"));
  REQUIRE(waitFor([&] { return checkTicks(t.stdoutLog("tick")).last > seqAtOutage + 50; }, 10s));

  // 3. Stopping a re-adopted child works (signal through the pidfd) and its exit code is reported.
  auto stop = t.post("/stop?name=tock&wait=5s");
  REQUIRE(stop);
  CHECK(stop->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("tock").value("state", "") == "stopped"; }, 10s));
  CHECK(t.statusOf("tock")["exit_code"] == 7);
  CHECK(gone(before.at("tock")));

  // 4. The whole tick log, after a clean stop: every line once, in order, none lost.
  stop = t.post("/stop?name=tick&wait=5s");
  REQUIRE(stop);
  REQUIRE(waitFor([&] { return t.statusOf("tick").value("state", "") == "stopped"; }, 10s));
  const auto seq = checkTicks(t.stdoutLog("tick"), false);
  INFO(seq.problem);
  CHECK(seq.gapFree);
  CHECK(seq.count > seqAtOutage);
  // No zombie is left with the keeper or the spawner once exits are acknowledged.
  CHECK(waitFor([&] { return zombiesOf({keeper, t.componentPid("spawner")}).empty(); }, 5s));
}

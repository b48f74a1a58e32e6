// DESIGN §4 item 4: SIGKILL of the keeper alone: master and gateway exit (PDEATHSIG), the spawner
// keeps the children and their pipes; the next `provisr serve` on that run_dir uses the surviving
// spawner instead of starting another and keeps the children and the user's intent.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: keeper killed alone - the next serve uses the surviving spawner and keeps children and intent", "[crash]") {
  Tree t({{"tick", helper("ticker") + " 5 7 crash-k-tick", ""},
          {"tock", helper("ticker") + " 5 7 crash-k-tock", ""},
          {"stopme", helper("sleeper") + " -1 crash-k-stopme", ""},
          {"scaled", helper("sleeper") + " -1 crash-k-scaled", "spec.instances = 2\n"}});
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tick", "tock", "stopme", "scaled-1", "scaled-2"}); }, 30s));
  INFO(t.serveLogs());
  auto r = t.post("/stop?name=stopme&wait=5s");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  r = t.post("/scale?name=scaled&instances=3");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  REQUIRE(waitFor([&] { return t.allRunning({"tick", "tock", "scaled-1", "scaled-2", "scaled-3"}); }, 20s));
  const auto before = t.runningPids();
  std::map<pid_t, std::uint64_t> ticks;
  for (const auto& [n, p] : before) ticks[p] = startTicks(p);
  const pid_t spawner = t.componentPid("spawner");
  const pid_t master = t.componentPid("master");
  const pid_t gateway = t.componentPid("gateway");

  REQUIRE(::kill(keeper, SIGKILL) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(t.reapKeeper(keeper, 5s));
  // Master and gateway follow their keeper; the spawner and the children stay.
  CHECK(waitFor([&] { return gone(master) && gone(gateway); }, 5s));
  CHECK(alive(spawner));
  for (const auto& [n, p] : before) CHECK(alive(p));
  const long seqAtKill = checkTicks(t.stdoutLog("tick")).last;
  // The spawner, alone, still moves tick's output into its log.
  CHECK(waitFor([&] { return checkTicks(t.stdoutLog("tick")).last > seqAtKill + 20; }, 5s));

  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tick", "tock", "scaled-1", "scaled-2", "scaled-3"}); }, 30s));
  std::fprintf(stderr, "[measure] keeper SIGKILL -> next serve answering with the children: %.0f ms\n", msSince(t0));
  // The same spawner, marked adopted; no second one was started.
  CHECK(t.componentPid("spawner") == spawner);
  CHECK(t.components()["spawner"].value("adopted", false));
  CHECK(t.serveLogs().find("survived the previous keeper") != std::string::npos);
  // Same children, same pids; intent kept: stopme stays stopped, scaled has 3 instances.
  const auto after = t.runningPids();
  for (const auto& [n, p] : before) {
    CHECK(after.count(n) == 1);
    if (after.count(n)) CHECK(after.at(n) == p);
    CHECK(startTicks(p) == ticks[p]);
  }
  CHECK(t.statusOf("stopme").value("state", "") == "stopped");
  CHECK(livePidsWith("crash-k-stopme").empty());
  CHECK(livePidsWith("crash-k-scaled").size() == 3);
  CHECK(livePidsWith("crash-k-tick").size() == 1);

  // The surviving spawner obeys the new master: a stop works and its exit code is reported.
  r = t.post("/stop?name=tick&wait=5s");
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("tick").value("state", "") == "stopped"; }, 10s));
  CHECK(t.statusOf("tick")["exit_code"] == 7);
  const auto seq = checkTicks(t.stdoutLog("tick"), false);
  INFO(seq.problem);
  CHECK(seq.gapFree);

  // The surviving spawner deposited its children again in the new keeper's fd store: when it dies
  // too, the next spawner resumes tock's log from the same pipe (its exit status, though, is
  // unknown from now on: the new keeper is not its parent, DESIGN §4 item 4).
  REQUIRE(waitFor([&] { return t.serveLogs().find("children again") != std::string::npos; }, 5s));
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(waitFor([&] {
    const pid_t now = t.componentPid("spawner");
    return now != spawner && alive(now) && t.allRunning({"tock", "scaled-1", "scaled-2", "scaled-3"});
  }, 15s));
  CHECK(t.runningPids()["tock"] == before.at("tock"));
  CHECK(waitFor([&] {
    return t.serveLogs().find("adopted tock (pid " + std::to_string(before.at("tock")) + ", logs resumed)") != std::string::npos;
  }, 5s));
  const long tockAt = checkTicks(t.stdoutLog("tock")).last;
  REQUIRE(waitFor([&] { return checkTicks(t.stdoutLog("tock")).last > tockAt + 20; }, 5s));
  r = t.post("/stop?name=tock&wait=5s");
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("tock").value("state", "") == "stopped"; }, 10s));
  CHECK(gone(before.at("tock")));
  const auto tockSeq = checkTicks(t.stdoutLog("tock"), false);
  INFO(tockSeq.problem);
  CHECK(tockSeq.gapFree);
}

// DESIGN §4 item 3, a spawner killed while a Spawn it had not carried out waited in its socket,
// for a program that ran before (so the master still shows that old child's pid while starting
// the new one): the master must send the Spawn again to the next spawner, not take the old pid for
// a child that was started and then lost (which applied an unknown exit: the program ended
// `fatal`, with the old pid, and nothing ran — seen in the chaos suite). The master now tells
// "not yet reported spawned" from "no pid ever" (master_core.cpp, onSnapshotReply).
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: spawner killed holding the spawn of a program that ran before - it is started again and runs", "[crash][lost-spawn]") {
  Tree t({{"again", helper("ticker") + " 20 7 crash-lost-again", ""}});
  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"again"}); }, 30s));
  INFO(t.serveLogs());
  const pid_t first = t.runningPids().at("again");
  auto stop = t.post("/stop?name=again&wait=5s");
  REQUIRE(stop);
  REQUIRE(stop->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("again").value("state", "") == "stopped" && gone(first); }, 10s));
  REQUIRE(t.waitSettled("spawner"));

  // The spawner stops reading: the Spawn of the start below waits unread in its socket and dies
  // with it. The master shows the instance starting, with the old pid.
  const pid_t spawner = t.componentPid("spawner");
  REQUIRE(::kill(spawner, SIGSTOP) == 0);
  auto start = t.post("/start?name=again");
  REQUIRE(start);
  CHECK(start->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("again").value("state", "") == "starting"; }, 5s));
  REQUIRE(::kill(spawner, SIGKILL) == 0);

  // The next spawner gets the Spawn again: a new child runs, nothing is fatal.
  REQUIRE(waitFor([&] { return t.componentPid("spawner") != spawner && alive(t.componentPid("spawner")); }, 10s));
  const bool runs = waitFor(
      [&] {
        auto s = t.statusOf("again");
        return s.value("state", "") == "running" && s["pid"].is_number_integer() && s["pid"].get<pid_t>() != first &&
               alive(s["pid"].get<pid_t>());
      },
      15s);
  INFO("status: " << t.statusOf("again").dump());
  CHECK(runs);
  CHECK(t.statusOf("again").value("state", "") != "fatal");
  CHECK(livePidsWith("crash-lost-again").size() == 1);
}

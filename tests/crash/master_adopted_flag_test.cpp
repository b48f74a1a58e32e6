// A master that keeps running while the spawner re-adopts a child without its exit status (the
// child is not the keeper's: it was spawned under a keeper that died) must show the instance as
// adopted: the new spawner's Snapshot says so for a child of the master's own generation.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: status says adopted after a spawner re-adopts a child whose exit it cannot know", "[crash]") {
  Tree t({{"tock", helper("ticker") + " 5 7 crash-a-tock", ""}});
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tock"}); }, 30s));
  INFO(t.serveLogs());
  const pid_t tock = t.runningPids().at("tock");
  const pid_t spawner = t.componentPid("spawner");
  REQUIRE(::kill(keeper, SIGKILL) == 0);
  REQUIRE(t.reapKeeper(keeper, 5s));
  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"tock"}); }, 30s));
  REQUIRE(waitFor([&] { return t.serveLogs().find("children again") != std::string::npos; }, 5s));
  REQUIRE(t.waitSettled("master"));
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return t.componentPid("spawner") != spawner && alive(t.componentPid("spawner")); }, 10s));
  REQUIRE(waitFor([&] { return t.serveLogs().find("adopted tock (pid " + std::to_string(tock)) != std::string::npos; }, 10s));
  CHECK(waitFor([&] { return t.statusOf("tock").value("adopted", false); }, 5s));
}

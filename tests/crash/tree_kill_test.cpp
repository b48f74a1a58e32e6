// DESIGN §4 item 5: SIGKILL of the whole tree (keeper, spawner, master, gateway): the next
// `provisr serve` adopts the surviving children from run_dir/spawner/spawner.journal (pid + start
// time) without starting duplicates, marks them adopted, and never adopts a pid that now names
// another process.
#include <catch2/catch.hpp>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

TEST_CASE("crash: whole tree killed - the next serve adopts the survivors from the journal but never a reused pid", "[crash]") {
  Tree t({{"solo", helper("sleeper") + " -1 crash-t-solo", ""},
          {"svc", helper("sleeper") + " -1 crash-t-svc", "spec.instances = 2\n"},
          {"dead", helper("sleeper") + " -1 crash-t-dead", ""}});
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"solo", "svc-1", "svc-2", "dead"}); }, 30s));
  INFO(t.serveLogs());
  const auto before = t.runningPids();
  const std::string journal = t.runDir() + "/spawner/spawner.journal";
  REQUIRE(waitFor([&] { return slurp(journal).find("dead ") != std::string::npos; }, 5s));

  std::vector<pid_t> tree = {keeper, t.componentPid("spawner"), t.componentPid("master"), t.componentPid("gateway")};
  for (pid_t p : tree) REQUIRE(::kill(p, SIGKILL) == 0);
  REQUIRE(t.reapKeeper(keeper, 5s));
  REQUIRE(waitFor([&] { return std::all_of(tree.begin(), tree.end(), gone); }, 5s));
  for (const auto& [n, p] : before) CHECK(alive(p));

  // One child dies while nothing runs; and an unrelated process gets a journal line whose start
  // time does not match it (as if its pid had been reused): neither may be adopted.
  const pid_t dead = before.at("dead");
  ::kill(dead, SIGKILL);
  // With the tree gone the test process (a subreaper) is its parent: reap it, so the pid is free.
  REQUIRE(waitFor([&] {
    ::waitpid(dead, nullptr, WNOHANG);
    return !std::filesystem::exists("/proc/" + std::to_string(dead));
  }, 5s));
  const pid_t stranger = ::fork();
  if (stranger == 0) {
    ::execl(helper("sleeper").c_str(), "sleeper", "-1", "crash-t-stranger", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  REQUIRE(waitFor([&] { return startTicks(stranger) != 0; }, 5s));
  {
    std::string text = slurp(journal);
    const auto at = text.find("solo ");
    REQUIRE(at != std::string::npos);
    std::string line = text.substr(at, text.find('\n', at) - at);
    std::istringstream in(line);
    std::string key, gen, pid, ticksField, rest;
    in >> key >> gen >> pid >> ticksField;
    std::getline(in, rest);
    text += "ghost 1 " + std::to_string(stranger) + " " + std::to_string(startTicks(stranger) + 1) + " 0" +
            rest.substr(rest.find(' ', 1)) + "\n";
    std::ofstream(journal) << text;
  }

  const auto t0 = std::chrono::steady_clock::now();
  t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"solo", "svc-1", "svc-2", "dead"}); }, 30s));
  std::fprintf(stderr, "[measure] whole tree SIGKILL -> next serve answering with the survivors: %.0f ms\n", msSince(t0));
  const auto after = t.runningPids();
  for (const char* n : {"solo", "svc-1", "svc-2"}) {
    CHECK(after.at(n) == before.at(n));
    CHECK(t.statusOf(n).value("adopted", false));
  }
  // The dead one was started again (a fresh child, not adopted); nothing runs twice.
  CHECK(after.at("dead") != dead);
  CHECK_FALSE(t.statusOf("dead").value("adopted", true));
  CHECK(livePidsWith("crash-t-solo").size() == 1);
  CHECK(livePidsWith("crash-t-svc").size() == 2);
  CHECK(livePidsWith("crash-t-dead").size() == 1);
  // The stranger was neither adopted nor signalled.
  CHECK(alive(stranger));
  CHECK(t.status().count("ghost") == 0);
  CHECK(t.serveLogs().find("now names another process; not adopted") != std::string::npos);

  // An adopted child is stopped through its pidfd; its exit code is unknown.
  auto r = t.post("/stop?name=solo&wait=5s");
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(waitFor([&] { return t.statusOf("solo").value("state", "") == "stopped"; }, 10s));
  CHECK(waitFor([&] { return gone(before.at("solo")); }, 5s));
  CHECK(t.statusOf("solo")["exit_code"].is_null());
  ::kill(stranger, SIGKILL);
  ::waitpid(stranger, nullptr, 0);
}

// DESIGN §4 items 6 and 7: no fd leaks in the spawner or the keeper across spawn cycles and a
// spawner restart; a graceful shutdown leaves no process, no zombie and no lock behind.
#include <catch2/catch.hpp>

#include <sys/file.h>

#include "tests/crash/crash_tree.hpp"

using namespace provisr::crash;

namespace {

const std::vector<std::string> kBurst = {"burst-1", "burst-2", "burst-3", "burst-4"};

// Restarts every burst instance and waits for four new pids.
void cycle(Tree& t) {
  const auto old = t.runningPids();
  auto r = t.post("/restart?name=burst");
  REQUIRE(r);
  INFO(r->body);
  REQUIRE(r->status == 200);
  REQUIRE(waitFor([&] {
    auto now = t.runningPids();
    return std::all_of(kBurst.begin(), kBurst.end(), [&](const std::string& n) {
      return now.count(n) && old.count(n) && now.at(n) != old.at(n);
    });
  }, 20s));
}

// The fd count of `pid` settles at most 2 above `expected` (a transient socket of a request in
// flight); a leak of even one fd per spawn would put it 8 or more above after two cycles of four.
bool settlesAt(pid_t pid, std::size_t expected) {
  return waitFor([&] { return fdCount(pid) <= expected + 2; }, 5s);
}

bool lockFree(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  return free;
}

}  // namespace

TEST_CASE("crash: no fd leak across spawn cycles and a spawner restart and graceful shutdown leaves nothing", "[crash]") {
  Tree t({{"burst", helper("sleeper") + " -1 crash-f-burst", "spec.instances = 4\n"},
          {"tick", helper("ticker") + " 20 7 crash-f-tick", ""}});
  const pid_t keeper = t.serve();
  REQUIRE(waitFor([&] { return t.componentsUp() && t.allRunning({"burst-1", "burst-2", "burst-3", "burst-4", "tick"}); }, 30s));
  INFO(t.serveLogs());
  cycle(t);  // every lazily opened resource exists from here on
  pid_t spawner = t.componentPid("spawner");
  REQUIRE(waitFor([&] { return zombiesOf({spawner, keeper}).empty(); }, 5s));
  const std::size_t spawnerFds = fdCount(spawner);
  const std::size_t keeperFds = fdCount(keeper);
  for (int i = 0; i < 3; ++i) cycle(t);
  CHECK(settlesAt(spawner, spawnerFds));
  CHECK(settlesAt(keeper, keeperFds));
  INFO("spawner fds " << fdCount(spawner) << " (was " << spawnerFds << "), keeper fds " << fdCount(keeper) << " (was "
                      << keeperFds << ")");

  // A new spawner holds exactly what the old one held (same children, same pipes), and still
  // leaks nothing over more cycles.
  REQUIRE(t.waitSettled("spawner"));
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(waitFor([&] {
    const pid_t now = t.componentPid("spawner");
    return now != spawner && alive(now) && t.allRunning({"burst-1", "burst-2", "burst-3", "burst-4", "tick"});
  }, 15s));
  spawner = t.componentPid("spawner");
  CHECK(settlesAt(spawner, spawnerFds));
  for (int i = 0; i < 2; ++i) cycle(t);
  CHECK(settlesAt(spawner, spawnerFds));
  CHECK(settlesAt(keeper, keeperFds));
  CHECK(zombiesOf({spawner, keeper}).empty());

  // Graceful shutdown: exit 0, every child and component gone, no zombie, locks free.
  const std::vector<pid_t> components = {spawner, t.componentPid("master"), t.componentPid("gateway")};
  const auto children = t.runningPids();
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  const auto code = t.reapKeeper(keeper, 30s);
  REQUIRE(code);
  CHECK(*code == 0);
  for (pid_t p : components) CHECK(gone(p));
  for (const auto& [n, p] : children) CHECK(gone(p));
  CHECK(livePidsWith("crash-f-burst").empty());
  CHECK(livePidsWith("crash-f-tick").empty());
  CHECK(provisr::test::childrenOfThisProcess().empty());
  for (const char* c : {"keeper", "spawner", "master", "gateway"}) CHECK(t.componentState(c) == "stopped");
  CHECK(lockFree(t.runDir() + "/keeper/keeper.lock"));
  CHECK(lockFree(t.runDir() + "/spawner/spawner.lock"));
  CHECK(lockFree(t.runDir() + "/master/master.lock"));
}

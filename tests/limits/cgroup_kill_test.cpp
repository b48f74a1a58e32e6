// Issue 9, finite resources: every managed child runs in its own cgroup leaf, so a stop kills its
// setsid'd descendants too — also after the spawner was killed and a new one adopted the child
// (the leaf comes from /proc/<pid>/cgroup, not from the spawner that made it).
#include <catch2/catch.hpp>

#include <chrono>

#include "tests/api/trio.hpp"
#include "tests/limits/probe.hpp"

using namespace provisr::test;
using namespace provisr::test::limits;
using namespace std::chrono_literals;

namespace {

bool gone(const Leaves& l) {
  for (const auto& d : l.all()) {
    if (::access(d.c_str(), F_OK) == 0) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("limits: stop kills setsid'd descendants through the cgroup leaf, also after a spawner restart", "[limits][cgroup]") {
  if (::geteuid() != 0) {
    WARN("not root: provisr makes no cgroups, nothing to test");
    return;
  }
  const bool restart = GENERATE(false, true);
  TempDir markerDir;
  const std::string marker = "setsid-marker-" + markerDir.str();
  api::TrioOptions o;
  o.zmq = false;
  o.extra = "[[processes]]\ntype = \"process\"\nspec.name = \"tree\"\nspec.args = [\"" + api::helper("setsider") +
            "\", \"3\", \"" + marker + "\"]\nspec.stop_timeout = \"2s\"\n";
  api::Trio t(o);
  KillOnExit cleanup(marker);
  REQUIRE(t.ready());
  REQUIRE(t.waitState("tree", "running"));
  const auto leader = t.pid("tree");
  REQUIRE(leader);
  REQUIRE(waitFor([&] { return markedPids(marker).size() == 4; }, 10s));
  const Leaves leaves = leavesOf(*leader);
  cleanup.addLeaves(leaves);
  INFO("leaves: v2=" << leaves.v2 << " v1 pids=" << leaves.v1Pids);
  REQUIRE(!leaves.all().empty());
  CHECK(leafMembers(leaves.all().front()).size() == 4);
  for (pid_t p : markedPids(marker)) {
    if (p != *leader) CHECK(sessionOf(p) == p);  // each child leads a session of its own
  }

  if (restart) {
    const pid_t old = spawnerPid(t.run_dir, true);
    REQUIRE(old > 0);
    REQUIRE(::kill(old, SIGKILL) == 0);
    REQUIRE(waitFor([&] { pid_t now = spawnerPid(t.run_dir, true); return now > 0 && now != old && alive(now); }, 20s));
    // Adopted: the same child, still running, still in its leaf.
    REQUIRE(waitFor([&] { return t.state("tree") == "running" && t.pid("tree") == leader; }, 20s));
    CHECK(leavesOf(*leader).all() == leaves.all());
  }

  const auto s0 = std::chrono::steady_clock::now();
  REQUIRE(t.post("/stop?name=tree&wait=10s")->status == 200);
  CHECK(waitFor([&] { return markedPids(marker).empty(); }, 10s));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - s0).count();
  CHECK(t.state("tree") == "stopped");
  CHECK(waitFor([&] { return gone(leaves); }, 5s));
  WARN("setsid'd descendants (spawner restarted: " << restart << "): all 4 processes gone " << ms
                                                 << " ms after the stop; leaf removed: " << gone(leaves));
}

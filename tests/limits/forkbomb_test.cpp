// Issue 9, finite resources: a fork bomb under `pids_max` is held at the cap in its own cgroup leaf,
// the daemon keeps answering, and `stop` kills every process it made, setsid'd ones included.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>

#include "tests/api/trio.hpp"
#include "tests/limits/probe.hpp"

using namespace provisr::test;
using namespace provisr::test::limits;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kCap = 40;

double msSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

TEST_CASE("limits: a fork bomb is held at pids_max and stop kills every process it made", "[limits][cgroup]") {
  if (::geteuid() != 0) {
    WARN("not root: provisr makes no cgroups, nothing to test");
    return;
  }
  TempDir markerDir;
  const std::string marker = "bomb-marker-" + markerDir.str();
  api::TrioOptions o;
  o.zmq = false;
  o.extra = "[[processes]]\ntype = \"process\"\nspec.name = \"bomb\"\nspec.args = [\"" + api::helper("forkbomb") +
            "\", \"" + marker + "\"]\nspec.pids_max = " + std::to_string(kCap) + "\nspec.stop_timeout = \"2s\"\n";
  api::Trio t(o);
  KillOnExit cleanup(marker);  // after the Trio: runs before its destructor
  REQUIRE(t.ready());
  REQUIRE(t.waitState("bomb", "running"));
  const auto leader = t.pid("bomb");
  REQUIRE(leader);
  const Leaves leaves = leavesOf(*leader);
  cleanup.addLeaves(leaves);
  INFO("leader " << *leader << " leaves: v2=" << leaves.v2 << " v1 pids=" << leaves.v1Pids);
  REQUIRE(!leaves.all().empty());
  const std::string pidsDir = leaves.pidsDir();
  REQUIRE(!pidsDir.empty());
  INFO("pids.max in " << pidsDir << ": " << slurp(pidsDir + "/pids.max"));
  REQUIRE(std::atol(slurp(pidsDir + "/pids.max").c_str()) == kCap);

  // The bomb reaches the cap and stays there.
  const auto t0 = Clock::now();
  REQUIRE(waitFor([&] { return static_cast<int>(markedPids(marker).size()) >= kCap - 1; }, 30s));
  const double toCapMs = msSince(t0);
  std::size_t most = 0, setsids = 0;
  const auto sampleEnd = Clock::now() + 1s;
  waitFor(
      [&] {
        auto pids = markedPids(marker);
        most = std::max(most, pids.size());
        setsids = std::max(setsids, static_cast<std::size_t>(std::count_if(pids.begin(), pids.end(), [&](pid_t p) {
                                          return sessionOf(p) != 0 && sessionOf(p) != sessionOf(*leader);
                                        })));
        return Clock::now() >= sampleEnd;
      },
      5s);
  CHECK(most <= static_cast<std::size_t>(kCap));
  CHECK(setsids > 0);  // some of them left the session (and the process group)
  const std::string pidsCurrent = slurp(pidsDir + "/pids.current");
  CHECK(std::atol(pidsCurrent.c_str()) <= kCap);

  // The daemon answers meanwhile, promptly.
  double slowestStatusMs = 0;
  for (int i = 0; i < 5; ++i) {
    const auto s = Clock::now();
    auto r = t.get("/status?name=bomb");
    REQUIRE(r);
    CHECK(r->status == 200);
    slowestStatusMs = std::max(slowestStatusMs, msSince(s));
  }
  CHECK(slowestStatusMs < 2000);

  // Stop: every process it made is gone, setsid'd ones included, and the leaf with them.
  const auto s0 = Clock::now();
  REQUIRE(t.post("/stop?name=bomb&wait=10s")->status == 200);
  const double stopReplyMs = msSince(s0);
  REQUIRE(waitFor([&] { return markedPids(marker).empty(); }, 10s));
  const double allGoneMs = msSince(s0);
  CHECK(t.state("bomb") == "stopped");
  CHECK(waitFor(
      [&] {
        for (const auto& d : leaves.all()) {
          if (::access(d.c_str(), F_OK) == 0) return false;
        }
        return true;
      },
      5s));
  WARN("fork bomb: " << most << " processes at most (pids_max " << kCap << ", pids.current " << std::atol(pidsCurrent.c_str())
                     << "), " << setsids << " outside the leader's session; cap reached in " << toCapMs
                     << " ms; slowest status during the bomb " << slowestStatusMs << " ms; stop replied in "
                     << stopReplyMs << " ms, every process gone " << allGoneMs << " ms after the stop");
}

// Issue 9, finite resources: a child that closes its stdout or stderr. The spawner sees the end of
// that pipe and stops watching it (no busy loop: its CPU time stays flat), the child keeps running,
// and its other stream keeps logging.
#include <catch2/catch.hpp>

#include <chrono>
#include <regex>

#include "tests/api/trio.hpp"
#include "tests/limits/probe.hpp"

using namespace provisr::test;
using namespace provisr::test::limits;
using namespace std::chrono_literals;

namespace {

// The largest N of the "alive N" lines in `text`; -1 when none.
long lastAlive(const std::string& text) {
  long n = -1;
  static const std::regex re("alive ([0-9]+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
    n = std::max(n, std::atol((*it)[1].str().c_str()));
  }
  return n;
}

}  // namespace

TEST_CASE("limits: a child closing stdout or stderr - no busy loop, the child and its other stream go on", "[limits][streams]") {
  for (const std::string which : {"out", "err"}) {
    DYNAMIC_SECTION("closes std" << which) {
      api::TrioOptions o;
      o.zmq = false;
      o.extra = "[[processes]]\ntype = \"process\"\nspec.name = \"closer\"\nspec.args = [\"" + api::helper("closer") +
                "\", \"" + which + "\", \"50\"]\n";
      api::Trio t(o);
      REQUIRE(t.ready());
      REQUIRE(t.waitState("closer", "running"));
      const auto pid = t.pid("closer");
      REQUIRE(pid);
      const std::string closed = t.dir.str() + "/logs/closer.std" + which + ".log";
      const std::string kept = t.dir.str() + "/logs/closer.std" + (which == "out" ? "err" : "out") + ".log";
      REQUIRE(waitFor([&] { return slurp(closed).find("before close") != std::string::npos; }, 10s));
      REQUIRE(waitFor([&] { return lastAlive(slurp(kept)) >= 5; }, 10s));

      const pid_t spawner = spawnerPid(t.run_dir);
      REQUIRE(spawner > 0);
      // Over 2 s the spawner moves ~40 short lines: a loop on the closed pipe would burn ~2 s of CPU.
      const long cpu0 = cpuTicks(spawner);
      const long alive0 = lastAlive(slurp(kept));
      const auto until = std::chrono::steady_clock::now() + 2s;
      waitFor([&] { return std::chrono::steady_clock::now() >= until; }, 3s);  // a measurement window
      const long cpu1 = cpuTicks(spawner);
      const long ticksPerSec = ::sysconf(_SC_CLK_TCK);
      WARN("std" << which << " closed: spawner CPU " << (cpu1 - cpu0) * 1000 / ticksPerSec << " ms over 2 s");
      CHECK(cpu1 - cpu0 <= ticksPerSec / 10);  // under 100 ms of CPU in 2 s

      // The child is the same process, still running, and its other stream still moves.
      CHECK(t.state("closer") == "running");
      CHECK(t.pid("closer") == pid);
      CHECK(alive(*pid));
      CHECK(waitFor([&] { return lastAlive(slurp(kept)) > alive0 + 10; }, 10s));
      // Nothing after the close reached the closed stream's log.
      CHECK(slurp(closed) == "before close\n");
    }
  }
}

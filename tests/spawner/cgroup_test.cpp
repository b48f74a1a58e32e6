// Cgroup leaves of launched children (spawner/cgroup.hpp): made before exec with the caps, found
// again from /proc/<pid>/cgroup, emptied by a stop (setsid'd descendants included) and removed on
// release. Needs root and a writable cgroup hierarchy; elsewhere the launch just has no leaf.
#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "spawner/cgroup.hpp"
#include "spawner/launcher.hpp"
#include "spawner/reaper.hpp"
#include "tests/support/wait.hpp"

using namespace provisr::spawner;
using namespace std::chrono_literals;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("cgroup: a launched child joins its leaf with its caps and a stop empties and removes it", "[spawner][cgroup]") {
  const auto& layout = cgroup::layout();
  if (!layout.tracking()) {
    WARN("no cgroup support here (not root or no writable hierarchy): launches carry no leaf");
    return;
  }
  LaunchRequest r;
  // The shell leads the group; the background child leaves it (and the session) with setsid.
  r.argv = {"/bin/sh", "-c", "setsid sleep 60 & exec sleep 60"};
  r.env = {"PATH=/usr/bin:/bin"};
  r.cgroupName = "unit.1";
  r.caps.pidsMax = 7;
  r.caps.memoryMax = 64ull << 20;
  auto l = launch(r);
  REQUIRE(l);
  REQUIRE(!l->cgroup.empty());
  CHECK(l->pidsCapped == layout.canCapPids());
  CHECK(l->memoryCapped == layout.canCapMemory());
  ManagedChild child(l->pid, std::move(l->pidfd), l->startTicks);
  const cgroup::Membership m = child.cgroup();
  REQUIRE(!m.empty());
  CHECK(m.dirs.front() == l->cgroup);
  int pidsFiles = 0, memoryFiles = 0;
  for (const auto& d : m.dirs) {
    if (const auto v = slurp(d + "/pids.max"); !v.empty()) {
      CHECK(v == "7\n");
      ++pidsFiles;
    }
    if (const auto v = slurp(d + "/memory.max"); !v.empty()) {
      CHECK(v == "67108864\n");
      ++memoryFiles;
    }
    if (const auto v = slurp(d + "/memory.limit_in_bytes"); !v.empty()) {
      CHECK(v == "67108864\n");
      ++memoryFiles;
    }
  }
  CHECK(pidsFiles == (layout.canCapPids() ? 1 : 0));
  CHECK(memoryFiles == (layout.canCapMemory() ? 1 : 0));
  REQUIRE(provisr::test::waitFor([&] { return cgroup::members(m).size() == 2; }, 5s));

  REQUIRE(child.beginStop(SIGTERM).ok());
  REQUIRE(provisr::test::waitFor([&] { auto e = child.peekExit(); return e && e->has_value(); }, 5s));
  REQUIRE(child.release().ok());
  CHECK(provisr::test::waitFor([&] { return !cgroup::populated(m); }, 5s));
  for (const auto& d : m.dirs) CHECK(::access(d.c_str(), F_OK) != 0);
}

TEST_CASE("cgroup: killGroup reaches a setsid'd descendant that ignores nothing but left the group", "[spawner][cgroup]") {
  if (!cgroup::layout().tracking()) {
    WARN("no cgroup support here");
    return;
  }
  LaunchRequest r;
  r.argv = {"/bin/sh", "-c", "trap '' TERM; setsid sh -c 'trap \"\" TERM; exec sleep 60' & exec sleep 60"};
  r.env = {"PATH=/usr/bin:/bin"};
  auto l = launch(r);
  REQUIRE(l);
  ManagedChild child(l->pid, std::move(l->pidfd), l->startTicks);
  const cgroup::Membership m = child.cgroup();
  REQUIRE(!m.empty());
  REQUIRE(provisr::test::waitFor([&] { return cgroup::members(m).size() == 2; }, 5s));
  CHECK(child.groupAlive());
  REQUIRE(child.killGroup().ok());
  REQUIRE(provisr::test::waitFor([&] { auto e = child.peekExit(); return e && e->has_value(); }, 5s));
  CHECK(provisr::test::waitFor([&] { return !cgroup::populated(m); }, 5s));
  REQUIRE(child.release().ok());
  CHECK(provisr::test::waitFor([&] { return ::access(m.dirs.front().c_str(), F_OK) != 0; }, 5s));
}

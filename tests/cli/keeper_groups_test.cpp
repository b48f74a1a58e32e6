// The keeper's memory of process groups (fd_table.hpp): a group released while a member still runs
// is signalled at shutdown through its reaped leader's pidfd, or by id only after checking that the
// id was not reused — never an unrelated group that took the id after pid wraparound. The reuse is
// real: the test makes the kernel hand the leader's pid to a new process (ns_last_pid, root only).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "cli/keeper/fd_table.hpp"
#include "tests/support/wait.hpp"

using namespace provisr;
using namespace provisr::keeper;
using namespace std::chrono_literals;

namespace {

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

bool alive(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z' && line[close + 2] != 'X';
}

std::uint64_t startTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  std::istringstream rest(line.substr(line.rfind(')') + 1));
  std::string f;
  for (int i = 3; i <= 22 && rest >> f; ++i) {
  }
  return std::strtoull(f.c_str(), nullptr, 10);
}

// Reaps what is re-parented to the test (a member whose leader is gone), and restores on the way out.
struct Subreaper {
  Subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  ~Subreaper() {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
};

// A group leader (its own process group) that forks one member and then waits for a byte on a pipe
// before it exits; the member sleeps in the group until killed.
struct GroupWithMember {
  pid_t leader = 0;
  pid_t member = 0;
  int go = -1;  // write end: a byte ends the leader

  GroupWithMember() {
    int toLeader[2];
    int fromLeader[2];
    REQUIRE(::pipe2(toLeader, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(fromLeader, O_CLOEXEC) == 0);
    leader = ::fork();
    REQUIRE(leader >= 0);
    if (leader == 0) {
      ::setpgid(0, 0);
      const pid_t m = ::fork();
      if (m == 0) {
        for (;;) ::pause();
      }
      (void)!::write(fromLeader[1], &m, sizeof m);
      char c;
      (void)!::read(toLeader[0], &c, 1);
      ::_exit(0);
    }
    ::close(toLeader[0]);
    ::close(fromLeader[1]);
    go = toLeader[1];
    REQUIRE(::read(fromLeader[0], &member, sizeof member) == static_cast<ssize_t>(sizeof member));
    ::close(fromLeader[0]);
  }
  ~GroupWithMember() {
    if (member > 0) ::kill(member, SIGKILL);
    if (leader > 0) ::kill(leader, SIGKILL);
    if (go >= 0) ::close(go);
    if (leader > 0) ::waitpid(leader, nullptr, 0);
  }
  void endLeader() {
    (void)!::write(go, "x", 1);
    REQUIRE(::waitpid(leader, nullptr, 0) == leader);  // reaped: only the member holds the id now
  }
};

// A new process that gets pid `want` (written to ns_last_pid just before the fork; retried while
// other processes on the machine take it first) and makes its own group, as an unrelated program
// reusing a wrapped-around pid would. nullopt when this is not root or the pid never came.
std::optional<pid_t> processWithPid(pid_t want) {
  std::optional<pid_t> got;
  (void)test::waitFor(
      [&] {
        FILE* f = std::fopen("/proc/sys/kernel/ns_last_pid", "w");
        if (f == nullptr) return true;  // not allowed here: give up
        std::fprintf(f, "%d", want - 1);
        const bool written = std::fclose(f) == 0;
        if (!written) return true;
        const pid_t pid = ::fork();
        if (pid == 0) {
          ::setpgid(0, 0);
          for (;;) ::pause();
        }
        if (pid == want) {
          got = pid;
          return true;
        }
        if (pid > 0) {
          ::kill(pid, SIGKILL);
          ::waitpid(pid, nullptr, 0);
        }
        return false;
      },
      5s);
  return got;
}

proto::Deposit depositOf(const std::string& key, std::uint64_t gen, pid_t pid) {
  proto::Deposit d;
  d.key = key;
  d.generation = gen;
  d.kinds = {proto::FdKind::kPidfd};
  d.pid = pid;
  return d;
}

}  // namespace

TEST_CASE("keeper groups: a released group is signalled through its leader pidfd and never a group that reused its id", "[cli][keeper]") {
  Subreaper reaper;
  GroupWithMember g;
  const pid_t id = g.leader;

  FdTable table;
  std::vector<UniqueFd> fds;
  fds.emplace_back(pidfdOpen(g.leader));
  REQUIRE(fds.back().valid());
  REQUIRE(table.deposit(depositOf("web-1", 1, g.leader), std::move(fds)));
  g.endLeader();
  REQUIRE(table.release({"web-1", 1}, bootTicksNow()));

  // The member keeps the group alive: remembered, and named by the pidfd or by a checked id.
  table.pruneGroups([](const GroupRef& r) { return groupAlive(r); });
  REQUIRE(table.groups() == std::vector<pid_t>{id});
  const GroupRef ref = table.groupRefs().at(0);
  CHECK(ref.pidfd >= 0);
  CHECK(groupAlive(ref));
  CHECK(groupAlive(GroupRef{id, -1, bootTicksNow()}));
  // Known to be ours only before the member started: the member proves nothing.
  CHECK_FALSE(groupAlive(GroupRef{id, -1, startTicks(g.member) - 1}));

  SECTION("a live leftover is killed") {
    CHECK(signalGroup(ref, SIGKILL));
    CHECK(test::waitFor([&] { return !alive(g.member); }, 5s));
    g.member = 0;
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {  // the member's zombie still counts as in the group
    }
    table.pruneGroups([](const GroupRef& r) { return groupAlive(r); });
    CHECK(table.groups().empty());
  }

  SECTION("after the group emptied, the id given to an unrelated group is left alone") {
    ::kill(g.member, SIGKILL);
    REQUIRE(test::waitFor([&] { return !alive(g.member); }, 5s));
    g.member = 0;
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    // No Release in between, so nothing pruned the memory: the id is still listed.
    REQUIRE(table.groups() == std::vector<pid_t>{id});
    const auto stranger = processWithPid(id);
    if (!stranger) {
      WARN("cannot make the kernel reuse pid " << id << " here (needs root and ns_last_pid); reuse part skipped");
      CHECK_FALSE(groupAlive(table.groupRefs().at(0)));
      return;
    }
    REQUIRE(test::waitFor([&] { return ::getpgid(*stranger) == *stranger; }, 5s));
    const GroupRef stale = table.groupRefs().at(0);
    CHECK_FALSE(signalGroup(stale, SIGKILL));                       // through the pidfd
    CHECK_FALSE(signalGroup(GroupRef{id, -1, ref.ownedAtTicks}, SIGKILL));  // by id, checked
    CHECK_FALSE(groupAlive(stale));
    CHECK(alive(*stranger));
    table.pruneGroups([](const GroupRef& r) { return groupAlive(r); });
    CHECK(table.groups().empty());
    ::kill(*stranger, SIGKILL);
    ::waitpid(*stranger, nullptr, 0);
  }
}

TEST_CASE("fd table: releasing an entry whose pid was reused keeps the newer entry's pid", "[cli][keeper]") {
  FdTable t;
  auto pidfdStandIn = [] {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    ::close(p[1]);
    std::vector<UniqueFd> v;
    v.emplace_back(p[0]);
    return v;
  };
  REQUIRE(t.deposit(depositOf("a", 1, 300), pidfdStandIn()));
  REQUIRE(t.recordExit(300, 0, 1, 5));  // reaped by the keeper; the pid is free
  REQUIRE(t.deposit(depositOf("b", 1, 300), pidfdStandIn()));  // the kernel gave it to b
  REQUIRE(t.release({"a", 1}, 6));
  CHECK(t.keyOfPid(300) == FdKey{"b", 1});
  auto ex = t.recordExit(300, 9, 2, 7);
  REQUIRE(ex);
  CHECK(ex->key == "b");
  // One group id, named by the entry that holds it now.
  REQUIRE(t.groupRefs().size() == 1);
  CHECK(t.groupRefs()[0].ownedAtTicks == 7);
}

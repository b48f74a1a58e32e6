// Tests of exit reading, release, group signals, stop with SIGKILL escalation and orphan reaping.
#include "spawner/reaper.hpp"

#include <sys/prctl.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/spawner/test_support.hpp"

namespace provisr::spawner {
namespace {

using test::helper;
using namespace std::chrono_literals;

ManagedChild start(test::ProcessGuard& guard, std::vector<std::string> argv, Launched* keep = nullptr) {
  LaunchRequest req;
  req.argv = std::move(argv);
  req.env = test::baseEnv();
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  ManagedChild c(r->pid, std::move(r->pidfd), r->startTicks);
  if (keep != nullptr) *keep = std::move(*r);
  return c;
}

bool zombieOrGone(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return true;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z';
}

TEST_CASE("exit codes and signals are reported exactly read twice reaped once", "[spawner]") {
  struct Case {
    std::string arg;
    ExitStatus want;
  };
  std::vector<Case> cases = {
      {"0", ExitStatus{true, 0, 0, false}},
      {"3", ExitStatus{true, 3, 0, false}},
      {"255", ExitStatus{true, 255, 0, false}},
      {"sig:15", ExitStatus{false, 0, SIGTERM, false}},
      {"sig:9", ExitStatus{false, 0, SIGKILL, false}},
      {"sig:10", ExitStatus{false, 0, SIGUSR1, false}},
  };
  test::ProcessGuard guard;
  for (const auto& c : cases) {
    INFO("crasher " << c.arg);
    ManagedChild child = start(guard, {helper("crasher"), c.arg, "5"});
    auto first = test::waitExit(child);
    REQUIRE(first);
    CHECK(*first == c.want);
    // WNOWAIT: the zombie stays, the exit reads the same again.
    CHECK(zombieOrGone(child.pid()));
    CHECK(std::filesystem::exists("/proc/" + std::to_string(child.pid())));
    auto again = child.peekExit();
    REQUIRE(again.ok());
    REQUIRE(again->has_value());
    CHECK(**again == c.want);
    REQUIRE(child.release().ok());
    CHECK(child.released());
    CHECK(child.release().ok());  // idempotent
    CHECK_FALSE(std::filesystem::exists("/proc/" + std::to_string(child.pid())));
  }
}

TEST_CASE("a running child reports no exit and cannot be released", "[spawner]") {
  test::ProcessGuard guard;
  ManagedChild child = start(guard, {helper("sleeper")});
  auto st = child.peekExit();
  REQUIRE(st.ok());
  CHECK_FALSE(st->has_value());
  CHECK_FALSE(child.release().ok());
  REQUIRE(child.signalLeader(SIGUSR2).ok());
  auto ex = test::waitExit(child);
  REQUIRE(ex);
  CHECK(ex->signal == SIGUSR2);
  CHECK(child.release().ok());
}

TEST_CASE("200 concurrent children started and stopped", "[spawner]") {
  test::ProcessGuard guard;
  std::vector<ManagedChild> kids;
  kids.reserve(200);
  for (int i = 0; i < 200; ++i) kids.push_back(start(guard, {helper("sleeper")}));
  std::set<pid_t> pids;
  for (auto& k : kids) pids.insert(k.pid());
  CHECK(pids.size() == 200);
  for (auto& k : kids) REQUIRE(k.beginStop(SIGTERM).ok());
  for (auto& k : kids) {
    auto ex = test::waitExit(k);
    REQUIRE(ex);
    CHECK_FALSE(ex->exited);
    CHECK(ex->signal == SIGTERM);
    REQUIRE(k.release().ok());
  }
  CHECK(listChildren().empty());
}

TEST_CASE("a SIGTERM-ignoring child and its grandchildren die by SIGKILL after the timeout", "[spawner]") {
  // Like the spawner: orphans come back to us and are reaped by pid.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  test::ProcessGuard guard;
  Launched l;
  ManagedChild child = start(guard, {helper("sigignore"), "3"}, &l);
  // Its first line names the leader and the grandchildren, once they exist.
  std::string line;
  REQUIRE(test::eventually([&] {
    char buf[256];
    ssize_t n = ::read(l.stdoutRead.get(), buf, sizeof buf);
    if (n > 0) line.append(buf, static_cast<std::size_t>(n));
    return line.find('\n') != std::string::npos;
  }));
  std::istringstream in(line);
  pid_t leader = 0;
  in >> leader;
  CHECK(leader == child.pid());
  std::vector<pid_t> grand;
  for (pid_t p; in >> p;) grand.push_back(p);
  REQUIRE(grand.size() == 3);

  REQUIRE(child.beginStop(SIGTERM).ok());
  CHECK(child.stopRequested());
  // The stop timeout: the pidfd stays quiet for it, because SIGTERM is ignored.
  CHECK_FALSE(test::waitReadable(child.pidfd(), 300ms));
  REQUIRE(child.killGroup().ok());
  auto ex = test::waitExit(child);
  REQUIRE(ex);
  CHECK(ex->signal == SIGKILL);
  // Grandchildren were in the group: they died too, came back to us as orphans and are reaped
  // by pid, while the managed zombie stays until released.
  std::set<pid_t> reaped;
  REQUIRE(test::eventually([&] {
    for (const auto& o : reapOrphans([&](pid_t p) { return p == child.pid(); })) {
      CHECK(o.status.signal == SIGKILL);
      reaped.insert(o.pid);
    }
    return reaped.size() == grand.size();
  }));
  CHECK(reaped == std::set<pid_t>(grand.begin(), grand.end()));
  CHECK(child.groupAlive());  // the unreleased leader still holds the group
  auto still = child.peekExit();
  REQUIRE(still.ok());
  CHECK(still->has_value());
  REQUIRE(child.release().ok());
  CHECK_FALSE(child.groupAlive());
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST_CASE("no zombies after a storm of 500 short-lived children", "[spawner]") {
  test::ProcessGuard guard;
  std::vector<ManagedChild> kids;
  kids.reserve(500);
  for (int i = 0; i < 500; ++i) kids.push_back(start(guard, {helper("crasher"), std::to_string(i % 7)}));
  std::size_t i = 0;
  for (auto& k : kids) {
    auto ex = test::waitExit(k);
    REQUIRE(ex);
    CHECK(ex->exited);
    CHECK(ex->code == static_cast<int>(i++ % 7));
    REQUIRE(k.release().ok());
  }
  CHECK(listChildren().empty());
}

TEST_CASE("reapOrphans takes unmanaged children only", "[spawner]") {
  test::ProcessGuard guard;
  ManagedChild managed = start(guard, {helper("crasher"), "4"});
  ManagedChild stray = start(guard, {helper("crasher"), "5"});
  REQUIRE(test::waitExit(managed));
  REQUIRE(test::waitExit(stray));
  auto reaped = reapOrphans([&](pid_t p) { return p == managed.pid(); });
  REQUIRE(reaped.size() == 1);
  CHECK(reaped[0].pid == stray.pid());
  CHECK(reaped[0].status.code == 5);
  auto st = managed.peekExit();
  REQUIRE(st.ok());
  REQUIRE(st->has_value());
  CHECK((*st)->code == 4);
  CHECK(managed.release().ok());
  CHECK(listChildren().empty());
}

}  // namespace
}  // namespace provisr::spawner

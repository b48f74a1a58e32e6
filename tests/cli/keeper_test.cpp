// The keeper's pure parts: restart backoff, exit verdicts, components.json, the fd-store table,
// run_dir checks and the lock — no keeper process, a FakeClock for time.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cli/keeper/fd_table.hpp"
#include "cli/keeper/log.hpp"
#include "cli/keeper/run_dir.hpp"
#include "cli/keeper/supervision.hpp"
#include "tests/support/run.hpp"

using namespace provisr;
using namespace provisr::keeper;
using namespace std::chrono_literals;

namespace {

std::int64_t toMs(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// A pipe whose read end goes into the table and whose write end the test keeps.
struct TestPipe {
  UniqueFd read, write;
  TestPipe() {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    read.reset(p[0]);
    write.reset(p[1]);
  }
};

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

proto::Deposit deposit(const std::string& key, std::uint64_t gen, std::vector<proto::FdKind> kinds, std::int32_t pid = 0) {
  proto::Deposit d;
  d.key = key;
  d.generation = gen;
  d.kinds = std::move(kinds);
  d.pid = pid;
  return d;
}

std::vector<UniqueFd> fdsOf(std::vector<TestPipe>& pipes) {
  std::vector<UniqueFd> out;
  for (auto& p : pipes) out.push_back(std::move(p.read));
  return out;
}

}  // namespace

TEST_CASE("backoff: at once after a healthy run else 100 ms doubling to 5 s", "[cli][keeper]") {
  Backoff b;
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(toMs(b.afterExit(50ms)));
  CHECK(delays == std::vector<std::int64_t>{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000});
  CHECK(b.afterExit(1s) == Duration::zero());  // ran long enough: at once, and the ladder resets
  CHECK(toMs(b.afterExit(999ms)) == 100);
  CHECK(toMs(b.afterExit(0ms)) == 200);
  CHECK(b.afterExit(2h) == Duration::zero());
  CHECK(toMs(b.afterExit(10ms)) == 100);
}

TEST_CASE("supervision: verdicts for crashes exit 100 the master's exit 0 and shutdown", "[cli][keeper]") {
  FakeClock clock;
  Supervision sup(clock);
  for (Component c : kComponents) CHECK(sup.status(c).state == ComponentState::kStopped);
  CHECK_FALSE(sup.anyRunning());

  sup.started(Component::kSpawner, 101);
  sup.started(Component::kMaster, 102);
  sup.started(Component::kGateway, 103);
  CHECK(sup.anyRunning());

  SECTION("a crash right after the start backs off, a crash after a healthy run restarts at once") {
    clock.advance(200ms);
    auto d = sup.exited(Component::kGateway, 1, false);
    CHECK(d.verdict == ExitVerdict::kRestart);
    CHECK(toMs(d.delay) == 100);
    CHECK(sup.status(Component::kGateway).state == ComponentState::kRestarting);
    CHECK(sup.status(Component::kGateway).restarts == 1);
    CHECK(sup.status(Component::kGateway).pid == 103);  // last known while it restarts
    clock.advance(100ms);
    sup.started(Component::kGateway, 104);
    clock.advance(10ms);
    d = sup.exited(Component::kGateway, std::nullopt, false);  // killed by a signal
    CHECK(toMs(d.delay) == 200);
    clock.advance(200ms);
    sup.started(Component::kGateway, 105);
    clock.advance(1500ms);
    d = sup.exited(Component::kGateway, 1, false);
    CHECK(d.verdict == ExitVerdict::kRestart);
    CHECK(d.delay == Duration::zero());
    CHECK(sup.status(Component::kGateway).restarts == 3);
  }
  SECTION("exit code 100 from any component: no restart, shut down") {
    auto d = sup.exited(Component::kSpawner, kExitPermanent, false);
    CHECK(d.verdict == ExitVerdict::kPermanent);
    CHECK(sup.status(Component::kSpawner).state == ComponentState::kStopped);
    CHECK(sup.status(Component::kSpawner).restarts == 0);
  }
  SECTION("the master exiting 0 on its own is a requested shutdown; the others' 0 is a crash") {
    CHECK(sup.exited(Component::kMaster, 0, false).verdict == ExitVerdict::kShutdown);
    CHECK(sup.exited(Component::kGateway, 0, false).verdict == ExitVerdict::kRestart);
  }
  SECTION("while shutting down nothing comes back") {
    CHECK(sup.exited(Component::kMaster, 1, true).verdict == ExitVerdict::kStopped);
    CHECK(sup.exited(Component::kSpawner, std::nullopt, true).verdict == ExitVerdict::kStopped);
    CHECK(sup.status(Component::kMaster).restarts == 0);
    CHECK(sup.running(Component::kGateway));
    sup.markStopped(Component::kGateway);
    CHECK_FALSE(sup.anyRunning());
  }
}

TEST_CASE("components.json names every component with pid start restarts and state", "[cli][keeper]") {
  FakeClock clock;
  Supervision sup(clock);
  const std::int64_t t0 = unixMs(clock.wallNow());
  sup.started(Component::kSpawner, 7, true, 1234);
  sup.started(Component::kMaster, 8);
  clock.advance(20ms);
  (void)sup.exited(Component::kMaster, 1, false);
  const std::string json = sup.renderJson(5, t0, ComponentState::kRunning);
  CHECK(json ==
        "{\"keeper\": {\"pid\": 5, \"started_at_ms\": " + std::to_string(t0) +
            ", \"restarts\": 0, \"state\": \"running\"}, "
            "\"spawner\": {\"pid\": 7, \"started_at_ms\": 1234, \"restarts\": 0, \"state\": \"running\", \"adopted\": true}, "
            "\"master\": {\"pid\": 8, \"started_at_ms\": " + std::to_string(t0) +
            ", \"restarts\": 1, \"state\": \"restarting\"}, "
            "\"gateway\": {\"pid\": null, \"started_at_ms\": null, \"restarts\": 0, \"state\": \"stopped\"}}\n");
}

TEST_CASE("log lines carry RFC 3339 UTC time with milliseconds", "[cli][keeper]") {
  const WallTime t{std::chrono::milliseconds(1'795'791'845'123)};
  CHECK(rfc3339Ms(t) == "2026-11-27T15:04:05.123Z");
  CHECK(unixMs(t) == 1'795'791'845'123);
}

TEST_CASE("fd table: deposits add to an entry a kind again replaces release closes", "[cli][keeper]") {
  FdTable t;
  std::vector<TestPipe> pipes(2);
  const int out = pipes[0].read.get();
  const int err = pipes[1].read.get();
  REQUIRE(t.deposit(deposit("web-1", 3, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe}), fdsOf(pipes)));
  CHECK(t.size() == 1);
  CHECK(t.fdCount() == 2);
  CHECK_FALSE(t.keyOfPid(42));

  TestPipe pidfdStandIn;
  const int pidfd = pidfdStandIn.read.get();
  std::vector<UniqueFd> one;
  one.push_back(std::move(pidfdStandIn.read));
  REQUIRE(t.deposit(deposit("web-1", 3, {proto::FdKind::kPidfd}, 42), std::move(one)));
  const FdEntry* e = t.find({"web-1", 3});
  REQUIRE(e != nullptr);
  CHECK(e->kinds == std::vector<proto::FdKind>{proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe, proto::FdKind::kPidfd});
  CHECK(e->pid == 42);
  CHECK(t.keyOfPid(42) == FdKey{"web-1", 3});
  CHECK(t.groups() == std::vector<pid_t>{42});

  // The same kind again (a spawner re-depositing after a reconnect) replaces the old fd.
  TestPipe again;
  std::vector<UniqueFd> rep;
  rep.push_back(std::move(again.read));
  REQUIRE(t.deposit(deposit("web-1", 3, {proto::FdKind::kStdoutPipe}), std::move(rep)));
  CHECK(t.fdCount() == 3);
  CHECK_FALSE(isOpen(out));

  CHECK(t.release({"web-1", 3}));
  CHECK_FALSE(t.release({"web-1", 3}));
  CHECK(t.size() == 0);
  CHECK_FALSE(isOpen(err));
  CHECK_FALSE(t.keyOfPid(42));
  // Released while a member might still run: the group is remembered until pruned, with the
  // leader's pidfd that names it safely (keeper_groups_test.cpp).
  CHECK(t.groups() == std::vector<pid_t>{42});
  REQUIRE(t.groupRefs().size() == 1);
  CHECK(t.groupRefs()[0].pidfd == pidfd);
  CHECK(isOpen(pidfd));
  t.pruneGroups([](const GroupRef&) { return false; });
  CHECK(t.groups().empty());
  CHECK_FALSE(isOpen(pidfd));
}

TEST_CASE("fd table: bad deposits are refused and their fds closed", "[cli][keeper]") {
  FdTable t;
  auto tryDeposit = [&](proto::Deposit d, std::size_t nfds) {
    std::vector<TestPipe> pipes(nfds);
    std::vector<int> raw;
    for (auto& p : pipes) raw.push_back(p.read.get());
    auto st = t.deposit(d, fdsOf(pipes));
    if (!st) {
      for (int fd : raw) CHECK_FALSE(isOpen(fd));
    }
    return st.ok();
  };
  CHECK_FALSE(tryDeposit(deposit("a", 1, {proto::FdKind::kStdoutPipe}), 2));  // count mismatch
  CHECK_FALSE(tryDeposit(deposit("", 1, {}), 0));
  CHECK_FALSE(tryDeposit(deposit("../x", 1, {proto::FdKind::kStdoutPipe}), 1));
  CHECK_FALSE(tryDeposit(deposit(std::string(kMaxKeyLength + 1, 'a'), 1, {proto::FdKind::kPidfd}), 1));
  CHECK_FALSE(tryDeposit(deposit("a", 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStdoutPipe}), 2));
  CHECK_FALSE(tryDeposit(deposit("a", 1, {proto::FdKind::kPidfd}, -5), 1));
  CHECK(t.size() == 0);
  CHECK(tryDeposit(deposit("a.b_c-1", 1, {proto::FdKind::kPidfd}, 9), 1));
  CHECK(validKey(std::string(kMaxKeyLength, 'z')));
}

TEST_CASE("fd table: a reaped managed child is reported until released — orphans are not", "[cli][keeper]") {
  FdTable t;
  std::vector<TestPipe> pipes(1);
  REQUIRE(t.deposit(deposit("db", 2, {proto::FdKind::kPidfd}, 300), fdsOf(pipes)));
  CHECK_FALSE(t.recordExit(301, 0, 1));  // an orphan: nothing to report
  auto ex = t.recordExit(300, 9, 1234);
  REQUIRE(ex);
  CHECK(ex->key == "db");
  CHECK(ex->generation == 2);
  CHECK(ex->pid == 300);
  CHECK(ex->status == 9);
  CHECK(ex->at == 1234);
  CHECK_FALSE(t.keyOfPid(300));  // the pid may be reused now
  CHECK(t.pendingExits() == std::vector<proto::Exited>{*ex});
  CHECK(t.fdCount() == 1);  // the fds stay until Release
  auto chunk = t.nextChunk(std::nullopt);
  REQUIRE(chunk.msg.entries.size() == 1);
  CHECK(chunk.msg.entries[0].pid == 300);
  CHECK(t.groups() == std::vector<pid_t>{300});
  CHECK(t.release({"db", 2}));
  CHECK(t.pendingExits().empty());
}

TEST_CASE("fd table: withdraw chunks carry at most 253 fds whole entries last on the final one", "[cli][keeper]") {
  FdTable t;
  SECTION("empty table: one empty final chunk") {
    auto c = t.nextChunk(std::nullopt);
    CHECK(c.msg.entries.empty());
    CHECK(c.fds.empty());
    CHECK(c.msg.last);
  }
  SECTION("90 entries of 3 fds: 84 entries (252 fds), then 6") {
    for (int i = 0; i < 90; ++i) {
      std::vector<TestPipe> pipes(3);
      char key[16];
      std::snprintf(key, sizeof key, "p-%03d", i);
      REQUIRE(t.deposit(deposit(key, 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe, proto::FdKind::kPidfd}, 1000 + i),
                        fdsOf(pipes)));
    }
    auto c1 = t.nextChunk(std::nullopt);
    CHECK(c1.msg.entries.size() == 84);
    CHECK(c1.fds.size() == 252);
    CHECK_FALSE(c1.msg.last);
    CHECK(c1.fds[0] == t.find({"p-000", 1})->fds[0].get());
    auto c2 = t.nextChunk(c1.lastKey);
    CHECK(c2.msg.entries.size() == 6);
    CHECK(c2.fds.size() == 18);
    CHECK(c2.msg.last);
    CHECK(c2.msg.entries.front().key == "p-084");
    // An entry released between two chunks is skipped, not sent closed.
    CHECK(t.release({"p-085", 1}));
    auto c3 = t.nextChunk(c1.lastKey);
    CHECK(c3.msg.entries.size() == 5);
  }
  SECTION("a small limit never splits an entry") {
    for (int i = 0; i < 3; ++i) {
      std::vector<TestPipe> pipes(2);
      REQUIRE(t.deposit(deposit("k" + std::to_string(i), 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe}), fdsOf(pipes)));
    }
    auto c = t.nextChunk(std::nullopt, 3);
    CHECK(c.msg.entries.size() == 1);
    CHECK(c.fds.size() == 2);
  }
}

TEST_CASE("run_dir: created 0700 — symlinks foreign modes under /tmp and a held lock are refused", "[cli][keeper]") {
  test::TempDir tmp;
  const std::string path = tmp.str() + "/a/run";
  auto rd = RunDir::open(path);
  REQUIRE(rd.ok());
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);

  SECTION("a symlink as run_dir") {
    std::filesystem::create_symlink(path, tmp.str() + "/link");
    auto bad = RunDir::open(tmp.str() + "/link");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("symlink") != std::string::npos);
  }
  SECTION("0755 under /tmp") {
    ::mkdir((tmp.str() + "/open").c_str(), 0755);
    ::chmod((tmp.str() + "/open").c_str(), 0755);
    auto bad = RunDir::open(tmp.str() + "/open");
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().message.find("0755") != std::string::npos);
  }
  SECTION("owned by someone else") {
    ::mkdir((tmp.str() + "/theirs").c_str(), 0700);
    if (::chown((tmp.str() + "/theirs").c_str(), 65534, 65534) == 0) {
      auto bad = RunDir::open(tmp.str() + "/theirs");
      REQUIRE_FALSE(bad.ok());
      CHECK(bad.error().message.find("owned by uid 65534") != std::string::npos);
    }
  }
  SECTION("relative or dotted paths") {
    CHECK_FALSE(RunDir::open("relative/run").ok());
    CHECK_FALSE(RunDir::open(tmp.str() + "/a/../a/run").ok());
  }
  SECTION("the lock: a second taker learns the holder's pid") {
    auto kd = rd->subdir("keeper");
    REQUIRE(kd.ok());
    auto first = takeKeeperLock(kd->get(), "keeper.lock");
    REQUIRE(first.ok());
    std::ifstream in(path + "/keeper/keeper.lock");
    std::string pid;
    in >> pid;
    CHECK(pid == std::to_string(::getpid()));
    auto second = takeKeeperLock(kd->get(), "keeper.lock");
    REQUIRE_FALSE(second.ok());
    CHECK(second.error().message.find("pid " + std::to_string(::getpid())) != std::string::npos);
    first->reset();
    CHECK(takeKeeperLock(kd->get(), "keeper.lock").ok());
  }
  SECTION("atomic writes and the secret") {
    REQUIRE(rd->writeAtomic("f.json", "{}\n", 0644).ok());
    std::ifstream in(path + "/f.json");
    std::string s;
    std::getline(in, s);
    CHECK(s == "{}");
    CHECK_FALSE(std::filesystem::exists(path + "/f.json.tmp"));
    auto secret = makeSecret();
    REQUIRE(secret.ok());
    CHECK(secret->size() == 64);
    CHECK(secret->find_first_not_of("0123456789abcdef") == std::string::npos);
    CHECK(*secret != *makeSecret());
    tmp.write("a/run/secret", *secret + "\n");
    ::chmod((path + "/secret").c_str(), 0644);
    CHECK_FALSE(readSecretFile(rd->fd(), "secret").ok());  // readable by others: refused
    ::chmod((path + "/secret").c_str(), 0600);
    auto back = readSecretFile(rd->fd(), "secret");
    REQUIRE(back.ok());
    CHECK(*back == *secret);
  }
}

// The real provisr-spawner on a temp run_dir, driven by a DEALER acting as the master: secret and
// epochs, batch spawns, exact exits, zombies released by the Ack, idempotent re-sends, the
// single-instance lock, garbage frames, logs, stops, and adoption after a kill -9.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/spawner/spawner_harness.hpp"

namespace provisr::spawner {
namespace {

using namespace std::chrono_literals;
using test::FakeMaster;
using test::GroupReaper;
using test::helper;
using test::SpawnerProcess;

struct Fixture {
  test::SubreaperScope subreaper;  // destroyed last: GroupReaper reaps while it holds
  test::TempDir dir;
  std::string runDir = dir.str("run");
  std::string logDir = dir.str("logs");
};

proto::ErrorReply expectError(FakeMaster& m) { return m.expect<proto::ErrorReply>(); }

TEST_CASE("spawner: Hello with the right secret gets an epoch a wrong one is refused", "[spawner]") {
  Fixture f;
  SpawnerProcess sp(f.runDir);
  FakeMaster bad(f.runDir, "impostor");
  proto::Hello h;
  h.secret = "not-the-secret";
  bad.send(h);
  auto err = expectError(bad);
  CHECK(err.code == ErrorCode::kUnauthorized);

  // Without Hello nothing is obeyed.
  proto::Snapshot snap;
  snap.epoch = 1;
  bad.send(snap);
  CHECK(expectError(bad).code == ErrorCode::kUnauthorized);

  FakeMaster m(f.runDir);
  CHECK(m.hello() == 1);
  CHECK(m.snapshot().children.empty());

  // run_dir 0700, socket 0600, lock holds our pid, secret file 0600.
  struct stat st {};
  REQUIRE(::stat((f.runDir + "/spawner").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::stat((f.runDir + "/spawner/spawner.sock").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((f.runDir + "/spawner/secret").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(test::slurp(f.runDir + "/spawner/secret") == test::kSecret + "\n");
  CHECK(test::slurp(f.runDir + "/spawner/spawner.lock") == std::to_string(sp.pid()) + "\n");
}

TEST_CASE("spawner: a newer master makes the older one's epoch stale", "[spawner]") {
  Fixture f;
  SpawnerProcess sp(f.runDir);
  FakeMaster oldM(f.runDir, "old");
  const auto e1 = oldM.hello();
  FakeMaster newM(f.runDir, "new");
  const auto e2 = newM.hello();
  CHECK(e2 == e1 + 1);

  proto::Spawn s;
  s.epoch = e1;
  s.children.push_back(test::childSpec("stale", 1, {helper("sleeper")}));
  oldM.send(s);
  CHECK(expectError(oldM).code == ErrorCode::kStaleEpoch);
  // Nothing was started by the stale request.
  CHECK(newM.snapshot().children.empty());
}

TEST_CASE("spawner: a batch spawn reports exact exits — the Ack releases the zombies", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();
  m.snapshot();

  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("exit3", 1, {helper("crasher"), "3", "50"}));
  s.children.push_back(test::childSpec("term", 1, {helper("crasher"), "sig:15", "50"}));
  s.children.push_back(test::childSpec("ok", 1, {helper("crasher"), "0", "50"}));
  s.children.push_back(test::childSpec("sleepy", 1, {helper("sleeper")}));
  s.children.push_back(test::childSpec("bad key!", 1, {helper("sleeper")}));
  s.children.push_back(test::childSpec("noexec", 1, {"/nonexistent/program"}));
  m.send(s);
  auto reply = m.expect<proto::SpawnReply>();
  REQUIRE(reply.results.size() == 6);
  for (std::size_t i = 0; i < 4; ++i) {
    INFO(reply.results[i].key << ": " << reply.results[i].message);
    CHECK(reply.results[i].accepted);
    REQUIRE(reply.results[i].pid.has_value());
    reaper.add(*reply.results[i].pid);
  }
  CHECK_FALSE(reply.results[4].accepted);
  CHECK(reply.results[4].code == ErrorCode::kInvalidArgument);
  CHECK(reply.results[5].accepted);
  CHECK(reply.results[5].code == ErrorCode::kSpawnFailed);
  CHECK_FALSE(reply.results[5].pid.has_value());

  auto failed = m.event<proto::SpawnFailed>("noexec");
  CHECK(failed.error_number == ENOENT);
  CHECK(failed.stage == "exec");

  auto started = m.event<proto::ChildStarted>("exit3");
  CHECK(started.pid == *reply.results[0].pid);
  CHECK(started.start_time_ticks > 0);
  CHECK_FALSE(started.adopted);

  auto e3 = m.event<proto::ChildExited>("exit3");
  CHECK(e3.exit_code == 3);
  CHECK_FALSE(e3.exit_signal.has_value());
  auto et = m.event<proto::ChildExited>("term");
  CHECK(et.exit_signal == SIGTERM);
  CHECK_FALSE(et.exit_code.has_value());
  auto eo = m.event<proto::ChildExited>("ok");
  CHECK(eo.exit_code == 0);

  // Not acknowledged yet: the zombies are held (state Z), and the snapshot says exited.
  for (pid_t p : {e3.pid, et.pid, eo.pid}) CHECK(test::procState(p) == 'Z');
  auto snap = m.snapshot();
  std::size_t exited = 0;
  for (const auto& c : snap.children) exited += c.state == proto::ChildState::kExited ? 1u : 0u;
  CHECK(exited == 3);

  m.ack(std::max({e3.seq, et.seq, eo.seq}));
  for (pid_t p : {e3.pid, et.pid, eo.pid}) {
    CHECK(test::eventually([&] { return test::procState(p) == 0; }));
  }
  // The sleeper still runs; the released children are gone from the snapshot.
  snap = m.snapshot();
  REQUIRE(snap.children.size() == 1);
  CHECK(snap.children[0].key == "sleepy");
  CHECK(snap.children[0].state == proto::ChildState::kRunning);
}

TEST_CASE("spawner: a re-sent Spawn never starts a second copy", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("once", 7, {helper("sleeper")}));
  m.send(s);
  auto first = m.expect<proto::SpawnReply>();
  INFO(first.results.at(0).message);
  REQUIRE(first.results.at(0).pid.has_value());
  reaper.add(*first.results[0].pid);
  m.send(s);
  auto again = m.expect<proto::SpawnReply>();
  CHECK(again.results.at(0).duplicate);
  CHECK(again.results[0].pid == first.results[0].pid);
  // An older generation is a duplicate too; the same key with a newer one while running conflicts.
  s.children[0].generation = 6;
  m.send(s);
  CHECK(m.expect<proto::SpawnReply>().results.at(0).duplicate);
  s.children[0].generation = 8;
  m.send(s);
  auto conflict = m.expect<proto::SpawnReply>();
  CHECK_FALSE(conflict.results.at(0).accepted);
  CHECK(conflict.results[0].code == ErrorCode::kConflict);
  CHECK(m.snapshot().children.size() == 1);
}

TEST_CASE("spawner: a second spawner on the same run_dir exits 100 with a clear message", "[spawner]") {
  Fixture f;
  SpawnerProcess first(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();  // the first one serves
  SpawnerProcess second(f.runDir);
  CHECK(second.wait(10s) == 100);
  CHECK_THAT(second.stderrText(), Catch::Contains("another provisr-spawner (pid " + std::to_string(first.pid()) + ")"));
  // The first still owns the socket.
  CHECK(m.snapshot().children.empty());
}

TEST_CASE("spawner: garbage and truncated frames get error replies and the spawner keeps serving", "[spawner]") {
  Fixture f;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.sendRaw("\xc1garbage");
  auto e1 = expectError(m);
  CHECK(e1.code == ErrorCode::kMalformed);
  proto::Hello h;
  h.secret = test::kSecret;
  std::string whole = proto::encode(h, 9);
  m.sendRaw(whole.substr(0, whole.size() / 2));
  CHECK(expectError(m).code == ErrorCode::kMalformed);
  // A 5-byte array header claiming 4G elements.
  m.sendRaw(std::string("\xdd\xff\xff\xff\xff", 5));
  CHECK(expectError(m).code == ErrorCode::kMalformed);
  // A sound envelope of a type the spawner does not take.
  m.send(proto::Groups{});
  CHECK(expectError(m).code == ErrorCode::kUnknownMessage);
  // A known type with a body of the wrong shape.
  m.hello();
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(4);
  pk.pack("v");
  pk.pack(1);
  pk.pack("id");
  pk.pack(5);
  pk.pack("type");
  pk.pack(static_cast<int>(proto::MsgType::kSpawn));
  pk.pack("body");
  pk.pack_map(2);
  pk.pack("epoch");
  pk.pack(m.epoch());
  pk.pack("children");
  pk.pack("not an array");
  m.sendRaw(std::string(buf.data(), buf.size()));
  CHECK(expectError(m).code == ErrorCode::kMalformed);
  CHECK(sp.wait(0ms) == -2);  // still running
  CHECK(m.snapshot().children.empty());
}

TEST_CASE("spawner: output reaches the log files and LogTail returns the lines", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("talk", 1, {helper("chatty"), "50", "both", "30", "talk"}, f.logDir));
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  REQUIRE(r.results.at(0).pid.has_value());
  reaper.add(*r.results[0].pid);
  auto ex = m.event<proto::ChildExited>("talk");
  CHECK(ex.exit_code == 0);
  // Counters: 50 lines of 30 bytes on each stream (the last LogStats has them all).
  proto::LogStats stats;
  do {
    stats = m.event<proto::LogStats>("talk");
  } while (stats.stdout_bytes < 1500 || stats.stderr_bytes < 1500);
  CHECK(stats.stdout_bytes == 1500);
  CHECK(stats.stderr_bytes == 1500);
  CHECK(stats.dropped_bytes == 0);
  auto countLines = [](const std::string& text) { return std::count(text.begin(), text.end(), '\n'); };
  CHECK(test::eventually([&] { return countLines(test::slurp(f.logDir + "/talk.out.log")) == 50; }));
  CHECK(test::eventually([&] { return countLines(test::slurp(f.logDir + "/talk.err.log")) == 50; }));
  CHECK_THAT(test::slurp(f.logDir + "/talk.out.log"), Catch::StartsWith("talk 0 "));

  proto::LogTail t;
  t.epoch = m.epoch();
  t.key = "talk";
  t.limit = 10;
  m.send(t);
  auto tail = m.expect<proto::LogTailReply>();
  REQUIRE(tail.lines.size() == 10);
  CHECK(tail.next == 100);
  CHECK(tail.lines.back().offset == 99);
  CHECK_THAT(tail.lines.back().text, Catch::StartsWith("talk 49 "));
  t.since = 0;
  t.limit = 1000;
  m.send(t);
  CHECK(m.expect<proto::LogTailReply>().lines.size() == 100);
  t.key = "nobody";
  m.send(t);
  CHECK(expectError(m).code == ErrorCode::kNotFound);

  proto::ReopenLogs ro;
  ro.epoch = m.epoch();
  m.send(ro);
  m.expect<proto::OkReply>();
}

TEST_CASE("spawner: StopChild signals the group and SIGKILLs it after the timeout", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("stubborn", 1, {helper("sigignore"), "2"}, f.logDir));
  s.children.push_back(test::childSpec("polite", 1, {helper("sleeper")}));
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  for (const auto& res : r.results) {
    REQUIRE(res.pid.has_value());
    reaper.add(*res.pid);
  }
  // Wait for the grandchildren to exist (the helper prints their pids).
  std::vector<pid_t> grand;
  REQUIRE(test::eventually([&] {
    std::istringstream in(test::slurp(f.logDir + "/stubborn.out.log"));
    grand.clear();
    long p = 0;
    while (in >> p) grand.push_back(static_cast<pid_t>(p));
    return grand.size() == 3;
  }));

  proto::StopChild stop;
  stop.epoch = m.epoch();
  stop.key = "polite";
  stop.signal = SIGTERM;
  stop.timeout_ms = 10'000;
  m.send(stop);
  m.expect<proto::OkReply>();
  CHECK(m.event<proto::ChildExited>("polite").exit_signal == SIGTERM);

  stop.key = "stubborn";
  stop.timeout_ms = 200;
  m.send(stop);
  m.expect<proto::OkReply>();
  auto ex = m.event<proto::ChildExited>("stubborn");
  CHECK(ex.exit_signal == SIGKILL);
  for (pid_t g : grand) CHECK(test::eventually([&] { return !test::pidAlive(g); }));

  stop.key = "nobody";
  m.send(stop);
  CHECK(expectError(m).code == ErrorCode::kNotFound);
  proto::SignalChild sig;
  sig.epoch = m.epoch();
  sig.key = "nobody";
  m.send(sig);
  CHECK(expectError(m).code == ErrorCode::kNotFound);
}

TEST_CASE("spawner: kill -9 leaves the children running — a new spawner adopts them from the journal", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  std::vector<pid_t> pids;
  {
    SpawnerProcess sp(f.runDir);
    FakeMaster m(f.runDir);
    m.hello();
    m.snapshot();
    proto::Spawn s;
    s.epoch = m.epoch();
    for (int i = 0; i < 3; ++i) s.children.push_back(test::childSpec("keep-" + std::to_string(i), 4, {helper("sleeper")}));
    m.send(s);
    auto r = m.expect<proto::SpawnReply>();
    for (const auto& res : r.results) {
      REQUIRE(res.pid.has_value());
      reaper.add(*res.pid);
      pids.push_back(*res.pid);
    }
    for (int i = 0; i < 3; ++i) m.event<proto::ChildStarted>("keep-" + std::to_string(i));
    // The journal is written at the end of the turn that started them.
    REQUIRE(test::eventually([&] {
      std::ifstream in(f.runDir + "/spawner/spawner.journal");
      std::string line;
      int n = 0;
      while (std::getline(in, line)) ++n;
      return n == 3;
    }));
    CHECK(sp.kill(SIGKILL) == -1);
  }
  for (pid_t p : pids) CHECK(test::pidAlive(p));

  // A journal line whose pid now names another process is never adopted.
  {
    std::ofstream out(f.runDir + "/spawner/spawner.journal", std::ios::app);
    out << "imposter 1 " << ::getpid() << " 12345 1 - - 0 0 0 0 0\n";
  }

  SpawnerProcess sp2(f.runDir);
  FakeMaster m2(f.runDir, "master-2");
  m2.hello();
  auto snap = m2.snapshot();
  REQUIRE(snap.children.size() == 3);
  for (const auto& c : snap.children) {
    INFO(c.key);
    CHECK(c.adopted);
    CHECK(c.state == proto::ChildState::kRunning);
    CHECK(c.generation == 4);
    CHECK(std::find(pids.begin(), pids.end(), c.pid) != pids.end());
  }
  CHECK_THAT(sp2.stderrText(), Catch::Contains("now names another process"));

  // A re-sent Spawn of the adopted generation is a duplicate.
  proto::Spawn again;
  again.epoch = m2.epoch();
  again.children.push_back(test::childSpec("keep-0", 4, {helper("sleeper")}));
  m2.send(again);
  CHECK(m2.expect<proto::SpawnReply>().results.at(0).duplicate);

  // Signals reach the adopted child; its exit is seen, with neither code nor signal (not ours).
  proto::SignalChild sig;
  sig.epoch = m2.epoch();
  sig.key = "keep-1";
  sig.signal = SIGKILL;
  m2.send(sig);
  m2.expect<proto::OkReply>();
  auto ex = m2.event<proto::ChildExited>("keep-1");
  CHECK_FALSE(ex.exit_code.has_value());
  CHECK_FALSE(ex.exit_signal.has_value());
  m2.ack(ex.seq);
  CHECK(test::eventually([&] { return m2.snapshot().children.size() == 2; }));
}

TEST_CASE("spawner: SIGTERM exits 0 and leaves the children running", "[spawner]") {
  Fixture f;
  GroupReaper reaper;
  SpawnerProcess sp(f.runDir);
  FakeMaster m(f.runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("survivor", 1, {helper("sleeper")}));
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  REQUIRE(r.results.at(0).pid.has_value());
  reaper.add(*r.results[0].pid);
  CHECK(sp.kill(SIGTERM) == 0);
  CHECK(test::pidAlive(*r.results[0].pid));
  CHECK_THAT(sp.stderrText(), Catch::Contains("exiting on SIGTERM; 1 children keep running"));
}

}  // namespace
}  // namespace provisr::spawner

namespace provisr::spawner {
namespace {

using namespace std::chrono_literals;
using test::FakeMaster;
using test::helper;
using test::SpawnerProcess;

// Context switches of every thread of `pid` (voluntary + involuntary): a wakeup costs at least one.
long contextSwitches(pid_t pid) {
  long total = 0;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(t.path() / "status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0 || line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) {
        total += std::stol(line.substr(line.find(':') + 1));
      }
    }
  }
  return total;
}

TEST_CASE("spawner: reaps orphaned grandchildren follows logs and sleeps when idle", "[spawner]") {
  test::SubreaperScope subreaper;
  test::TempDir dir;
  test::GroupReaper reaper;
  const std::string runDir = dir.str("run");
  SpawnerProcess sp(runDir);
  FakeMaster m(runDir);
  m.hello();
  m.snapshot();

  proto::LogFollow follow;
  follow.epoch = m.epoch();
  follow.key = "orphans";
  m.send(follow);
  m.expect<proto::OkReply>();

  proto::Spawn s;
  s.epoch = m.epoch();
  s.children.push_back(test::childSpec("orphans", 1, {helper("orphaner"), "100"}, dir.str("logs")));
  s.children.push_back(test::childSpec("idle", 1, {helper("sleeper")}));
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  for (const auto& res : r.results) {
    REQUIRE(res.pid.has_value());
    reaper.add(*res.pid);
  }
  // The grandchild's pid arrives as a followed log line.
  auto lines = m.expect<proto::LogLines>();
  CHECK(lines.key == "orphans");
  REQUIRE(lines.lines.size() == 1);
  const pid_t grandchild = static_cast<pid_t>(std::stol(lines.lines[0].text));
  reaper.add(grandchild);  // same group as the orphaner
  auto ex = m.event<proto::ChildExited>("orphans");
  CHECK(ex.exit_code == 0);
  m.ack(ex.seq);
  // Orphaned to the spawner (its subreaper) and reaped on SIGCHLD: no zombie stays behind.
  CHECK(test::eventually([&] { return test::procState(grandchild) == 0; }));

  // Idle: one child running, nothing to do — no thread of the spawner wakes up.
  CHECK(test::eventually([&] {
    const long before = contextSwitches(sp.pid());
    auto nothing = m.recv(300ms);  // nothing is expected; this is the idle window
    if (nothing) return false;     // a late LogStats: try another window
    return contextSwitches(sp.pid()) == before;
  }));
}

}  // namespace
}  // namespace provisr::spawner

namespace provisr::spawner {
namespace {

TEST_CASE("spawner: two instances sharing one log file never interleave half lines", "[spawner]") {
  test::SubreaperScope subreaper;
  test::TempDir dir;
  test::GroupReaper reaper;
  const std::string runDir = dir.str("run");
  const std::string shared = dir.str("logs") + "/shared.log";
  test::SpawnerProcess sp(runDir);
  test::FakeMaster m(runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  for (const char* tag : {"aaaa", "bbbb"}) {
    auto c = test::childSpec(tag, 1, {test::helper("chatty"), "300", "out", "30", tag, "split"});
    c.log.stdout_path = shared;
    c.log.stderr_path = shared;
    s.children.push_back(c);
  }
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  for (const auto& res : r.results) {
    REQUIRE(res.pid.has_value());
    reaper.add(*res.pid);
  }
  m.event<proto::ChildExited>("aaaa");
  m.event<proto::ChildExited>("bbbb");
  REQUIRE(test::eventually([&] {
    auto text = test::slurp(shared);
    return std::count(text.begin(), text.end(), '\n') == 600;
  }));
  std::istringstream in(test::slurp(shared));
  std::string line;
  std::map<std::string, long> next;
  while (std::getline(in, line)) {
    INFO(line);
    REQUIRE(line.size() == 29);
    std::string tag = line.substr(0, 4);
    REQUIRE((tag == "aaaa" || tag == "bbbb"));
    // Each writer's lines arrive whole and in order.
    CHECK(std::stol(line.substr(5)) == next[tag]++);
  }
  CHECK(next["aaaa"] == 300);
  CHECK(next["bbbb"] == 300);
}

TEST_CASE("spawner: a child runs as the user it names with exactly fds 0 1 2", "[spawner]") {
  if (::geteuid() != 0) {
    WARN("not root: user switching is not tested");
    return;
  }
  test::SubreaperScope subreaper;
  test::TempDir dir;
  test::GroupReaper reaper;
  const std::string runDir = dir.str("run");
  test::SpawnerProcess sp(runDir);
  test::FakeMaster m(runDir);
  m.hello();
  m.snapshot();
  proto::Spawn s;
  s.epoch = m.epoch();
  auto c = test::childSpec("who", 1, {test::helper("fdlist")});
  c.user = "nobody";
  s.children.push_back(c);
  m.send(s);
  auto r = m.expect<proto::SpawnReply>();
  REQUIRE(r.results.at(0).pid.has_value());
  reaper.add(*r.results[0].pid);
  auto ex = m.event<proto::ChildExited>("who");
  CHECK(ex.exit_code == 0);
  proto::LogTail t;
  t.epoch = m.epoch();
  t.key = "who";
  m.send(t);
  auto tail = m.expect<proto::LogTailReply>();
  std::string all;
  for (const auto& l : tail.lines) all += l.text + "\n";
  CHECK_THAT(all, Catch::Contains("fds 0 1 2\n"));
  CHECK_THAT(all, Catch::Contains("ids 65534 "));
}

}  // namespace
}  // namespace provisr::spawner

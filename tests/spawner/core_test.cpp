// SpawnerCore driven directly — no sockets: request validation, route and epoch checks, the Ack
// rules, one journal write per turn for a batch, a stop timeout on a fake clock, journal parsing,
// and adoption that refuses a reused pid.
#include "spawner/spawner_core.hpp"

#include <catch2/catch.hpp>

#include <sys/socket.h>

#include <fstream>

#include "spawner/journal.hpp"
#include "tests/spawner/spawner_harness.hpp"

namespace provisr::spawner {
namespace {

using namespace std::chrono_literals;
using test::helper;

const std::vector<std::string> kMaster = {"master"};

// A core on a real loop, capturing what it sends to the master.
struct CoreRig {
  explicit CoreRig(Clock& clock, std::string journal = "", Duration journalCleanup = std::chrono::milliseconds(20),
                   FdStoreClient* fdStore = nullptr, Duration keeperExitGrace = std::chrono::seconds(10)) {
    auto l = EventLoop::create(clock);
    REQUIRE(l.ok());
    loop = std::move(*l);
    CoreConfig cfg;
    cfg.secret = test::kSecret;
    cfg.journalPath = std::move(journal);
    cfg.selfPid = ::getpid();
    cfg.journalCleanupDelay = journalCleanup;
    cfg.keeperExitGrace = keeperExitGrace;
    core = std::make_unique<SpawnerCore>(
        *loop, cfg,
        [this](const std::vector<std::string>& route, const std::string& bytes) {
          sent.emplace_back(route, bytes);
          return true;
        },
        [this](const std::string& line) { logs.push_back(line); }, fdStore);
  }
  ~CoreRig() {
    core.reset();  // before the loop it watches on
  }

  proto::Envelope call(const std::vector<std::string>& route, const std::string& bytes) {
    auto r = core->onMessage(route, bytes);
    REQUIRE(r.has_value());
    auto env = proto::decodeEnvelope(r->data(), r->size());
    REQUIRE(env.ok());
    return std::move(*env);
  }
  template <class Reply, class Req>
  Reply request(const Req& req, const std::vector<std::string>& route = kMaster) {
    auto env = call(route, proto::encode(req, 1));
    auto b = proto::decodeReply<Reply>(env);
    INFO((b.ok() ? std::string() : b.error().message));
    REQUIRE(b.ok());
    return std::move(*b);
  }
  template <class Req>
  Error refused(const Req& req, const std::vector<std::string>& route = kMaster) {
    auto env = call(route, proto::encode(req, 1));
    auto b = proto::decodeReply<proto::OkReply>(env);
    REQUIRE_FALSE(b.ok());
    return b.error();
  }
  std::uint64_t hello(const std::vector<std::string>& route = kMaster) {
    proto::Hello h;
    h.secret = test::kSecret;
    epoch = request<proto::HelloReply>(h, route).epoch;
    proto::Snapshot s;
    s.epoch = epoch;
    request<proto::SnapshotReply>(s, route);
    return epoch;
  }
  proto::SpawnReply spawn(std::vector<proto::ChildSpec> children) {
    proto::Spawn s;
    s.epoch = epoch;
    s.children = std::move(children);
    return request<proto::SpawnReply>(s);
  }
  // Events sent so far of type T.
  template <class T>
  std::vector<T> events() const {
    std::vector<T> out;
    for (const auto& [route, bytes] : sent) {
      auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
      if (env.ok() && env->type == T::kType) out.push_back(*proto::decodeBody<T>(*env));
    }
    return out;
  }
  bool runUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      loop->runOnce(20ms);
      core->endOfTurn();
    }
    return true;
  }

  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<SpawnerCore> core;
  std::vector<std::pair<std::vector<std::string>, std::string>> sent;
  std::vector<std::string> logs;
  std::uint64_t epoch = 0;
};

TEST_CASE("core: every malformed field is refused and nothing starts", "[spawner]") {
  SystemClock clock;
  CoreRig rig(clock);
  rig.hello();
  auto ok = test::childSpec("ok", 1, {helper("sleeper")});
  std::vector<std::pair<std::string, proto::ChildSpec>> bad;
  auto with = [&](const std::string& what, auto mutate) {
    auto c = ok;
    mutate(c);
    bad.emplace_back(what, c);
  };
  with("empty key", [](auto& c) { c.key = ""; });
  with("key with a slash", [](auto& c) { c.key = "../etc"; });
  with("key with a space", [](auto& c) { c.key = "a b"; });
  with("key too long", [](auto& c) { c.key = std::string(129, 'k'); });
  with("empty argv", [](auto& c) { c.argv.clear(); });
  with("relative argv[0]", [](auto& c) { c.argv[0] = "sleeper"; });
  with("NUL in an argument", [](auto& c) { c.argv.push_back(std::string("a\0b", 3)); });
  with("env without =", [](auto& c) { c.env.push_back("NOEQUALS"); });
  with("env with empty name", [](auto& c) { c.env.push_back("=x"); });
  with("relative cwd", [](auto& c) { c.cwd = "tmp"; });
  with("empty user", [](auto& c) { c.user = ""; });
  with("user with a colon", [](auto& c) { c.user = "root:root"; });
  with("umask too big", [](auto& c) { c.umask = 01000; });
  with("relative log path", [](auto& c) { c.log.stdout_path = "out.log"; });
  with("too many args", [](auto& c) { c.argv.resize(kMaxArgs + 1, "x"); });
  std::vector<proto::ChildSpec> specs;
  for (const auto& [what, c] : bad) specs.push_back(c);
  auto reply = rig.spawn(specs);
  REQUIRE(reply.results.size() == bad.size());
  for (std::size_t i = 0; i < bad.size(); ++i) {
    INFO(bad[i].first << ": " << reply.results[i].message);
    CHECK_FALSE(reply.results[i].accepted);
    CHECK(reply.results[i].code == ErrorCode::kInvalidArgument);
  }
  CHECK(rig.core->children().size() == 0);
  CHECK(rig.core->lastSeq() == 0);
}

TEST_CASE("core: epochs routes and Acks are checked", "[spawner]") {
  SystemClock clock;
  CoreRig rig(clock);
  proto::Snapshot snap;
  snap.epoch = 1;
  CHECK(rig.refused(snap).code == ErrorCode::kUnauthorized);  // nobody said Hello

  proto::Hello wrong;
  wrong.secret = test::kSecret + "x";
  CHECK(rig.refused(wrong).code == ErrorCode::kUnauthorized);
  wrong.secret = "";
  CHECK(rig.refused(wrong).code == ErrorCode::kUnauthorized);

  const auto e1 = rig.hello();
  // The right epoch from a connection that did not say Hello is not obeyed.
  snap.epoch = e1;
  CHECK(rig.refused(snap, {"someone-else"}).code == ErrorCode::kUnauthorized);
  // A future epoch (a master of an earlier spawner) is stale too.
  snap.epoch = e1 + 5;
  CHECK(rig.refused(snap).code == ErrorCode::kStaleEpoch);

  const auto e2 = rig.hello({"master-2"});
  CHECK(e2 == e1 + 1);
  snap.epoch = e1;
  CHECK(rig.refused(snap).code == ErrorCode::kStaleEpoch);

  proto::Ack ack;
  ack.epoch = e2;
  ack.seq = 99;
  auto env = rig.call({"master-2"}, proto::encode(ack, 1));
  CHECK(proto::decodeReply<proto::OkReply>(env).error().code == ErrorCode::kInvalidArgument);
  ack.seq = 0;
  CHECK_FALSE(rig.core->onMessage({"master-2"}, proto::encode(ack, 1)).has_value());  // no reply
}

TEST_CASE("core: a batch of spawns is one journal write — exits wait for the Ack", "[spawner]") {
  SystemClock clock;
  test::TempDir dir;
  test::ProcessGuard guard;
  const std::string journal = dir.str("spawner.journal");
  CoreRig rig(clock, journal);
  rig.hello();
  std::vector<proto::ChildSpec> specs;
  for (int i = 0; i < 5; ++i) specs.push_back(test::childSpec("w-" + std::to_string(i), 1, {helper("sleeper")}));
  specs.push_back(test::childSpec("quick", 1, {helper("crasher"), "4"}));
  auto reply = rig.spawn(specs);
  for (const auto& r : reply.results) {
    REQUIRE(r.pid.has_value());
    guard.add(*r.pid);
  }
  rig.core->endOfTurn();
  CHECK(rig.core->journalWrites() == 1);
  auto loaded = loadJournal(journal);
  REQUIRE(loaded.ok());
  CHECK(loaded->entries.size() == 6);
  for (const auto& e : loaded->entries) CHECK(e.startTicks == readStartTicks(e.pid));

  REQUIRE(rig.runUntil([&] { return !rig.events<proto::ChildExited>().empty(); }));
  auto ex = rig.events<proto::ChildExited>().at(0);
  CHECK(ex.key == "quick");
  CHECK(ex.exit_code == 4);
  CHECK(test::procState(ex.pid) == 'Z');
  // The journal drops the exited child a little later (exits are batched).
  CHECK(rig.runUntil([&] { return loadJournal(journal)->entries.size() == 5; }));
  CHECK(rig.core->journalWrites() == 2);
  CHECK(rig.core->queuedEvents() == rig.core->lastSeq());  // nothing acknowledged yet
  CHECK(rig.events<proto::ChildStarted>().size() == 6);

  proto::Ack ack;
  ack.epoch = rig.epoch;
  ack.seq = ex.seq;
  CHECK_FALSE(rig.core->onMessage(kMaster, proto::encode(ack, 1)).has_value());
  CHECK(test::procState(ex.pid) == 0);
  CHECK(rig.core->queuedEvents() == 0);
  CHECK(rig.core->children().size() == 5);
}

TEST_CASE("core: a stop escalates to SIGKILL of the group when the (fake) timeout passes", "[spawner]") {
  FakeClock clock;
  test::ProcessGuard guard;
  CoreRig rig(clock);
  rig.hello();
  auto reply = rig.spawn({test::childSpec("stubborn", 1, {helper("sigignore"), "1"})});
  REQUIRE(reply.results.at(0).pid.has_value());
  guard.add(*reply.results[0].pid);
  // sigignore installs SIG_IGN for SIGTERM first thing; wait for its line so the TERM is ignored.
  REQUIRE(rig.runUntil([&] {
    proto::LogTail t;
    t.epoch = rig.epoch;
    t.key = "stubborn";
    return !rig.request<proto::LogTailReply>(t).lines.empty();
  }));
  proto::StopChild stop;
  stop.epoch = rig.epoch;
  stop.key = "stubborn";
  stop.signal = SIGTERM;
  stop.timeout_ms = 30'000;
  rig.request<proto::OkReply>(stop);
  for (int i = 0; i < 10; ++i) rig.loop->runOnce(5ms);  // real time passes, the fake clock does not
  CHECK(rig.events<proto::ChildExited>().empty());
  clock.advance(30s);
  REQUIRE(rig.runUntil([&] { return !rig.events<proto::ChildExited>().empty(); }));
  CHECK(rig.events<proto::ChildExited>().at(0).exit_signal == SIGKILL);
}

TEST_CASE("journal: lines round-trip odd paths survive bad lines are skipped", "[spawner]") {
  JournalEntry e;
  e.key = "api-server-2";
  e.generation = 12;
  e.pid = 4242;
  e.startTicks = 987654;
  e.startedAtMs = 1'800'000'000'123;
  e.log.stdout_path = "/var/log/with space/%odd.log";
  e.log.max_size_bytes = 77;
  e.log.compress = true;
  e.hasLog = true;
  auto back = parseJournalLine(formatJournalLine(e));
  REQUIRE(back.ok());
  CHECK(*back == e);
  // The five documented fields alone still parse.
  auto five = parseJournalLine("web 3 100 200 300");
  REQUIRE(five.ok());
  CHECK(five->pid == 100);
  CHECK_FALSE(five->hasLog);
  for (const char* bad : {"", "web", "web x 1 2 3", "web 1 -5 2 3", "web 1 2 3 4 /p"}) {
    INFO(bad);
    CHECK_FALSE(parseJournalLine(bad).ok());
  }
  test::TempDir dir;
  std::ofstream(dir.str("j")) << formatJournalLine(e) << "\ngarbage line\n\nweb 3 100 200 300\n";
  auto loaded = loadJournal(dir.str("j"));
  REQUIRE(loaded.ok());
  CHECK(loaded->entries.size() == 2);
  CHECK(loaded->badLines == 1);
  CHECK(loadJournal(dir.str("missing"))->entries.empty());
}

TEST_CASE("core: adoption takes a matching pid never a reused or vanished one", "[spawner]") {
  SystemClock clock;
  test::ProcessGuard guard;
  LaunchRequest lr;
  lr.argv = {helper("sleeper")};
  lr.env = test::baseEnv();
  auto alive = launch(lr);
  REQUIRE(alive.ok());
  guard.add(alive->pid);
  lr.argv = {helper("crasher"), "0"};
  auto dead = launch(lr);
  REQUIRE(dead.ok());
  ManagedChild deadChild(dead->pid, std::move(dead->pidfd), dead->startTicks);
  REQUIRE(test::waitExit(deadChild).has_value());
  REQUIRE(deadChild.release().ok());

  std::vector<JournalEntry> journal = {
      {"alive", 2, alive->pid, alive->startTicks, 5, {}, false},
      {"reused", 3, alive->pid, alive->startTicks + 1, 5, {}, false},
      {"vanished", 4, dead->pid, dead->startTicks, 5, {}, false},
  };
  CoreRig rig(clock);
  auto rep = rig.core->adopt(journal, {});
  CHECK(rep.adopted == 1);
  CHECK(rep.reused == 1);
  CHECK(rep.gone == 1);
  rig.hello();
  proto::Snapshot s;
  s.epoch = rig.epoch;
  auto snap = rig.request<proto::SnapshotReply>(s);
  REQUIRE(snap.children.size() == 1);
  CHECK(snap.children[0].key == "alive");
  CHECK(snap.children[0].adopted);
  CHECK(snap.children[0].pid == alive->pid);
  // The adopted child's generation is taken; those of children not adopted are free again (a
  // fresh master numbers its generations from 1 and must be able to start them).
  auto dup = rig.spawn({test::childSpec("alive", 2, {helper("sleeper")})});
  CHECK(dup.results.at(0).duplicate);
  auto again = rig.spawn({test::childSpec("vanished", 4, {helper("sleeper")})});
  CHECK(again.results.at(0).accepted);
  CHECK_FALSE(again.results.at(0).duplicate);
  REQUIRE(again.results.at(0).pid.value_or(0) > 0);
  guard.add(*again.results.at(0).pid);

  // Its end is seen through the pidfd; the status is unknown.
  ::kill(alive->pid, SIGKILL);
  REQUIRE(rig.runUntil([&] { return !rig.events<proto::ChildExited>().empty(); }));
  auto ex = rig.events<proto::ChildExited>().at(0);
  CHECK_FALSE(ex.exit_code.has_value());
  CHECK_FALSE(ex.exit_signal.has_value());
}


TEST_CASE("core: a child forked just before the spawner died is found by its stdout pipe", "[spawner]") {
  SystemClock clock;
  test::ProcessGuard guard;
  // The keeper's deposit: the pipes, made before the fork; the pidfd never arrived.
  auto withdrawnPipes = [](int out[2], int err[2]) {
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  };
  int out[2], err[2];
  withdrawnPipes(out, err);
  LaunchRequest lr;
  lr.argv = {helper("sleeper")};
  lr.env = test::baseEnv();
  lr.stdoutWrite = out[1];
  lr.stderrWrite = err[1];
  auto orphan = launch(lr);
  REQUIRE(orphan.ok());
  guard.add(orphan->pid);
  ::close(out[1]);
  ::close(err[1]);
  // A second entry whose pipes no process writes to: nothing to find, its fds go back.
  int out2[2], err2[2];
  withdrawnPipes(out2, err2);
  ::close(out2[1]);
  ::close(err2[1]);

  auto entry = [](const std::string& key, int o, int e) {
    WithdrawnEntry w;
    w.entry.key = key;
    w.entry.generation = 7;
    w.entry.kinds = {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe};
    w.fds.emplace_back(o);
    w.fds.emplace_back(e);
    return w;
  };
  std::vector<WithdrawnEntry> withdrawn;
  withdrawn.push_back(entry("orphan", out[0], err[0]));
  withdrawn.push_back(entry("nobody", out2[0], err2[0]));
  // The keeper's end of the fd store socket, to see what the spawner tells it.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd keeperEnd(sv[0]);
  FdStoreClient store{UniqueFd(sv[1])};
  // The keeper reports no exit here (there is none): the pidfd backstop applies it, soon.
  CoreRig rig(clock, "", std::chrono::milliseconds(20), &store, std::chrono::milliseconds(300));
  auto rep = rig.core->adopt({}, std::move(withdrawn));
  CHECK(rep.adopted == 1);
  CHECK(rep.dropped == 1);
  // The keeper's entry had no pid: the spawner deposits the child's pidfd and pid, so the keeper
  // knows whose exit it reaps. The entry without a process is given back.
  std::vector<proto::MsgType> told;
  for (;;) {
    auto dg = recvDatagram(keeperEnd.get(), std::chrono::milliseconds(0));
    REQUIRE(dg.ok());
    if (!dg->has_value()) break;
    auto env = proto::decodeEnvelope((*dg)->bytes.data(), (*dg)->bytes.size());
    REQUIRE(env.ok());
    told.push_back(env->type);
    if (env->type == proto::MsgType::kDeposit) {
      auto d = proto::decodeBody<proto::Deposit>(*env);
      REQUIRE(d.ok());
      CHECK(d->key == "orphan");
      CHECK(d->generation == 7);
      CHECK(d->pid == orphan->pid);
      CHECK(d->kinds == std::vector<proto::FdKind>{proto::FdKind::kPidfd});
      CHECK((*dg)->fds.size() == 1);
    }
  }
  CHECK(told == std::vector<proto::MsgType>{proto::MsgType::kDeposit, proto::MsgType::kRelease});
  rig.hello();
  proto::Snapshot s;
  s.epoch = rig.epoch;
  auto snap = rig.request<proto::SnapshotReply>(s);
  REQUIRE(snap.children.size() == 1);
  CHECK(snap.children[0].key == "orphan");
  CHECK(snap.children[0].generation == 7);
  CHECK(snap.children[0].pid == orphan->pid);
  // The master's re-sent Spawn of that generation finds it instead of starting a second copy.
  auto dup = rig.spawn({test::childSpec("orphan", 7, {helper("sleeper")})});
  CHECK(dup.results.at(0).duplicate);

  // It ends and no Exited comes from the keeper: after the grace it is exited, status unknown,
  // instead of running for good.
  ::kill(orphan->pid, SIGKILL);
  REQUIRE(rig.runUntil([&] { return !rig.events<proto::ChildExited>().empty(); }));
  auto ex = rig.events<proto::ChildExited>().at(0);
  CHECK(ex.key == "orphan");
  CHECK_FALSE(ex.exit_code.has_value());
  CHECK_FALSE(ex.exit_signal.has_value());
}

}  // namespace
}  // namespace provisr::spawner

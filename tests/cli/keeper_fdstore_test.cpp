// The keeper's fd store through its socket, as a spawner uses it: deposits of pipes and a pidfd
// come back working on withdraw (in chunks of at most 253 fds), bad messages get an error reply,
// a managed child the keeper inherits and reaps is reported as Exited until released — and a
// spawner that outlived its keeper is used, not duplicated.
#include <catch2/catch.hpp>

#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/proto/codec.hpp"
#include "tests/cli/keeper_harness.hpp"

using namespace provisr;
using namespace provisr::test;
using namespace std::chrono_literals;

namespace {

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

pid_t startSleeper() {
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (;;) ::pause();
  }
  return pid;
}

bool readable(int fd, int timeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeoutMs) == 1;
}

std::string readSome(int fd) {
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

proto::Deposit deposit(const std::string& key, std::uint64_t gen, std::vector<proto::FdKind> kinds, std::int32_t pid = 0) {
  proto::Deposit d;
  d.key = key;
  d.generation = gen;
  d.kinds = std::move(kinds);
  d.pid = pid;
  return d;
}

struct Withdrawn {
  std::vector<proto::WithdrawChunk> chunks;
  std::vector<std::vector<int>> fds;
};

Withdrawn withdraw(FdStoreClient& c, std::uint64_t id) {
  Withdrawn w;
  REQUIRE(c.send(proto::encode(proto::Withdraw{}, id)));
  for (;;) {
    auto r = c.receive();
    REQUIRE(r);
    auto env = proto::decodeEnvelope(r->bytes.data(), r->bytes.size());
    REQUIRE(env.ok());
    if (env->type == proto::MsgType::kExited) continue;  // a pending exit, sent on connect
    CHECK(env->id == id);
    auto chunk = proto::decodeBody<proto::WithdrawChunk>(*env);
    REQUIRE(chunk.ok());
    w.chunks.push_back(*chunk);
    w.fds.push_back(r->fds);
    if (chunk->last) return w;
  }
}

void closeAll(const Withdrawn& w) {
  for (const auto& v : w.fds)
    for (int fd : v) ::close(fd);
}

// Becomes the subreaper of what this test's keepers leave behind (the machine's pid 1 may not
// reap), and reaps it on the way out.
struct Subreaper {
  Subreaper() { REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0); }
  ~Subreaper() {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  }
};

bool allStarted(const KeeperRun& k) {
  return !k.starts("spawner").empty() && !k.starts("master").empty() && !k.starts("gateway").empty();
}

// Reads the keeper's answer to a Withdraw to its last chunk; the number of entries handed back
// (their fds are closed).
std::size_t withdrawnEntries(FdStoreClient& client) {
  std::size_t entries = 0;
  for (;;) {
    auto r = client.receive();
    REQUIRE(r);
    for (int fd : r->fds) ::close(fd);
    auto env = proto::decodeEnvelope(r->bytes.data(), r->bytes.size());
    REQUIRE(env.ok());
    auto chunk = proto::decodeBody<proto::WithdrawChunk>(*env);
    REQUIRE(chunk.ok());
    entries += chunk->entries.size();
    if (chunk->last) return entries;
  }
}

}  // namespace

TEST_CASE("fd store: deposited pipes and pidfd come back working — the keeper keeps its copies until Release", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return fdStoreReady(sock); }));
  struct stat st {};
  REQUIRE(::stat(sock.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  const pid_t sleeper = startSleeper();
  k.adopt(sleeper);
  int out[2], err[2];
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  const int pidfd = pidfdOpen(sleeper);
  REQUIRE(pidfd >= 0);
  {
    FdStoreClient spawner(sock);
    REQUIRE(spawner.connected());
    // Pipes before the fork, the pidfd after it: the second Deposit adds to the entry.
    REQUIRE(spawner.send(proto::encode(deposit("web-1", 4, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe}), 1),
                         {out[0], err[0]}));
    REQUIRE(spawner.send(proto::encode(deposit("web-1", 4, {proto::FdKind::kPidfd}, sleeper), 2), {pidfd}));
    // The spawner dies here: the connection closes, the keeper keeps everything.
  }
  ::close(out[0]);
  ::close(err[0]);
  ::close(pidfd);
  REQUIRE(::write(out[1], "to stdout\n", 10) == 10);
  REQUIRE(::write(err[1], "to stderr\n", 10) == 10);

  FdStoreClient next(sock);
  REQUIRE(next.connected());
  auto w = withdraw(next, 77);
  REQUIRE(w.chunks.size() == 1);
  REQUIRE(w.chunks[0].entries.size() == 1);
  const auto& e = w.chunks[0].entries[0];
  CHECK(e.key == "web-1");
  CHECK(e.generation == 4);
  CHECK(e.pid == sleeper);
  CHECK(e.kinds == std::vector<proto::FdKind>{proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe, proto::FdKind::kPidfd});
  REQUIRE(w.fds[0].size() == 3);
  for (int fd : w.fds[0]) CHECK((::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(readSome(w.fds[0][0]) == "to stdout\n");
  CHECK(readSome(w.fds[0][1]) == "to stderr\n");
  CHECK_FALSE(readable(w.fds[0][2], 0));  // the child runs
  REQUIRE(::kill(sleeper, SIGKILL) == 0);
  CHECK(readable(w.fds[0][2], 10000));  // the withdrawn pidfd sees it end
  CHECK(::waitpid(sleeper, nullptr, 0) == sleeper);
  closeAll(w);

  // Withdrawn is not released: a spawner killed mid-withdraw loses nothing.
  auto again = withdraw(next, 78);
  CHECK(again.chunks.at(0).entries.size() == 1);
  CHECK(again.fds.at(0).size() == 3);
  closeAll(again);
  proto::Release rel;
  rel.key = "web-1";
  rel.generation = 4;
  REQUIRE(next.send(proto::encode(rel, 79)));
  auto empty = withdraw(next, 80);
  CHECK(empty.chunks.size() == 1);
  CHECK(empty.chunks[0].entries.empty());
  CHECK(empty.fds[0].empty());
  ::close(out[1]);
  ::close(err[1]);

  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("fd store: a withdraw of 270 fds comes in chunks of at most 253 — bad messages get an error", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return fdStoreReady(sock); }));
  FdStoreClient c(sock);
  REQUIRE(c.connected());
  for (int i = 0; i < 90; ++i) {
    int p[3][2];
    for (auto& one : p) REQUIRE(::pipe2(one, O_CLOEXEC) == 0);
    char key[16];
    std::snprintf(key, sizeof key, "w-%03d", i);
    REQUIRE(c.send(proto::encode(deposit(key, 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe, proto::FdKind::kPidfd}), 0),
                   {p[0][0], p[1][0], p[2][0]}));
    for (auto& one : p) {
      ::close(one[0]);
      ::close(one[1]);
    }
  }
  auto w = withdraw(c, 9);
  REQUIRE(w.chunks.size() == 2);
  CHECK(w.chunks[0].entries.size() == 84);
  CHECK(w.fds[0].size() == 252);
  CHECK_FALSE(w.chunks[0].last);
  CHECK(w.chunks[1].entries.size() == 6);
  CHECK(w.fds[1].size() == 18);
  CHECK(w.chunks[0].entries.front().key == "w-000");
  CHECK(w.chunks[1].entries.back().key == "w-089");
  closeAll(w);

  // Garbage, a Deposit whose fds do not match its kinds, a message that is not for the store.
  REQUIRE(c.send("\xc1garbage"));
  auto r1 = c.receive();
  REQUIRE(r1);
  auto e1 = proto::decode<proto::ErrorReply>(r1->bytes.data(), r1->bytes.size());
  REQUIRE(e1.ok());
  CHECK(e1->code == ErrorCode::kMalformed);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  REQUIRE(c.send(proto::encode(deposit("x", 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe}), 31), {p[0]}));
  auto r2 = c.receive();
  REQUIRE(r2);
  auto env2 = proto::decodeEnvelope(r2->bytes.data(), r2->bytes.size());
  REQUIRE(env2.ok());
  CHECK(env2->id == 31);
  CHECK(proto::decodeBody<proto::ErrorReply>(*env2)->code == ErrorCode::kInvalidArgument);
  ::close(p[0]);
  // The keeper closed its copy of the refused fd: the write end sees no reader.
  CHECK(waitFor([&] {
    pollfd pf{p[1], 0, 0};
    return ::poll(&pf, 1, 0) == 1 && (pf.revents & POLLERR) != 0;
  }));
  ::close(p[1]);
  REQUIRE(c.send(proto::encode(proto::Snapshot{}, 32)));
  auto r3 = c.receive();
  REQUIRE(r3);
  CHECK(proto::decode<proto::ErrorReply>(r3->bytes.data(), r3->bytes.size())->code == ErrorCode::kUnknownMessage);
  // Still served after all that.
  auto w2 = withdraw(c, 33);
  CHECK(w2.chunks.size() == 2);
  closeAll(w2);

  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("fd store: the keeper reaps a managed child it inherited and reports Exited until Release", "[cli][keeper]") {
  KeeperRun k;
  k.order("spawner.fork", "");
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return std::filesystem::exists(k.ctl("kid.pid")) && fdStoreReady(sock); }));
  const pid_t kid = std::atoi(slurp(k.ctl("kid.pid")).c_str());
  REQUIRE(kid > 0);
  const pid_t spawner = k.starts("spawner").at(0).pid;
  CHECK(parentOf(kid) == spawner);

  FdStoreClient c(sock);
  REQUIRE(c.connected());
  const int pidfd = pidfdOpen(kid);
  REQUIRE(pidfd >= 0);
  REQUIRE(c.send(proto::encode(deposit("kid", 7, {proto::FdKind::kPidfd}, kid), 1), {pidfd}));
  ::close(pidfd);

  // The spawner dies: its child is re-parented to the keeper (the subreaper), not to init.
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return parentOf(kid) == keeper; }));
  REQUIRE(waitFor([&] { return k.starts("spawner").size() == 2; }));  // a fresh spawner

  REQUIRE(::kill(kid, SIGTERM) == 0);
  auto r = c.receive();
  INFO(k.log());
  REQUIRE(r);
  auto ex = proto::decode<proto::Exited>(r->bytes.data(), r->bytes.size());
  REQUIRE(ex.ok());
  CHECK(ex->key == "kid");
  CHECK(ex->generation == 7);
  CHECK(ex->pid == kid);
  CHECK(WIFSIGNALED(ex->status));
  CHECK(WTERMSIG(ex->status) == SIGTERM);
  CHECK(ex->at > 1'700'000'000'000);
  CHECK_FALSE(processAlive(kid));
  CHECK(::kill(kid, 0) != 0);  // reaped, not a zombie
  CHECK(waitFor([&] { return k.log().find("reaped managed child pid " + std::to_string(kid)) != std::string::npos; }));

  // A spawner connecting later is told too, until the entry is released.
  {
    FdStoreClient later(sock);
    auto r2 = later.receive();
    REQUIRE(r2);
    CHECK(proto::decode<proto::Exited>(r2->bytes.data(), r2->bytes.size())->pid == kid);
    proto::Release rel;
    rel.key = "kid";
    rel.generation = 7;
    REQUIRE(later.send(proto::encode(rel, 2)));
  }
  REQUIRE(waitFor([&] {
    FdStoreClient probe(sock);
    auto w = withdraw(probe, 3);
    closeAll(w);
    return w.chunks.at(0).entries.empty();
  }));
  FdStoreClient last(sock);
  CHECK_FALSE(last.receive(300ms));  // nothing pending any more

  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("fd store: a withdraw applies first everything a dead spawner sent however much of it is unread", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return fdStoreReady(sock); }));
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  // The keeper is stopped while the old spawner deposits and dies and the new one asks, so all of
  // it waits unread at once, more than the keeper reads from one connection in a turn (64).
  REQUIRE(::kill(keeper, SIGSTOP) == 0);
  int sent = 0;
  {
    FdStoreClient old(sock);
    REQUIRE(old.connected());
    for (int i = 0; i < 160; ++i) {
      proto::Deposit d = deposit("job-" + std::to_string(i), 1, {proto::FdKind::kStdoutPipe});
      if (!old.sendNow(proto::encode(d, static_cast<std::uint64_t>(i + 1)), {p[0]})) break;
      ++sent;
    }
  }
  FdStoreClient next(sock);  // queued in the listen backlog
  const bool asked = next.connected() && next.send(proto::encode(proto::Withdraw{}, 900));
  REQUIRE(::kill(keeper, SIGCONT) == 0);
  REQUIRE(asked);
  REQUIRE(sent > 64);
  const std::size_t entries = withdrawnEntries(next);
  INFO(k.log());
  CHECK(entries == static_cast<std::size_t>(sent));
  ::close(p[0]);
  ::close(p[1]);
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("fd store: a spawner that dies with unread messages still has its last deposits applied", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return fdStoreReady(sock); }));
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  int sent = 0;
  {
    FdStoreClient old(sock);
    REQUIRE(old.connected());
    // Something from the keeper the spawner never reads (an Exited, here a withdraw chunk): its
    // death then resets the connection, which the keeper's next read reports first.
    REQUIRE(old.send(proto::encode(proto::Withdraw{}, 1)));
    REQUIRE(old.readable(10000ms));
    REQUIRE(::kill(keeper, SIGSTOP) == 0);
    for (int i = 0; i < 10; ++i) {
      if (!old.sendNow(proto::encode(deposit("late-" + std::to_string(i), 1, {proto::FdKind::kStdoutPipe}), 2), {p[0]})) break;
      ++sent;
    }
  }
  FdStoreClient next(sock);
  const bool asked = next.connected() && next.send(proto::encode(proto::Withdraw{}, 900));
  REQUIRE(::kill(keeper, SIGCONT) == 0);
  REQUIRE(asked);
  REQUIRE(sent == 10);
  const std::size_t entries = withdrawnEntries(next);
  INFO(k.log());
  CHECK(entries == 10);
  ::close(p[0]);
  ::close(p[1]);
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("keeper: a spawner that outlived its keeper is used watched and replaced when it exits", "[cli][keeper]") {
  Subreaper reaper;
  KeeperRun k;
  const pid_t first = k.start();
  REQUIRE(waitFor([&] { return allStarted(k); }));
  const auto spawner = k.starts("spawner").at(0);
  const std::string secret = spawner.field("secret");
  // The keeper alone is killed; master and gateway follow it (the keeper arms PR_SET_PDEATHSIG
  // for them), the spawner stays.
  REQUIRE(::kill(first, SIGKILL) == 0);
  REQUIRE(k.waitExit(first) == 128 + SIGKILL);
  REQUIRE(processAlive(spawner.pid));
  REQUIRE(waitFor([&] { return !processAlive(k.starts("master").at(0).pid) && !processAlive(k.starts("gateway").at(0).pid); }));
  // A dying master may still hold master.lock for a moment: a process of ours plays it, so the
  // new keeper must wait for it to exit before starting its own.
  int lockPipe[2] = {-1, -1};
  REQUIRE(::pipe(lockPipe) == 0);
  const pid_t oldMaster = ::fork();
  if (oldMaster == 0) {
    const int fd = ::open((k.runDir() + "/master/master.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) ::_exit(1);
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::write(fd, pid.data(), pid.size()) < 0) ::_exit(1);
    (void)!::write(lockPipe[1], "x", 1);
    ::pause();
    ::_exit(0);
  }
  ::close(lockPipe[1]);
  char ready = 0;
  REQUIRE(::read(lockPipe[0], &ready, 1) == 1);
  ::close(lockPipe[0]);

  const pid_t second = k.start();
  REQUIRE(waitFor([&] { return k.log().find("(pid " + std::to_string(oldMaster) + ") still holds master.lock") != std::string::npos; }));
  INFO(k.log());
  CHECK(k.starts("master").size() == 1);
  ::kill(oldMaster, SIGKILL);
  ::waitpid(oldMaster, nullptr, 0);
  REQUIRE(waitFor([&] { return k.starts("master").size() == 2 && k.starts("gateway").size() >= 2; }));
  CHECK(k.indexOf("master", "lock-held") == -1);
  CHECK(k.starts("spawner").size() == 1);
  CHECK(k.starts("master").at(1).field("secret") == secret);
  CHECK(k.log().find("a spawner (pid " + std::to_string(spawner.pid) + ") survived the previous keeper") != std::string::npos);
  REQUIRE(waitFor([&] { return k.components()["gateway"]["pid"] == k.starts("gateway").at(1).pid; }));
  auto j = k.components();
  CHECK(j["spawner"]["pid"] == spawner.pid);
  CHECK(j["spawner"]["adopted"] == true);
  CHECK(j["spawner"]["state"] == "running");

  // It is not our child, but its end is seen (pidfd) and a fresh one starts with the same secret.
  REQUIRE(::kill(spawner.pid, SIGTERM) == 0);
  REQUIRE(waitFor([&] { return k.starts("spawner").size() == 2; }));
  CHECK(k.starts("spawner").at(1).field("secret") == secret);
  REQUIRE(waitFor([&] { return k.components()["spawner"]["pid"] == k.starts("spawner").at(1).pid; }));
  CHECK(k.components()["spawner"].count("adopted") == 0);

  REQUIRE(::kill(second, SIGTERM) == 0);
  CHECK(k.waitExit(second) == 0);
  for (const char* c : {"spawner", "master", "gateway"}) CHECK_FALSE(processAlive(k.starts(c).back().pid));
}

TEST_CASE("keeper: graceful shutdown kills leftovers of managed groups and ends inherited stragglers", "[cli][keeper]") {
  KeeperRun k;
  k.order("spawner.fork", "");
  const pid_t keeper = k.start();
  const std::string sock = k.runDir() + "/keeper/fdstore.sock";
  REQUIRE(waitFor([&] { return std::filesystem::exists(k.ctl("kid.pid")) && fdStoreReady(sock); }));
  const pid_t managed = std::atoi(slurp(k.ctl("kid.pid")).c_str());
  REQUIRE(managed > 0);
  k.adopt(managed);
  {
    FdStoreClient c(sock);
    const int pidfd = pidfdOpen(managed);
    REQUIRE(pidfd >= 0);
    REQUIRE(c.send(proto::encode(deposit("app", 1, {proto::FdKind::kPidfd}, managed), 1), {pidfd}));
    ::close(pidfd);
    // Deposits are fire-and-forget: a withdraw on the same connection shows it has landed.
    auto w = withdraw(c, 2);
    closeAll(w);
    REQUIRE(w.chunks.at(0).entries.size() == 1);
  }
  // The spawner dies: the managed child is now the keeper's. Its successor forks a child that
  // the store does not know (a straggler once that spawner is gone too).
  std::filesystem::remove(k.ctl("kid.pid"));
  k.order("spawner.fork", "");
  REQUIRE(::kill(k.starts("spawner").at(0).pid, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return std::filesystem::exists(k.ctl("kid.pid")); }));
  const pid_t straggler = std::atoi(slurp(k.ctl("kid.pid")).c_str());
  REQUIRE(straggler > 0);
  CHECK(parentOf(managed) == keeper);
  CHECK(parentOf(straggler) == k.starts("spawner").at(1).pid);

  // The fake master stops no program: what is left is the keeper's to end.
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  auto code = k.waitExit(keeper);
  INFO(k.log());
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(k.log().find("killed leftovers of process group " + std::to_string(managed)) != std::string::npos);
  CHECK(k.log().find("waiting for ") != std::string::npos);
  CHECK_FALSE(processAlive(managed));
  CHECK_FALSE(processAlive(straggler));
  CHECK(::kill(managed, 0) != 0);  // reaped by the keeper, not left a zombie
  CHECK(::kill(straggler, 0) != 0);
}

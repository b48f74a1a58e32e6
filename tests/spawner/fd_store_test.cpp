// The fd store from the spawner's side, against a fake keeper holder: the client's SCM_RIGHTS
// messages over a socketpair, and the real provisr-spawner depositing pipes before the fork and
// the pidfd after it, then a fresh spawner withdrawing them, re-adopting the child (same pid),
// resuming its log from the same pipe with no line lost, and reporting the keeper's exit status.
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <sstream>

#include "spawner/fd_store_client.hpp"
#include "tests/spawner/spawner_harness.hpp"

namespace provisr::spawner {
namespace {

using namespace std::chrono_literals;
using test::helper;

// The keeper's side, minimal: a listening SOCK_SEQPACKET socket, one connection at a time.
class FakeHolder {
 public:
  explicit FakeHolder(const std::string& path) : path_(path) {
    listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    REQUIRE(listen_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path.data(), path.size());
    REQUIRE(::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_.get(), 4) == 0);
  }
  void accept() {
    REQUIRE(test::waitReadable(listen_.get(), 10s));
    conn_.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    REQUIRE(conn_.valid());
  }
  // The next datagram, decoded as an envelope, with its fds.
  std::pair<proto::Envelope, std::vector<UniqueFd>> next() {
    auto d = recvDatagram(conn_.get(), 10000ms);
    REQUIRE(d.ok());
    REQUIRE(d->has_value());
    auto env = proto::decodeEnvelope((*d)->bytes.data(), (*d)->bytes.size());
    REQUIRE(env.ok());
    return {std::move(*env), std::move((*d)->fds)};
  }
  template <class T>
  std::pair<T, std::vector<UniqueFd>> expect() {
    auto [env, fds] = next();
    INFO("expected " << proto::msgTypeName(T::kType) << ", got " << proto::msgTypeName(env.type));
    REQUIRE(env.type == T::kType);
    auto b = proto::decodeBody<T>(env);
    REQUIRE(b.ok());
    return {std::move(*b), std::move(fds)};
  }
  template <class T>
  void send(const T& msg, const std::vector<int>& fds = {}) {
    REQUIRE(sendDatagram(conn_.get(), proto::encode(msg, 0), fds).ok());
  }

 private:
  std::string path_;
  UniqueFd listen_;
  UniqueFd conn_;
};

TEST_CASE("fd store client: deposit release and withdraw carry fds and entries", "[spawner]") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  FdStoreClient client{UniqueFd(sv[0])};
  UniqueFd keeper(sv[1]);
  auto pipe = makeOutputPipe();
  REQUIRE(pipe.ok());

  REQUIRE(client.deposit("web-1", 3, 0, {{proto::FdKind::kStdoutPipe, pipe->read.get()}}).ok());
  auto got = recvDatagram(keeper.get(), 1000ms);
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  auto dep = proto::decode<proto::Deposit>((*got)->bytes.data(), (*got)->bytes.size());
  REQUIRE(dep.ok());
  CHECK(dep->key == "web-1");
  CHECK(dep->generation == 3);
  CHECK(dep->kinds == std::vector<proto::FdKind>{proto::FdKind::kStdoutPipe});
  REQUIRE((*got)->fds.size() == 1);
  // The fd the keeper got is the same pipe: bytes written to ours come out of it.
  REQUIRE(::write(pipe->write.get(), "x\n", 2) == 2);
  char c[2];
  CHECK(::read((*got)->fds[0].get(), c, 2) == 2);

  REQUIRE(client.release("web-1", 3).ok());
  auto rel = recvDatagram(keeper.get(), 1000ms);
  REQUIRE(rel.ok());
  CHECK(proto::decode<proto::Release>((*rel)->bytes.data(), (*rel)->bytes.size())->key == "web-1");

  // Withdraw: an Exited that arrives first is kept; a chunk's fds are matched to its entries.
  proto::Exited ex;
  ex.key = "gone";
  ex.status = 3 << 8;
  REQUIRE(sendDatagram(keeper.get(), proto::encode(ex, 0), {}).ok());
  proto::WithdrawChunk chunk;
  chunk.entries.push_back({"web-1", 3, {proto::FdKind::kStdoutPipe}, 42});
  chunk.last = true;
  REQUIRE(sendDatagram(keeper.get(), proto::encode(chunk, 0), {(*got)->fds[0].get()}).ok());
  auto w = client.withdraw(1000ms);
  REQUIRE(w.ok());
  REQUIRE(w->exits.size() == 1);
  CHECK(w->exits[0].key == "gone");
  REQUIRE(w->entries.size() == 1);
  CHECK(w->entries[0].entry.pid == 42);
  CHECK(w->entries[0].fdOf(proto::FdKind::kStdoutPipe) >= 0);
  CHECK(w->entries[0].fdOf(proto::FdKind::kPidfd) == -1);
  // The Withdraw request itself reached the keeper.
  auto req = recvDatagram(keeper.get(), 1000ms);
  REQUIRE(req.ok());
  CHECK(proto::decode<proto::Withdraw>((*req)->bytes.data(), (*req)->bytes.size()).ok());

  // A chunk that names more fds than it carries is refused.
  chunk.entries[0].kinds.push_back(proto::FdKind::kPidfd);
  REQUIRE(sendDatagram(keeper.get(), proto::encode(chunk, 0), {pipe->read.get()}).ok());
  auto bad = client.withdraw(1000ms);
  CHECK_FALSE(bad.ok());

  // The keeper going away is an error value, not a crash.
  keeper.reset();
  auto after = client.readExited();
  CHECK_FALSE(after.ok());
  CHECK_FALSE(client.connected());
}

std::vector<long> ticks(const std::string& text) {
  std::vector<long> out;
  std::istringstream in(text);
  std::string word;
  long n = 0;
  while (in >> word >> n) out.push_back(n);
  return out;
}

bool consecutive(const std::vector<long>& v) {
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != static_cast<long>(i)) return false;
  }
  return true;
}

TEST_CASE("spawner with the fd store: a fresh spawner re-adopts the child and resumes its log", "[spawner]") {
  test::SubreaperScope subreaper;  // we play the keeper: the child comes to us when the spawner dies
  test::TempDir dir;
  test::GroupReaper reaper;
  const std::string runDir = dir.str("run");
  const std::string storePath = dir.str("fdstore.sock");
  const std::string logPath = dir.str("logs") + "/tick.out.log";
  FakeHolder holder(storePath);

  pid_t pid = 0;
  std::vector<UniqueFd> held;  // stdout pipe, stderr pipe, pidfd — as the keeper holds them
  {
    test::SpawnerProcess sp(runDir, test::kSecret, storePath);
    holder.accept();
    holder.expect<proto::Withdraw>();
    holder.send(proto::WithdrawChunk{{}, true});
    test::FakeMaster m(runDir);
    m.hello();
    m.snapshot();
    proto::Spawn s;
    s.epoch = m.epoch();
    s.children.push_back(test::childSpec("tick", 1, {helper("ticker"), "5"}, dir.str("logs")));
    m.send(s);
    auto r = m.expect<proto::SpawnReply>();
    REQUIRE(r.results.at(0).pid.has_value());
    pid = *r.results[0].pid;
    reaper.add(pid);

    auto [pipes, pipeFds] = holder.expect<proto::Deposit>();
    CHECK(pipes.pid == 0);  // before the fork
    CHECK(pipes.kinds == std::vector<proto::FdKind>{proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe});
    REQUIRE(pipeFds.size() == 2);
    auto [pidfd, pidfdFds] = holder.expect<proto::Deposit>();
    CHECK(pidfd.pid == pid);
    CHECK(pidfd.kinds == std::vector<proto::FdKind>{proto::FdKind::kPidfd});
    REQUIRE(pidfdFds.size() == 1);
    for (auto& fd : pipeFds) held.push_back(std::move(fd));
    held.push_back(std::move(pidfdFds[0]));

    REQUIRE(test::eventually([&] { return ticks(test::slurp(logPath)).size() >= 5; }));
    CHECK(sp.kill(SIGKILL) == -1);
  }
  // The child runs on, writing into the pipe the keeper holds.
  CHECK(test::pidAlive(pid));
  REQUIRE(test::eventually([&] {
    int n = 0;
    return ::ioctl(held[0].get(), FIONREAD, &n) == 0 && n > 0;
  }));

  test::SpawnerProcess sp2(runDir, test::kSecret, storePath);
  holder.accept();
  holder.expect<proto::Withdraw>();
  proto::WithdrawChunk chunk;
  chunk.entries.push_back(
      {"tick", 1, {proto::FdKind::kStdoutPipe, proto::FdKind::kStderrPipe, proto::FdKind::kPidfd}, pid});
  chunk.last = true;
  holder.send(chunk, {held[0].get(), held[1].get(), held[2].get()});

  test::FakeMaster m2(runDir, "master-2");
  m2.hello();
  auto snap = m2.snapshot();
  REQUIRE(snap.children.size() == 1);
  CHECK(snap.children[0].pid == pid);
  CHECK(snap.children[0].state == proto::ChildState::kRunning);
  CHECK_FALSE(snap.children[0].adopted);  // exit and output are still known: not a journal adoption

  // The log goes on from the same pipe: more lines, every number once, in order.
  const std::size_t before = ticks(test::slurp(logPath)).size();
  REQUIRE(test::eventually([&] { return ticks(test::slurp(logPath)).size() > before + 10; }));

  // A signal through the new spawner; the keeper (we) reaps and hands over the status.
  proto::SignalChild sig;
  sig.epoch = m2.epoch();
  sig.key = "tick";
  sig.signal = SIGTERM;
  m2.send(sig);
  m2.expect<proto::OkReply>();
  int status = 0;
  REQUIRE(test::eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }));
  REQUIRE(WIFEXITED(status));
  proto::Exited ex;
  ex.key = "tick";
  ex.generation = 1;
  ex.pid = pid;
  ex.status = status;
  ex.at = 1234;
  holder.send(ex);
  auto exited = m2.event<proto::ChildExited>("tick");
  CHECK(exited.exit_code == 7);
  CHECK(exited.at == 1234);
  m2.ack(exited.seq);
  auto [rel, relFds] = holder.expect<proto::Release>();
  CHECK(rel.key == "tick");
  CHECK(rel.generation == 1);

  auto all = ticks(test::slurp(logPath));
  CHECK(all.size() > before + 10);
  CHECK(consecutive(all));
}

}  // namespace
}  // namespace provisr::spawner

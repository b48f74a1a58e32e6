// Spawn benchmark through the real provisr-spawner: one Spawn of N `sleep` children over its
// ZeroMQ socket until every ChildStarted is in (to running), then N StopChild until every
// ChildExited is in and acknowledged (to stopped, zombies released) — against a bare posix_spawn
// loop plus kill and waitpid of the same N. Prints both and the ratio.
// usage: daemon_spawn_bench BIN_DIR [N] [PROGRAM]
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using provisr::proto::Envelope;

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Peer {
  zmq::context_t ctx{1};
  zmq::socket_t sock;
  std::uint64_t id = 0;
  template <class T>
  void send(const T& m) {
    if (!provisr::proto::sendMessage(sock, provisr::proto::encode(m, ++id)).ok()) std::abort();
  }
  Envelope recv() {
    for (;;) {
      auto m = provisr::proto::recvMessage(sock);
      if (!m) std::abort();
      if (m->has_value()) {
        auto env = provisr::proto::decodeEnvelope((*m)->payload.data(), (*m)->payload.size());
        if (!env) std::abort();
        return std::move(*env);
      }
      zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(10000));
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: daemon_spawn_bench BIN_DIR [N] [PROGRAM]\n");
    return 2;
  }
  const std::string bin = std::string(argv[1]) + "/provisr-spawner";
  const int n = argc > 2 ? std::atoi(argv[2]) : 1000;
  const std::string prog = argc > 3 ? argv[3] : "/bin/sleep";

  // ---- bare posix_spawn -------------------------------------------------------------------
  std::vector<pid_t> pids;
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    pid_t p;
    char* args[] = {const_cast<char*>(prog.c_str()), const_cast<char*>("3600"), nullptr};
    if (posix_spawn(&p, prog.c_str(), nullptr, nullptr, args, environ) != 0) return 1;
    pids.push_back(p);
  }
  auto t1 = Clock::now();
  for (pid_t p : pids) ::kill(p, SIGTERM);
  for (pid_t p : pids) ::waitpid(p, nullptr, 0);
  auto t2 = Clock::now();
  const double bareRun = ms(t1 - t0);
  const double bareStop = ms(t2 - t1);

  // ---- through provisr-spawner ------------------------------------------------------------
  char tmpl[] = "/tmp/provisr-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const std::string runDir = std::string(tmpl) + "/run";
  int sp[2];
  if (::pipe(sp) != 0) return 1;
  pid_t spawner = ::fork();
  if (spawner == 0) {
    ::dup2(sp[0], 3);
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);
    ::execl(bin.c_str(), bin.c_str(), "--run-dir", runDir.c_str(), "--secret-fd", "3", nullptr);
    ::_exit(127);
  }
  ::close(sp[0]);
  const std::string secret = "benchsecret";
  if (::write(sp[1], (secret + "\n").data(), secret.size() + 1) < 0) return 1;
  ::close(sp[1]);

  Peer m;
  provisr::proto::SocketOptions o;
  o.routing_id = "bench";
  auto opened = provisr::proto::openSocket(m.ctx, zmq::socket_type::dealer, o);
  if (!opened) return 1;
  m.sock = std::move(opened.value());
  (void)provisr::proto::connectSocket(m.sock, "ipc://" + runDir + "/spawner/spawner.sock");
  provisr::proto::Hello h;
  h.secret = secret;
  m.send(h);
  auto hr = provisr::proto::decodeBody<provisr::proto::HelloReply>(m.recv());
  const std::uint64_t epoch = hr->epoch;
  provisr::proto::Snapshot snap;
  snap.epoch = epoch;
  m.send(snap);
  (void)m.recv();

  provisr::proto::Spawn s;
  s.epoch = epoch;
  for (int i = 0; i < n; ++i) {
    provisr::proto::ChildSpec c;
    c.key = "b-" + std::to_string(i);
    c.generation = 1;
    c.argv = {prog, "3600"};
    c.env = {"PATH=/usr/bin:/bin"};
    s.children.push_back(std::move(c));
  }
  auto t3 = Clock::now();
  m.send(s);
  int started = 0;
  bool replied = false;
  std::uint64_t lastSeq = 0;
  while (started < n || !replied) {
    Envelope e = m.recv();
    if (e.type == provisr::proto::MsgType::kSpawnReply) replied = true;
    if (e.type == provisr::proto::MsgType::kChildStarted) {
      ++started;
      lastSeq = provisr::proto::decodeBody<provisr::proto::ChildStarted>(e)->seq;
    }
  }
  auto t4 = Clock::now();
  provisr::proto::Ack ack;
  ack.epoch = epoch;
  ack.seq = lastSeq;
  m.send(ack);
  for (int i = 0; i < n; ++i) {
    provisr::proto::StopChild st;
    st.epoch = epoch;
    st.key = "b-" + std::to_string(i);
    st.signal = SIGTERM;
    m.send(st);
  }
  int exited = 0;
  while (exited < n) {
    Envelope e = m.recv();
    if (e.type == provisr::proto::MsgType::kChildExited) {
      ++exited;
      lastSeq = std::max(lastSeq, provisr::proto::decodeBody<provisr::proto::ChildExited>(e)->seq);
    }
  }
  ack.seq = lastSeq;
  m.send(ack);
  // The Ack has no reply: a Snapshot after it shows every zombie released.
  m.send(snap);
  for (;;) {
    Envelope e = m.recv();
    if (e.type == provisr::proto::MsgType::kSnapshotReply) break;
  }
  auto t5 = Clock::now();
  ::kill(spawner, SIGTERM);
  ::waitpid(spawner, nullptr, 0);
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);

  const double spRun = ms(t4 - t3);
  const double spStop = ms(t5 - t4);
  std::printf("N=%d %s\n", n, prog.c_str());
  std::printf("bare posix_spawn:  to running %8.1f ms (%6.3f ms/child)  to stopped %8.1f ms\n", bareRun,
              bareRun / n, bareStop);
  std::printf("provisr-spawner:   to running %8.1f ms (%6.3f ms/child)  to stopped %8.1f ms\n", spRun, spRun / n,
              spStop);
  std::printf("ratio spawner/bare: running %.2fx  stopped %.2fx\n", spRun / bareRun, spStop / bareStop);
  return 0;
}

// Launches through the fork server (spawner/fork_server.hpp): the child is still ours (CLONE_PARENT),
// gets exactly fds 0 1 2 whatever this process holds, failures come back with stage and errno, and
// a server that dies — between launches or in the middle of one — costs no launch and starts no
// program twice.
#include "spawner/fork_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include "spawner/launcher.hpp"
#include "spawner/reaper.hpp"
#include "tests/spawner/launch_failures.hpp"
#include "tests/spawner/test_support.hpp"

namespace provisr::spawner {
namespace {

using namespace std::chrono_literals;
using test::helper;

// A fork server for one test case, stopped (and reaped) whatever the test does.
struct ServerGuard {
  ServerGuard() { REQUIRE(forkserver::start().ok()); }
  ~ServerGuard() {
    forkserver::dieAfterCloneForTests(false);
    forkserver::stop();
  }
  ServerGuard(const ServerGuard&) = delete;
  ServerGuard& operator=(const ServerGuard&) = delete;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

pid_t parentOf(pid_t pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("PPid:", 0) == 0) return static_cast<pid_t>(std::stol(line.substr(5)));
  }
  return -1;
}

std::size_t fdCount(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

bool running(pid_t pid) {
  const std::string st = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto close = st.rfind(')');
  return close != std::string::npos && close + 2 < st.size() && st[close + 2] != 'Z' && st[close + 2] != 'X';
}

// Opens n CLOEXEC fds, as the spawner holds log files and pipes.
struct ManyFds {
  explicit ManyFds(int n) {
    for (int i = 0; i < n; ++i) fds.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  std::vector<UniqueFd> fds;
};

// Launches, reads stdout to EOF, waits for the exit and reaps.
struct Ran {
  std::string out;
  ExitStatus exit;
  pid_t pid = -1;
  pid_t parent = -1;
};
Ran runToEnd(const LaunchRequest& req) {
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  Ran ran;
  ran.pid = r->pid;
  ran.parent = parentOf(r->pid);  // the zombie keeps its parent until it is reaped
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  ran.out = test::readAll(r->stdoutRead.get());
  auto ex = test::waitExit(child);
  REQUIRE(ex.has_value());
  ran.exit = *ex;
  REQUIRE(child.release().ok());
  return ran;
}

LaunchRequest fdlistRequest() {
  LaunchRequest req;
  req.argv = {helper("fdlist")};
  req.env = test::baseEnv();
  return req;
}

std::string factOf(const std::string& out, const std::string& key) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  }
  return "(none)";
}

TEST_CASE("fork server: the child is ours, with fds 0 1 2 only, whatever this process holds", "[spawner][forkserver]") {
  ManyFds many(300);
  UniqueFd leaked(::open("/dev/null", O_RDONLY));  // deliberately without O_CLOEXEC
  ServerGuard server;
  const pid_t serverPid = forkserver::pid();
  REQUIRE(serverPid > 0);
  // 0 1 2, its socket and /dev/null once it has closed what fork copied: not our 300.
  CHECK(test::eventually([&] { return fdCount(serverPid) <= 5; }));
  const auto before = forkserver::stats();

  Ran ran = runToEnd(fdlistRequest());
  CHECK(ran.exit.exited);
  CHECK(ran.exit.code == 0);
  CHECK(ran.parent == ::getpid());
  CHECK(factOf(ran.out, "fds") == "0 1 2");
  CHECK(factOf(ran.out, "blocked") == "0");
  CHECK(factOf(ran.out, "ignored") == "0");
  CHECK(factOf(ran.out, "nofile") == "1024");
  CHECK(factOf(ran.out, "pgid") == std::to_string(ran.pid) + " pid " + std::to_string(ran.pid));
  CHECK(forkserver::stats().launches == before.launches + 1);
  CHECK(forkserver::stats().fallbacks == before.fallbacks);
  CHECK(forkserver::pid() == serverPid);
}

TEST_CASE("fork server: argv, env, cwd, umask and a caller's pipe as requested", "[spawner][forkserver]") {
  ServerGuard server;
  test::TempDir dir;
  auto pipe = makeOutputPipe();
  REQUIRE(pipe.ok());
  LaunchRequest req;
  req.argv = {helper("fdlist"), "FOO", "HOME"};
  req.env = {"PATH=/usr/bin:/bin", "FOO=a b", "FOO=later wins"};
  req.cwd = dir.str();
  req.umask = 027;
  req.stdoutWrite = pipe->write.get();
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  CHECK_FALSE(r->stdoutRead.valid());
  CHECK(r->startTicks == readStartTicks(r->pid));
  pipe->write.reset();
  const std::string out = test::readAll(pipe->read.get());
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  REQUIRE(test::waitExit(child));
  CHECK(child.release().ok());
  CHECK(factOf(out, "cwd") == std::filesystem::canonical(dir.path()).string());
  CHECK(factOf(out, "umask") == "027");
  CHECK(factOf(out, "env") == "FOO=later wins");
  CHECK(out.find("env HOME=(unset)") != std::string::npos);
  CHECK(forkserver::stats().fallbacks == 0);
}

TEST_CASE("fork server: exec and chdir failures come back with stage and errno and leave no child", "[spawner][forkserver]") {
  ServerGuard server;
  test::TempDir dir;
  LaunchFailure why;
  test::checkStageFailures(dir, why);
  CHECK(forkserver::stats().launches >= 1);
  // The failed child was reaped inside launch: only the server is left.
  CHECK(listChildren() == std::vector<pid_t>{forkserver::pid()});
}

TEST_CASE("fork server: killed between launches, the next launch works and a new server is forked", "[spawner][forkserver]") {
  ServerGuard server;
  const pid_t first = forkserver::pid();
  REQUIRE(first > 0);
  REQUIRE(runToEnd(fdlistRequest()).exit.code == 0);
  REQUIRE(::kill(first, SIGKILL) == 0);
  REQUIRE(test::eventually([&] { return !running(first); }));

  // At once: the dead server is noticed and the launch goes through a new one or, inside the
  // restart interval, in process. Either way it runs, as our child, with fds 0 1 2.
  Ran ran = runToEnd(fdlistRequest());
  CHECK(ran.exit.code == 0);
  CHECK(ran.parent == ::getpid());
  CHECK(factOf(ran.out, "fds") == "0 1 2");
  CHECK(::waitpid(first, nullptr, WNOHANG) < 0);  // the old server was reaped (ECHILD)

  // Within a few restart intervals a new server takes the launches again.
  REQUIRE(test::eventually([&] {
    return runToEnd(fdlistRequest()).exit.code == 0 && forkserver::pid() > 0 && forkserver::pid() != first;
  }, 5s));
  const auto before = forkserver::stats();
  Ran again = runToEnd(fdlistRequest());
  CHECK(again.parent == ::getpid());
  CHECK(forkserver::stats().launches == before.launches + 1);
  CHECK(forkserver::stats().restarts >= 1);
}

TEST_CASE("fork server: a server dying in the middle of a launch leaves the child managed, not started twice", "[spawner][forkserver]") {
  forkserver::dieAfterCloneForTests(true);
  ServerGuard server;  // forked with the fault on
  test::TempDir dir;
  const auto before = forkserver::stats();
  LaunchRequest req;
  req.argv = {helper("sleeper"), "30"};
  req.env = test::baseEnv();
  req.cwd = dir.str();
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  forkserver::dieAfterCloneForTests(false);
  CHECK(forkserver::stats().recovered == before.recovered + 1);
  CHECK(parentOf(r->pid) == ::getpid());
  // Exactly one sleeper runs from that launch: ours.
  std::size_t sleepers = 0;
  for (pid_t p : listChildren()) {
    if (slurp("/proc/" + std::to_string(p) + "/cmdline").find("sleeper") != std::string::npos && running(p)) ++sleepers;
  }
  CHECK(sleepers == 1);
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  REQUIRE(child.signalLeader(SIGKILL).ok());
  REQUIRE(test::waitExit(child));
  CHECK(child.release().ok());
}

TEST_CASE("fork server: it dies with the process that forked it", "[spawner][forkserver]") {
  int report[2];
  REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
  UniqueFd readEnd(report[0]);
  UniqueFd writeEnd(report[1]);
  const pid_t owner = ::fork();
  REQUIRE(owner >= 0);
  if (owner == 0) {
    // The owner: start a server, say its pid, wait to be killed (bounded).
    pid_t p = forkserver::start().ok() ? forkserver::pid() : -1;
    [[maybe_unused]] ssize_t n = ::write(report[1], &p, sizeof p);
    for (int i = 0; i < 600; ++i) ::pause();  // each pause ends only on a signal; SIGKILL ends it
    ::_exit(0);
  }
  test::ProcessGuard guard;
  guard.add(owner);
  writeEnd.reset();
  pid_t server = -1;
  REQUIRE(test::waitReadable(readEnd.get(), 10s));
  REQUIRE(::read(readEnd.get(), &server, sizeof server) == static_cast<ssize_t>(sizeof server));
  REQUIRE(server > 0);
  CHECK(running(server));
  REQUIRE(::kill(owner, SIGKILL) == 0);
  CHECK(test::eventually([&] { return !running(server); }));
}

// Launch cost through the server and in process, with this process holding few or many fds.
// `tests_spawner "[forkserver-measure]"`; prints one line per case.
TEST_CASE("fork server: launch cost in process and through the server", "[.][forkserver-measure]") {
  const int n = std::getenv("PROVISR_LAUNCH_N") != nullptr ? std::atoi(std::getenv("PROVISR_LAUNCH_N")) : 300;
  auto runBatch = [&](bool viaServer, int extra) {
    ManyFds many(extra);
    std::unique_ptr<ServerGuard> server;
    if (viaServer) server = std::make_unique<ServerGuard>();
    LaunchRequest req;
    req.argv = {"/bin/true"};
    req.env = test::baseEnv();
    req.useCgroup = false;
    std::vector<ManagedChild> children;
    children.reserve(static_cast<std::size_t>(n));
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < n; ++i) {
      auto r = launch(req);
      REQUIRE(r.ok());
      children.emplace_back(r->pid, std::move(r->pidfd), r->startTicks);
    }
    const auto t1 = std::chrono::steady_clock::now();
    for (auto& c : children) {
      REQUIRE(test::waitExit(c));
      REQUIRE(c.release().ok());
    }
    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    std::printf("[measure] %d launches, %5d extra fds, %-10s: %8.1f ms (%.1f us each)\n", n, extra,
                viaServer ? "server" : "in process", ms, 1000.0 * ms / n);
  };
  for (int extra : {0, 500, 2500, 10000}) {
    runBatch(false, extra);
    runBatch(true, extra);
  }
}

}  // namespace
}  // namespace provisr::spawner

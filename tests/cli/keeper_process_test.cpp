// The real provisr-keeper with fake components: lock, start order and secret, restarts with
// backoff, components.json, signals and shutdown (graceful, requested, forced, exit 100).
#include <catch2/catch.hpp>

#include <sys/file.h>
#include <sys/prctl.h>

#include "tests/cli/keeper_harness.hpp"

using namespace provisr::test;
using namespace std::chrono_literals;

namespace {

bool isHexSecret(const std::string& s) {
  return s.size() == 64 && s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

bool lockFree(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool free = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
  ::close(fd);
  return free;
}

bool allStarted(const KeeperRun& k) {
  return !k.starts("spawner").empty() && !k.starts("master").empty() && !k.starts("gateway").empty();
}

}  // namespace

TEST_CASE("keeper: starts spawner master gateway in order with the secret — refuses a second keeper — SIGTERM stops all", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return allStarted(k) && k.log().find("started gateway") != std::string::npos; }));
  INFO(k.log());

  // Order: the keeper forks them one after the other and logs each.
  const std::string log = k.log();
  const auto s = log.find("started spawner");
  const auto m = log.find("started master");
  const auto g = log.find("started gateway");
  REQUIRE(s != std::string::npos);
  REQUIRE(m != std::string::npos);
  REQUIRE(g != std::string::npos);
  CHECK(s < m);
  CHECK(m < g);
  CHECK(log.find(" provisr-keeper[" + std::to_string(keeper) + "]: ") != std::string::npos);

  const auto spawner = k.starts("spawner").at(0);
  const auto master = k.starts("master").at(0);
  const auto gateway = k.starts("gateway").at(0);
  // One secret, through fd 3, to spawner and master; never in argv or env.
  const std::string secret = spawner.field("secret");
  CHECK(isHexSecret(secret));
  CHECK(master.field("secret") == secret);
  CHECK(gateway.field("secret") == "-");
  for (pid_t p : {spawner.pid, master.pid, gateway.pid}) {
    std::string cmdline = slurp("/proc/" + std::to_string(p) + "/cmdline");
    std::string env = slurp("/proc/" + std::to_string(p) + "/environ");
    CHECK(cmdline.find(secret) == std::string::npos);
    CHECK(env.find(secret) == std::string::npos);
  }
  // Command lines of docs/processes.md.
  const std::string rd = k.runDir();
  CHECK(spawner.field("args") == "--run-dir " + rd + " --secret-fd 3 --fdstore " + rd + "/keeper/fdstore.sock");
  CHECK(master.field("args").find("--run-dir " + rd + " --secret-fd 3") != std::string::npos);
  CHECK(master.field("args").rfind("--config /", 0) == 0);
  CHECK(gateway.field("args").find("--run-dir " + rd) != std::string::npos);
  // Nothing but 0, 1, 2 (the secret fd was read and closed); own process group; nothing blocked.
  for (const auto& e : {spawner, master, gateway}) {
    CHECK(e.field("fds") == "0,1,2");
    CHECK(e.field("pgid") == std::to_string(e.pid));
    CHECK(e.field("blocked") == "0");
  }

  // The lock holds our pid; a second keeper names it and exits 1 without touching anything.
  CHECK(slurp(rd + "/keeper/keeper.lock") == std::to_string(keeper) + "\n");
  auto second = run(k.args(), "", k.env(), 10s);
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("pid " + std::to_string(keeper)) != std::string::npos);
  CHECK(k.starts("spawner").size() == 1);

  // components.json: every component running, with its pid.
  REQUIRE(waitFor([&] {
    auto j = k.components();
    return !j.is_discarded() && j["gateway"]["pid"] == gateway.pid;
  }));
  auto j = k.components();
  CHECK(j["keeper"]["pid"] == keeper);
  CHECK(j["keeper"]["state"] == "running");
  CHECK(j["spawner"]["pid"] == spawner.pid);
  CHECK(j["master"]["pid"] == master.pid);
  for (const char* c : {"spawner", "master", "gateway"}) {
    CHECK(j[c]["state"] == "running");
    CHECK(j[c]["restarts"] == 0);
    CHECK(j[c]["started_at_ms"].is_number_integer());
  }
  CHECK(j["spawner"]["started_at_ms"].get<long>() <= j["master"]["started_at_ms"].get<long>());
  CHECK(j["master"]["started_at_ms"].get<long>() <= j["gateway"]["started_at_ms"].get<long>());

  // SIGTERM: the master first, then gateway and spawner; exit 0; nothing left; lock released.
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  auto code = k.waitExit(keeper);
  REQUIRE(code);
  CHECK(*code == 0);
  const long masterDone = k.indexOf("master", "exit 0");
  CHECK(masterDone >= 0);
  CHECK(masterDone < k.indexOf("gateway", "signal 15"));
  CHECK(masterDone < k.indexOf("spawner", "signal 15"));
  for (pid_t p : {spawner.pid, master.pid, gateway.pid}) CHECK_FALSE(processAlive(p));
  CHECK(lockFree(rd + "/keeper/keeper.lock"));
  CHECK_FALSE(std::filesystem::exists(rd + "/keeper/fdstore.sock"));
  j = k.components();
  for (const char* c : {"keeper", "spawner", "master", "gateway"}) CHECK(j[c]["state"] == "stopped");
}

TEST_CASE("keeper: a crash loop backs off 100 200 400 ms — a healthy component restarts at once with the same secret", "[cli][keeper]") {
  KeeperRun k;
  k.order("gateway.exit", "1");
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return k.starts("gateway").size() >= 4; }));
  INFO(k.log());
  const std::string log = k.log();
  const auto d1 = log.find("gateway exited with code 1; restarting it in 100 ms (crash loop)");
  const auto d2 = log.find("gateway exited with code 1; restarting it in 200 ms (crash loop)");
  const auto d3 = log.find("gateway exited with code 1; restarting it in 400 ms (crash loop)");
  REQUIRE(d1 != std::string::npos);
  REQUIRE(d2 != std::string::npos);
  REQUIRE(d3 != std::string::npos);
  CHECK(d1 < d2);
  CHECK(d2 < d3);
  REQUIRE(waitFor([&] {
    auto j = k.components();
    return !j.is_discarded() && j["gateway"]["restarts"].get<int>() >= 3;
  }));
  const auto state = k.components()["gateway"]["state"];  // between two starts, or in one
  CHECK((state == "restarting" || state == "running"));

  // The crash stops: the next start stays up.
  k.unorder("gateway.exit");
  REQUIRE(waitFor([&] {
    auto j = k.components();
    if (j.is_discarded() || j["gateway"]["state"] != "running") return false;
    return processAlive(j["gateway"]["pid"].get<pid_t>()) && !k.hasEvent("gateway", j["gateway"]["pid"].get<pid_t>(), "exit 1");
  }, 15s));

  // A master that ran for a while and is SIGKILLed comes back at once, with the same secret.
  const auto master = k.starts("master").at(0);
  // The policy under test needs a run of at least 1 s: wait until components.json says so.
  REQUIRE(waitFor([&] {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    return now - k.components()["master"]["started_at_ms"].get<long>() >= 1100;
  }));
  REQUIRE(::kill(master.pid, SIGKILL) == 0);
  REQUIRE(waitFor([&] { return k.starts("master").size() == 2; }));
  CHECK(k.log().find("master was killed by signal 9 (Killed); restarting it now") != std::string::npos);
  CHECK(k.starts("master").at(1).field("secret") == master.field("secret"));
  REQUIRE(waitFor([&] { return k.components()["master"]["restarts"] == 1; }));

  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("keeper: exit code 100 is not restarted and shuts everything down", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return allStarted(k); }));
  k.order("spawner.exit", "100");
  const auto first = k.starts("spawner").at(0);
  REQUIRE(::kill(first.pid, SIGKILL) == 0);  // comes back (after backoff or at once) and exits 100
  auto code = k.waitExit(keeper);
  INFO(k.log());
  REQUIRE(code);
  CHECK(*code == 100);
  CHECK(k.log().find("spawner exited with code 100 (do not restart): shutting everything down") != std::string::npos);
  CHECK(k.starts("spawner").size() == 2);
  CHECK(k.hasEvent("master", k.starts("master").at(0).pid, "exit 0"));
  CHECK(k.hasEvent("gateway", k.starts("gateway").at(0).pid, "exit 0"));
  CHECK(k.components()["spawner"]["state"] == "stopped");
}

TEST_CASE("keeper: the master exiting 0 on its own is a shutdown — SIGHUP and SIGUSR1 go to the master", "[cli][keeper]") {
  KeeperRun k;
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return allStarted(k); }));
  const pid_t master = k.starts("master").at(0).pid;
  REQUIRE(::kill(keeper, SIGHUP) == 0);
  REQUIRE(waitFor([&] { return k.hasEvent("master", master, "signal 1"); }));
  REQUIRE(::kill(keeper, SIGUSR1) == 0);
  REQUIRE(waitFor([&] { return k.hasEvent("master", master, "signal 10"); }));
  CHECK(k.indexOf("gateway", "signal 1") == -1);
  CHECK(k.indexOf("spawner", "signal 10") == -1);

  REQUIRE(::kill(master, SIGUSR2) == 0);  // the fake's "provisr shutdown": exit 0
  auto code = k.waitExit(keeper);
  INFO(k.log());
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(k.log().find("master exited 0 on its own: a requested shutdown") != std::string::npos);
  CHECK(k.starts("master").size() == 1);
  CHECK_FALSE(processAlive(k.starts("gateway").at(0).pid));
  CHECK_FALSE(processAlive(k.starts("spawner").at(0).pid));
}

TEST_CASE("keeper: a second SIGTERM during shutdown kills what does not stop", "[cli][keeper]") {
  KeeperRun k;
  k.order("master.ignoreterm", "");
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return allStarted(k); }));
  const pid_t master = k.starts("master").at(0).pid;
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  REQUIRE(waitFor([&] { return k.hasEvent("master", master, "signal 15"); }));
  CHECK(processAlive(keeper));
  CHECK(processAlive(master));
  REQUIRE(::kill(keeper, SIGINT) == 0);
  auto code = k.waitExit(keeper);
  INFO(k.log());
  REQUIRE(code);
  CHECK(*code == 1);
  CHECK(k.log().find("SIGINT during shutdown: killing everything") != std::string::npos);
  for (const char* c : {"spawner", "master", "gateway"}) CHECK_FALSE(processAlive(k.starts(c).at(0).pid));
}

TEST_CASE("keeper: missing component binaries crash-loop with the exec error logged", "[cli][keeper]") {
  KeeperRun k;
  std::filesystem::remove(k.dir() + "/lib/provisr-gateway");
  const pid_t keeper = k.start();
  REQUIRE(waitFor([&] { return k.log().find("restarting it in 200 ms") != std::string::npos; }));
  CHECK(k.log().find("cannot start gateway: exec " + k.dir() + "/lib/provisr-gateway: No such file or directory") != std::string::npos);
  CHECK(k.log().find("gateway exited with code 127; restarting it in 100 ms (crash loop)") != std::string::npos);
  REQUIRE(::kill(keeper, SIGTERM) == 0);
  CHECK(k.waitExit(keeper) == 0);
}

TEST_CASE("keeper: refuses a symlinked run_dir and a bad command line", "[cli][keeper]") {
  KeeperRun k;
  std::filesystem::create_directory(k.dir() + "/real", std::filesystem::path(k.dir()));
  std::filesystem::create_symlink(k.dir() + "/real", k.runDir());
  auto r = run(k.args(), "", k.env(), 10s);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("symlink") != std::string::npos);
  CHECK(k.starts("spawner").empty());
  auto usage = run({binPath("provisr-keeper"), "--run-dir", k.runDir()}, "", k.env(), 10s);
  CHECK(usage.exit_code == 2);
  CHECK(usage.err.find("--config is required") != std::string::npos);
}

TEST_CASE("keeper: --daemonize detaches writes the pid file and logs to --log-file", "[cli][keeper]") {
  // The daemon and its intermediate parent are orphans; become their reaper for this test (the
  // machine's pid 1 may not reap) so no zombie outlives it.
  REQUIRE(::prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
  struct Unsubreaper {
    ~Unsubreaper() {
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    }
  } unsubreaper;
  KeeperRun k;
  const std::string pidFile = k.dir() + "/keeper.pid";
  const std::string logFile = k.dir() + "/daemon.log";
  auto r = run(k.args({"--daemonize", "--pid-file", pidFile, "--log-file", logFile}), "", k.env(), 10s);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const pid_t daemon = std::atoi(slurp(pidFile).c_str());
  REQUIRE(daemon > 0);
  k.adopt(daemon);
  CHECK(processAlive(daemon));
  CHECK(slurp(k.runDir() + "/keeper/keeper.lock") == std::to_string(daemon) + "\n");
  REQUIRE(waitFor([&] { return allStarted(k); }));
  CHECK(slurp(logFile).find("provisr-keeper[" + std::to_string(daemon) + "]: started on") != std::string::npos);
  // Another session (the double fork left its leader behind: it can never regain a terminal).
  CHECK(::getsid(daemon) != ::getsid(0));
  CHECK(::getsid(daemon) != daemon);

  // A second daemonized keeper reports the holder through the waiting parent.
  auto second = run(k.args({"--daemonize", "--log-file", k.dir() + "/second.log"}), "", k.env(), 10s);
  CHECK(second.exit_code == 1);
  CHECK(second.err.find("pid " + std::to_string(daemon)) != std::string::npos);

  REQUIRE(::kill(daemon, SIGTERM) == 0);
  REQUIRE(waitFor([&] { return !processAlive(daemon); }, 15s));
  CHECK(::waitpid(daemon, nullptr, 0) == daemon);
  CHECK_FALSE(std::filesystem::exists(pidFile));
  CHECK(slurp(logFile).find("exiting with code 0") != std::string::npos);
}

// Tests of the launcher: argv/env/cwd/umask/user as requested, clean fds and signals, errors with errno.
#include "spawner/launcher.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <sstream>

#include "tests/spawner/launch_failures.hpp"
#include "tests/spawner/test_support.hpp"

namespace provisr::spawner {
namespace {

using test::helper;

// Parses fdlist's "key rest" lines.
std::map<std::string, std::string> facts(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto sp = line.find(' ');
    std::string key = line.substr(0, sp);
    std::string rest = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (key == "env") {
      auto eq = rest.find('=');
      out["env:" + rest.substr(0, eq)] = rest.substr(eq + 1);
    } else {
      out[key] = rest;
    }
  }
  return out;
}

// Runs fdlist with the request's settings and returns its facts and exit.
struct Ran {
  std::map<std::string, std::string> facts;
  ExitStatus exit;
  pid_t pid = -1;
};

Ran runFdlist(LaunchRequest req) {
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  std::string out = test::readAll(r->stdoutRead.get());
  auto ex = test::waitExit(child);
  REQUIRE(ex.has_value());
  REQUIRE(child.release().ok());
  return Ran{facts(out), *ex, r->pid};
}

TEST_CASE("launch runs argv with the requested env, cwd and umask", "[spawner]") {
  test::TempDir dir;
  LaunchRequest req;
  req.argv = {helper("fdlist"), "FOO", "PATH", "HOME"};
  req.env = {"PATH=/usr/bin:/bin", "FOO=bar baz", "FOO=later wins"};
  req.cwd = dir.str();
  req.umask = 027;
  Ran ran = runFdlist(req);
  CHECK(ran.exit.exited);
  CHECK(ran.exit.code == 0);
  CHECK(ran.facts["cwd"] == std::filesystem::canonical(dir.path()).string());
  CHECK(ran.facts["umask"] == "027");
  CHECK(ran.facts["env:FOO"] == "later wins");
  CHECK(ran.facts["env:PATH"] == "/usr/bin:/bin");
  CHECK(ran.facts["env:HOME"] == "(unset)");
}

TEST_CASE("the child gets exactly fds 0 1 2, default signals, its own group and nofile 1024", "[spawner]") {
  // Make the parent as hostile as the spawner is: a raised fd limit, a leaked non-CLOEXEC fd,
  // SIGPIPE ignored, a handler installed and signals blocked.
  rlimit old{};
  ::getrlimit(RLIMIT_NOFILE, &old);
  rlimit raised = old;
  raised.rlim_cur = old.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &raised);
  UniqueFd leaked(::open("/dev/null", O_RDONLY));  // deliberately without O_CLOEXEC
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  struct sigaction oldPipe {};
  struct sigaction oldUsr {};
  ::sigaction(SIGPIPE, &ign, &oldPipe);
  struct sigaction handler {};
  handler.sa_handler = [](int) {};
  ::sigaction(SIGUSR1, &handler, &oldUsr);
  sigset_t block;
  sigset_t oldMask;
  ::sigemptyset(&block);
  ::sigaddset(&block, SIGTERM);
  ::sigaddset(&block, SIGCHLD);
  ::pthread_sigmask(SIG_BLOCK, &block, &oldMask);

  LaunchRequest req;
  req.argv = {helper("fdlist")};
  req.env = test::baseEnv();
  Ran ran = runFdlist(req);

  ::pthread_sigmask(SIG_SETMASK, &oldMask, nullptr);
  ::sigaction(SIGPIPE, &oldPipe, nullptr);
  ::sigaction(SIGUSR1, &oldUsr, nullptr);
  ::setrlimit(RLIMIT_NOFILE, &old);

  CHECK(ran.facts["fds"] == "0 1 2");
  CHECK(ran.facts["blocked"] == "0");
  CHECK(ran.facts["ignored"] == "0");
  CHECK(ran.facts["nofile"] == "1024");
  CHECK(ran.facts["pgid"] == std::to_string(ran.pid) + " pid " + std::to_string(ran.pid));
}

TEST_CASE("argv[0] is searched in the child's PATH, not the spawner's", "[spawner]") {
  test::TempDir dir;
  std::string tool = dir.str("only-here-tool");
  std::filesystem::copy_file(helper("crasher"), tool);
  ::chmod(tool.c_str(), 0755);
  std::vector<std::string> env = {"PATH=/nonexistent:" + dir.str()};
  CHECK(resolveExecutable("only-here-tool", env) == tool);
  CHECK(resolveExecutable("only-here-tool", {"PATH=/usr/bin"}).empty());

  LaunchRequest req;
  req.argv = {"only-here-tool", "7"};
  req.env = env;
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  auto ex = test::waitExit(child);
  REQUIRE(ex);
  CHECK(ex->exited);
  CHECK(ex->code == 7);
  CHECK(child.release().ok());
}

TEST_CASE("exec failures and a bad cwd come back as errors with errno", "[spawner]") {
  test::TempDir dir;
  LaunchFailure why;

  SECTION("command not in PATH") {
    LaunchRequest req;
    req.argv = {"no-such-command-provisr"};
    req.env = {"PATH=" + dir.str()};
    auto r = launch(req, &why);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kSpawnFailed);
    CHECK(why.sysErrno == ENOENT);
    CHECK(r.error().message.find("not found") != std::string::npos);
  }
  test::checkStageFailures(dir, why);
  SECTION("unknown user") {
    LaunchRequest req;
    req.argv = {helper("sleeper"), "0"};
    req.user = "no-such-user-provisr";
    auto r = launch(req, &why);
    REQUIRE_FALSE(r.ok());
    CHECK(why.stage == "user");
  }
  SECTION("empty argv and malformed env") {
    LaunchRequest req;
    CHECK_FALSE(launch(req).ok());
    req.argv = {helper("sleeper")};
    req.env = {"NOEQUALS"};
    CHECK_FALSE(launch(req).ok());
  }
  // A failed launch leaves no child behind: it was reaped inside launch.
  CHECK(listChildren().empty());
}

TEST_CASE("user and group switch, with HOME/USER/LOGNAME/SHELL from the account", "[spawner]") {
  if (::geteuid() != 0 || ::getpwnam("nobody") == nullptr) {
    WARN("needs root and a 'nobody' user; skipped");
    return;
  }
  const passwd* pw = ::getpwnam("nobody");
  uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  std::string home = pw->pw_dir;
  LaunchRequest req;
  req.argv = {helper("fdlist"), "HOME", "USER", "LOGNAME", "SHELL"};
  req.env = {"PATH=/usr/bin:/bin", "HOME=/root", "USER=root"};
  req.user = "nobody";
  req.cwd = "/";
  Ran ran = runFdlist(req);
  CHECK(ran.exit.code == 0);
  CHECK(ran.facts["ids"] == std::to_string(uid) + " " + std::to_string(gid));
  CHECK(ran.facts["env:HOME"] == home);
  CHECK(ran.facts["env:USER"] == "nobody");
  CHECK(ran.facts["env:LOGNAME"] == "nobody");
  CHECK(ran.facts["env:SHELL"] != "(unset)");
}

TEST_CASE("caller-made pipes carry the output — start ticks name the process", "[spawner]") {
  auto out = makeOutputPipe();
  REQUIRE(out.ok());
  LaunchRequest req;
  req.argv = {helper("chatty"), "3", "both", "20", "x"};
  req.env = test::baseEnv();
  req.stdoutWrite = out->write.get();
  req.stderrWrite = out->write.get();
  test::ProcessGuard guard;
  auto r = launch(req);
  REQUIRE(r.ok());
  guard.add(r->pid);
  CHECK_FALSE(r->stdoutRead.valid());
  CHECK_FALSE(r->stderrRead.valid());
  CHECK(r->startTicks > 0);
  CHECK(r->startTicks == readStartTicks(r->pid));
  out->write.reset();  // the child holds the only write ends now: EOF when it exits
  std::string text = test::readAll(out->read.get());
  CHECK(text.size() == 6 * 20);
  ManagedChild child(r->pid, std::move(r->pidfd), r->startTicks);
  REQUIRE(test::waitExit(child));
  CHECK(child.release().ok());
}

}  // namespace
}  // namespace provisr::spawner

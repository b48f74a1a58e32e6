// The run_dir rule of SPEC §1.1 / issue 9 end to end: `provisr serve` refuses a run_dir under
// /tmp that another user owns, that others can read, or that is a symlink — a clear message,
// a non-zero exit, and nothing started (no component, no socket, no port).
#include <catch2/catch.hpp>

#include <pwd.h>
#include <sys/stat.h>

#include <filesystem>

#include <httplib.h>

#include "tests/security/security.hpp"

using namespace provisr::test;
using namespace provisr::test::security;

namespace {

// A path directly under /tmp, removed (without following a symlink) when the test ends.
class TmpPath {
 public:
  explicit TmpPath(const std::string& tag) : path("/tmp/provisr-rd-" + std::to_string(::getpid()) + "-" + tag) { clean(); }
  TmpPath(const TmpPath&) = delete;
  TmpPath& operator=(const TmpPath&) = delete;
  ~TmpPath() { clean(); }
  const std::string path;

 private:
  void clean() const {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);  // a symlink itself, never its target
  }
};

struct Refusal {
  RunResult result;
  std::vector<pid_t> leftovers;
};

// Runs `provisr serve` on `run_dir` with a one-program config; collects what it left running.
Refusal serveOn(const TempDir& dir, const std::string& run_dir, int port) {
  const std::string cfg = dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                                                      std::to_string(port) +
                                                      "\"\n[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.args = [\"" +
                                                      helper("sleeper") + "\"]\n");
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  Refusal r;
  r.result = run({binPath("provisr"), "serve", cfg, "--run-dir", run_dir}, "", {}, 15s);
  r.leftovers = childrenOfThisProcess();
  Daemon::killOrphans();
  return r;
}

bool listening(int port) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(1s);
  return static_cast<bool>(c.Get("/api/status"));
}

void checkRefused(const Refusal& r, const std::string& run_dir, const std::string& why, int port) {
  INFO("stderr: " << r.result.err);
  CHECK_FALSE(r.result.timed_out);
  CHECK(r.result.exit_code == 1);
  CHECK(r.result.err.find(run_dir) != std::string::npos);
  CHECK(r.result.err.find(why) != std::string::npos);
  CHECK(r.leftovers.empty());
  CHECK_FALSE(listening(port));
  // Nothing was created in it.
  CHECK_FALSE(std::filesystem::exists(run_dir + "/keeper"));
  CHECK_FALSE(std::filesystem::exists(run_dir + "/spawner"));
  CHECK_FALSE(std::filesystem::exists(run_dir + "/master"));
}

}  // namespace

TEST_CASE("run_dir under /tmp: owned by another user is refused", "[security][run_dir]") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  TmpPath rd("foreign");
  const passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  REQUIRE(::mkdir(rd.path.c_str(), 0700) == 0);
  REQUIRE(::chown(rd.path.c_str(), nobody->pw_uid, nobody->pw_gid) == 0);
  const int port = freePort();
  auto r = serveOn(dir, rd.path, port);
  checkRefused(r, rd.path, "is owned by uid " + std::to_string(nobody->pw_uid), port);
}

TEST_CASE("run_dir under /tmp: mode 0755 is refused", "[security][run_dir]") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  TmpPath rd("open");
  REQUIRE(::mkdir(rd.path.c_str(), 0700) == 0);
  REQUIRE(::chmod(rd.path.c_str(), 0755) == 0);
  const int port = freePort();
  auto r = serveOn(dir, rd.path, port);
  checkRefused(r, rd.path, "has mode 0755 under a shared directory; it must be 0700", port);
  CHECK((lstatOf(rd.path).st_mode & 07777) == 0755);  // left as it was
}

TEST_CASE("run_dir under /tmp: a symlink is refused, even to a good directory", "[security][run_dir]") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  TmpPath target("target");
  TmpPath link("link");
  REQUIRE(::mkdir(target.path.c_str(), 0700) == 0);
  REQUIRE(::symlink(target.path.c_str(), link.path.c_str()) == 0);
  const int port = freePort();
  auto r = serveOn(dir, link.path, port);
  checkRefused(r, link.path, "is a symlink", port);
  CHECK(std::filesystem::is_empty(target.path));
}

TEST_CASE("run_dir under /tmp: ours with mode 0700 is accepted (control)", "[security][run_dir]") {
  REQUIRE(::geteuid() == 0);
  TempDir dir;
  TmpPath rd("good");
  REQUIRE(::mkdir(rd.path.c_str(), 0700) == 0);
  const int port = freePort();
  const std::string cfg = dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                                                      std::to_string(port) + "\"\n");
  {
    Daemon d(cfg, rd.path, dir.str() + "/serve.log");
    INFO(d.log());
    CHECK(waitFor([&] { return listening(port); }, 20s));
  }
  Daemon::killOrphans();
}

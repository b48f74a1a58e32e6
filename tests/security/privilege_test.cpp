// Least privilege (DESIGN §2, §6; issue 9) with the real binaries, as root: `[daemon] user`
// drops master and gateway to a throwaway account (its groups, NoNewPrivs), the spawner stays
// root, run_dir and sockets let the dropped components in and nobody else, master.state stays
// writable, a master killed with SIGKILL comes back dropped and adopts the children, and the
// re-armed death signal takes master and gateway down with a killed keeper.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <httplib.h>

#include "tests/security/security.hpp"

using namespace provisr::test;
using namespace provisr::test::security;

namespace {

struct DroppedDaemon {
  explicit DroppedDaemon(const TestUser& user) {
    // The dropped components walk through the temp dir to reach run_dir.
    ::chmod(dir.str().c_str(), 0711);
    port = freePort();
    config = dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                                          std::to_string(port) + "\"\n[daemon]\nuser = \"" + user.name +
                                          "\"\n[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.args = [\"" +
                                          helper("sleeper") + "\"]\n");
    run_dir = dir.str() + "/run";
    daemon = std::make_unique<Daemon>(config, run_dir, dir.str() + "/serve.log");
  }
  httplib::Result get(const std::string& path) const {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(2s);
    c.set_read_timeout(10s);
    return c.Get(("/api" + path).c_str());
  }
  httplib::Result post(const std::string& path) const {
    httplib::Client c("127.0.0.1", port);
    c.set_connection_timeout(2s);
    c.set_read_timeout(10s);
    return c.Post(("/api" + path).c_str(), "", "application/json");
  }
  std::string state(const std::string& name) const {
    auto r = get("/status?name=" + name);
    if (!r || r->status != 200) return "";
    auto j = json::parse(r->body, nullptr, false);
    return j.is_object() ? j.value("state", "") : "";
  }
  std::optional<int> childPid(const std::string& name) const {
    auto r = get("/status?name=" + name);
    if (!r || r->status != 200) return std::nullopt;
    auto j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j["pid"].is_number_integer()) return std::nullopt;
    return j["pid"].get<int>();
  }

  TempDir dir;
  int port = 0;
  std::string config, run_dir;
  std::unique_ptr<Daemon> daemon;
};

// Checks one process's credentials: all four uids and gids, the supplementary groups, NoNewPrivs.
void checkDropped(pid_t pid, const TestUser& user) {
  INFO("pid " << pid);
  CHECK(statusNumbers(pid, "Uid") == std::vector<long>(4, static_cast<long>(user.uid)));
  CHECK(statusNumbers(pid, "Gid") == std::vector<long>(4, static_cast<long>(user.gid)));
  auto groups = statusNumbers(pid, "Groups");
  std::sort(groups.begin(), groups.end());
  std::vector<long> want{static_cast<long>(user.gid), static_cast<long>(user.extra_gid)};
  std::sort(want.begin(), want.end());
  CHECK(groups == want);
  CHECK(statusField(pid, "NoNewPrivs") == "1");
  CHECK(statusField(pid, "CapEff") == "0000000000000000");
}

// Runs `fn` in a child that became `uid` (nobody); returns its exit code.
int asUser(uid_t uid, gid_t gid, const std::function<int()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(99);
    ::_exit(fn());
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int connectUnix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  const int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  const int e = errno;
  ::close(fd);
  return rc == 0 ? 0 : e;
}

}  // namespace

TEST_CASE("privilege: master and gateway drop to [daemon] user, the spawner stays root", "[security][privilege]") {
  REQUIRE(::geteuid() == 0);
  TestUser user("drop");
  DroppedDaemon d(user);
  INFO(d.daemon->log());
  REQUIRE(waitFor([&] { return d.state("web") == "running"; }, 20s));
  INFO(d.daemon->log());

  const auto master = componentPid(d.run_dir, "master");
  const auto gateway = componentPid(d.run_dir, "gateway");
  const auto spawner = componentPid(d.run_dir, "spawner");
  REQUIRE(master);
  REQUIRE(gateway);
  REQUIRE(spawner);
  checkDropped(*master, user);
  checkDropped(*gateway, user);
  CHECK(statusNumbers(*spawner, "Uid") == std::vector<long>(4, 0));
  CHECK(statusField(*spawner, "NoNewPrivs") == "0");
  // The program runs as root (no `user` in its spec): the spawner started it.
  const auto web = d.childPid("web");
  REQUIRE(web);
  CHECK(statusNumbers(*web, "Uid") == std::vector<long>(4, 0));

  // The layout: run_dir and spawner/ root:<group> without others, the socket 0660, master/ the
  // user's own.
  const auto rd = lstatOf(d.run_dir);
  CHECK(rd.st_uid == 0);
  CHECK(rd.st_gid == user.gid);
  CHECK((rd.st_mode & 07777) == 0750);
  const auto sd = lstatOf(d.run_dir + "/spawner");
  CHECK(sd.st_uid == 0);
  CHECK(sd.st_gid == user.gid);
  CHECK((sd.st_mode & 0777) == 0750);
  const auto sock = lstatOf(d.run_dir + "/spawner/spawner.sock");
  CHECK(S_ISSOCK(sock.st_mode));
  CHECK(sock.st_uid == 0);
  CHECK(sock.st_gid == user.gid);
  CHECK((sock.st_mode & 0777) == 0660);
  const auto secret = lstatOf(d.run_dir + "/spawner/secret");
  CHECK(secret.st_uid == 0);
  CHECK((secret.st_mode & 0077) == 0);
  const auto md = lstatOf(d.run_dir + "/master");
  CHECK(md.st_uid == user.uid);
  CHECK((md.st_mode & 0777) == 0700);
  const auto kd = lstatOf(d.run_dir + "/keeper");
  CHECK(kd.st_uid == 0);
  CHECK((kd.st_mode & 0777) == 0700);

  // User intent reaches master.state, written by the dropped master.
  auto stop = d.post("/stop?name=web");
  REQUIRE(stop);
  CHECK(stop->status == 200);
  REQUIRE(waitFor([&] { return d.state("web") == "stopped"; }, 15s));
  const auto state = lstatOf(d.run_dir + "/master/master.state");
  CHECK(S_ISREG(state.st_mode));
  CHECK(state.st_uid == user.uid);
  auto start = d.post("/start?name=web");
  REQUIRE(start);
  CHECK(start->status == 200);
  REQUIRE(waitFor([&] { return d.state("web") == "running"; }, 15s));

  // Nobody else gets in: another account can neither list run_dir nor reach the spawner's or
  // the master's socket.
  const passwd* nobody = ::getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  const std::string runDir = d.run_dir;
  CHECK(asUser(nobody->pw_uid, nobody->pw_gid, [&] { return connectUnix(runDir + "/spawner/spawner.sock"); }) == EACCES);
  CHECK(asUser(nobody->pw_uid, nobody->pw_gid, [&] { return connectUnix(runDir + "/master/master.sock"); }) == EACCES);
  CHECK(asUser(nobody->pw_uid, nobody->pw_gid, [&] { return ::access(runDir.c_str(), X_OK) == 0 ? 0 : errno; }) == EACCES);
  // The daemon user reaches the spawner's socket (it is how the master talks to it) but cannot
  // read the secret or the keeper's directory.
  CHECK(asUser(user.uid, user.gid, [&] { return connectUnix(runDir + "/spawner/spawner.sock"); }) != EACCES);
  CHECK(asUser(user.uid, user.gid, [&] { return ::access((runDir + "/spawner/secret").c_str(), R_OK) == 0 ? 0 : errno; }) == EACCES);
  CHECK(asUser(user.uid, user.gid, [&] { return ::access((runDir + "/keeper").c_str(), X_OK) == 0 ? 0 : errno; }) == EACCES);
}

TEST_CASE("privilege: a master killed with SIGKILL comes back dropped and adopts the children", "[security][privilege]") {
  REQUIRE(::geteuid() == 0);
  TestUser user("crash");
  DroppedDaemon d(user);
  INFO(d.daemon->log());
  REQUIRE(waitFor([&] { return d.state("web") == "running"; }, 20s));
  const auto web = d.childPid("web");
  const auto master = componentPid(d.run_dir, "master");
  REQUIRE(web);
  REQUIRE(master);
  // What the account could plant in master/ (its own directory) before the master's restart: a
  // hard link to a root file. The restarting master, still root, must not hand that file over.
  const std::string rootFile = d.run_dir + "/root-only";
  { std::ofstream(rootFile) << "secret\n"; }
  REQUIRE(::chmod(rootFile.c_str(), 0600) == 0);
  REQUIRE(::link(rootFile.c_str(), (d.run_dir + "/master/planted").c_str()) == 0);

  REQUIRE(::kill(*master, SIGKILL) == 0);
  std::optional<pid_t> next;
  REQUIRE(waitFor(
      [&] {
        next = componentPid(d.run_dir, "master");
        return next && *next != *master && d.state("web") == "running";
      },
      20s));
  INFO(d.daemon->log());
  checkDropped(*next, user);
  CHECK(lstatOf(rootFile).st_uid == 0);
  CHECK(d.childPid("web") == web);  // the same child, adopted, not a new one
  CHECK(alive(*web));
  // The new master can write its state: a stop is acknowledged and sticks.
  auto stop = d.post("/stop?name=web");
  REQUIRE(stop);
  CHECK(stop->status == 200);
  CHECK(waitFor([&] { return d.state("web") == "stopped"; }, 15s));
}

TEST_CASE("privilege: dropped master and gateway still die with the keeper (death signal re-armed)", "[security][privilege]") {
  REQUIRE(::geteuid() == 0);
  TestUser user("pdeath");
  DroppedDaemon d(user);
  INFO(d.daemon->log());
  REQUIRE(waitFor([&] { return d.state("web") == "running"; }, 20s));
  const auto master = componentPid(d.run_dir, "master");
  const auto gateway = componentPid(d.run_dir, "gateway");
  const auto spawner = componentPid(d.run_dir, "spawner");
  REQUIRE(master);
  REQUIRE(gateway);
  REQUIRE(spawner);
  checkDropped(*gateway, user);

  d.daemon->signal(SIGKILL);  // the keeper (serve execs it)
  REQUIRE(d.daemon->waitExit(5s));
  CHECK(waitFor([&] { return !alive(*master) && !alive(*gateway); }, 5s));
  CHECK(alive(*spawner));  // the spawner outlives the keeper (DESIGN §4); the Daemon cleans it up
}

TEST_CASE("privilege: a run_dir the daemon user cannot reach is refused by serve, nothing started", "[security][privilege]") {
  REQUIRE(::geteuid() == 0);
  TestUser user("reach");
  TempDir dir;  // 0700 root: the user cannot pass it
  const int port = freePort();
  const std::string cfg = dir.write("config.toml", "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n[daemon]\nuser = \"" +
                                                      user.name + "\"\n");
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  auto r = run({binPath("provisr"), "serve", cfg, "--run-dir", dir.str() + "/run"}, "", {}, 15s);
  const auto leftovers = childrenOfThisProcess();
  Daemon::killOrphans();
  INFO(r.err);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("user " + user.name + " cannot reach " + dir.str() + "/run/master") != std::string::npos);
  CHECK(r.err.find("must be searchable") != std::string::npos);
  CHECK(leftovers.empty());
  CHECK_FALSE(std::filesystem::exists(dir.str() + "/run/keeper"));
}

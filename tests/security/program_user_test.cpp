// Program `user`, `group` and `umask` (SPEC §1.4, issue 9) with the real binaries as root: the
// child runs as a throwaway account with its supplementary groups (or only the named group),
// the account's environment, and creates files with the program's umask.
#include <catch2/catch.hpp>

#include <httplib.h>

#include "tests/security/security.hpp"

using namespace provisr::test;
using namespace provisr::test::security;

namespace {

std::string environOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::replace(s.begin(), s.end(), '\0', '\n');
  return "\n" + s;
}

std::optional<int> childPid(int port, const std::string& name) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2s);
  auto r = c.Get(("/api/status?name=" + name).c_str());
  if (!r || r->status != 200) return std::nullopt;
  auto j = json::parse(r->body, nullptr, false);
  if (!j.is_object() || j.value("state", "") != "running" || !j["pid"].is_number_integer()) return std::nullopt;
  return j["pid"].get<int>();
}

}  // namespace

TEST_CASE("program user, group and umask apply in the child before exec", "[security][program-user]") {
  REQUIRE(::geteuid() == 0);
  TestUser user("prog");
  TempDir dir;
  ::chmod(dir.str().c_str(), 0711);  // the child's work_dir (the config's directory)
  const std::string out = dir.str() + "/out";
  std::filesystem::create_directories(out);
  ::chmod(out.c_str(), 0777);
  const int port = freePort();
  auto program = [&](const std::string& name, const std::string& extra) {
    return "[[processes]]\ntype = \"process\"\nspec.name = \"" + name + "\"\nspec.command = \"sh -c 'umask > " + out + "/" +
           name + ".umask; : > " + out + "/" + name + ".made; exec " + helper("sleeper") + "'\"\n" + extra;
  };
  const std::string cfg =
      dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                   "\"\n" + program("asuser", "spec.user = \"" + user.name + "\"\nspec.umask = \"027\"\n") +
                                   program("asgroup", "spec.user = \"" + user.name + "\"\nspec.group = \"" + user.extra_group +
                                                          "\"\nspec.umask = \"077\"\n") +
                                   program("asroot", ""));
  Daemon d(cfg, dir.str() + "/run", dir.str() + "/serve.log");
  INFO(d.log());
  std::optional<int> asUser, asGroup, asRoot;
  REQUIRE(waitFor(
      [&] {
        asUser = childPid(port, "asuser");
        asGroup = childPid(port, "asgroup");
        asRoot = childPid(port, "asroot");
        return asUser && asGroup && asRoot && std::filesystem::exists(out + "/asgroup.made") &&
               std::filesystem::exists(out + "/asuser.made");
      },
      20s));

  // user alone: the account's uid, primary group and supplementary groups.
  CHECK(statusNumbers(*asUser, "Uid") == std::vector<long>(4, static_cast<long>(user.uid)));
  CHECK(statusNumbers(*asUser, "Gid") == std::vector<long>(4, static_cast<long>(user.gid)));
  auto groups = statusNumbers(*asUser, "Groups");
  std::sort(groups.begin(), groups.end());
  std::vector<long> want{static_cast<long>(user.gid), static_cast<long>(user.extra_gid)};
  std::sort(want.begin(), want.end());
  CHECK(groups == want);
  CHECK(statusField(*asUser, "CapEff") == "0000000000000000");
  const std::string env = environOf(*asUser);
  CHECK(env.find("\nUSER=" + user.name + "\n") != std::string::npos);
  CHECK(env.find("\nLOGNAME=" + user.name + "\n") != std::string::npos);
  CHECK(env.find("\nHOME=/nonexistent\n") != std::string::npos);
  const auto made = lstatOf(out + "/asuser.made");
  CHECK(made.st_uid == user.uid);
  CHECK(made.st_gid == user.gid);
  CHECK((made.st_mode & 0777) == 0640);  // 0666 & ~027
  std::ifstream um(out + "/asuser.umask");
  std::string umask;
  um >> umask;
  CHECK(umask == "0027");

  // user + group: that group is the primary and the only one.
  CHECK(statusNumbers(*asGroup, "Uid") == std::vector<long>(4, static_cast<long>(user.uid)));
  CHECK(statusNumbers(*asGroup, "Gid") == std::vector<long>(4, static_cast<long>(user.extra_gid)));
  CHECK(statusNumbers(*asGroup, "Groups") == std::vector<long>{static_cast<long>(user.extra_gid)});
  const auto madeG = lstatOf(out + "/asgroup.made");
  CHECK(madeG.st_uid == user.uid);
  CHECK(madeG.st_gid == user.extra_gid);
  CHECK((madeG.st_mode & 0777) == 0600);  // umask 077

  // No user: root, with the default umask 022 and no supplementary groups of the daemon leaking.
  CHECK(statusNumbers(*asRoot, "Uid") == std::vector<long>(4, 0));
  const auto madeR = lstatOf(out + "/asroot.made");
  CHECK((madeR.st_mode & 0777) == 0644);
}

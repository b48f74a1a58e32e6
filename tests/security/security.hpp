// Support for the least-privilege suite: throwaway accounts (useradd/userdel, removed even when a
// test fails), /proc/PID/status fields, the component pids of components.json, and a daemon
// config around a `[daemon] user`.
#pragma once

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::test::security {

using nlohmann::json;
using namespace std::chrono_literals;

inline std::string helper(const std::string& name) { return std::string(PROVISR_TEST_HELPERS) + "/" + name; }

// A system account `provisr-t-<pid>-<tag>` with its own group and one extra supplementary group
// `provisr-g-<pid>-<tag>`; both are deleted in the destructor.
class TestUser {
 public:
  explicit TestUser(const std::string& tag) {
    const std::string id = std::to_string(::getpid()) + "-" + tag;
    name = "provisr-t-" + id;
    extra_group = "provisr-g-" + id;
    cleanup();  // leftovers of a killed earlier run with the same pid
    auto g = run({"/usr/sbin/groupadd", "--system", extra_group});
    if (g.exit_code != 0) throw std::runtime_error("groupadd " + extra_group + ": " + g.err);
    auto u = run({"/usr/sbin/useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                  "--shell", "/usr/sbin/nologin", "-G", extra_group, name});
    if (u.exit_code != 0) {
      cleanup();
      throw std::runtime_error("useradd " + name + ": " + u.err);
    }
    const passwd* pw = ::getpwnam(name.c_str());
    const group* gr = ::getgrnam(extra_group.c_str());
    if (pw == nullptr || gr == nullptr) {
      cleanup();
      throw std::runtime_error("the new account cannot be looked up");
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
    extra_gid = gr->gr_gid;
  }
  TestUser(const TestUser&) = delete;
  TestUser& operator=(const TestUser&) = delete;
  ~TestUser() { cleanup(); }

  std::string name, extra_group;
  uid_t uid = 0;
  gid_t gid = 0, extra_gid = 0;

 private:
  void cleanup() const {
    (void)run({"/usr/sbin/userdel", name});
    (void)run({"/usr/sbin/groupdel", name});  // when USERGROUPS_ENAB did not remove it
    (void)run({"/usr/sbin/groupdel", extra_group});
  }
};

// A field of /proc/PID/status without its name ("Uid" → "1001\t1001\t1001\t1001"), "" if absent.
inline std::string statusField(pid_t pid, const std::string& key) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(st, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string v = line.substr(key.size() + 1);
      const auto a = v.find_first_not_of(" \t");
      const auto b = v.find_last_not_of(" \t");
      return a == std::string::npos ? "" : v.substr(a, b - a + 1);
    }
  }
  return "";
}

// The numbers of a field ("Uid" → {r, e, s, fs}; "Groups" → the supplementary gids).
inline std::vector<long> statusNumbers(pid_t pid, const std::string& key) {
  std::istringstream in(statusField(pid, key));
  std::vector<long> out;
  for (long v; in >> v;) out.push_back(v);
  return out;
}

inline bool alive(pid_t pid) {
  const std::string st = statusField(pid, "State");
  return !st.empty() && st[0] != 'Z';
}

// The pid of a component in run_dir/components.json (nullopt while unknown or not running).
inline std::optional<pid_t> componentPid(const std::string& run_dir, const std::string& component) {
  std::ifstream in(run_dir + "/components.json");
  auto j = json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains(component)) return std::nullopt;
  const auto& c = j[component];
  if (!c.is_object() || c.value("state", "") != "running" || !c["pid"].is_number_integer()) return std::nullopt;
  return c["pid"].get<pid_t>();
}

inline struct stat lstatOf(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) st.st_mode = 0;
  return st;
}

}  // namespace provisr::test::security

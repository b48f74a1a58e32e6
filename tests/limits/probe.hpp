// Support for the finite-resources suite: what the test sees of processes and cgroups from the
// outside (/proc and the cgroup mounts found in /proc/self/mountinfo), and a cleanup that kills a
// test's processes even when provisr did not (so a failed test leaves no fork bomb behind).
#pragma once

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/wait.hpp"

namespace provisr::test::limits {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

inline bool alive(pid_t pid) { return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM); }

// The spawner's pid from run_dir/components.json; 0 when it is not there (or, with
// `runningOnly`, while the keeper does not report it running).
inline pid_t spawnerPid(const std::string& run_dir, bool runningOnly = false) {
  auto j = nlohmann::json::parse(slurp(run_dir + "/components.json"), nullptr, false);
  if (!j.is_object() || !j.contains("spawner") || !j["spawner"]["pid"].is_number_integer()) return 0;
  if (runningOnly && j["spawner"].value("state", "") != "running") return 0;
  return j["spawner"]["pid"].get<pid_t>();
}

// Every pid whose command line has `marker` as one of its arguments (a fork keeps the argv).
inline std::vector<pid_t> markedPids(const std::string& marker) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    const std::string cmd = slurp("/proc/" + std::string(e->d_name) + "/cmdline");
    for (const auto& arg : split(cmd, '\0')) {
      if (arg == marker) {
        // A zombie has an empty cmdline, so everything listed here is still running.
        out.push_back(pid);
        break;
      }
    }
  }
  ::closedir(d);
  return out;
}

// Field 6 of /proc/<pid>/stat (session id); 0 when unreadable.
inline pid_t sessionOf(pid_t pid) {
  const std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  char state = 0;
  int ppid = 0, pgrp = 0, sid = 0;
  if (std::sscanf(s.c_str() + close + 1, " %c %d %d %d", &state, &ppid, &pgrp, &sid) != 4) return 0;
  return sid;
}

// CPU time (user + system, clock ticks) of a process; -1 when unreadable.
inline long cpuTicks(pid_t pid) {
  const std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = s.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream in(s.substr(close + 2));
  std::string f;
  long ut = -1, st = -1;
  for (int i = 3; i <= 15 && in >> f; ++i) {
    if (i == 14) ut = std::atol(f.c_str());
    if (i == 15) st = std::atol(f.c_str());
  }
  return ut < 0 || st < 0 ? -1 : ut + st;
}

// The cgroup directories of `pid` that are provisr leaves (their parent is provisr-spawner-<pid>):
// cgroup2 first, then v1 ones. Mount points come from /proc/self/mountinfo.
struct Leaves {
  std::string v2;
  std::string v1Pids;
  std::string v1Memory;
  std::vector<std::string> all() const {
    std::vector<std::string> out;
    for (const auto* d : {&v2, &v1Pids, &v1Memory}) {
      if (!d->empty()) out.push_back(*d);
    }
    return out;
  }
  // The directory holding pids.max / pids.current: cgroup2 when it has the controller, else v1.
  std::string pidsDir() const {
    if (!v2.empty() && !slurp(v2 + "/pids.max").empty()) return v2;
    return v1Pids;
  }
};

inline Leaves leavesOf(pid_t pid) {
  std::string v2Mount, pidsMount, memMount;
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    auto f = split(line, ' ');
    for (std::size_t i = 6; i + 3 < f.size(); ++i) {
      if (f[i] != "-") continue;
      if (f[i + 1] == "cgroup2" && v2Mount.empty()) v2Mount = f[4];
      if (f[i + 1] == "cgroup") {
        for (const auto& o : split(f[i + 3], ',')) {
          if (o == "pids" && pidsMount.empty()) pidsMount = f[4];
          if (o == "memory" && memMount.empty()) memMount = f[4];
        }
      }
      break;
    }
  }
  Leaves out;
  std::ifstream cg("/proc/" + std::to_string(pid) + "/cgroup");
  while (std::getline(cg, line)) {
    auto p = split(line, ':');
    if (p.size() < 3) continue;
    const std::string& path = p[2];
    auto slash = path.find_last_of('/');
    if (slash == std::string::npos || slash == 0) continue;
    const std::string parent = path.substr(0, slash);
    if (parent.substr(parent.find_last_of('/') + 1).rfind("provisr-spawner-", 0) != 0) continue;
    if (p[0] == "0" && p[1].empty() && !v2Mount.empty()) out.v2 = v2Mount + path;
    for (const auto& c : split(p[1], ',')) {
      if (c == "pids" && !pidsMount.empty()) out.v1Pids = pidsMount + path;
      if (c == "memory" && !memMount.empty()) out.v1Memory = memMount + path;
    }
  }
  return out;
}

inline std::vector<pid_t> leafMembers(const std::string& dir) {
  std::vector<pid_t> out;
  std::istringstream in(slurp(dir + "/cgroup.procs"));
  pid_t p = 0;
  while (in >> p) out.push_back(p);
  return out;
}

// Kills what a test started, whatever provisr did: cgroup.kill on each cgroup2 leaf, then rounds of
// SIGKILL to every process carrying the marker. Runs from a destructor (declare it after the daemon
// so it runs first). Bounded.
class KillOnExit {
 public:
  explicit KillOnExit(std::string marker) : marker_(std::move(marker)) {}
  KillOnExit(const KillOnExit&) = delete;
  KillOnExit& operator=(const KillOnExit&) = delete;
  void addLeaves(const Leaves& l) {
    for (const auto& d : l.all()) dirs_.insert(d);
  }
  ~KillOnExit() {
    for (const auto& d : dirs_) {
      if (std::ofstream k(d + "/cgroup.kill"); k) k << "1";
    }
    for (int round = 0; round < 200; ++round) {
      auto pids = markedPids(marker_);
      for (const auto& d : dirs_) {
        for (pid_t p : leafMembers(d)) pids.push_back(p);
      }
      if (pids.empty()) break;
      for (pid_t p : pids) ::kill(p, SIGKILL);
      waitFor([] { return false; }, std::chrono::milliseconds(5));  // let the killed ones exit
    }
  }

 private:
  std::string marker_;
  std::set<std::string> dirs_;
};

}  // namespace provisr::test::limits

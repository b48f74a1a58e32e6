// Chaos suite: what /proc says — the processes of one run (found by a tag in their environment),
// zombies, and the provisr components, independent of what provisr itself reports.
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace provisr::chaos {

struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  char state = '?';
  unsigned long long startTime = 0;  // clock ticks after boot (field 22 of stat)
  std::string comm;
  std::string name;  // PROVISR_NAME from the environment ("" when not tagged or a zombie)
  bool tagged = false;
};

inline std::string readWhole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One /proc/<pid>/stat, parsed; nullopt when the process is gone.
inline std::optional<ProcInfo> readStat(pid_t pid) {
  const std::string line = readWhole("/proc/" + std::to_string(pid) + "/stat");
  const auto open = line.find('(');
  const auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  ProcInfo p;
  p.pid = pid;
  p.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  std::vector<std::string> f;
  while (rest >> field) f.push_back(field);
  // f[0] = state (field 3), f[1] = ppid (4), ..., f[19] = starttime (22)
  if (f.size() < 20) return std::nullopt;
  p.state = f[0].empty() ? '?' : f[0][0];
  p.ppid = static_cast<pid_t>(std::atol(f[1].c_str()));
  p.startTime = std::strtoull(f[19].c_str(), nullptr, 10);
  return p;
}

// Whether the environment of `pid` holds `tag` (an exact "K=V" entry); fills PROVISR_NAME.
inline bool readTag(pid_t pid, const std::string& tag, std::string* name) {
  const std::string env = readWhole("/proc/" + std::to_string(pid) + "/environ");
  bool tagged = false;
  std::size_t at = 0;
  while (at < env.size()) {
    std::size_t end = env.find('\0', at);
    if (end == std::string::npos) end = env.size();
    const std::string_view entry(env.data() + at, end - at);
    if (entry == tag) tagged = true;
    if (entry.substr(0, 13) == "PROVISR_NAME=" && name != nullptr) *name = std::string(entry.substr(13));
    at = end + 1;
  }
  return tagged;
}

inline std::vector<pid_t> allPids() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    if (pid > 0) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

// Every process on the machine, with the tag read for the live ones.
inline std::vector<ProcInfo> scanProcs(const std::string& tag) {
  std::vector<ProcInfo> out;
  for (pid_t pid : allPids()) {
    auto p = readStat(pid);
    if (!p) continue;
    if (p->state != 'Z' && p->state != 'X') p->tagged = readTag(pid, tag, &p->name);
    out.push_back(std::move(*p));
  }
  return out;
}

// A live (not zombie) process that still carries the tag and the instance name.
inline bool aliveAs(pid_t pid, const std::string& tag, const std::string& name) {
  auto p = readStat(pid);
  if (!p || p->state == 'Z' || p->state == 'X') return false;
  std::string n;
  return readTag(pid, tag, &n) && n == name;
}

inline bool aliveComm(pid_t pid, const std::string& comm) {
  auto p = readStat(pid);
  return p && p->state != 'Z' && p->state != 'X' && p->comm == comm;
}

// Live tagged processes by instance name (PROVISR_NAME).
inline std::map<std::string, std::vector<pid_t>> liveByName(const std::vector<ProcInfo>& procs) {
  std::map<std::string, std::vector<pid_t>> out;
  for (const auto& p : procs) {
    if (p.tagged && p.state != 'Z' && p.state != 'X') out[p.name].push_back(p.pid);
  }
  return out;
}

}  // namespace provisr::chaos

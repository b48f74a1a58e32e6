// PATH search and /proc sampling for the master core.
#include "master/proc_util.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace provisr::master {

std::string resolveExecutable(const std::string& prog, const std::vector<std::string>& env) {
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& kv : env) {
    if (kv.rfind("PATH=", 0) == 0) path = kv.substr(5);
  }
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + prog;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return prog;
}

void sampleProc(pid_t pid, proto::InstanceStatus& out) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return;
  auto close = line.rfind(')');
  if (close == std::string::npos) return;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> f;
  std::string tok;
  while (rest >> tok) f.push_back(tok);
  // Fields after the name start at 3 (state); utime is 14, stime 15, rss 24.
  if (f.size() < 22) return;
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double cpu = (std::stod(f[11]) + std::stod(f[12])) / (ticks > 0 ? ticks : 100.0);
  out.cpu_seconds = cpu;
  const long page = ::sysconf(_SC_PAGESIZE);
  out.rss_bytes = std::stoull(f[21]) * static_cast<std::uint64_t>(page > 0 ? page : 4096);
}

}  // namespace provisr::master

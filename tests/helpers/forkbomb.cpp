// Test helper: a fork bomb for the finite-resources suite. Every process forks without end; every
// third child calls setsid() first, so it leaves the process group. A fork that fails (the pids
// cap) is retried after 100 ms. The leader writes "bomb <pid>" and then, every second,
// "forks <ok> <failed>" (its own counts) to stdout.
// Safety: it bombs only inside a pids cap of at most 4096 (pids.max of its cgroup, cgroup2 or the v1
// pids hierarchy, found through /proc/self/mountinfo). Without one it writes "no pids cap" to
// stderr and only sleeps, so a broken setup cannot take the host down.
// usage: forkbomb [marker...]   (extra arguments are ignored: they mark the processes for the test)
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

// The smallest pids.max over this process's cgroups (cgroup2 and v1 pids); 0 when none is set.
long ownPidsCap() {
  std::vector<std::pair<std::string, std::string>> mounts;  // (kind, mount point); kind "2" or "pids"
  std::ifstream mi("/proc/self/mountinfo");
  std::string line;
  while (std::getline(mi, line)) {
    auto f = split(line, ' ');
    for (std::size_t i = 0; i + 3 < f.size(); ++i) {
      if (f[i] != "-") continue;
      if (f[i + 1] == "cgroup2") mounts.emplace_back("2", f[4]);
      if (f[i + 1] == "cgroup") {
        for (const auto& o : split(f[i + 3], ',')) {
          if (o == "pids") mounts.emplace_back("pids", f[4]);
        }
      }
      break;
    }
  }
  long best = 0;
  std::ifstream cg("/proc/self/cgroup");
  while (std::getline(cg, line)) {
    auto parts = split(line, ':');
    if (parts.size() < 3) continue;
    const bool v2 = parts[0] == "0" && parts[1].empty();
    bool pids = false;
    for (const auto& c : split(parts[1], ',')) pids = pids || c == "pids";
    for (const auto& [kind, point] : mounts) {
      if ((kind == "2" && !v2) || (kind == "pids" && !pids)) continue;
      std::ifstream f(point + parts[2] + "/pids.max");
      std::string v;
      if (!(f >> v) || v == "max") continue;
      long n = std::atol(v.c_str());
      if (n > 0 && (best == 0 || n < best)) best = n;
    }
  }
  return best;
}

void pauseAfterFailure() {
  timespec ts{0, 100 * 1000 * 1000};
  ::nanosleep(&ts, nullptr);
}

}  // namespace

int main() {
  std::printf("bomb %d\n", static_cast<int>(::getpid()));
  std::fflush(stdout);
  const long cap = ownPidsCap();
  if (cap == 0 || cap > 4096) {
    std::fprintf(stderr, "no pids cap (%ld): not bombing\n", cap);
    std::fflush(stderr);
    for (;;) ::pause();
  }
  const pid_t leader = ::getpid();
  long ok = 0, failed = 0, spawned = 0;
  time_t last = ::time(nullptr);
  for (;;) {
    pid_t p = ::fork();
    if (p == 0) {
      ok = failed = 0;
      if (++spawned % 3 == 0) ::setsid();
      continue;  // the child bombs too
    }
    if (p > 0) {
      ++ok;
      ++spawned;
    } else {
      ++failed;
      pauseAfterFailure();
    }
    if (::getpid() == leader && ::time(nullptr) != last) {
      last = ::time(nullptr);
      std::printf("forks %ld %ld\n", ok, failed);
      std::fflush(stdout);
    }
  }
}

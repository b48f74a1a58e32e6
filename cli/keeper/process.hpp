// Starting a component (the keeper's only fork/exec) and the /proc reads the keeper needs:
// its direct children (inherited orphans) and a process's start time.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/util/result.hpp"

namespace provisr::keeper {

// The fd number the secret pipe has in a component (its `--secret-fd`).
inline constexpr int kSecretFd = 3;

struct LaunchSpec {
  std::vector<std::string> argv;      // argv[0] is the path to exec
  std::optional<std::string> secret;  // written into a pipe the child reads as kSecretFd
  rlimit nofile{};                    // the RLIMIT_NOFILE the child gets (the one we started with)
  // SIGKILL when the keeper dies (PR_SET_PDEATHSIG, kept across exec): master and gateway, never
  // the spawner. A component that changes its uid must arm it again itself (the change clears it).
  bool diesWithKeeper = false;
};

struct Launched {
  pid_t pid = -1;
  std::string execError;  // set when the exec failed: the child exits 127 and is reaped as usual
};

// Forks and execs: the child leads its own process group (terminal signals reach the keeper
// alone), has stdin on /dev/null, default signal mask and dispositions, and no fd but 0, 1, 2
// and the secret. Exec errors come back through a CLOEXEC pipe. An error only when no child exists.
Result<Launched> launch(const LaunchSpec& spec);

// The pids whose parent is `parent` (scans /proc: our inherited orphans and components).
std::vector<pid_t> childrenOf(pid_t parent);

// The process group of `pid`, from /proc (nullopt when it is gone).
std::optional<pid_t> processGroupOf(pid_t pid);

// When `pid` started, in ms since the epoch (from /proc/<pid>/stat and the boot time).
std::optional<std::int64_t> startedAtMs(pid_t pid);

// The directory of our own executable (/proc/self/exe).
Result<std::string> ownDirectory();

}  // namespace provisr::keeper

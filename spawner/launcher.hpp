// Launcher: the only place that forks and execs a managed child (DESIGN.md §5, §4 item 7).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "spawner/cgroup.hpp"

namespace provisr::spawner {

// What to run and how. Everything is resolved in the parent (PATH search in the child's env, user
// and group lookup) so the child only makes async-signal-safe calls.
struct LaunchRequest {
  std::vector<std::string> argv;         // argv[0] without '/' is searched in the env's PATH
  std::vector<std::string> env;          // "K=V"; the child's whole environment
  std::string cwd;                       // empty: the spawner's own
  std::optional<std::string> user;       // needs root; HOME/USER/LOGNAME/SHELL then come from it
  std::optional<std::string> group;      // default: the user's primary group
  mode_t umask = 022;
  // Borrowed write ends of pipes the caller made (and deposited) before the launch; -1 means
  // launch makes the pipe and returns its read end in Launched.
  int stdoutWrite = -1;
  int stderrWrite = -1;
  // The child's cgroup leaf (spawner/cgroup.hpp), joined before exec when the spawner runs as root
  // with a writable cgroup hierarchy. Empty name: PROVISR_NAME from env, else the program's name.
  bool useCgroup = true;
  std::string cgroupName;  // the spawner names it "<key>.<generation>"
  cgroup::Caps caps;       // pids_max / memory_max; skipped where no controller can carry them
};

struct Launched {
  pid_t pid = -1;                // also the process group id: the child leads its own group
  UniqueFd pidfd;                // from CLONE_PIDFD: no window in which the pid could be reused
  std::uint64_t startTicks = 0;  // /proc/<pid>/stat field 22, with pid it names the process
  UniqueFd stdoutRead;           // only when launch made the pipe
  UniqueFd stderrRead;
  std::string cgroup;         // the child's first leaf directory; empty: not in a provisr cgroup
  bool pidsCapped = false;    // the caps asked for that a controller enforces
  bool memoryCapped = false;
};

// Why a launch failed, for callers that report errno separately (the error message says it too).
struct LaunchFailure {
  std::string stage;  // "resolve", "user", "pipe", "clone", "setgid", "chdir", "exec", ...
  int sysErrno = 0;
};

// Starts the child in its own process group with default signal dispositions, an empty signal
// mask, soft RLIMIT_NOFILE 1024, stdin /dev/null, exactly fds 0, 1, 2 and (as root) its own cgroup
// leaf with the request's caps. Errors from the child
// (bad cwd, exec failure) come back through a CLOEXEC pipe as kSpawnFailed.
Result<Launched> launch(const LaunchRequest& req, LaunchFailure* failure = nullptr);

// PATH search as execvp does it, but against the given environment; empty when not found.
std::string resolveExecutable(const std::string& name, const std::vector<std::string>& env);

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); 0 when unreadable.
std::uint64_t readStartTicks(pid_t pid);

// Creates a pipe with both ends O_CLOEXEC (and the read end O_NONBLOCK, as the log writer wants).
struct PipePair {
  UniqueFd read;
  UniqueFd write;
};
Result<PipePair> makeOutputPipe();

}  // namespace provisr::spawner

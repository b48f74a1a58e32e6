// Cgroups for managed children (DESIGN.md §6): one leaf per program instance, so a stop reaches
// every descendant (setsid included) and pids/memory caps bind root too (RLIMIT_NPROC does not).
//
// Where: under the cgroup2 mount (found in /proc/self/mountinfo), in a subtree of the spawner's own
// cgroup named provisr-spawner-<pid>; the caps go to cgroup v2 controllers when the spawner's
// cgroup offers them, otherwise to the v1 `pids` and `memory` hierarchies when those are mounted
// and writable (hybrid layouts). Only when running as root. See docs/resources.md.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::spawner::cgroup {

struct Caps {
  std::optional<std::uint64_t> pidsMax;    // tasks (processes and threads) in the leaf
  std::optional<std::uint64_t> memoryMax;  // bytes
};

// What this process can use, found once (first call) from /proc/self/mountinfo and /proc/self/cgroup.
struct Layout {
  std::string v2Mount;   // cgroup2 mount point; empty: no writable cgroup2
  std::string v2Base;    // the spawner's cgroup2 directory (its own leaf's parent, see .cpp)
  bool v2Pids = false;   // the pids / memory controllers are enabled for our leaves in cgroup2
  bool v2Memory = false;
  std::string v1PidsBase;    // the spawner's cgroup in a writable v1 pids hierarchy; empty: none
  std::string v1MemoryBase;  // same for memory
  std::vector<std::string> notes;  // why something is not available (for logs and docs)

  bool tracking() const { return !v2Mount.empty() || !v1PidsBase.empty(); }
  bool canCapPids() const { return v2Pids || !v1PidsBase.empty(); }
  bool canCapMemory() const { return v2Memory || !v1MemoryBase.empty(); }
};
const Layout& layout();

// The directory names (in each hierarchy) of provisr's subtrees: `provisr-spawner-<pid>`.
inline constexpr const char* kSubtreePrefix = "provisr-spawner-";

// A leaf made for one launch: its directories, caps written, the cgroup2 leaf opened for
// CLONE_INTO_CGROUP and the v1 leaves' cgroup.procs opened (O_CLOEXEC) for the child to write "0"
// into before exec (an async-signal-safe, open-free join).
struct Leaf {
  std::vector<std::string> dirs;  // v2 first when there is one
  std::vector<UniqueFd> procs;    // cgroup.procs of each v1 dir (cgroup2's: openat(v2Dir) if needed)
  UniqueFd v2Dir;                 // the cgroup2 leaf (O_DIRECTORY) for clone3's CLONE_INTO_CGROUP
  bool pidsCapped = false;
  bool memoryCapped = false;
  bool empty() const { return dirs.empty(); }
};

// Makes the leaf `name` (characters outside [A-Za-z0-9._-] become '_'). No cgroup support at all:
// an empty Leaf. A cap that has no controller to go to is skipped (validate warned about it); a cap
// a controller refuses is an error (kSpawnFailed, errno in `err`).
Result<Leaf> prepare(const std::string& name, const Caps& caps, int* err = nullptr);

// Removes a leaf whose launch failed (nothing ever joined it).
void discard(const Leaf& leaf);

// The provisr leaves a live process is in (own child or adopted: read from /proc/<pid>/cgroup).
struct Membership {
  std::vector<std::string> dirs;  // v2 first when there is one
  std::string v2;                 // the cgroup2 leaf, if any
  bool empty() const { return dirs.empty(); }
};
Membership membershipOf(pid_t pid);

// Pids in the leaf now (from cgroup.procs of the first dir).
std::vector<pid_t> members(const Membership& m);
// True while any process is in the leaf.
bool populated(const Membership& m);
// SIGKILL to everything in the leaf: cgroup.kill where cgroup2 has it, else repeated rounds of
// kill(2) over cgroup.procs (bounded).
void killAll(const Membership& m);
// `sig` to every member that is not in process group `skipPgid` (the caller signals the group).
void signalOutside(const Membership& m, int sig, pid_t skipPgid);
// Removes the leaf's directories, waiting up to `wait` for it to empty (poll on cgroup.events, no
// spinning); what is still busy is kept and retried by later calls (and at exit).
void remove(const Membership& m, std::chrono::milliseconds wait);

}  // namespace provisr::spawner::cgroup

// The fork server: a small helper process the spawner forks at start, which launches children on
// the spawner's behalf so that a launch copies the helper's handful of fds instead of the
// spawner's whole table (thousands: log files, pipes, pidfds — copied into every CLONE_VM child
// and closed again by its exec, so the cost of a spawn grew with the number of children).
//
// The helper clones with CLONE_PARENT, so every child's parent is still the spawner: pidfd waits,
// reaping, adoption by the keeper and the fd store work exactly as for an in-process launch
// (DESIGN.md §2, §4). It receives a launch (path, argv, env, cwd, ids, umask, rlimits, the output
// pipes' write ends and cgroup fds by SCM_RIGHTS) on a SOCK_SEQPACKET socketpair and answers with
// the pid and the pidfd (SCM_RIGHTS), or the failed stage and errno. It dies with the spawner
// (PR_SET_PDEATHSIG, then a getppid check) and when its socket closes. A launch finding it dead
// forks a new one (at most once a second); when none is available the launcher launches in
// process as before, so no launch depends on it.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "spawner/launch_child.hpp"

namespace provisr::spawner::forkserver {

// Forks the server from this process (which becomes the parent of every child it launches) and
// makes launch() use it. Call it early, before the process holds many fds or threads; a server
// that dies later is forked again from wherever this process is then. Idempotent.
Status start();
// Closes the connection, waits (bounded) for the server to exit, else kills it; reaps it.
// launch() goes back to launching in process.
void stop();
// The server's pid while one is connected, else -1.
pid_t pid();

struct Stats {
  std::uint64_t launches = 0;   // answered by a server (started, or a child/clone failure)
  std::uint64_t fallbacks = 0;  // launched in process because no server could take the launch
  std::uint64_t restarts = 0;   // servers forked after the first
  std::uint64_t recovered = 0;  // children found after a server died in the middle of a launch
};
Stats stats();

// Tests only: servers forked while this is on exit right after a clone, before they answer (a
// server killed in the middle of a launch).
void dieAfterCloneForTests(bool on);

// ---- used by the launcher --------------------------------------------------------------------
enum class Outcome {
  kLaunched,     // pid + pidfd: the child runs (or is past the point where it could report)
  kChildFailed,  // pid + pidfd of a child that reported `report` and exited: reap it
  kCloneFailed,  // nothing ran; cloneErrno says why
  kUnavailable,  // nothing ran through a server: launch in process
};
struct Result {
  Outcome outcome = Outcome::kUnavailable;
  pid_t pid = -1;
  UniqueFd pidfd;
  detail::ChildReport report;
  int cloneErrno = 0;
};
// Launches `a` through the server. a.devNull and a.report are ignored (the server has its own);
// a.out / a.err / a.cgroupProcs and v2Dir (-1: none; CLONE_INTO_CGROUP) are passed as fds. a.out
// must be a pipe: if the server dies during the launch, a child holding it is looked for among
// this process's children and returned as launched.
Result launch(const detail::ChildArgs& a, int v2Dir);

}  // namespace provisr::spawner::forkserver

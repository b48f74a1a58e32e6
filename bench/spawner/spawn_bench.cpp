// Spawn benchmark: N children of `sleep 3600` through a bare posix_spawn loop, posix_spawn with the
// launcher's features (own group, default signals, pipes), and the launcher itself.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "spawner/launcher.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

void reapAll(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) ::kill(-p, SIGKILL);
  for (pid_t p : pids) ::kill(p, SIGKILL);  // the bare loop does not make groups
  for (pid_t p : pids) {
    int st = 0;
    ::waitpid(p, &st, 0);
  }
}

double bare(int n, const char* sleepPath, bool full) {
  std::vector<pid_t> pids;
  pids.reserve(static_cast<std::size_t>(n));
  std::vector<int> fds;
  char arg0[] = "sleep";
  char arg1[] = "3600";
  char* argv[] = {arg0, arg1, nullptr};
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_init(&fa);
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    if (full) {
      sigset_t all;
      sigset_t none;
      ::sigfillset(&all);
      ::sigemptyset(&none);
      ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
      ::posix_spawnattr_setpgroup(&attr, 0);
      ::posix_spawnattr_setsigdefault(&attr, &all);
      ::posix_spawnattr_setsigmask(&attr, &none);
      if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) std::abort();
      ::posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
      ::posix_spawn_file_actions_adddup2(&fa, out[1], 1);
      ::posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    }
    pid_t pid = -1;
    if (::posix_spawn(&pid, sleepPath, &fa, &attr, argv, environ) != 0) std::abort();
    if (full) {
      ::close(out[1]);
      ::close(err[1]);
      fds.push_back(out[0]);
      fds.push_back(err[0]);
      int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      fds.push_back(pidfd);
    }
    ::posix_spawn_file_actions_destroy(&fa);
    ::posix_spawnattr_destroy(&attr);
    pids.push_back(pid);
  }
  auto t1 = Clock::now();
  reapAll(pids);
  for (int fd : fds) ::close(fd);
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

double launcher(int n, const char* sleepPath) {
  std::vector<provisr::spawner::Launched> kids;
  kids.reserve(static_cast<std::size_t>(n));
  provisr::spawner::LaunchRequest req;
  req.argv = {sleepPath, "3600"};
  req.env = {"PATH=/usr/bin:/bin"};
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    auto r = provisr::spawner::launch(req);
    if (!r.ok()) {
      std::fprintf(stderr, "launch: %s\n", r.error().message.c_str());
      std::abort();
    }
    kids.push_back(std::move(*r));
  }
  auto t1 = Clock::now();
  std::vector<pid_t> pids;
  for (auto& k : kids) pids.push_back(k.pid);
  reapAll(pids);
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

void report(const char* name, int n, double ms) {
  std::printf("%-28s n=%d  total %8.1f ms  %7.1f us/spawn  %8.0f spawns/s\n", name, n, ms, ms * 1000.0 / n, n / (ms / 1000.0));
}

}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 1000;
  const char* sleepPath = argc > 2 ? argv[2] : "/bin/sleep";
  int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  for (int r = 0; r < rounds; ++r) {
    report("posix_spawn (bare)", n, bare(n, sleepPath, false));
    report("posix_spawn (pgrp+sig+pipes)", n, bare(n, sleepPath, true));
    report("provisr launcher", n, launcher(n, sleepPath));
  }
  return 0;
}

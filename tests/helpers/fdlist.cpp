// Test helper: prints its open fds ("fds 0 1 2"), its cwd, umask, soft RLIMIT_NOFILE, blocked and
// ignored signals, process group and the env variables named in argv[1..], one fact per line.
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 2;
  int own = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != own) fds.push_back(fd);
  }
  ::closedir(d);
  std::printf("fds");
  for (int fd : fds) std::printf(" %d", fd);
  std::printf("\n");
  std::vector<char> cwd(4096);
  std::printf("cwd %s\n", ::getcwd(cwd.data(), cwd.size()) != nullptr ? cwd.data() : "?");
  mode_t m = ::umask(0);
  std::printf("umask %03o\n", static_cast<unsigned>(m));
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  std::printf("nofile %llu\n", static_cast<unsigned long long>(rl.rlim_cur));
  sigset_t mask;
  ::sigprocmask(SIG_BLOCK, nullptr, &mask);
  int blocked = 0;
  int ignored = 0;
  for (int s = 1; s < 32; ++s) {
    if (::sigismember(&mask, s) == 1) ++blocked;
    struct sigaction sa {};
    if (::sigaction(s, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) ++ignored;
  }
  std::printf("blocked %d\nignored %d\n", blocked, ignored);
  std::printf("pgid %d pid %d\n", static_cast<int>(::getpgrp()), static_cast<int>(::getpid()));
  std::printf("ids %u %u\n", static_cast<unsigned>(::getuid()), static_cast<unsigned>(::getgid()));
  for (int i = 1; i < argc; ++i) {
    const char* v = std::getenv(argv[i]);
    std::printf("env %s=%s\n", argv[i], v != nullptr ? v : "(unset)");
  }
  return 0;
}

// Test helper: ignores SIGTERM, forks argv[1] (default 1) grandchildren that ignore it too, prints
// "<pid> <grandchild pids...>\n" on stdout, then waits forever: only SIGKILL ends the group.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  ::signal(SIGTERM, SIG_IGN);
  int n = argc > 1 ? std::atoi(argv[1]) : 1;
  std::string line = std::to_string(::getpid());
  for (int i = 0; i < n; ++i) {
    pid_t p = ::fork();
    if (p == 0) {
      for (;;) ::pause();
    }
    if (p > 0) line += " " + std::to_string(p);
  }
  line += "\n";
  if (::write(1, line.data(), line.size()) < 0) return 2;
  for (;;) ::pause();
}

// Test helper: forks N children (default 3) that each call setsid() — leaving the process group and
// the session — and sleep until killed; the leader writes "setsid <pid>..." and sleeps too. Only a
// cgroup (or a subreaper sweep) reaches the children once the leader's group is signalled.
// usage: setsider [n=3] [marker...]   (extra arguments mark the processes for the test)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 3;
  std::printf("setsid");
  for (int i = 0; i < n; ++i) {
    pid_t p = ::fork();
    if (p < 0) return 2;
    if (p == 0) {
      ::setsid();
      for (;;) ::pause();
    }
    std::printf(" %d", static_cast<int>(p));
  }
  std::printf("\n");
  std::fflush(stdout);
  for (;;) ::pause();
}

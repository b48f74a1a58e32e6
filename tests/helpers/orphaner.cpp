// Test helper: forks a grandchild that lives argv[1] ms (default 100) and exits 0, prints its pid,
// and exits at once — so the grandchild is orphaned to the nearest subreaper.
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  long ms = argc > 1 ? std::atol(argv[1]) : 100;
  pid_t p = ::fork();
  if (p < 0) return 2;
  if (p == 0) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    while (::nanosleep(&ts, &ts) != 0) {
    }
    ::_exit(0);
  }
  std::printf("%d\n", static_cast<int>(p));
  return 0;
}

// Test helper: after argv[2] ms (default 0), exits with code argv[1], or dies of signal N given as
// "sig:N" (e.g. "sig:11").
#include <signal.h>
#include <time.h>

#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  const char* what = argc > 1 ? argv[1] : "1";
  long ms = argc > 2 ? std::atol(argv[2]) : 0;
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (ms > 0 && ::nanosleep(&ts, &ts) != 0) {
  }
  if (std::strncmp(what, "sig:", 4) == 0) {
    int sig = std::atoi(what + 4);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
    return 100;
  }
  return std::atoi(what);
}

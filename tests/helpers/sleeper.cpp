// Test helper: sleeps for argv[1] milliseconds (forever without it), then exits 0.
#include <time.h>
#include <unistd.h>

#include <cstdlib>

int main(int argc, char** argv) {
  long ms = argc > 1 ? std::atol(argv[1]) : -1;
  if (ms < 0) {
    for (;;) ::pause();
  }
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (::nanosleep(&ts, &ts) != 0) {
  }
  return 0;
}

// Test helper: writes "before close" to the stream it is told to close (out or err), closes it, then
// writes "alive N" to the other stream every INTERVAL ms until SIGTERM (exit 0).
// usage: closer out|err [interval_ms=50]
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {
volatile std::sig_atomic_t stopFlag = 0;
void onTerm(int) { stopFlag = 1; }
}  // namespace

int main(int argc, char** argv) {
  const bool closeOut = argc > 1 && std::strcmp(argv[1], "out") == 0;
  const long ms = argc > 2 ? std::atol(argv[2]) : 50;
  struct sigaction sa {};
  sa.sa_handler = onTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  const int gone = closeOut ? 1 : 2;
  const int kept = closeOut ? 2 : 1;
  const char before[] = "before close\n";
  if (::write(gone, before, sizeof before - 1) < 0) return 3;
  ::close(gone);
  for (long n = 0; stopFlag == 0; ++n) {
    std::string line = "alive " + std::to_string(n) + "\n";
    if (::write(kept, line.data(), line.size()) < 0) {
      // a lost reader: keep going, the test sees the gap
    }
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    ::nanosleep(&ts, nullptr);
  }
  return 0;
}

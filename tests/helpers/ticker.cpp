// Test helper: writes "tick N\n" to stdout every argv[1] ms (default 10) until SIGTERM, then exits
// with code argv[2] (default 7). Consecutive numbers make lost or doubled log lines visible.
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <string>

namespace {
volatile std::sig_atomic_t stopFlag = 0;
void onTerm(int) { stopFlag = 1; }
}  // namespace

int main(int argc, char** argv) {
  long ms = argc > 1 ? std::atol(argv[1]) : 10;
  int code = argc > 2 ? std::atoi(argv[2]) : 7;
  struct sigaction sa {};
  sa.sa_handler = onTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // a lost reader must not decide the exit code
  for (long n = 0; stopFlag == 0; ++n) {
    std::string line = "tick " + std::to_string(n) + "\n";
    if (::write(1, line.data(), line.size()) < 0) {
      // EPIPE while nobody holds the pipe: keep counting, the test sees the gap.
    }
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    ::nanosleep(&ts, nullptr);
  }
  return code;
}

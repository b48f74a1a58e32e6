// Test helper: writes "line N <padding>" (LEN bytes with the newline) to stdout every INTERVAL ms,
// a BURST of lines at a time, with blocking writes, and after each burst stores N (the lines
// written so far, as text) at the start of HEARTBEAT_FILE. A logger blocked by its reader stops
// the heartbeat; one that keeps going moves it on. Exits 0 on SIGTERM.
// usage: heartlogger HEARTBEAT_FILE [interval_ms=5] [len=200] [burst=10]
#include <fcntl.h>
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
  if (argc < 2) return 2;
  const long ms = argc > 2 ? std::atol(argv[2]) : 5;
  const std::size_t len = argc > 3 ? static_cast<std::size_t>(std::atol(argv[3])) : 200;
  const long burst = argc > 4 ? std::atol(argv[4]) : 10;
  struct sigaction sa {};
  sa.sa_handler = onTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  int hb = ::open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (hb < 0) return 3;
  long n = 0;
  while (stopFlag == 0) {
    for (long b = 0; b < burst; ++b, ++n) {
      std::string line = "line " + std::to_string(n) + " ";
      if (line.size() + 1 < len) line.append(len - 1 - line.size(), 'x');
      line.push_back('\n');
      if (::write(1, line.data(), line.size()) < 0) {
        // EPIPE: nobody reads; the heartbeat still moves
      }
    }
    std::string beat = std::to_string(n) + "          ";
    if (::pwrite(hb, beat.data(), beat.size(), 0) < 0) return 4;
    timespec ts{ms / 1000, (ms % 1000) * 1000000L};
    ::nanosleep(&ts, nullptr);
  }
  return 0;
}

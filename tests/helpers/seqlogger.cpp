// Test helper: a long-running logger for the chaos suite. Every INTERVAL ms it writes BURST lines
// "seq <name> <pid> <n> <padding>\n" to stdout, n counting from 0 per process, so a lost, doubled,
// reordered or torn line is visible in the log file. On SIGTERM it writes "end <name> <pid> <count>\n"
// (count = lines written) and exits 0, so a lost tail is visible too. With "split" each line goes
// out in two write() calls a few hundred microseconds apart, so a partial line often sits in the
// pipe while a component is being killed. SIGPIPE is ignored: a write with nobody holding the pipe
// fails and the number is skipped, which the checker then reports as a gap. With COUNT >= 0 it
// stops by itself after COUNT lines, writes the end line, and exits with EXIT, or dies of signal N
// for "sig:N" (a finite job, or a crasher under auto_restart).
// usage: seqlogger [interval_ms=20] [line_len=48] [burst=1] [split|whole] [count=-1] [exit=0|sig:N]
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

volatile std::sig_atomic_t stopFlag = 0;
void onTerm(int) { stopFlag = 1; }

void writeAll(const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;  // EPIPE: nobody reads; the checker sees the gap
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void pause(long us) {
  timespec ts{us / 1000000, (us % 1000000) * 1000L};
  ::nanosleep(&ts, nullptr);  // interrupted by SIGTERM: fine, the loop checks the flag
}

}  // namespace

int main(int argc, char** argv) {
  const long interval = argc > 1 ? std::atol(argv[1]) : 20;
  const std::size_t len = argc > 2 ? static_cast<std::size_t>(std::atol(argv[2])) : 48;
  const long burst = argc > 3 ? std::max(1L, std::atol(argv[3])) : 1;
  const bool split = argc > 4 && std::strcmp(argv[4], "split") == 0;
  const long count = argc > 5 ? std::atol(argv[5]) : -1;
  const char* exitWith = argc > 6 ? argv[6] : "0";
  const char* envName = std::getenv("PROVISR_NAME");
  const std::string name = envName != nullptr ? envName : "seqlogger";
  const std::string pid = std::to_string(::getpid());

  struct sigaction sa {};
  sa.sa_handler = onTerm;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  long n = 0;
  std::string line;
  auto more = [&] { return stopFlag == 0 && (count < 0 || n < count); };
  while (more()) {
    for (long b = 0; b < burst && more(); ++b, ++n) {
      line = "seq " + name + " " + pid + " " + std::to_string(n) + " ";
      while (line.size() + 1 < len) line.push_back(static_cast<char>('a' + (line.size() % 26)));
      line.push_back('\n');
      if (split) {
        const std::size_t half = line.size() / 2;
        writeAll(line.data(), half);
        pause(300);
        writeAll(line.data() + half, line.size() - half);
      } else {
        writeAll(line.data(), line.size());
      }
    }
    if (more()) pause(interval * 1000);
  }
  line = "end " + name + " " + pid + " " + std::to_string(n) + "\n";
  writeAll(line.data(), line.size());
  if (stopFlag == 0 && std::strncmp(exitWith, "sig:", 4) == 0) {
    const int sig = std::atoi(exitWith + 4);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
  }
  return stopFlag != 0 ? 0 : std::atoi(exitWith);
}

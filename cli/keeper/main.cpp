// provisr-keeper: flags, --daemonize (double fork, setsid, readiness reported to the caller),
// pid file, then the Keeper runs until everything is down.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <linux/close_range.h>
#include <string>
#include <sys/syscall.h>

#include "cli/keeper/keeper.hpp"
#include "cli/keeper/log.hpp"
#include "cli/keeper/process.hpp"

namespace {

using provisr::keeper::logLine;

constexpr const char* kUsage =
    "usage: provisr-keeper --config FILE --run-dir DIR [--daemonize] [--pid-file FILE] [--log-file FILE]\n"
    "  The component binaries are taken from the keeper's own directory, or from $PROVISR_LIBEXEC_DIR.\n";

int usage(const std::string& why) {
  std::fprintf(stderr, "provisr-keeper: %s\n%s", why.c_str(), kUsage);
  return 2;
}

std::string absolute(const std::string& p) {
  return std::filesystem::absolute(std::filesystem::path(p)).lexically_normal().string();
}

// Detaches: the caller's process waits until the daemon reports "ready" or an error through
// `ready` and exits with the matching code, so `provisr serve --daemonize` still says when the
// run_dir is taken. Returns in the daemon (grandchild) with the write end of that pipe.
int daemonize(const std::string& logFile) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    std::perror("provisr-keeper: pipe2");
    std::exit(1);
  }
  const pid_t first = ::fork();
  if (first < 0) {
    std::perror("provisr-keeper: fork");
    std::exit(1);
  }
  if (first > 0) {
    ::close(p[1]);
    int st = 0;
    ::waitpid(first, &st, 0);
    std::string report;
    char buf[512];
    for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) break;
      report.append(buf, static_cast<std::size_t>(n));
    }
    if (report.rfind("ready", 0) == 0) std::exit(0);
    std::fputs(report.empty() ? "provisr-keeper: the daemon died before it was ready\n" : report.c_str(), stderr);
    std::exit(1);
  }
  ::close(p[0]);
  ::setsid();
  const pid_t second = ::fork();
  if (second < 0) std::_Exit(1);
  if (second > 0) std::_Exit(0);  // the session leader leaves: the daemon can never regain a terminal
  if (::chdir("/") != 0) std::_Exit(1);
  const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  const int out = logFile.empty() ? null : ::open(logFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (null < 0 || out < 0) {
    const std::string msg = "provisr-keeper: cannot open log file " + logFile + ": " + std::strerror(errno) + "\n";
    (void)!::write(p[1], msg.data(), msg.size());
    std::_Exit(1);
  }
  ::dup2(null, STDIN_FILENO);
  ::dup2(out, STDOUT_FILENO);
  ::dup2(out, STDERR_FILENO);
  if (out != null) ::close(out);
  ::close(null);
  return p[1];
}

void report(int fd, const std::string& text) {
  if (fd < 0) return;
  (void)!::write(fd, text.data(), text.size());
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  // Fds inherited from whoever started us must not reach the components.
  ::syscall(SYS_close_range, 3U, ~0U, static_cast<unsigned>(CLOSE_RANGE_CLOEXEC));

  provisr::keeper::Options opts;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](std::string& into) {
      if (i + 1 >= argc) return false;
      into = argv[++i];
      return true;
    };
    bool ok = true;
    if (a == "--config") ok = value(opts.config);
    else if (a == "--run-dir") ok = value(opts.runDir);
    else if (a == "--pid-file") ok = value(opts.pidFile);
    else if (a == "--log-file") ok = value(opts.logFile);
    else if (a == "--daemonize") opts.daemonize = true;
    else if (a == "--foreground") opts.daemonize = false;
    else if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    } else return usage("unknown argument " + a);
    if (!ok) return usage(a + " needs a value");
  }
  if (opts.config.empty()) return usage("--config is required");
  if (opts.runDir.empty()) return usage("--run-dir is required");
  opts.config = absolute(opts.config);
  opts.runDir = absolute(opts.runDir);
  if (!opts.pidFile.empty()) opts.pidFile = absolute(opts.pidFile);
  if (!opts.logFile.empty()) opts.logFile = absolute(opts.logFile);
  if (const char* dir = std::getenv("PROVISR_LIBEXEC_DIR"); dir != nullptr && *dir != '\0') {
    opts.libexecDir = absolute(dir);
  } else {
    auto own = provisr::keeper::ownDirectory();
    if (!own) {
      std::fprintf(stderr, "provisr-keeper: %s\n", own.error().message.c_str());
      return 1;
    }
    opts.libexecDir = *own;
  }

  const int ready = opts.daemonize ? daemonize(opts.logFile) : -1;

  provisr::SystemClock clock;
  auto keeper = provisr::keeper::Keeper::create(opts, clock);
  if (!keeper) {
    logLine(keeper.error().message);
    report(ready, "provisr-keeper: " + keeper.error().message + "\n");
    return 1;
  }
  if (!opts.pidFile.empty()) {
    const std::string pid = std::to_string(::getpid()) + "\n";
    const int fd = ::open(opts.pidFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0 || ::write(fd, pid.data(), pid.size()) != static_cast<ssize_t>(pid.size()))
      logLine("cannot write pid file " + opts.pidFile + ": " + std::strerror(errno));
    if (fd >= 0) ::close(fd);
  }
  report(ready, "ready\n");
  const int code = (*keeper)->run();
  keeper.value().reset();
  if (!opts.pidFile.empty()) ::unlink(opts.pidFile.c_str());
  return code;
}

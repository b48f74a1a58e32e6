// fork/exec of components and /proc parsing.
#include "cli/keeper/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/util/fd.hpp"

namespace provisr::keeper {
namespace {

Error sysError(const std::string& what) { return makeError(ErrorCode::kInternal, what + ": " + std::strerror(errno)); }

// Moves `fd` to a number >= 10 (CLOEXEC), so it cannot collide with kSecretFd in the child.
UniqueFd high(UniqueFd fd) {
  if (!fd || fd.get() >= 10) return fd;
  return UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10));
}

// Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses).
std::vector<std::string> statFields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  const auto close = text.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(text.substr(close + 1));
  std::vector<std::string> f;
  for (std::string w; rest >> w;) f.push_back(w);
  return f;  // f[0] is field 3 (state), f[1] field 4 (ppid), f[2] field 5 (pgrp), f[19] field 22
}

}  // namespace

Result<Launched> launch(const LaunchSpec& spec) {
  if (spec.argv.empty()) return makeError(ErrorCode::kInvalidArgument, "launch: empty argv");
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return sysError("pipe2");
  UniqueFd errRead(p[0]);
  UniqueFd errWrite = high(UniqueFd(p[1]));
  UniqueFd secretRead;
  if (spec.secret) {
    if (::pipe2(p, O_CLOEXEC) != 0) return sysError("pipe2");
    secretRead = high(UniqueFd(p[0]));
    UniqueFd secretWrite(p[1]);
    // 64 bytes fit any pipe buffer: written and closed before the fork, so the child reads the
    // secret then EOF, and the write end never reaches it.
    if (::write(secretWrite.get(), spec.secret->data(), spec.secret->size()) != static_cast<ssize_t>(spec.secret->size()))
      return sysError("write secret pipe");
  }
  if (!errWrite || (spec.secret && !secretRead)) return sysError("fcntl F_DUPFD_CLOEXEC");

  std::vector<char*> argv;
  for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return sysError("fork");
  if (pid == 0) {
    if (spec.diesWithKeeper) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);  // the keeper died before the signal was armed
    }
    // Child: async-signal-safe calls only, then exec or _exit(127).
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; ++s) ::sigaction(s, &dfl, nullptr);  // fails harmlessly for KILL/STOP
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    int first = 3;
    if (secretRead) {
      ::dup2(secretRead.get(), kSecretFd);  // dup2 clears CLOEXEC on the copy
      first = kSecretFd + 1;
    }
    // Whatever we inherited or opened stays out of the component: everything above is
    // close-on-exec (the error pipe must survive until the exec itself).
    ::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, static_cast<unsigned>(CLOSE_RANGE_CLOEXEC));
    ::setrlimit(RLIMIT_NOFILE, &spec.nofile);
    ::execv(argv[0], argv.data());
    const int e = errno;
    (void)!::write(errWrite.get(), &e, sizeof e);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here: a signal to the group right after the fork must reach it
  errWrite.reset();
  secretRead.reset();
  int childErrno = 0;
  ssize_t n;
  do {
    n = ::read(errRead.get(), &childErrno, sizeof childErrno);
  } while (n < 0 && errno == EINTR);
  Launched out;
  out.pid = pid;
  if (n == static_cast<ssize_t>(sizeof childErrno)) out.execError = "exec " + spec.argv[0] + ": " + std::strerror(childErrno);
  return out;
}

std::vector<pid_t> childrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    auto f = statFields(static_cast<pid_t>(pid));
    if (f.size() > 1 && std::atol(f[1].c_str()) == parent) out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

std::optional<pid_t> processGroupOf(pid_t pid) {
  auto f = statFields(pid);
  if (f.size() < 3) return std::nullopt;
  return static_cast<pid_t>(std::atol(f[2].c_str()));
}

std::optional<std::int64_t> startedAtMs(pid_t pid) {
  auto f = statFields(pid);
  if (f.size() < 20) return std::nullopt;
  const unsigned long long ticks = std::strtoull(f[19].c_str(), nullptr, 10);
  std::ifstream in("/proc/stat");
  std::string key;
  long long btime = -1;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("btime ", 0) == 0) btime = std::atoll(line.c_str() + 6);
  }
  const long hz = ::sysconf(_SC_CLK_TCK);
  if (btime < 0 || hz <= 0) return std::nullopt;
  return static_cast<std::int64_t>(btime) * 1000 + static_cast<std::int64_t>(ticks * 1000 / static_cast<unsigned long long>(hz));
}

Result<std::string> ownDirectory() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return sysError("readlink /proc/self/exe");
  std::string path(buf, static_cast<std::size_t>(n));
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return makeError(ErrorCode::kInternal, "odd /proc/self/exe: " + path);
  return path.substr(0, slash == 0 ? 1 : slash);
}

}  // namespace provisr::keeper

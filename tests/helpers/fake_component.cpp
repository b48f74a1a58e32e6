// Test helper: stands in for provisr-spawner/-master/-gateway (named by argv[0]'s basename) under
// a real provisr-keeper. It records what it got (secret from --secret-fd, open fds, process group,
// signal mask, argv) as lines in $FAKE_COMPONENT_DIR/events, obeys signals (TERM: exit 0; HUP,
// USR1: recorded; USR2: exit 0 as after `provisr shutdown`) and reads orders from files there:
//   <name>.exit     exit at once with the code written in it (a crash loop while it exists)
//   <name>.ignoreterm  ignore SIGTERM (a component that will not stop)
// As provisr-spawner / -master it also takes run_dir/<name>/<name>.lock (exit 100 when held), and
// the spawner writes the secret to run_dir/spawner/secret, as the real ones do.
//   spawner.fork    (one-shot) fork a child in its own process group that sleeps until killed;
//                   its pid goes to kid.pid — it is re-parented to the keeper if we die.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

std::string dir() {
  const char* d = std::getenv("FAKE_COMPONENT_DIR");
  return d != nullptr ? d : "/tmp";
}

void record(const std::string& name, const std::string& what) {
  const std::string line = name + " " + std::to_string(::getpid()) + " " + what + "\n";
  const int fd = ::open((dir() + "/events").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

std::string readFile(const std::string& path) {
  std::string out;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buf[256];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

std::string openFds() {
  std::string out;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return "?";
  const int own = ::dirfd(d);
  std::vector<int> fds;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd != own) fds.push_back(fd);
  }
  ::closedir(d);
  for (std::size_t i = 0; i < fds.size(); ++i) out += (i ? "," : "") + std::to_string(fds[i]);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // The inherited mask is part of what the tests check; measure it, then block the signals this
  // fake obeys before anything is recorded, so a signal sent right after "start" is never lost to
  // its default action.
  sigset_t blocked;
  sigemptyset(&blocked);
  ::sigprocmask(SIG_BLOCK, nullptr, &blocked);
  int nblocked = 0;
  for (int s = 1; s < 32; ++s) nblocked += sigismember(&blocked, s);
  sigset_t mine;
  sigemptyset(&mine);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&mine, s);
  ::sigprocmask(SIG_BLOCK, &mine, nullptr);

  std::string name = argv[0];
  if (auto slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
  if (name.rfind("provisr-", 0) == 0) name = name.substr(8);

  std::string args;
  std::string runDir;
  int secretFd = -1;
  for (int i = 1; i < argc; ++i) {
    args += (i > 1 ? " " : "") + std::string(argv[i]);
    if (std::strcmp(argv[i], "--secret-fd") == 0 && i + 1 < argc) secretFd = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc) runDir = argv[i + 1];
  }
  std::string secret = "-";
  if (secretFd >= 0) {
    secret.clear();
    char buf[128];
    for (ssize_t n; (n = ::read(secretFd, buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        secret = "read-error";
        break;
      }
      secret.append(buf, static_cast<std::size_t>(n));
    }
    ::close(secretFd);
  }
  record(name, "start secret=" + secret + " fds=" + openFds() + " pgid=" + std::to_string(::getpgrp()) +
                   " blocked=" + std::to_string(nblocked) + " args=" + args);

  // Like the real ones, spawner and master hold a lock in their run_dir subdirectory.
  if ((name == "spawner" || name == "master") && !runDir.empty()) {
    const std::string sd = runDir + "/" + name;
    ::mkdir(sd.c_str(), 0700);
    const int lock = ::open((sd + "/" + name + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0 || ::flock(lock, LOCK_EX | LOCK_NB) != 0) {
      record(name, "lock-held");
      record(name, "exit 100");
      return 100;
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    (void)!::ftruncate(lock, 0);
    (void)!::pwrite(lock, pid.data(), pid.size(), 0);
    if (name == "spawner") {
      const int sf = ::open((sd + "/secret.tmp").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      (void)!::write(sf, secret.data(), secret.size());
      ::close(sf);
      ::rename((sd + "/secret.tmp").c_str(), (sd + "/secret").c_str());
    }
  }

  const std::string exitFile = dir() + "/" + name + ".exit";
  if (exists(exitFile)) {
    const int code = std::atoi(readFile(exitFile).c_str());
    record(name, "exit " + std::to_string(code));
    return code;
  }

  if (name == "spawner" && ::unlink((dir() + "/spawner.fork").c_str()) == 0) {
    const pid_t kid = ::fork();
    if (kid == 0) {
      ::setpgid(0, 0);
      ::sigprocmask(SIG_UNBLOCK, &mine, nullptr);
      for (int fd = 3; fd < 1024; ++fd) ::close(fd);  // above all the spawner lock: it must not outlive us
      for (;;) ::pause();
    }
    ::setpgid(kid, kid);
    const std::string tmp = dir() + "/kid.pid.tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const std::string text = std::to_string(kid) + "\n";
    (void)!::write(fd, text.data(), text.size());
    ::close(fd);
    ::rename(tmp.c_str(), (dir() + "/kid.pid").c_str());
  }

  for (;;) {
    int sig = 0;
    if (::sigwait(&mine, &sig) != 0) continue;
    record(name, "signal " + std::to_string(sig));
    if (sig == SIGTERM && exists(dir() + "/" + name + ".ignoreterm")) continue;
    if (sig == SIGTERM || sig == SIGINT || sig == SIGUSR2) {
      record(name, "exit 0");
      return 0;
    }
  }
}

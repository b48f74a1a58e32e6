// Test support: a real `provisr serve` on a temp run_dir and free loopback ports, stopped (and its
// whole process tree killed, by process group) when the test ends, even when it fails.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <dirent.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::test {

// A loopback TCP port nobody listens on right now (the kernel picks it).
inline int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Our direct children other than `keep`: with the test process a subreaper, every descendant of a
// daemon whose tree died is re-parented here, so this finds exactly what the test started.
inline std::vector<pid_t> childrenOfThisProcess() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close_paren = line.rfind(')');
    if (close_paren == std::string::npos) continue;
    char state = 0;
    int ppid = 0;
    if (std::sscanf(line.c_str() + close_paren + 1, " %c %d", &state, &ppid) == 2 && ppid == ::getpid())
      out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

// `provisr serve CONFIG --run-dir DIR` in its own process group, output to files in `dir`.
// The test process becomes a subreaper, so managed children (each in its own process group)
// that outlive the daemon come back to it and are killed and reaped when the Daemon goes away.
class Daemon {
 public:
  Daemon(const std::string& config, const std::string& run_dir, const std::string& log_path)
      : log_path_(log_path) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::string bin = binPath("provisr");
      ::execl(bin.c_str(), bin.c_str(), "serve", config.c_str(), "--run-dir", run_dir.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() {
    if (pid_ <= 0) return;
    if (!reaped_) {
      ::kill(pid_, SIGTERM);
      if (!waitExit(std::chrono::seconds(20))) ::kill(-pid_, SIGKILL);
    }
    // Whatever is left of the tree (the keeper is the subreaper of everything it started).
    ::kill(-pid_, SIGKILL);
    if (!reaped_) ::waitpid(pid_, nullptr, 0);
    killOrphans();
  }

  // Kills and reaps every process re-parented to the test process (leftovers of a dead tree).
  static void killOrphans() {
    for (int round = 0; round < 50; ++round) {
      auto kids = childrenOfThisProcess();
      if (kids.empty()) return;
      for (pid_t k : kids) {
        ::kill(-k, SIGKILL);
        ::kill(k, SIGKILL);
      }
      for (pid_t k : kids) ::waitpid(k, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream in(log_path_);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Waits for the keeper to exit; returns true and records the status when it did.
  bool waitExit(std::chrono::milliseconds deadline) {
    if (reaped_) return true;
    bool done = waitFor(
        [&] {
          int st = 0;
          pid_t r = ::waitpid(pid_, &st, WNOHANG);
          if (r == pid_) {
            reaped_ = true;
            status_ = st;
          }
          return reaped_;
        },
        deadline);
    return done;
  }
  int exitCode() const { return reaped_ && WIFEXITED(status_) ? WEXITSTATUS(status_) : -1; }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace provisr::test

// Test support: a real `provisr serve` on a temp run_dir and free loopback ports, stopped (and its
// whole process tree killed, by process group) when the test ends, even when it fails.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run.hpp"

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

// Polls `cond` until it holds or `deadline` passes; the pause between checks grows from 1 ms to
// 50 ms. Returns whether it held.
inline bool waitFor(const std::function<bool()>& cond, std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(pause);  // the pause of a deadline-bounded poll
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

// `provisr serve CONFIG --run-dir DIR` in its own process group, output to files in `dir`.
class Daemon {
 public:
  Daemon(const std::string& config, const std::string& run_dir, const std::string& log_path)
      : log_path_(log_path) {
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

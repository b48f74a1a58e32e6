// Shared test scaffolding for the spawner tests: temp dirs, process guards, bounded waits.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <optional>
#include <stdexcept>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "spawner/launcher.hpp"
#include "spawner/reaper.hpp"
#include "tests/support/wait.hpp"

namespace provisr::spawner::test {

inline std::string helper(const std::string& name) { return std::string(PROVISR_TEST_HELPERS) + "/" + name; }

// A per-test directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "provisr-spawner-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str(const std::string& sub = "") const { return sub.empty() ? path_.string() : (path_ / sub).string(); }

 private:
  std::filesystem::path path_;
};

// Kills every process group it knows and reaps the leaders, whatever the test did. Reaping goes by
// pid, never waitpid(-1), as in the spawner.
class ProcessGuard {
 public:
  ProcessGuard() = default;
  ProcessGuard(const ProcessGuard&) = delete;
  ProcessGuard& operator=(const ProcessGuard&) = delete;
  ~ProcessGuard() {
    for (pid_t g : groups_) ::kill(-g, SIGKILL);
    for (pid_t g : groups_) {
      int st = 0;
      ::waitpid(g, &st, 0);  // ECHILD when the test already released it: fine
    }
  }
  void add(pid_t pgid) { groups_.push_back(pgid); }

 private:
  std::vector<pid_t> groups_;
};

inline bool waitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  return rc == 1;
}

using provisr::test::waitFor;
// The spawner tests' name for waitFor.
inline bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  return waitFor(cond, deadline);
}

// Reads fd until EOF or the deadline; the fd may be non-blocking.
inline std::string readAll(int fd, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + deadline;
  std::array<char, 65536> buf{};
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n > 0) {
      out.append(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !waitReadable(fd, left)) break;
  }
  return out;
}

// Waits for the child's exit through its pidfd and returns it (not reaped).
inline std::optional<ExitStatus> waitExit(const ManagedChild& c, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  if (!waitReadable(c.pidfd(), timeout)) return std::nullopt;
  auto r = c.peekExit();
  if (!r.ok()) return std::nullopt;
  return *r;
}

inline std::vector<std::string> baseEnv() { return {"PATH=/usr/bin:/bin"}; }

}  // namespace provisr::spawner::test

// Crash-suite support: a real `provisr serve` (keeper + spawner + master + gateway) on a temp
// run_dir and a free loopback port, whose components are found through a directory of symlinks
// the test can swap (a component that cannot start), plus /proc probes (pid identity, zombies,
// fds, live copies of a program) and gap-free log checks.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::crash {

using namespace std::chrono_literals;
using nlohmann::json;
using provisr::test::TempDir;
using provisr::test::waitFor;

inline constexpr const char* kToken = "crash-suite-token";

inline std::string helper(const std::string& name) { return std::string(PROVISR_TEST_HELPERS) + "/" + name; }

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---- /proc probes ---------------------------------------------------------------------------

// Fields after the command name: [0] state, [1] ppid, [2] pgrp, [19] start time in ticks.
inline std::vector<std::string> statFields(pid_t pid) {
  std::string text = slurp("/proc/" + std::to_string(pid) + "/stat");
  const auto close = text.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(text.substr(close + 1));
  std::vector<std::string> f;
  for (std::string w; rest >> w;) f.push_back(w);
  return f;
}

// Running (not a zombie, not gone).
inline bool alive(pid_t pid) {
  if (pid <= 0) return false;
  auto f = statFields(pid);
  return !f.empty() && f[0] != "Z" && f[0] != "X";
}
inline bool gone(pid_t pid) { return !alive(pid); }

inline std::uint64_t startTicks(pid_t pid) {
  auto f = statFields(pid);
  return f.size() > 19 ? std::stoull(f[19]) : 0;
}

inline pid_t parentOf(pid_t pid) {
  auto f = statFields(pid);
  return f.size() > 1 ? static_cast<pid_t>(std::stol(f[1])) : 0;
}

inline std::vector<pid_t> allPids() {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string n = e.path().filename().string();
    if (!n.empty() && std::all_of(n.begin(), n.end(), ::isdigit)) out.push_back(static_cast<pid_t>(std::stol(n)));
  }
  return out;
}

// Zombies whose parent is one of `parents`.
inline std::vector<pid_t> zombiesOf(const std::vector<pid_t>& parents) {
  std::vector<pid_t> out;
  for (pid_t p : allPids()) {
    auto f = statFields(p);
    if (f.size() < 2 || f[0] != "Z") continue;
    const pid_t pp = static_cast<pid_t>(std::stol(f[1]));
    if (std::find(parents.begin(), parents.end(), pp) != parents.end()) out.push_back(p);
  }
  return out;
}

// Live processes whose command line holds the word `marker` (each test program carries one).
inline std::vector<pid_t> livePidsWith(const std::string& marker) {
  std::vector<pid_t> out;
  for (pid_t p : allPids()) {
    std::string cmd = slurp("/proc/" + std::to_string(p) + "/cmdline");
    std::replace(cmd.begin(), cmd.end(), '\0', ' ');
    if ((" " + cmd).find(" " + marker + " ") != std::string::npos && alive(p)) out.push_back(p);
  }
  return out;
}

inline std::size_t fdCount(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++n;
  return n;
}

// ---- logs -----------------------------------------------------------------------------------

// What the ticker wrote into a log file: its sequence numbers in file order, and whether every
// line was whole and numbered 0, 1, 2... without a gap or a repeat.
struct SeqCheck {
  long count = 0;
  long last = -1;
  bool gapFree = true;
  std::string problem;
};

inline SeqCheck checkTicks(const std::string& path, bool allowPartialTail = true) {
  SeqCheck r;
  std::ifstream in(path);
  std::string line;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t pos = 0;
  while (pos < text.size()) {
    const auto nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      if (!allowPartialTail) {
        r.gapFree = false;
        r.problem = "partial last line '" + text.substr(pos) + "'";
      }
      break;
    }
    line = text.substr(pos, nl - pos);
    pos = nl + 1;
    long n = -1;
    if (line.rfind("tick ", 0) != 0 || std::sscanf(line.c_str() + 5, "%ld", &n) != 1) {
      r.gapFree = false;
      r.problem = "line " + std::to_string(r.count) + " is '" + line + "'";
      return r;
    }
    if (n != r.last + 1) {
      r.gapFree = false;
      r.problem = "after " + std::to_string(r.last) + " comes " + std::to_string(n);
      return r;
    }
    r.last = n;
    ++r.count;
  }
  return r;
}

// ---- the daemon -----------------------------------------------------------------------------

// One program of the test config: `command` (built from helper paths) plus extra spec lines.
struct Program {
  std::string name;
  std::string command;
  std::string extra;  // more `spec.x = y` lines
};

// Median and maximum of measured durations, for the report lines the suite prints.
inline std::string summary(std::vector<double> ms) {
  if (ms.empty()) return "n=0";
  std::sort(ms.begin(), ms.end());
  char buf[128];
  std::snprintf(buf, sizeof buf, "n=%zu median=%.0f ms max=%.0f ms", ms.size(), ms[ms.size() / 2], ms.back());
  return buf;
}

class Tree {
 public:
  explicit Tree(const std::vector<Program>& programs, const std::string& extraConfig = "") {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    port_ = provisr::test::freePort();
    libexec_ = dir_.str() + "/libexec";
    std::filesystem::create_directories(libexec_);
    std::filesystem::create_directories(dir_.str() + "/programs");
    for (const char* c : {"spawner", "master", "gateway"}) restoreComponent(c);
    std::ostringstream cfg;
    cfg << "programs_directory = \"" << dir_.str() << "/programs\"\n"
        << extraConfig << "[log]\ndir = \"" << logDir() << "\"\n"
        << "[server]\nlisten = \"127.0.0.1:" << port_ << "\"\nallow_root_programs = true\n"
        << "[server.auth]\ntoken = \"" << kToken << "\"\n";
    for (const auto& p : programs) {
      cfg << "[[processes]]\ntype = \"process\"\nspec.name = \"" << p.name << "\"\nspec.command = \"" << p.command
          << "\"\nspec.stop_timeout = \"2s\"\n"
          << p.extra;
    }
    config_ = dir_.write("config.toml", cfg.str());
  }
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  ~Tree() {
    stopAll();
    // PROVISR_CRASH_LOGS=DIR keeps every serve log of the run there (for a failure's post-mortem).
    if (const char* keep = std::getenv("PROVISR_CRASH_LOGS"); keep != nullptr && *keep != '\0') {
      std::ofstream(std::string(keep) + "/" + dir_.path().filename().string() + ".log") << serveLogs();
    }
    provisr::test::Daemon::killOrphans();
  }

  // `provisr serve CONFIG --run-dir DIR` in its own process group, components from libexec().
  pid_t serve() {
    ++serves_;
    const std::string log = dir_.str() + "/serve-" + std::to_string(serves_) + ".log";
    logs_.push_back(log);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setenv("PROVISR_LIBEXEC_DIR", libexec_.c_str(), 1);
      const std::string bin = provisr::test::binPath("provisr");
      ::execl(bin.c_str(), bin.c_str(), "serve", config_.c_str(), "--run-dir", runDir().c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(pid, pid);
    keepers_.push_back(pid);
    return pid;
  }

  // Reaps the keeper `pid` (ours) when it has exited; its exit code, or -1 (signal / not yet).
  std::optional<int> reapKeeper(pid_t pid, std::chrono::milliseconds deadline) {
    std::optional<int> code;
    const bool done = waitFor(
        [&] {
          int st = 0;
          const pid_t r = ::waitpid(pid, &st, WNOHANG);
          if (r != pid) return false;
          code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
          return true;
        },
        deadline);
    if (done) keepers_.erase(std::remove(keepers_.begin(), keepers_.end(), pid), keepers_.end());
    return done ? code : std::nullopt;
  }

  // SIGTERM to every keeper still ours, then SIGKILL to what is left (every process group).
  void stopAll() {
    for (pid_t k : keepers_) ::kill(k, SIGTERM);
    for (pid_t k : std::vector<pid_t>(keepers_)) {
      if (!reapKeeper(k, 20s)) {
        ::kill(-k, SIGKILL);
        reapKeeper(k, 5s);
      }
    }
  }

  // A component binary the keeper cannot run (exits 1 at once) until restoreComponent().
  void breakComponent(const std::string& name) {
    const std::string path = libexec_ + "/provisr-" + name;
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << "#!/bin/sh\necho \"provisr-" << name << " disabled by the crash suite\" >&2\nexit 1\n";
    std::filesystem::permissions(tmp, std::filesystem::perms::owner_all);
    std::filesystem::rename(tmp, path);
  }
  void restoreComponent(const std::string& name) {
    const std::string path = libexec_ + "/provisr-" + name;
    const std::string tmp = path + ".tmp";
    std::filesystem::remove(tmp);
    std::filesystem::create_symlink(provisr::test::binPath("provisr-" + name), tmp);
    std::filesystem::rename(tmp, path);
  }

  // ---- files ----
  std::string runDir() const { return dir_.str() + "/run"; }
  std::string logDir() const { return dir_.str() + "/logs"; }
  std::string stdoutLog(const std::string& instance) const { return logDir() + "/" + instance + ".stdout.log"; }
  std::string configPath() const { return config_; }
  std::string programsDir() const { return dir_.str() + "/programs"; }
  const TempDir& dir() const { return dir_; }
  std::string serveLogs() const {
    std::string out;
    for (const auto& l : logs_) out += "==== " + l + "\n" + slurp(l);
    return out;
  }

  json components() const { return json::parse(slurp(runDir() + "/components.json"), nullptr, false); }
  pid_t componentPid(const std::string& c) const {
    auto j = components();
    if (!j.is_object() || !j.contains(c) || !j[c]["pid"].is_number_integer()) return 0;
    return j[c]["pid"].get<pid_t>();
  }
  std::string componentState(const std::string& c) const {
    auto j = components();
    if (!j.is_object() || !j.contains(c)) return "";
    return j[c].value("state", "");
  }
  // All three components of the current keeper run (components.json says so and /proc agrees).
  bool componentsUp() const {
    for (const char* c : {"spawner", "master", "gateway"}) {
      if (componentState(c) != "running" || !alive(componentPid(c))) return false;
    }
    return true;
  }

  // The keeper restarts a component at once only after a run of at least a second (else it backs
  // off): waits until `c` has run that long, so a kill measures the immediate restart.
  bool waitSettled(const std::string& c) const {
    return waitFor(
        [&] {
          auto j = components();
          if (!j.is_object() || !j.contains(c) || !j[c]["started_at_ms"].is_number_integer()) return false;
          const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
          return j[c].value("state", "") == "running" && now - j[c]["started_at_ms"].get<std::int64_t>() >= 1100;
        },
        10s);
  }

  // ---- HTTP ----
  httplib::Result get(const std::string& path) {
    httplib::Client c = client();
    return c.Get(("/api" + path).c_str());
  }
  httplib::Result post(const std::string& path, const std::string& body = "") {
    httplib::Client c = client();
    return c.Post(("/api" + path).c_str(), body, "application/json");
  }
  // name → status row of every instance; empty when the API does not answer 200.
  std::map<std::string, json> status() {
    std::map<std::string, json> out;
    auto r = get("/status?wildcard=*");
    if (!r || r->status != 200) return out;
    auto rows = json::parse(r->body, nullptr, false);
    if (!rows.is_array()) return out;
    for (const auto& row : rows) out[row.value("name", "")] = row;
    return out;
  }
  json statusOf(const std::string& name) {
    auto s = status();
    auto it = s.find(name);
    return it == s.end() ? json() : it->second;
  }
  // Instance → pid of every instance in state running; empty when the API does not answer.
  std::map<std::string, pid_t> runningPids() {
    std::map<std::string, pid_t> out;
    for (const auto& [n, row] : status()) {
      if (row.value("state", "") == "running" && row["pid"].is_number_integer()) out[n] = row["pid"].get<pid_t>();
    }
    return out;
  }
  // Every name in `names` is running.
  bool allRunning(const std::vector<std::string>& names) {
    auto r = runningPids();
    return std::all_of(names.begin(), names.end(), [&](const std::string& n) { return r.count(n) != 0; });
  }

  int port() const { return port_; }
  std::string apiUrl() const { return "http://127.0.0.1:" + std::to_string(port_) + "/api"; }

 private:
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_connection_timeout(1, 0);
    c.set_read_timeout(5, 0);
    c.set_bearer_token_auth(kToken);
    return c;
  }

  TempDir dir_;
  int port_ = 0;
  std::string libexec_;
  std::string config_;
  std::vector<pid_t> keepers_;
  std::vector<std::string> logs_;
  int serves_ = 0;
};

inline double msSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace provisr::crash

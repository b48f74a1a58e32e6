// Chaos suite: a real `provisr serve` with ~50 children of mixed kinds, a component SIGKILLed at a
// random moment of every round while a client drives random start/stop/restart/status calls through
// the gateway, and after every round the invariants of DESIGN §4 checked against /proc and the log
// files. Everything random comes from one seed, so a run replays with the same victims, timings
// and actions.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "tests/chaos/log_check.hpp"
#include "tests/chaos/proc_scan.hpp"
#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

namespace provisr::chaos {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

inline double msSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// ---- options -------------------------------------------------------------------------------------

struct Options {
  std::uint64_t seed = 0;
  int rounds = 15;
  double seconds = 55;  // no round starts after this much time
  std::vector<std::string> victims{"gateway", "master"};
  int minRoundMs = 2500;
  int maxRoundMs = 4500;
  // Before a spawner kill the keeper is stopped (SIGSTOP) this long and continued right after the
  // kill: a keeper descheduled or throttled while writing its log, as on a busy machine. The dying
  // spawner's last messages then wait unread, and the keeper learns of the death late.
  int keeperStallMs = 0;
};

inline std::vector<std::string> splitList(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// PROVISR_CHAOS_SEED, PROVISR_CHAOS_ROUNDS, PROVISR_CHAOS_SECONDS, PROVISR_CHAOS_VICTIMS (comma list)
// override the defaults of a case.
inline Options optionsFromEnv(Options o) {
  if (const char* s = std::getenv("PROVISR_CHAOS_SEED"); s != nullptr && *s != '\0') {
    o.seed = std::strtoull(s, nullptr, 0);
  } else {
    std::random_device rd;
    o.seed = (static_cast<std::uint64_t>(rd()) << 32 | rd()) % 1000000000ULL;
  }
  const char* rounds = std::getenv("PROVISR_CHAOS_ROUNDS");
  const char* seconds = std::getenv("PROVISR_CHAOS_SECONDS");
  if (rounds != nullptr && *rounds != '\0') {
    o.rounds = std::atoi(rounds);
    o.seconds = 1e9;  // the rounds decide, unless a time budget is given too
  }
  if (seconds != nullptr && *seconds != '\0') {
    o.seconds = std::atof(seconds);
    if (rounds == nullptr || *rounds == '\0') o.rounds = 1000000;
  }
  if (const char* v = std::getenv("PROVISR_CHAOS_VICTIMS"); v != nullptr && *v != '\0') o.victims = splitList(v);
  if (const char* st = std::getenv("PROVISR_CHAOS_KEEPER_STALL_MS"); st != nullptr && *st != '\0') o.keeperStallMs = std::atoi(st);
  return o;
}

// ---- the children ----------------------------------------------------------------------------------

enum class Kind { kLogger, kCrasher, kJob };

struct ProgramDef {
  std::string name;
  int instances;
  Kind kind;
  std::vector<std::string> args;  // seqlogger arguments
  std::string extra;              // more spec lines
  bool clientTouches = true;      // the random client may start/stop/restart it
};

// 49 children: long-running loggers (some with split lines, one fast enough to rotate its log),
// auto-restarting crashers (exit code and signal), finite jobs (never / on-failure restart).
inline std::vector<ProgramDef> programs() {
  return {
      {"sentinel", 1, Kind::kLogger, {"20", "48", "1", "whole"}, "", false},
      {"log", 22, Kind::kLogger, {"25", "48", "1", "whole"}, "", true},
      {"logsplit", 6, Kind::kLogger, {"15", "64", "1", "split"}, "", true},
      {"fast", 1, Kind::kLogger, {"10", "200", "8", "whole"}, "spec.log.max_size_mb = 1\n", true},
      {"crash", 6, Kind::kCrasher, {"10", "48", "1", "whole", "60", "3"},
       "spec.auto_restart = true\nspec.restart_interval = \"300ms\"\n", true},
      {"crashsig", 2, Kind::kCrasher, {"10", "48", "1", "whole", "90", "sig:9"},
       "spec.auto_restart = \"on-failure\"\nspec.restart_interval = \"200ms\"\n", true},
      {"job", 4, Kind::kJob, {"20", "48", "1", "whole", "100", "0"}, "spec.auto_restart = false\n", true},
      {"jobok", 3, Kind::kJob, {"20", "48", "1", "whole", "50", "0"}, "spec.auto_restart = \"on-failure\"\n", true},
      {"jobfail", 3, Kind::kJob, {"20", "48", "1", "whole", "150", "2"},
       "spec.auto_restart = \"on-failure\"\nspec.restart_interval = \"500ms\"\n", true},
  };
}

struct InstModel {
  std::string program;
  Kind kind = Kind::kLogger;
  bool clientTouches = true;
  bool want = true;        // not stopped by the client
  bool touched = false;    // the client stopped/restarted (or newly started) it this round
  bool uncertain = false;  // an action on it never got a definite answer
  std::string pendingOp;   // that action
};

// ---- HTTP -------------------------------------------------------------------------------------------

struct Reply {
  int status = 0;  // 0: no HTTP answer (connection refused/reset, timeout)
  std::string body;
};

inline Reply httpCall(httplib::Client& c, bool post, const std::string& path) {
  auto r = post ? c.Post(path.c_str(), "", "application/json") : c.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body};
}

inline std::unique_ptr<httplib::Client> makeClient(int port, std::chrono::milliseconds readTimeout) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_connection_timeout(std::chrono::milliseconds(500));
  c->set_read_timeout(readTimeout);
  c->set_write_timeout(std::chrono::seconds(2));
  c->set_keep_alive(true);
  return c;
}

inline bool retryable(int status) { return status == 0 || status == 502 || status == 503 || status == 504; }

// ---- statistics --------------------------------------------------------------------------------------

struct Samples {
  std::vector<double> ms;
  double median() const {
    if (ms.empty()) return 0;
    auto v = ms;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
  double max() const { return ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()); }
};

// ---- the run ------------------------------------------------------------------------------------------

class ChaosRun {
 public:
  explicit ChaosRun(Options opts) : opts_(std::move(opts)), killerRng_(opts_.seed ^ std::uint64_t{0x6b696c6c6572}) {
    tag_ = "PROVISR_CHAOS_RUN=" + std::to_string(::getpid()) + "-" + std::to_string(opts_.seed);
    port_ = test::freePort();
    logDir_ = dir_.str() + "/logs";
    runDir_ = dir_.str() + "/run";
    for (const auto& p : programs()) {
      for (int i = 1; i <= p.instances; ++i) {
        const std::string n = p.instances == 1 ? p.name : p.name + "-" + std::to_string(i);
        InstModel m;
        m.program = p.name;
        m.kind = p.kind;
        m.clientTouches = p.clientTouches;
        model_[n] = m;
        instances_.push_back(n);
        if (p.clientTouches) targets_.push_back(n);
      }
    }
    logs_ = std::make_unique<LogChecker>(logDir_);
  }

  ChaosRun(const ChaosRun&) = delete;
  ChaosRun& operator=(const ChaosRun&) = delete;

  ~ChaosRun() {
    stopMonitor();
    keepArtifacts();
    // Newest daemon first: a graceful stop when it still runs, then every leftover of the tree.
    while (!daemons_.empty()) daemons_.pop_back();
    test::Daemon::killOrphans();
  }

  // The whole run; returns the number of invariant violations.
  std::size_t run() {
    say("chaos: seed %llu, %d rounds (at most %.0f s), victims %s, %zu children, run dir %s",
        static_cast<unsigned long long>(opts_.seed), opts_.rounds, opts_.seconds, joined(opts_.victims).c_str(),
        instances_.size(), runDir_.c_str());
    if (opts_.keeperStallMs > 0) say("chaos: the keeper is stopped %d ms before each spawner kill", opts_.keeperStallMs);
    say("chaos: replay with PROVISR_CHAOS_SEED=%llu PROVISR_CHAOS_ROUNDS=%d PROVISR_CHAOS_VICTIMS=%s",
        static_cast<unsigned long long>(opts_.seed), opts_.rounds, joined(opts_.victims).c_str());
    writeConfig();
    startDaemon();
    startMonitor();
    const auto t0 = Clock::now();
    if (!waitAllUp(60s)) {
      violation("setup: the daemon did not come up with every child running within 60 s");
      finish();
      return violations_.size();
    }
    say("chaos: up after %.0f ms", msSince(t0));
    const auto runStart = Clock::now();
    for (int round = 1; round <= opts_.rounds; ++round) {
      if (std::chrono::duration<double>(Clock::now() - runStart).count() > opts_.seconds) break;
      if (!runRound(round)) break;
      ++roundsDone_;
    }
    finish();
    summary(std::chrono::duration<double>(Clock::now() - t0).count());
    return violations_.size();
  }

  const std::vector<std::string>& violations() const { return violations_; }

 private:
  // ---- setup ----

  void writeConfig() {
    std::ostringstream c;
    c << "env = [\"" << tag_ << "\"]\n"
      << "[log]\ndir = \"" << logDir_ << "\"\nmax_backups = 1000\n"
      << "[server]\nlisten = \"127.0.0.1:" << port_ << "\"\n";
    const std::string helper = std::string(PROVISR_TEST_HELPERS) + "/seqlogger";
    for (const auto& p : programs()) {
      c << "[[processes]]\ntype = \"process\"\nspec.name = \"" << p.name << "\"\n"
        << "spec.instances = " << p.instances << "\n"
        << "spec.args = [\"" << helper << "\"";
      for (const auto& a : p.args) c << ", \"" << a << "\"";
      c << "]\nspec.stop_timeout = \"10s\"\n" << p.extra;
    }
    config_ = dir_.write("config.toml", c.str());
  }

  void startDaemon() {
    const std::string log = dir_.str() + "/serve-" + std::to_string(daemons_.size() + 1) + ".log";
    daemons_.push_back(std::make_unique<test::Daemon>(config_, runDir_, log));
  }
  test::Daemon& daemon() { return *daemons_.back(); }

  std::optional<Json> components() {
    const std::string text = readWhole(runDir_ + "/components.json");
    auto j = Json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    return j;
  }
  std::optional<pid_t> componentPid(const std::string& which) {
    auto j = components();
    if (!j || !j->contains(which)) return std::nullopt;
    const Json& c = (*j)[which];
    if (!c.is_object() || !c["pid"].is_number_integer() || c["state"] != "running") return std::nullopt;
    const pid_t pid = c["pid"].get<pid_t>();
    if (!aliveComm(pid, "provisr-" + which)) return std::nullopt;
    return pid;
  }

  // Every component running and answering, every logger the model wants running is running.
  bool waitAllUp(std::chrono::milliseconds deadline) {
    auto http = makeClient(port_, 3s);
    return test::waitFor(
        [&] {
          for (const char* c : {"spawner", "master", "gateway"}) {
            if (!componentPid(c)) return false;
          }
          auto r = httpCall(*http, false, "/api/status?wildcard=*");
          if (r.status != 200) return false;
          auto rows = Json::parse(r.body, nullptr, false);
          if (!rows.is_array()) return false;
          std::lock_guard<std::mutex> lk(mu_);
          for (const auto& row : rows) {
            auto it = model_.find(row.value("name", ""));
            if (it == model_.end()) continue;
            if (it->second.kind == Kind::kLogger && it->second.want && row["state"] != "running") return false;
          }
          return true;
        },
        deadline);
  }

  // ---- one round ----

  struct Action {
    std::string op;      // status, start, stop, restart
    std::string target;  // instance ("" for status of everything)
    bool wait = false;
    int pauseMs = 100;
  };

  std::vector<Action> planActions(int round) {
    std::mt19937_64 rng(opts_.seed * std::uint64_t{0x9e3779b97f4a7c15} + static_cast<std::uint64_t>(round));
    std::vector<Action> out;
    for (int i = 0; i < 200; ++i) {
      Action a;
      const int r = static_cast<int>(rng() % 100);
      a.op = r < 35 ? "status" : r < 57 ? "start" : r < 79 ? "stop" : "restart";
      a.target = targets_[rng() % targets_.size()];
      if (a.op == "status" && rng() % 3 == 0) a.target.clear();
      a.wait = rng() % 4 == 0;
      a.pauseMs = 40 + static_cast<int>(rng() % 260);
      out.push_back(a);
    }
    return out;
  }

  bool runRound(int round) {
    const auto roundStart = Clock::now();
    const std::size_t before = violationCount();
    // The victim and the moment come from the killer's stream; the bag keeps the kills balanced.
    if (bag_.empty()) {
      for (const auto& v : opts_.victims) {
        if (v == "spawner" && keeperKilled_) continue;  // that spawner is no longer the keeper's child
        bag_.push_back(v);
      }
      std::shuffle(bag_.begin(), bag_.end(), killerRng_);
    }
    std::string victim = bag_.back();
    bag_.pop_back();
    if (victim == "spawner" && keeperKilled_) {
      // After a keeper kill the spawner is no longer the keeper's child: killing it is a loss of
      // the whole tree (DESIGN §4 item 5), not a component crash. Draw again.
      if (bag_.empty()) {
        for (const auto& v : opts_.victims) {
          if (v != "spawner") bag_.push_back(v);
        }
        std::shuffle(bag_.begin(), bag_.end(), killerRng_);
      }
      victim = bag_.back();
      bag_.pop_back();
    }
    const int roundMs = opts_.minRoundMs + static_cast<int>(killerRng_() % static_cast<std::uint64_t>(opts_.maxRoundMs - opts_.minRoundMs));
    const int killAt = 300 + static_cast<int>(killerRng_() % static_cast<std::uint64_t>(roundMs - 600));

    // Baseline: the pid of every logger the client may not touch this round unless it does.
    std::map<std::string, pid_t> basePid;
    {
      auto http = makeClient(port_, 5s);
      auto r = httpCall(*http, false, "/api/status?wildcard=*");
      auto rows = Json::parse(r.body, nullptr, false);
      std::lock_guard<std::mutex> lk(mu_);
      for (auto& [n, m] : model_) m.touched = false;
      if (r.status == 200 && rows.is_array()) {
        for (const auto& row : rows) {
          auto it = model_.find(row.value("name", ""));
          if (it == model_.end() || it->second.kind != Kind::kLogger || !it->second.want) continue;
          if (row["state"] == "running" && row["pid"].is_number_integer()) basePid[it->first] = row["pid"].get<pid_t>();
        }
      }
    }
    basePid_ = basePid;

    // The client runs the round's actions until the round ends.
    const auto actions = planActions(round);
    std::atomic<bool> stop{false};
    ClientStats cs;
    std::thread client([&] { clientLoop(actions, stop, cs); });

    // The kill (for a spawner, with the keeper stalled first when asked).
    const bool stall = victim == "spawner" && opts_.keeperStallMs > 0;
    if (stall) {
      std::this_thread::sleep_until(roundStart + std::chrono::milliseconds(std::max(0, killAt - opts_.keeperStallMs)));  // pacing: the stall starts
      ::kill(daemon().pid(), SIGSTOP);
    }
    std::this_thread::sleep_until(roundStart + std::chrono::milliseconds(killAt));  // pacing: the seeded kill moment
    std::optional<double> recovery;
    pid_t victimPid = 0;
    std::map<long, long> preSeq;
    if (victim == "spawner") preSeq = sentinelSeqs();
    if (victim == "keeper") {
      victimPid = daemon().pid();
    } else if (auto pid = componentPid(victim)) {
      victimPid = *pid;
    }
    if (victimPid <= 0) {
      if (stall) ::kill(daemon().pid(), SIGCONT);
      violation("round " + std::to_string(round) + ": " + victim + " is not running at the kill moment");
    } else {
      const auto tKill = Clock::now();
      ::kill(victimPid, SIGKILL);
      if (stall) ::kill(daemon().pid(), SIGCONT);
      recovery = awaitRecovery(victim, victimPid, tKill, preSeq);
      if (!recovery) {
        violation("round " + std::to_string(round) + ": " + victim + " did not answer again within 30 s of its kill");
      } else {
        recoveryMs_[victim].ms.push_back(*recovery);
      }
      ++kills_[victim];
      if (victim == "keeper") keeperKilled_ = true;
    }

    // The rest of the round, then settle and check.
    std::this_thread::sleep_until(roundStart + std::chrono::milliseconds(roundMs));  // pacing: the round's length
    stop = true;
    client.join();
    actions_ += cs.done;
    retries_ += cs.retries;
    uncertain_ += cs.uncertain;
    const auto tSettle = Clock::now();
    const bool settled = settleAndCheck(round);
    const double settleMs = msSince(tSettle);
    const auto fresh = violationsFrom(before);
    say("round %2d: killed %-7s (pid %d) at +%.2fs, answering again after %s, %d actions (%d retries, %d uncertain), "
        "settled in %.0f ms, %zu violations",
        round, victim.c_str(), static_cast<int>(victimPid), killAt / 1000.0,
        recovery ? (std::to_string(static_cast<long>(*recovery)) + " ms").c_str() : "never", cs.done, cs.retries,
        cs.uncertain, settleMs, fresh.size());
    for (const auto& v : fresh) say("    %s", v.c_str());
    return recovery.has_value() && settled;
  }

  struct ClientStats {
    int done = 0;
    int retries = 0;
    int uncertain = 0;
  };

  void clientLoop(const std::vector<Action>& actions, std::atomic<bool>& stop, ClientStats& cs) {
    auto http = makeClient(port_, 10s);
    for (const auto& a : actions) {
      if (stop) return;
      perform(*http, a, stop, cs);
      ++cs.done;
      if (stop) return;
      // The seeded gap between actions, cut short when the round ends.
      (void)test::waitFor([&] { return stop.load(); }, std::chrono::milliseconds(a.pauseMs));
    }
  }

  // One action with bounded retries while a component is down (503 or no answer).
  bool perform(httplib::Client& http, const Action& a, std::atomic<bool>& stop, ClientStats& cs) {
    if (a.op == "status") {
      const std::string path = a.target.empty() ? "/api/status?wildcard=*" : "/api/status?name=" + a.target;
      auto r = httpCall(http, false, path);
      if (!retryable(r.status) && r.status != 200) {
        violation("GET " + path + " answered " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
      }
      return r.status == 200;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      InstModel& m = model_.at(a.target);
      if (a.op != "start" || !m.want) m.touched = true;
      m.uncertain = true;
      m.pendingOp = a.op;
    }
    const std::string path = "/api/" + a.op + "?name=" + a.target + (a.wait ? "&wait=3s" : "");
    // Retried while a component restarts (503 or no answer), for at most 10 s.
    bool ok = false;
    (void)test::waitFor(
        [&] {
          auto r = httpCall(http, true, path);
          if (r.status == 200) {
            ok = true;
            return true;
          }
          if (!retryable(r.status)) {
            violation("POST " + path + " answered " + std::to_string(r.status) + ": " + r.body.substr(0, 200));
            return true;
          }
          if (stop) return true;
          ++cs.retries;
          return false;
        },
        10s);
    if (ok) {
      std::lock_guard<std::mutex> lk(mu_);
      InstModel& m = model_.at(a.target);
      m.uncertain = false;
      m.want = a.op != "stop";
      return true;
    }
    ++cs.uncertain;  // left uncertain: settled after the round
    return false;
  }

  // The sentinel's last sequence number per pid, as the log route shows it now.
  std::map<long, long> sentinelSeqs(std::chrono::milliseconds timeout = 3s) {
    std::map<long, long> out;
    auto http = makeClient(port_, timeout);
    auto r = httpCall(*http, false, "/api/processes/sentinel/logs?limit=5");
    auto j = Json::parse(r.body, nullptr, false);
    if (r.status != 200 || !j.is_object() || !j["lines"].is_array()) return out;
    for (const auto& l : j["lines"]) {
      std::istringstream in(l.value("text", ""));
      std::string word, name;
      long pid = 0, n = -1;
      if (in >> word >> name >> pid >> n && word == "seq") out[pid] = std::max(out[pid], n);
    }
    return out;
  }

  // Kill → the component answers again. Gateway: GET /status; master: a status through it;
  // spawner: a new spawner runs and the log route shows sentinel lines written after the kill
  // (the new spawner reads the adopted pipes); keeper: a new serve (started here) answers status.
  std::optional<double> awaitRecovery(const std::string& victim, pid_t oldPid, Clock::time_point tKill,
                                      const std::map<long, long>& preSeq) {
    const std::string comm = victim == "keeper" ? "provisr-keeper" : "provisr-" + victim;
    if (victim == "keeper") {
      if (!daemon().waitExit(10s)) return std::nullopt;
      startDaemon();
    } else if (!test::waitFor([&] { return !aliveComm(oldPid, comm); }, 10s)) {
      return std::nullopt;
    }
    // A short read timeout: a request that went to the dead process is abandoned and sent again.
    auto http = makeClient(port_, 250ms);
    bool ok = test::waitFor(
        [&] {
          if (victim == "gateway") return httpCall(*http, false, "/api/status").status == 200;
          if (victim == "master" || victim == "keeper")
            return httpCall(*http, false, "/api/status?name=sentinel").status == 200;
          auto pid = componentPid("spawner");
          if (!pid || *pid == oldPid) return false;
          for (const auto& [p, n] : sentinelSeqs(300ms)) {
            auto it = preSeq.find(p);
            if (it == preSeq.end() || n > it->second) return true;
          }
          return false;
        },
        30s);
    if (!ok) return std::nullopt;
    return msSince(tKill);
  }

  // ---- invariants ----

  // Uncertain actions are repeated until they get an answer, then the invariants must hold within
  // a deadline (children settle: stops finish, crashers cycle). Returns false when the daemon is
  // gone for good (no point in more rounds).
  //
  // An instance whose processes changed between the two /proc scans around the status request
  // (a crasher exiting or restarting meanwhile) cannot be judged in that pass; it keeps the
  // verdict of the last pass in which it held still. So a crasher cycling during the check is not
  // a violation, and one that never held still for the whole deadline is reported as such.
  bool settleAndCheck(int round) {
    const std::string where = "round " + std::to_string(round) + ": ";
    auto http = makeClient(port_, 10s);
    std::vector<std::pair<std::string, std::string>> pending;
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (const auto& [n, m] : model_) {
        if (m.uncertain) pending.emplace_back(n, m.pendingOp);
      }
    }
    for (const auto& [name, op] : pending) {
      std::atomic<bool> never{false};
      ClientStats cs;
      Action a{op, name, false, 0};
      if (!perform(*http, a, never, cs)) violation(where + op + " " + name + " got no answer 10 s after recovery");
    }
    std::map<std::string, std::string> verdict;  // instance → "" (fine) or its problem, from a still pass
    std::vector<std::string> global;
    std::vector<std::string> slow;  // what was still unsettled after 5 s, shown when it settles late
    int passes = 0;
    auto problems = [&] {
      std::vector<std::string> out = global;
      for (const auto& n : instances_) {
        auto it = verdict.find(n);
        if (it == verdict.end()) {
          out.push_back(n + ": changing while checked in every pass (" + std::to_string(passes) + ")");
        } else if (!it->second.empty()) {
          out.push_back(it->second);
        }
      }
      return out;
    };
    std::vector<std::string> last;
    const auto t0 = Clock::now();
    const bool ok = test::waitFor(
        [&] {
          CheckPass pass = checkInvariants();
          ++passes;
          global = pass.global;
          for (const auto& [n, v] : pass.instances) verdict[n] = v;
          last = problems();
          if (!last.empty() && slow.empty() && Clock::now() - t0 > 5s) slow = last;
          return last.empty();
        },
        30s);
    if (ok && !slow.empty()) say("    (slow to settle; after 5 s still: %s%s)", slow.front().c_str(), slow.size() > 1 ? " ..." : "");
    for (const auto& v : last) violation(where + v);
    for (auto& v : logs_->takeViolations()) violation(where + v);
    // Without a status answer there is no daemon to run more rounds against.
    return ok || global.empty() || global.front().rfind("GET /status", 0) != 0;
  }

  // One pass of the checks: a verdict for every instance that held still during it ("" when all is
  // well), and the problems that belong to no single instance (strays, zombies, logs, no status).
  struct CheckPass {
    std::map<std::string, std::string> instances;
    std::vector<std::string> global;
  };

  CheckPass checkInvariants() {
    CheckPass out;
    std::vector<std::string>& v = out.global;
    reapOurZombies();
    const auto procs1 = scanProcs(tag_);
    auto http = makeClient(port_, 5s);
    auto r = httpCall(*http, false, "/api/status?wildcard=*");
    const auto procs2 = scanProcs(tag_);
    if (r.status != 200) {
      v.push_back("GET /status?wildcard=* answered " + std::to_string(r.status));
      return out;
    }
    auto rows = Json::parse(r.body, nullptr, false);
    if (!rows.is_array()) {
      v.push_back("GET /status?wildcard=* is not an array");
      return out;
    }
    std::map<std::string, Json> status;
    for (const auto& row : rows) status[row.value("name", "")] = row;
    const auto live1 = liveByName(procs1);
    const auto live2 = liveByName(procs2);
    auto liveOf = [](const std::map<std::string, std::vector<pid_t>>& m, const std::string& n) {
      auto it = m.find(n);
      auto list = it == m.end() ? std::vector<pid_t>{} : it->second;
      std::sort(list.begin(), list.end());
      return list;
    };
    std::map<std::string, InstModel> model;
    {
      std::lock_guard<std::mutex> lk(mu_);
      model = model_;
    }
    for (const auto& [name, m] : model) {
      auto it = status.find(name);
      if (it == status.end()) {
        out.instances[name] = name + ": missing from status";
        continue;
      }
      const Json& st = it->second;
      const std::string state = st.value("state", "?");
      const pid_t spid = st["pid"].is_number_integer() ? st["pid"].get<pid_t>() : 0;
      const auto l1 = liveOf(live1, name);
      const auto l2 = liveOf(live2, name);
      if (l1 != l2) continue;  // no verdict from this pass (see settleAndCheck)
      std::string& verdict = out.instances[name];
      auto pids = [&] {
        std::string s;
        for (pid_t p : l1) s += " " + std::to_string(p);
        return s.empty() ? std::string(" none") : s;
      };
      if (l1.size() > 1) {
        verdict = name + ": " + std::to_string(l1.size()) + " live processes:" + pids();
        continue;
      }
      if (!m.want) {
        // A stop of an exited or fatal instance leaves it so (SPEC §2.1: nothing to stop).
        if ((state != "stopped" && state != "exited" && state != "fatal") || !l1.empty())
          verdict = name + ": stopped by the client but state " + state + ", live" + pids();
        continue;
      }
      if (m.kind == Kind::kLogger) {
        if (state != "running" || l1.size() != 1 || l1[0] != spid) {
          verdict = name + ": wanted running but state " + state + " pid " + std::to_string(spid) + ", live" + pids() +
                    " exit_error " + st["exit_error"].dump();
          continue;
        }
        auto b = basePid_.find(name);
        if (!m.touched && b != basePid_.end() && b->second != spid) {
          verdict = name + ": pid changed from " + std::to_string(b->second) + " to " + std::to_string(spid) +
                    " though nobody stopped or restarted it";
        }
        continue;
      }
      if (state == "running") {
        if (l1.size() != 1 || l1[0] != spid) verdict = name + ": running with pid " + std::to_string(spid) + " but live" + pids();
      } else if (state == "stopped" || state == "exited" || state == "fatal" || state == "backoff") {
        if (!l1.empty()) verdict = name + ": state " + state + " but live" + pids();
      }
    }
    // Tagged processes that are no instance at all.
    for (const auto& [name, list] : live2) {
      if (!model.count(name)) v.push_back("stray process " + std::to_string(list.front()) + " named '" + name + "'");
    }
    // Zombies of the tree (exits not yet acknowledged: transient, so a settled tree has none).
    std::set<pid_t> parents;
    for (const char* c : {"spawner", "keeper"}) {
      if (auto p = componentPidAny(c)) parents.insert(*p);
    }
    for (const auto& p : procs2) {
      if (p.state == 'Z' && parents.count(p.ppid))
        v.push_back("zombie " + std::to_string(p.pid) + " (" + p.comm + ") of " + std::to_string(p.ppid));
    }
    // Logs: every line so far in order; every process that is gone wrote its end line.
    logs_->scan(instances_);
    for (const auto& [pid, ps] : logs_->pids()) {
      if (ps.ended) continue;
      if (!aliveAs(static_cast<pid_t>(pid), tag_, ps.instance))
        v.push_back(ps.instance + ": pid " + std::to_string(pid) + " is gone but its log has no end line (last line " +
                    std::to_string(ps.next - 1) + ")");
    }
    return out;
  }

  std::optional<pid_t> componentPidAny(const std::string& which) {
    auto j = components();
    if (!j || !j->contains(which) || !(*j)[which]["pid"].is_number_integer()) return std::nullopt;
    return (*j)[which]["pid"].get<pid_t>();
  }

  // Processes re-parented to this (subreaper) process after a keeper kill: reap what has exited,
  // except the keepers, which their Daemon reaps.
  void reapOurZombies() {
    std::set<pid_t> keepers;
    for (const auto& d : daemons_) keepers.insert(d->pid());
    for (pid_t pid : allPids()) {
      auto p = readStat(pid);
      if (p && p->state == 'Z' && p->ppid == ::getpid() && !keepers.count(pid)) ::waitpid(pid, nullptr, WNOHANG);
    }
  }

  // ---- the duplicate monitor: at no moment two live processes of one instance ----

  void startMonitor() {
    monitor_ = std::thread([this] {
      while (!monitorStop_) {
        auto live = liveByName(scanProcs(tag_));
        for (const auto& [name, list] : live) {
          if (list.size() < 2) continue;
          // Confirm: every pid alive in two passes means they overlapped in time (pids are not
          // reused that fast), so this is not an exit and a respawn caught in one scan.
          bool all = true;
          for (int pass = 0; pass < 2 && all; ++pass) {
            for (pid_t p : list) all = all && aliveAs(p, tag_, name);
          }
          if (!all) continue;
          std::string key = name;
          for (pid_t p : list) key += " " + std::to_string(p);
          std::lock_guard<std::mutex> lk(mu_);
          if (duplicatesSeen_.insert(key).second) violation("duplicate: " + std::to_string(list.size()) + " live processes of " + key);
        }
        std::unique_lock<std::mutex> lk(monitorMu_);
        monitorCv_.wait_for(lk, 100ms, [&] { return monitorStop_.load(); });
      }
    });
  }
  void stopMonitor() {
    if (!monitor_.joinable()) return;
    monitorStop_ = true;
    monitorCv_.notify_all();
    monitor_.join();
  }

  // ---- the end ----

  void finish() {
    stopMonitor();
    if (daemons_.empty()) return;
    test::Daemon& d = daemon();
    std::set<pid_t> components;
    for (const char* c : {"spawner", "master", "gateway"}) {
      if (auto p = componentPidAny(c)) components.insert(*p);
    }
    d.signal(SIGTERM);
    if (!d.waitExit(60s)) {
      violation("shutdown: the keeper did not exit within 60 s of SIGTERM");
      auto http = makeClient(port_, 3s);
      auto r = httpCall(*http, false, "/api/status?wildcard=*");
      auto rows = Json::parse(r.body, nullptr, false);
      if (rows.is_array()) {
        for (const auto& row : rows) {
          const std::string st = row.value("state", "?");
          if (st != "stopped" && st != "exited" && st != "fatal")
            violation("shutdown: " + row.value("name", "?") + " still " + st + " (pid " + row["pid"].dump() + ")");
        }
      }
      printDaemonLog(80);
      return;
    }
    if (d.exitCode() != 0) violation("shutdown: the keeper exited " + std::to_string(d.exitCode()) + ", not 0");
    const bool clean = test::waitFor(
        [&] {
          reapOurZombies();
          for (const auto& p : scanProcs(tag_)) {
            if (p.tagged) return false;
          }
          for (pid_t c : components) {
            auto s = readStat(c);
            if (s && s->state != 'Z' && s->comm.rfind("provisr-", 0) == 0) return false;
          }
          return true;
        },
        10s);
    if (!clean) {
      for (const auto& p : scanProcs(tag_)) {
        if (p.tagged) violation("shutdown: stray process " + std::to_string(p.pid) + " (" + p.name + ")");
      }
      for (pid_t c : components) {
        if (aliveComm(c, "provisr-spawner") || aliveComm(c, "provisr-master") || aliveComm(c, "provisr-gateway"))
          violation("shutdown: component " + std::to_string(c) + " still runs");
      }
    }
    logs_->scan(instances_);
    for (auto& v : logs_->takeViolations()) violation("shutdown: " + v);
    for (const auto& [pid, ps] : logs_->pids()) {
      if (!ps.ended)
        violation("shutdown: " + ps.instance + ": pid " + std::to_string(pid) + " has no end line (last line " +
                  std::to_string(ps.next - 1) + ")");
    }
  }

  // With violations (or PROVISR_CHAOS_KEEP=1), the serve logs, the config and the run_dir state
  // files are copied to $PROVISR_CHAOS_ARTIFACTS (default /tmp/provisr-chaos-<seed>) before the
  // temp dir goes.
  void keepArtifacts() {
    const char* keep = std::getenv("PROVISR_CHAOS_KEEP");
    if (violations_.empty() && (keep == nullptr || std::string(keep) != "1")) return;
    namespace fs = std::filesystem;
    const char* env = std::getenv("PROVISR_CHAOS_ARTIFACTS");
    const std::string out = env != nullptr && *env != '\0' ? env : "/tmp/provisr-chaos-" + std::to_string(opts_.seed);
    std::error_code ec;
    fs::create_directories(out, ec);
    for (const auto& e : fs::directory_iterator(dir_.path(), ec)) {
      if (e.is_regular_file()) fs::copy_file(e.path(), out + "/" + e.path().filename().string(), fs::copy_options::overwrite_existing, ec);
    }
    for (const char* f : {"components.json", "master/master.state", "spawner/spawner.journal"}) {
      fs::copy_file(runDir_ + "/" + f, out + "/" + fs::path(f).filename().string(), fs::copy_options::overwrite_existing, ec);
    }
    say("chaos: serve logs and state files kept in %s", out.c_str());
  }

  // The tail of the current serve log (keeper and components write their lines there).
  void printDaemonLog(std::size_t lines) {
    const std::string text = daemon().log();
    std::size_t at = text.size();
    for (std::size_t n = 0; n <= lines && at > 0; ++n) at = text.rfind('\n', at - 1);
    say("---- last lines of the serve log ----\n%s\n----", text.substr(at == std::string::npos ? 0 : at).c_str());
  }

  void summary(double seconds) {
    say("chaos summary: seed %llu, %d rounds in %.0f s", static_cast<unsigned long long>(opts_.seed), roundsDone_, seconds);
    std::string kills;
    for (const auto& v : {"gateway", "master", "spawner", "keeper"}) kills += std::string(" ") + v + "=" + std::to_string(kills_[v]);
    say("  kills:%s", kills.c_str());
    for (const auto& [c, s] : recoveryMs_) {
      say("  recovery %-7s (kill -> answering): n=%zu median %.0f ms, max %.0f ms", c.c_str(), s.ms.size(), s.median(),
          s.max());
    }
    say("  client actions: %d (%d retries on 503/no answer, %d uncertain, settled afterwards)", actions_, retries_,
        uncertain_);
    say("  log lines checked: %llu (%llu bytes, %llu rotated files), processes logged: %zu",
        static_cast<unsigned long long>(logs_->lines()), static_cast<unsigned long long>(logs_->bytes()),
        static_cast<unsigned long long>(logs_->rotatedFiles()), logs_->pids().size());
    say("  invariant violations: %zu", violations_.size());
    for (const auto& v : violations_) say("    %s", v.c_str());
  }

  // ---- helpers ----

  void violation(const std::string& what) {
    std::lock_guard<std::mutex> lk(violationsMu_);
    violations_.push_back(what);
  }
  std::size_t violationCount() {
    std::lock_guard<std::mutex> lk(violationsMu_);
    return violations_.size();
  }
  std::vector<std::string> violationsFrom(std::size_t i) {
    std::lock_guard<std::mutex> lk(violationsMu_);
    return {violations_.begin() + static_cast<std::ptrdiff_t>(std::min(i, violations_.size())), violations_.end()};
  }

  static std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + x;
    return s;
  }

  template <class... A>
  static void say(const char* fmt, A... a) {
    std::fprintf(stdout, fmt, a...);
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  Options opts_;
  std::mt19937_64 killerRng_;
  test::TempDir dir_;
  std::string tag_;
  int port_ = 0;
  std::string logDir_;
  std::string runDir_;
  std::string config_;
  std::vector<std::unique_ptr<test::Daemon>> daemons_;
  std::unique_ptr<LogChecker> logs_;

  std::mutex mu_;  // model_, duplicatesSeen_
  std::map<std::string, InstModel> model_;
  std::vector<std::string> instances_;
  std::vector<std::string> targets_;
  std::map<std::string, pid_t> basePid_;
  std::set<std::string> duplicatesSeen_;

  std::mutex violationsMu_;
  std::vector<std::string> violations_;

  std::thread monitor_;
  std::atomic<bool> monitorStop_{false};
  std::mutex monitorMu_;
  std::condition_variable monitorCv_;

  std::vector<std::string> bag_;
  bool keeperKilled_ = false;
  int roundsDone_ = 0;
  std::map<std::string, int> kills_;
  std::map<std::string, Samples> recoveryMs_;
  int actions_ = 0;
  int retries_ = 0;
  int uncertain_ = 0;
};

}  // namespace provisr::chaos

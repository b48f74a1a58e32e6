// Ordering (SPEC §2.3): priority bands and depends_on edges, as pure incremental start/stop plans.
//
// The master builds a plan for a selection, then after every state change asks it which
// instances may be started (or stopped) now; the plan remembers what it already handed out, so
// each instance is issued at most once. Nothing here runs a process or reads a clock.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config/model.hpp"
#include "common/util/result.hpp"
#include "master/lifecycle.hpp"

namespace provisr::master {

// What the plan needs to know about one instance right now.
struct InstanceStatus {
  State state = State::kStopped;
  bool exit_success = false;        // meaningful in `exited`: the exit was a success exit
  std::optional<int> exit_code;     // for the reasons a blocked dependent gets
  std::optional<int> exit_signal;
};
InstanceStatus statusOf(const Instance& in);

// Keyed by instance name; a missing instance counts as `stopped`.
using StatusMap = std::map<std::string, InstanceStatus>;

struct Band {
  int priority = 0;
  std::vector<std::string> programs;  // in config order
};
// Priority bands, ascending (lower priority numbers start first).
std::vector<Band> priorityBands(const std::vector<config::ProgramSpec>& programs);

// A depends_on cycle as a path `a, b, c, a`, or nullopt. Unknown names are not followed.
std::optional<std::vector<std::string>> findDependencyCycle(const std::vector<config::ProgramSpec>& programs);

// Every depends_on problem the loader must refuse (SPEC §1.4): unknown names, a dependency with a
// higher priority number (it would start later), cycles. Each message names the program.
std::vector<std::string> checkDependencies(const std::vector<config::ProgramSpec>& programs);

// An instance the plan keeps stopped, with the reason for its last_start_error.
struct Blocked {
  std::string instance;
  std::string reason;
  bool operator==(const Blocked&) const = default;
};

class Plan {
 public:
  enum class Kind { kStart, kStop };

  Kind kind() const { return kind_; }
  // Instances that may be started (stopped) now and were not issued yet, in plan order: what
  // take() would return, without remembering it.
  std::vector<std::string> ready(const StatusMap& states) const;
  // ready(), remembered as issued, so each instance is handed out once. Instances that need
  // nothing (already running for a start, already down for a stop) are consumed silently. Call it
  // after every state change; the caller applies the result before the next call.
  std::vector<std::string> take(const StatusMap& states);
  // Start plans: instances kept stopped because a dependency ended fatal or exited with a failure.
  std::vector<Blocked> blocked(const StatusMap& states) const;
  // The user took this instance out of the plan (e.g. stopped it during a start): it no longer
  // blocks anything and is never issued.
  void drop(const std::string& instance);
  // Every instance has reached its end: running/exited/fatal (start), down (stop), blocked or dropped.
  bool done(const StatusMap& states) const;

  std::vector<std::string> instances() const;  // in plan order
  const std::vector<Band>& bands() const { return bands_; }  // ascending, only planned programs
  std::string str() const;                     // the plan for `--dry-run`, band by band

 private:
  friend Result<Plan> makePlan(Kind, const std::vector<config::ProgramSpec>&, const std::vector<std::string>&);

  struct Node {
    std::string instance;
    std::string program;
    std::size_t band = 0;
    bool selected = false;  // asked for, not pulled in as a dependency
    std::vector<std::string> depends_on;
  };
  enum class Verdict { kWait, kIssue, kConsume, kBlocked, kDone };
  struct Judgement {
    Verdict verdict = Verdict::kWait;
    std::string reason;  // kBlocked
  };

  // One pass over every node, band by band: what each may do now.
  std::vector<Judgement> evaluate(const StatusMap& states) const;
  Judgement judgeStart(const Node& n, const StatusMap& states) const;
  Judgement judgeStop(const Node& n, const StatusMap& states) const;
  std::optional<std::string> dependencyFailure(const std::string& program, const StatusMap& states) const;
  bool dependencySatisfied(const std::string& program, const StatusMap& states) const;

  Kind kind_ = Kind::kStart;
  std::vector<Node> nodes_;  // sorted by band (ascending for both kinds), then config order
  std::vector<Band> bands_;
  std::map<std::string, std::vector<std::size_t>> by_program_;
  std::map<std::string, std::vector<std::string>> dependents_;  // program -> planned programs needing it
  std::map<std::string, std::vector<std::string>> all_depends_;  // every program's depends_on
  std::set<std::string> issued_;
  std::set<std::string> dropped_;
};

// Start: the selection (program names; empty = every program) plus, transitively, its
// dependencies. Errors: an unknown program (kNotFound), an unknown dependency or a cycle
// (kConfigInvalid).
Result<Plan> startPlan(const std::vector<config::ProgramSpec>& programs, const std::vector<std::string>& selection);
// Stop: the selection only (stopping X stops neither its dependencies nor its dependents' deps),
// highest band first, dependents before their dependencies.
Result<Plan> stopPlan(const std::vector<config::ProgramSpec>& programs, const std::vector<std::string>& selection);

}  // namespace provisr::master

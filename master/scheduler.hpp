// Ordering (SPEC §2.3): priority bands and depends_on edges, as pure incremental start/stop plans.
//
// The master builds a plan for a selection, reports every state change of an instance to it and
// asks it which instances may be started (or stopped) now; the plan remembers what it already
// handed out, so each instance is issued at most once. Nothing here runs a process or reads a clock.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
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

  // ---- incremental use (the master) ----
  // The plan keeps the status of each of its instances. The master reports every change of one
  // (update) and then calls take(): the work is proportional to what changed, not to the size
  // of the plan (a band is judged once when it opens; a dependency's instances are looked at
  // again only when the dependency as a whole flips between satisfied/failed/down).
  // Returns whether the instance is in the plan.
  bool update(const std::string& instance, const InstanceStatus& status);
  // Instances that may be started (stopped) now, remembered as issued, so each instance is handed
  // out once; in plan order. Instances that need nothing (already running for a start, already
  // down for a stop) are consumed silently. The caller applies the result (and reports the new
  // states through update) before the next call.
  std::vector<std::string> take();
  // Start plans: instances kept stopped because a dependency ended fatal or exited with a failure,
  // as of the last take().
  std::vector<Blocked> blocked() const;
  // Every instance has reached its end: running/exited/fatal (start), down (stop), blocked or
  // dropped — and take() has nothing left to hand out.
  bool done() const;

  // ---- one-shot use: the statuses of every instance given at once ----
  // Missing instances count as `stopped`. These overwrite the statuses the plan holds.
  std::vector<std::string> ready(const StatusMap& states) const;  // what take(states) would return
  std::vector<std::string> take(const StatusMap& states);
  std::vector<Blocked> blocked(const StatusMap& states) const;
  bool done(const StatusMap& states) const;

  // The user took this instance out of the plan (e.g. stopped it during a start): it no longer
  // blocks anything and is never issued.
  void drop(const std::string& instance);

  bool contains(const std::string& instance) const { return index_.count(instance) > 0; }
  std::vector<std::string> instances() const;  // in plan order
  const std::vector<Band>& bands() const { return bands_; }  // ascending, only planned programs
  std::string str() const;                     // the plan for `--dry-run`, band by band
  // Judgements and status updates done so far: a measure of the plan's work (tests check it
  // grows linearly with the number of instances).
  std::uint64_t work() const { return work_; }

 private:
  friend Result<Plan> makePlan(Kind, const std::vector<config::ProgramSpec>&, const std::vector<std::string>&);

  struct Node {
    std::string instance;
    std::string program;
    std::size_t band = 0;
    bool selected = false;  // asked for, not pulled in as a dependency
    std::vector<std::string> depends_on;
    std::size_t prog = 0;  // index into progs_
    std::size_t seg = 0;   // index into segs_: its band's position in plan order
  };
  // What the plan knows of one node now.
  struct Live {
    InstanceStatus st;
    bool issued = false;
    bool dropped = false;
    bool settled = false;  // counted in its segment's `unsettled` while false
    bool queued = false;   // waiting in queue_ to be judged
    bool fail = false;     // makes its program a failed dependency
    bool sat = false;      // counts towards its program being a satisfied dependency
    bool up = false;       // keeps the programs it depends on from stopping (stop plans)
  };
  struct Prog {
    std::string name;
    std::vector<std::size_t> nodes;       // plan order
    std::vector<std::size_t> deps;        // planned depends_on, in config order
    std::vector<std::size_t> dependents;  // planned programs depending on it directly
    std::vector<std::size_t> affects;     // programs whose undecided nodes it can unblock or block
    std::vector<std::size_t> undecided;   // nodes neither issued nor dropped (compacted lazily)
    std::set<std::size_t> failing;        // nodes with `fail`, in plan order
    std::size_t satisfied = 0;            // nodes with `sat`
    std::size_t up = 0;                   // nodes with `up`
  };
  // A maximal run of nodes of one band in plan order; the gate opens segment k once segments
  // 0..k-1 have settled.
  struct Seg {
    std::size_t begin = 0, end = 0;
    std::size_t unsettled = 0;
    std::vector<std::size_t> undecided;  // compacted lazily
  };
  enum class Verdict { kWait, kIssue, kConsume, kBlocked, kDone };
  struct Judgement {
    Verdict verdict = Verdict::kWait;
    std::string reason;  // kBlocked
  };

  void index();  // builds progs_, segs_, index_ and the live state once nodes_ are final
  bool undecided(std::size_t i) const { return !live_[i].issued && !live_[i].dropped; }
  void setStatus(std::size_t i, const InstanceStatus& st);
  void refresh(std::size_t i);
  void setSettled(std::size_t i, bool settled);
  void enqueue(std::size_t i);
  void enqueueUndecided(std::vector<std::size_t>& list);
  std::size_t firstUnsettled() const;
  bool segOpen(std::size_t seg) const;
  // Judges queued nodes (issuing what may go when `issue`), opening segments as they settle,
  // until nothing is left to judge. Returns what was issued, in plan order.
  std::vector<std::size_t> process(bool issue);
  Judgement judge(std::size_t i) const;
  std::optional<std::string> failure(std::size_t prog) const;
  void sync(const StatusMap& states);

  Kind kind_ = Kind::kStart;
  std::vector<Node> nodes_;  // sorted by band (ascending for starts, descending for stops), then config order
  std::vector<Band> bands_;
  std::map<std::string, std::vector<std::size_t>> by_program_;
  std::map<std::string, std::vector<std::string>> dependents_;  // program -> planned programs needing it
  std::map<std::string, std::vector<std::string>> all_depends_;  // every program's depends_on

  std::unordered_map<std::string, std::size_t> index_;  // instance -> node
  std::vector<Live> live_;
  std::vector<Prog> progs_;
  std::vector<Seg> segs_;
  std::vector<std::size_t> queue_;            // min-heap of node indices to judge
  std::map<std::size_t, std::string> blocked_;  // undecided nodes judged blocked, with the reason
  std::size_t opened_ = 0;                    // segments 0..opened_-1 had their nodes judged open
  std::uint64_t work_ = 0;
};

// Start: the selection (program names; empty = every program) plus, transitively, its
// dependencies. Errors: an unknown program (kNotFound), an unknown dependency or a cycle
// (kConfigInvalid).
Result<Plan> startPlan(const std::vector<config::ProgramSpec>& programs, const std::vector<std::string>& selection);
// Stop: the selection only (stopping X stops neither its dependencies nor its dependents' deps),
// highest band first, dependents before their dependencies.
Result<Plan> stopPlan(const std::vector<config::ProgramSpec>& programs, const std::vector<std::string>& selection);

}  // namespace provisr::master

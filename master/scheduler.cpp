// Priority bands, depends_on and the incremental start/stop plans built from them (SPEC §2.3).
#include "master/scheduler.hpp"

#include <algorithm>
#include <functional>
#include <sstream>

namespace provisr::master {

namespace {

using config::ProgramSpec;

std::map<std::string, const ProgramSpec*> indexByName(const std::vector<ProgramSpec>& programs) {
  std::map<std::string, const ProgramSpec*> out;
  for (const auto& p : programs) out.emplace(p.name, &p);
  return out;
}

InstanceStatus lookup(const StatusMap& states, const std::string& instance) {
  auto it = states.find(instance);
  return it == states.end() ? InstanceStatus{} : it->second;
}

bool isDown(State s) { return s == State::kStopped || s == State::kExited || s == State::kFatal; }
bool isStartEnd(State s) { return s == State::kRunning || s == State::kExited || s == State::kFatal; }

std::string describeFailure(const std::string& program, const InstanceStatus& st) {
  if (st.state == State::kFatal) return "dependency " + program + " ended fatal";
  if (st.exit_signal) return "dependency " + program + " was killed by signal " + std::to_string(*st.exit_signal);
  if (st.exit_code) return "dependency " + program + " exited with code " + std::to_string(*st.exit_code);
  return "dependency " + program + " exited with a failure";
}

}  // namespace

InstanceStatus statusOf(const Instance& in) {
  InstanceStatus s;
  s.state = in.state();
  s.exit_success = in.policy().isSuccess(in.exitCode(), in.exitSignal());
  s.exit_code = in.exitCode();
  s.exit_signal = in.exitSignal();
  return s;
}

std::vector<Band> priorityBands(const std::vector<ProgramSpec>& programs) {
  std::map<int, std::vector<std::string>> by_priority;
  for (const auto& p : programs) by_priority[p.priority].push_back(p.name);
  std::vector<Band> out;
  for (auto& [prio, names] : by_priority) out.push_back(Band{prio, std::move(names)});
  return out;
}

std::optional<std::vector<std::string>> findDependencyCycle(const std::vector<ProgramSpec>& programs) {
  const auto index = indexByName(programs);
  enum class Mark { kNew, kOnPath, kDone };
  std::map<std::string, Mark> mark;
  std::vector<std::string> path;
  std::optional<std::vector<std::string>> cycle;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    mark[name] = Mark::kOnPath;
    path.push_back(name);
    for (const auto& dep : index.at(name)->depends_on) {
      if (cycle) return;
      if (!index.count(dep)) continue;  // unknown names are another error
      const Mark m = mark.count(dep) ? mark[dep] : Mark::kNew;
      if (m == Mark::kOnPath) {
        auto start = std::find(path.begin(), path.end(), dep);
        cycle = std::vector<std::string>(start, path.end());
        cycle->push_back(dep);
        return;
      }
      if (m == Mark::kNew) visit(dep);
    }
    path.pop_back();
    mark[name] = Mark::kDone;
  };
  for (const auto& p : programs) {
    if (cycle) break;
    if (!mark.count(p.name)) visit(p.name);
  }
  return cycle;
}

std::vector<std::string> checkDependencies(const std::vector<ProgramSpec>& programs) {
  std::vector<std::string> problems;
  const auto index = indexByName(programs);
  for (const auto& p : programs) {
    for (const auto& dep : p.depends_on) {
      auto it = index.find(dep);
      if (it == index.end()) {
        problems.push_back(p.name + ": depends_on names an unknown program '" + dep + "'");
      } else if (dep == p.name) {
        problems.push_back(p.name + ": depends on itself");
      } else if (it->second->priority > p.priority) {
        problems.push_back(p.name + ": depends on " + dep + " whose priority " +
                           std::to_string(it->second->priority) + " is higher than its own " +
                           std::to_string(p.priority) + " (it would start later)");
      }
    }
  }
  if (auto cycle = findDependencyCycle(programs); cycle && cycle->size() > 2) {
    std::string path;
    for (const auto& n : *cycle) path += (path.empty() ? "" : " -> ") + n;
    problems.push_back((*cycle)[0] + ": dependency cycle " + path);
  }
  return problems;
}

Result<Plan> makePlan(Plan::Kind kind, const std::vector<ProgramSpec>& programs,
                      const std::vector<std::string>& selection) {
  const auto index = indexByName(programs);
  std::set<std::string> selected;
  for (const auto& name : selection) {
    if (!index.count(name)) return makeError(ErrorCode::kNotFound, "no such program: " + name);
    selected.insert(name);
  }
  if (selection.empty())
    for (const auto& p : programs) selected.insert(p.name);

  std::set<std::string> planned = selected;
  if (kind == Plan::Kind::kStart) {  // `start X` starts X's dependencies first
    std::vector<std::string> todo(selected.begin(), selected.end());
    while (!todo.empty()) {
      const std::string name = todo.back();
      todo.pop_back();
      for (const auto& dep : index.at(name)->depends_on) {
        if (!index.count(dep))
          return makeError(ErrorCode::kConfigInvalid, name + " depends on unknown program " + dep);
        if (planned.insert(dep).second) todo.push_back(dep);
      }
    }
  }
  std::vector<ProgramSpec> subset;
  for (const auto& p : programs)
    if (planned.count(p.name)) subset.push_back(p);
  if (auto cycle = findDependencyCycle(subset)) {
    std::string path;
    for (const auto& n : *cycle) path += (path.empty() ? "" : " -> ") + n;
    return makeError(ErrorCode::kConfigInvalid, "dependency cycle: " + path);
  }

  Plan plan;
  plan.kind_ = kind;
  plan.bands_ = priorityBands(subset);
  for (std::size_t b = 0; b < plan.bands_.size(); ++b) {
    for (const auto& name : plan.bands_[b].programs) {
      const ProgramSpec& spec = *index.at(name);
      std::vector<std::string> deps;
      for (const auto& d : spec.depends_on)
        if (planned.count(d)) deps.push_back(d);  // a stop plan only orders what it stops
      plan.all_depends_[name] = deps;
      for (const auto& d : deps) plan.dependents_[d].push_back(name);
      for (const auto& inst : spec.instanceNames()) {
        plan.by_program_[name].push_back(plan.nodes_.size());
        plan.nodes_.push_back(Plan::Node{inst, name, b, selected.count(name) > 0, deps});
      }
    }
  }
  if (kind == Plan::Kind::kStop) {  // reverse order: highest band first
    std::stable_sort(plan.nodes_.begin(), plan.nodes_.end(),
                     [](const Plan::Node& a, const Plan::Node& b) { return a.band > b.band; });
    plan.by_program_.clear();
    for (std::size_t i = 0; i < plan.nodes_.size(); ++i) plan.by_program_[plan.nodes_[i].program].push_back(i);
  }
  return plan;
}

Result<Plan> startPlan(const std::vector<ProgramSpec>& programs, const std::vector<std::string>& selection) {
  return makePlan(Plan::Kind::kStart, programs, selection);
}

Result<Plan> stopPlan(const std::vector<ProgramSpec>& programs, const std::vector<std::string>& selection) {
  return makePlan(Plan::Kind::kStop, programs, selection);
}

// A dependency failed once the plan has tried it (an old fatal/exit does not count before that):
// an instance ended fatal or exited with a failure, it was dropped while down, or it is itself
// blocked by a failed dependency of its own.
std::optional<std::string> Plan::dependencyFailure(const std::string& program, const StatusMap& states) const {
  auto it = by_program_.find(program);
  if (it == by_program_.end()) return std::nullopt;
  for (std::size_t i : it->second) {
    const Node& n = nodes_[i];
    const InstanceStatus st = lookup(states, n.instance);
    if (dropped_.count(n.instance) && st.state != State::kRunning && !(st.state == State::kExited && st.exit_success))
      return "dependency " + program + " was stopped";
    if (!issued_.count(n.instance)) continue;
    if (st.state == State::kFatal || (st.state == State::kExited && !st.exit_success))
      return describeFailure(program, st);
  }
  for (const auto& dep : all_depends_.at(program))
    if (auto why = dependencyFailure(dep, states)) return "dependency " + program + " is blocked: " + *why;
  return std::nullopt;
}

// Satisfied: every instance running, or exited with a success code (a one-shot), after the plan
// handled it — so a dependency this plan is about to re-run is not taken for its old result.
bool Plan::dependencySatisfied(const std::string& program, const StatusMap& states) const {
  auto it = by_program_.find(program);
  if (it == by_program_.end()) return true;
  for (std::size_t i : it->second) {
    const Node& n = nodes_[i];
    if (!issued_.count(n.instance) && !dropped_.count(n.instance)) return false;
    const InstanceStatus st = lookup(states, n.instance);
    if (!(st.state == State::kRunning || (st.state == State::kExited && st.exit_success))) return false;
  }
  return true;
}

Plan::Judgement Plan::judgeStart(const Node& n, const StatusMap& states) const {
  const InstanceStatus st = lookup(states, n.instance);
  if (issued_.count(n.instance)) return {isStartEnd(st.state) ? Verdict::kDone : Verdict::kWait, {}};
  for (const auto& dep : n.depends_on)
    if (auto why = dependencyFailure(dep, states)) return {Verdict::kBlocked, *why};
  for (const auto& dep : n.depends_on)
    if (!dependencySatisfied(dep, states)) return {Verdict::kWait, {}};
  switch (st.state) {
    case State::kRunning:
    case State::kStarting:
    case State::kBackoff:
      return {Verdict::kConsume, {}};  // already on its way
    case State::kExited:
      // A completed one-shot pulled in only as a dependency is not run again.
      if (st.exit_success && !n.selected) return {Verdict::kConsume, {}};
      return {Verdict::kIssue, {}};
    case State::kStopped:
    case State::kStopping:  // the lifecycle queues the start
    case State::kFatal:
      return {Verdict::kIssue, {}};
  }
  return {Verdict::kWait, {}};
}

Plan::Judgement Plan::judgeStop(const Node& n, const StatusMap& states) const {
  const InstanceStatus st = lookup(states, n.instance);
  if (isDown(st.state)) return {issued_.count(n.instance) ? Verdict::kDone : Verdict::kConsume, {}};
  if (issued_.count(n.instance)) return {Verdict::kWait, {}};
  // Dependents go down before what they depend on (same band; other bands are ordered already).
  auto it = dependents_.find(n.program);
  if (it != dependents_.end())
    for (const auto& p : it->second)
      for (std::size_t i : by_program_.at(p))
        if (!dropped_.count(nodes_[i].instance) && !isDown(lookup(states, nodes_[i].instance).state))
          return {Verdict::kWait, {}};
  return {Verdict::kIssue, {}};
}

std::vector<Plan::Judgement> Plan::evaluate(const StatusMap& states) const {
  std::vector<Judgement> out(nodes_.size());
  bool gate_open = true;       // every earlier band has settled
  bool band_settled = true;    // every node of the current band so far has settled
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (i > 0 && nodes_[i].band != nodes_[i - 1].band) {
      gate_open = gate_open && band_settled;
      band_settled = true;
    }
    const Node& n = nodes_[i];
    Judgement j;
    if (dropped_.count(n.instance)) {
      j.verdict = Verdict::kDone;
    } else if (!gate_open) {
      j.verdict = Verdict::kWait;
    } else {
      j = kind_ == Kind::kStart ? judgeStart(n, states) : judgeStop(n, states);
    }
    const bool settled = j.verdict == Verdict::kDone || j.verdict == Verdict::kBlocked ||
                         (kind_ == Kind::kStop && j.verdict == Verdict::kConsume);
    band_settled = band_settled && settled;
    out[i] = std::move(j);
  }
  return out;
}

std::vector<std::string> Plan::ready(const StatusMap& states) const {
  Plan preview = *this;
  return preview.take(states);
}

// Consuming what needs nothing can open the next band or satisfy a dependency, so one call goes
// on until a pass changes nothing: the caller may not get another state change to call again on
// (everything already running, for one).
std::vector<std::string> Plan::take(const StatusMap& states) {
  std::vector<std::string> out;
  // What is issued now is on its way from the next pass on: its old state (an earlier exit, say)
  // must not satisfy anyone.
  StatusMap view = states;
  for (bool progress = true; progress;) {
    progress = false;
    const auto js = evaluate(view);
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      const Verdict v = js[i].verdict;
      if (v != Verdict::kIssue && v != Verdict::kConsume) continue;
      if (!issued_.insert(nodes_[i].instance).second) continue;
      if (v == Verdict::kIssue) {
        out.push_back(nodes_[i].instance);
        view[nodes_[i].instance] = InstanceStatus{kind_ == Kind::kStart ? State::kStarting : State::kStopping,
                                                  false, std::nullopt, std::nullopt};
      }
      progress = true;
    }
  }
  // Plan order, whatever pass found them.
  std::vector<std::string> ordered;
  for (const auto& n : nodes_)
    if (std::find(out.begin(), out.end(), n.instance) != out.end()) ordered.push_back(n.instance);
  return ordered;
}

std::vector<Blocked> Plan::blocked(const StatusMap& states) const {
  std::vector<Blocked> out;
  const auto js = evaluate(states);
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    if (js[i].verdict == Verdict::kBlocked) out.push_back(Blocked{nodes_[i].instance, js[i].reason});
  return out;
}

void Plan::drop(const std::string& instance) { dropped_.insert(instance); }

bool Plan::done(const StatusMap& states) const {
  Plan preview = *this;
  if (!preview.take(states).empty()) return false;
  const auto js = preview.evaluate(states);
  return std::all_of(js.begin(), js.end(), [this](const Judgement& j) {
    return j.verdict == Verdict::kDone || j.verdict == Verdict::kBlocked ||
           (kind_ == Kind::kStop && j.verdict == Verdict::kConsume);
  });
}

std::vector<std::string> Plan::instances() const {
  std::vector<std::string> out;
  for (const auto& n : nodes_) out.push_back(n.instance);
  return out;
}

std::string Plan::str() const {
  std::ostringstream os;
  os << (kind_ == Kind::kStart ? "start plan" : "stop plan") << " ("
     << (kind_ == Kind::kStart ? "ascending" : "descending") << " priority):\n";
  if (nodes_.empty()) os << "  nothing to do\n";
  std::size_t step = 0;
  for (std::size_t k = 0; k < bands_.size(); ++k) {
    const std::size_t b = kind_ == Kind::kStart ? k : bands_.size() - 1 - k;
    const Band& band = bands_[b];
    os << "  " << ++step << ". priority " << band.priority << ":";
    for (const auto& prog : band.programs) {
      const auto& idx = by_program_.at(prog);
      const Node& first = nodes_[idx.front()];
      os << " " << prog;
      if (idx.size() > 1) os << " (" << idx.size() << " instances)";
      if (kind_ == Kind::kStart && !first.selected) os << " [dependency]";
      const auto& deps = all_depends_.at(prog);
      if (kind_ == Kind::kStart && !deps.empty()) {
        os << " [after";
        for (const auto& d : deps) os << " " << d;
        os << "]";
      }
      if (kind_ == Kind::kStop) {
        auto it = dependents_.find(prog);
        if (it != dependents_.end()) {
          os << " [after";
          for (const auto& d : it->second) os << " " << d;
          os << "]";
        }
      }
      os << (&prog == &band.programs.back() ? "" : ",");
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace provisr::master

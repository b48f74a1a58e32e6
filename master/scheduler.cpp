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
        plan.nodes_.push_back(Plan::Node{inst, name, b, selected.count(name) > 0, deps, 0, 0});
      }
    }
  }
  if (kind == Plan::Kind::kStop) {  // reverse order: highest band first
    std::stable_sort(plan.nodes_.begin(), plan.nodes_.end(),
                     [](const Plan::Node& a, const Plan::Node& b) { return a.band > b.band; });
    plan.by_program_.clear();
    for (std::size_t i = 0; i < plan.nodes_.size(); ++i) plan.by_program_[plan.nodes_[i].program].push_back(i);
  }
  plan.index();
  return plan;
}

Result<Plan> startPlan(const std::vector<ProgramSpec>& programs, const std::vector<std::string>& selection) {
  return makePlan(Plan::Kind::kStart, programs, selection);
}

Result<Plan> stopPlan(const std::vector<ProgramSpec>& programs, const std::vector<std::string>& selection) {
  return makePlan(Plan::Kind::kStop, programs, selection);
}

// ---- the live state of a plan ------------------------------------------------------------------

void Plan::index() {
  live_.assign(nodes_.size(), Live{});
  index_.clear();
  progs_.clear();
  segs_.clear();
  queue_.clear();
  blocked_.clear();
  opened_ = 0;
  std::map<std::string, std::size_t> pidx;
  for (const auto& band : bands_) {
    for (const auto& name : band.programs) {
      pidx.emplace(name, progs_.size());
      progs_.push_back(Prog{});
      progs_.back().name = name;
    }
  }
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    Node& n = nodes_[i];
    index_.emplace(n.instance, i);
    n.prog = pidx.at(n.program);
    progs_[n.prog].nodes.push_back(i);
    progs_[n.prog].undecided.push_back(i);
    if (i == 0 || n.band != nodes_[i - 1].band) segs_.push_back(Seg{i, i, 0, {}});
    n.seg = segs_.size() - 1;
    Seg& seg = segs_.back();
    seg.end = i + 1;
    ++seg.unsettled;  // nothing is settled before it is judged
    seg.undecided.push_back(i);
  }
  for (std::size_t p = 0; p < progs_.size(); ++p) {
    for (const auto& d : all_depends_.at(progs_[p].name)) {
      const std::size_t q = pidx.at(d);
      progs_[p].deps.push_back(q);
      progs_[q].dependents.push_back(p);
    }
  }
  for (std::size_t p = 0; p < progs_.size(); ++p) {
    if (kind_ == Kind::kStop) {
      // A node waits for the programs depending on its own to be down.
      progs_[p].affects = progs_[p].deps;
      continue;
    }
    // A node waits for its dependencies, and is blocked by any failure below them.
    std::vector<char> seen(progs_.size(), 0);
    std::vector<std::size_t> todo{p};
    while (!todo.empty()) {
      const std::size_t q = todo.back();
      todo.pop_back();
      for (std::size_t d : progs_[q].dependents) {
        if (seen[d]) continue;
        seen[d] = 1;
        progs_[p].affects.push_back(d);
        todo.push_back(d);
      }
    }
  }
}

namespace {
bool sameStatus(const InstanceStatus& a, const InstanceStatus& b) {
  return a.state == b.state && a.exit_success == b.exit_success && a.exit_code == b.exit_code &&
         a.exit_signal == b.exit_signal;
}
bool upish(const InstanceStatus& st) {
  return st.state == State::kRunning || (st.state == State::kExited && st.exit_success);
}
constexpr std::size_t kNone = static_cast<std::size_t>(-1);
}  // namespace

void Plan::setSettled(std::size_t i, bool settled) {
  Live& l = live_[i];
  if (l.settled == settled) return;
  l.settled = settled;
  Seg& seg = segs_[nodes_[i].seg];
  if (settled) {
    --seg.unsettled;
  } else {
    ++seg.unsettled;
  }
}

void Plan::enqueue(std::size_t i) {
  if (!undecided(i)) return;
  setSettled(i, false);  // until judged again
  Live& l = live_[i];
  if (l.queued) return;
  l.queued = true;
  queue_.push_back(i);
  std::push_heap(queue_.begin(), queue_.end(), std::greater<>());
}

void Plan::enqueueUndecided(std::vector<std::size_t>& list) {
  std::size_t keep = 0;
  for (std::size_t k = 0; k < list.size(); ++k) {
    const std::size_t i = list[k];
    if (!undecided(i)) continue;
    list[keep++] = i;
    enqueue(i);
  }
  list.resize(keep);
}

// Node i changed (its status, issued or dropped): its share of its program's dependency
// state, its own settledness, and the nodes whose judgement may follow from it.
void Plan::refresh(std::size_t i) {
  ++work_;
  Live& l = live_[i];
  Prog& p = progs_[nodes_[i].prog];
  const State s = l.st.state;
  const bool fail = (l.dropped && !upish(l.st)) ||
                    (l.issued && (s == State::kFatal || (s == State::kExited && !l.st.exit_success)));
  const bool sat = (l.issued || l.dropped) && upish(l.st);
  const bool up = !l.dropped && !isDown(s);

  const bool wasSatisfied = p.satisfied == p.nodes.size();
  const bool wasUp = p.up > 0;
  const std::size_t firstFailBefore = p.failing.empty() ? kNone : *p.failing.begin();
  if (fail != l.fail) {
    if (fail) {
      p.failing.insert(i);
    } else {
      p.failing.erase(i);
    }
  }
  if (sat != l.sat) p.satisfied = sat ? p.satisfied + 1 : p.satisfied - 1;
  if (up != l.up) p.up = up ? p.up + 1 : p.up - 1;
  l.fail = fail;
  l.sat = sat;
  l.up = up;
  const std::size_t firstFail = p.failing.empty() ? kNone : *p.failing.begin();

  bool flipped = false;
  if (kind_ == Kind::kStart) {
    // The reason a dependent is blocked names the first failed instance: a change of that
    // instance, or of which one is first, rewrites it.
    flipped = wasSatisfied != (p.satisfied == p.nodes.size()) || firstFailBefore != firstFail || firstFail == i;
  } else {
    flipped = wasUp != (p.up > 0);
  }
  if (flipped)
    for (std::size_t a : p.affects) enqueueUndecided(progs_[a].undecided);

  if (l.dropped) {
    setSettled(i, true);
  } else if (l.issued) {
    setSettled(i, kind_ == Kind::kStart ? isStartEnd(s) : isDown(s));
  } else {
    enqueue(i);  // its own state changed what it may do
  }
}

void Plan::setStatus(std::size_t i, const InstanceStatus& st) {
  if (sameStatus(live_[i].st, st)) return;
  live_[i].st = st;
  refresh(i);
}

bool Plan::update(const std::string& instance, const InstanceStatus& status) {
  auto it = index_.find(instance);
  if (it == index_.end()) return false;
  setStatus(it->second, status);
  return true;
}

void Plan::sync(const StatusMap& states) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) setStatus(i, lookup(states, nodes_[i].instance));
}

void Plan::drop(const std::string& instance) {
  auto it = index_.find(instance);
  if (it == index_.end()) return;
  const std::size_t i = it->second;
  if (live_[i].dropped) return;
  live_[i].dropped = true;
  blocked_.erase(i);
  refresh(i);
}

std::size_t Plan::firstUnsettled() const {
  for (std::size_t s = 0; s < segs_.size(); ++s)
    if (segs_[s].unsettled > 0) return s;
  return segs_.size();
}

bool Plan::segOpen(std::size_t seg) const {
  for (std::size_t s = 0; s < seg; ++s)
    if (segs_[s].unsettled > 0) return false;
  return true;
}

// A dependency failed once the plan has tried it (an old fatal/exit does not count before that):
// an instance ended fatal or exited with a failure, it was dropped while down, or it is itself
// blocked by a failed dependency of its own.
std::optional<std::string> Plan::failure(std::size_t prog) const {
  const Prog& p = progs_[prog];
  if (!p.failing.empty()) {
    const Live& l = live_[*p.failing.begin()];
    if (l.dropped && !upish(l.st)) return "dependency " + p.name + " was stopped";
    return describeFailure(p.name, l.st);
  }
  for (std::size_t d : p.deps)
    if (auto why = failure(d)) return "dependency " + p.name + " is blocked: " + *why;
  return std::nullopt;
}

// What an undecided node (neither issued nor dropped) in an open segment may do now.
// A start waits until every dependency is satisfied: every instance running, or exited with a
// success code (a one-shot), after the plan handled it — so a dependency this plan is about to
// re-run is not taken for its old result. A stop waits for its dependents to be down.
Plan::Judgement Plan::judge(std::size_t i) const {
  const Node& n = nodes_[i];
  const InstanceStatus& st = live_[i].st;
  if (kind_ == Kind::kStop) {
    if (isDown(st.state)) return {Verdict::kConsume, {}};
    for (std::size_t d : progs_[n.prog].dependents)
      if (progs_[d].up > 0) return {Verdict::kWait, {}};
    return {Verdict::kIssue, {}};
  }
  for (std::size_t d : progs_[n.prog].deps)
    if (auto why = failure(d)) return {Verdict::kBlocked, *why};
  for (std::size_t d : progs_[n.prog].deps)
    if (progs_[d].satisfied < progs_[d].nodes.size()) return {Verdict::kWait, {}};
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

// Consuming what needs nothing can open the next segment or satisfy a dependency, so one call
// goes on until nothing is left to judge: the caller may not get another state change to call
// again on (everything already running, for one).
std::vector<std::size_t> Plan::process(bool issue) {
  std::vector<std::size_t> out;
  for (;;) {
    while (!queue_.empty()) {
      std::pop_heap(queue_.begin(), queue_.end(), std::greater<>());
      const std::size_t i = queue_.back();
      queue_.pop_back();
      live_[i].queued = false;
      if (!undecided(i) || !segOpen(nodes_[i].seg)) continue;  // a closed segment is judged when it opens
      ++work_;
      Judgement j = judge(i);
      if (j.verdict == Verdict::kBlocked) {
        blocked_[i] = std::move(j.reason);
        setSettled(i, true);
        continue;
      }
      blocked_.erase(i);
      const bool goes = j.verdict == Verdict::kIssue || j.verdict == Verdict::kConsume;
      if (goes && issue) {
        live_[i].issued = true;
        if (j.verdict == Verdict::kIssue) {
          out.push_back(i);
          // On its way from now on: its old state (an earlier exit, say) must not satisfy anyone.
          live_[i].st = InstanceStatus{kind_ == Kind::kStart ? State::kStarting : State::kStopping, false,
                                       std::nullopt, std::nullopt};
        }
        refresh(i);
      } else {
        setSettled(i, kind_ == Kind::kStop && j.verdict == Verdict::kConsume);
      }
    }
    // Segments up to the first unsettled one are open; those that just opened are judged.
    const std::size_t open = std::min(firstUnsettled() + 1, segs_.size());
    if (open <= opened_) {
      opened_ = open;
      break;
    }
    for (std::size_t s = opened_; s < open; ++s) enqueueUndecided(segs_[s].undecided);
    opened_ = open;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> Plan::take() {
  std::vector<std::string> out;
  for (std::size_t i : process(true)) out.push_back(nodes_[i].instance);
  return out;
}

std::vector<std::string> Plan::take(const StatusMap& states) {
  sync(states);
  return take();
}

std::vector<std::string> Plan::ready(const StatusMap& states) const {
  Plan preview = *this;
  return preview.take(states);
}

std::vector<Blocked> Plan::blocked() const {
  if (!queue_.empty()) {
    Plan preview = *this;
    preview.process(false);
    return preview.blocked();
  }
  std::vector<Blocked> out;
  for (const auto& [i, reason] : blocked_)
    if (segOpen(nodes_[i].seg)) out.push_back(Blocked{nodes_[i].instance, reason});
  return out;
}

std::vector<Blocked> Plan::blocked(const StatusMap& states) const {
  Plan preview = *this;
  preview.sync(states);
  preview.process(false);
  return preview.blocked();
}

bool Plan::done() const {
  if (!queue_.empty()) {
    Plan preview = *this;
    if (!preview.process(true).empty()) return false;
    return preview.done();
  }
  return firstUnsettled() == segs_.size();
}

bool Plan::done(const StatusMap& states) const {
  Plan preview = *this;
  preview.sync(states);
  if (!preview.process(true).empty()) return false;
  return preview.done();
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

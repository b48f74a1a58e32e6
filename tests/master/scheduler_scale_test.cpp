// The incremental plans against a whole-plan reference, and their cost: judging work grows
// linearly with the number of instances (a start of n instances used to re-judge every instance
// on every event: n² work).
#include "master/master_core.hpp"
#include "master/scheduler.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>

using namespace provisr;
using namespace provisr::master;
using Strings = std::vector<std::string>;
namespace fs = std::filesystem;

namespace {

config::ProgramSpec prog(std::string name, int priority = 0, int instances = 1, Strings deps = {}) {
  config::ProgramSpec p;
  p.name = std::move(name);
  p.priority = priority;
  p.instances = instances;
  p.depends_on = std::move(deps);
  return p;
}

InstanceStatus st(State s) { return InstanceStatus{s, false, std::nullopt, std::nullopt}; }
InstanceStatus exitedWith(int code, bool success) { return InstanceStatus{State::kExited, success, code, std::nullopt}; }

bool isDown(State s) { return s == State::kStopped || s == State::kExited || s == State::kFatal; }
bool isStartEnd(State s) { return s == State::kRunning || s == State::kExited || s == State::kFatal; }

// The plan as it was judged before it became incremental: every call re-judges every instance
// from a full map of statuses. Kept here as the definition the incremental plan must match.
class RefPlan {
 public:
  RefPlan(bool start, const std::vector<config::ProgramSpec>& programs, const Strings& selection) : start_(start) {
    std::map<std::string, const config::ProgramSpec*> index;
    for (const auto& p : programs) index.emplace(p.name, &p);
    std::set<std::string> selected(selection.begin(), selection.end());
    if (selection.empty())
      for (const auto& p : programs) selected.insert(p.name);
    std::set<std::string> planned = selected;
    if (start) {
      Strings todo(selected.begin(), selected.end());
      while (!todo.empty()) {
        const std::string name = todo.back();
        todo.pop_back();
        for (const auto& dep : index.at(name)->depends_on)
          if (planned.insert(dep).second) todo.push_back(dep);
      }
    }
    std::vector<config::ProgramSpec> subset;
    for (const auto& p : programs)
      if (planned.count(p.name)) subset.push_back(p);
    const auto bands = priorityBands(subset);
    for (std::size_t b = 0; b < bands.size(); ++b) {
      for (const auto& name : bands[b].programs) {
        Strings deps;
        for (const auto& d : index.at(name)->depends_on)
          if (planned.count(d)) deps.push_back(d);
        depends_[name] = deps;
        for (const auto& d : deps) dependents_[d].push_back(name);
        for (const auto& inst : index.at(name)->instanceNames())
          nodes_.push_back(Node{inst, name, b, selected.count(name) > 0, deps});
      }
    }
    if (!start)
      std::stable_sort(nodes_.begin(), nodes_.end(), [](const Node& a, const Node& b) { return a.band > b.band; });
    for (std::size_t i = 0; i < nodes_.size(); ++i) byProgram_[nodes_[i].program].push_back(i);
  }

  Strings take(const StatusMap& states) {
    Strings out;
    StatusMap view = states;
    for (bool progress = true; progress;) {
      progress = false;
      const auto js = evaluate(view);
      for (std::size_t i = 0; i < nodes_.size(); ++i) {
        if (js[i].first != kIssue && js[i].first != kConsume) continue;
        if (!issued_.insert(nodes_[i].instance).second) continue;
        if (js[i].first == kIssue) {
          out.push_back(nodes_[i].instance);
          view[nodes_[i].instance] = st(start_ ? State::kStarting : State::kStopping);
        }
        progress = true;
      }
    }
    Strings ordered;
    for (const auto& n : nodes_)
      if (std::find(out.begin(), out.end(), n.instance) != out.end()) ordered.push_back(n.instance);
    return ordered;
  }
  std::vector<Blocked> blocked(const StatusMap& states) const {
    std::vector<Blocked> out;
    const auto js = evaluate(states);
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (js[i].first == kBlocked) out.push_back(Blocked{nodes_[i].instance, js[i].second});
    return out;
  }
  bool done(const StatusMap& states) const {
    RefPlan preview = *this;
    if (!preview.take(states).empty()) return false;
    const auto js = preview.evaluate(states);
    return std::all_of(js.begin(), js.end(), [this](const J& j) { return settled(j.first); });
  }
  void drop(const std::string& inst) { dropped_.insert(inst); }

 private:
  enum V { kWait, kIssue, kConsume, kBlocked, kDone };
  using J = std::pair<V, std::string>;
  struct Node {
    std::string instance, program;
    std::size_t band;
    bool selected;
    Strings deps;
  };
  static InstanceStatus at(const StatusMap& m, const std::string& n) {
    auto it = m.find(n);
    return it == m.end() ? InstanceStatus{} : it->second;
  }
  bool settled(V v) const { return v == kDone || v == kBlocked || (!start_ && v == kConsume); }
  std::optional<std::string> failure(const std::string& program, const StatusMap& m) const {
    for (std::size_t i : byProgram_.at(program)) {
      const auto s = at(m, nodes_[i].instance);
      if (dropped_.count(nodes_[i].instance) && s.state != State::kRunning && !(s.state == State::kExited && s.exit_success))
        return "dependency " + program + " was stopped";
      if (!issued_.count(nodes_[i].instance)) continue;
      if (s.state == State::kFatal) return "dependency " + program + " ended fatal";
      if (s.state == State::kExited && !s.exit_success) {
        if (s.exit_signal) return "dependency " + program + " was killed by signal " + std::to_string(*s.exit_signal);
        if (s.exit_code) return "dependency " + program + " exited with code " + std::to_string(*s.exit_code);
        return "dependency " + program + " exited with a failure";
      }
    }
    for (const auto& d : depends_.at(program))
      if (auto why = failure(d, m)) return "dependency " + program + " is blocked: " + *why;
    return std::nullopt;
  }
  bool satisfied(const std::string& program, const StatusMap& m) const {
    for (std::size_t i : byProgram_.at(program)) {
      const auto& n = nodes_[i].instance;
      if (!issued_.count(n) && !dropped_.count(n)) return false;
      const auto s = at(m, n);
      if (!(s.state == State::kRunning || (s.state == State::kExited && s.exit_success))) return false;
    }
    return true;
  }
  J judge(const Node& n, const StatusMap& m) const {
    const auto s = at(m, n.instance);
    if (start_) {
      if (issued_.count(n.instance)) return {isStartEnd(s.state) ? kDone : kWait, {}};
      for (const auto& d : n.deps)
        if (auto why = failure(d, m)) return {kBlocked, *why};
      for (const auto& d : n.deps)
        if (!satisfied(d, m)) return {kWait, {}};
      switch (s.state) {
        case State::kRunning:
        case State::kStarting:
        case State::kBackoff: return {kConsume, {}};
        case State::kExited: return {s.exit_success && !n.selected ? kConsume : kIssue, {}};
        default: return {kIssue, {}};
      }
    }
    if (isDown(s.state)) return {issued_.count(n.instance) ? kDone : kConsume, {}};
    if (issued_.count(n.instance)) return {kWait, {}};
    auto it = dependents_.find(n.program);
    if (it != dependents_.end())
      for (const auto& p : it->second)
        for (std::size_t i : byProgram_.at(p))
          if (!dropped_.count(nodes_[i].instance) && !isDown(at(m, nodes_[i].instance).state)) return {kWait, {}};
    return {kIssue, {}};
  }
  std::vector<J> evaluate(const StatusMap& m) const {
    std::vector<J> out(nodes_.size());
    bool gate = true, band = true;
    for (std::size_t i = 0; i < nodes_.size(); ++i) {
      if (i > 0 && nodes_[i].band != nodes_[i - 1].band) {
        gate = gate && band;
        band = true;
      }
      J j{kWait, {}};
      if (dropped_.count(nodes_[i].instance)) {
        j.first = kDone;
      } else if (gate) {
        j = judge(nodes_[i], m);
      }
      band = band && settled(j.first);
      out[i] = std::move(j);
    }
    return out;
  }

  bool start_;
  std::vector<Node> nodes_;
  std::map<std::string, std::vector<std::size_t>> byProgram_;
  std::map<std::string, Strings> depends_, dependents_;
  std::set<std::string> issued_, dropped_;
};

InstanceStatus randomStatus(std::mt19937& rng) {
  switch (std::uniform_int_distribution<int>(0, 9)(rng)) {
    case 0: return st(State::kStopped);
    case 1: return st(State::kStarting);
    case 2: return st(State::kBackoff);
    case 3: return st(State::kStopping);
    case 4: return st(State::kFatal);
    case 5: return exitedWith(0, true);
    case 6: return exitedWith(3, false);
    case 7: return InstanceStatus{State::kExited, false, std::nullopt, 9};
    default: return st(State::kRunning);
  }
}

std::string render(const std::vector<Blocked>& bs) {
  std::string out;
  for (const auto& b : bs) out += b.instance + ": " + b.reason + "\n";
  return out;
}

}  // namespace

TEST_CASE("the incremental plan decides as the whole-plan reference does", "[master][scheduler]") {
  for (unsigned seed = 1; seed <= 400; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    std::vector<config::ProgramSpec> programs;
    const int n = 1 + pick(6);
    for (int i = 0; i < n; ++i) {
      auto p = prog("p" + std::to_string(i), pick(4), 1 + pick(3));
      for (int j = 0; j < i; ++j)
        if (programs[static_cast<std::size_t>(j)].priority <= p.priority && pick(3) == 0)
          p.depends_on.push_back(programs[static_cast<std::size_t>(j)].name);
      programs.push_back(p);
    }
    Strings all;
    for (const auto& p : programs)
      for (const auto& inst : p.instanceNames()) all.push_back(inst);
    const bool start = pick(3) != 0;
    Strings selection;
    if (pick(2) == 0) selection.push_back(programs[static_cast<std::size_t>(pick(n))].name);
    auto plan = start ? startPlan(programs, selection) : stopPlan(programs, selection);
    REQUIRE(plan.ok());
    RefPlan ref(start, programs, selection);

    StatusMap m;
    for (const auto& inst : all)
      if (pick(2) == 0) m[inst] = randomStatus(rng);
    auto report = [&](const std::string& inst) {
      auto it = m.find(inst);
      plan->update(inst, it == m.end() ? InstanceStatus{} : it->second);
    };
    for (const auto& inst : all) report(inst);

    for (int step = 0; step < 60; ++step) {
      CAPTURE(step);
      const Strings got = plan->take();
      const Strings want = ref.take(m);
      REQUIRE(got == want);
      // Applied at once, as the master does.
      for (const auto& inst : got) {
        m[inst] = st(start ? State::kStarting : State::kStopping);
        report(inst);
      }
      REQUIRE(render(plan->blocked()) == render(ref.blocked(m)));
      REQUIRE(plan->done() == ref.done(m));
      // Something happens: an instance moves, or the user drops one.
      const int what = pick(12);
      const std::string inst = all[static_cast<std::size_t>(pick(static_cast<int>(all.size())))];
      if (what == 0) {
        plan->drop(inst);
        ref.drop(inst);
      } else {
        m[inst] = randomStatus(rng);
        report(inst);
      }
    }
  }
}

TEST_CASE("the one-shot plan calls decide as the whole-plan reference does", "[master][scheduler]") {
  for (unsigned seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed * 7919u);
    auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    std::vector<config::ProgramSpec> programs;
    const int n = 1 + pick(5);
    for (int i = 0; i < n; ++i) {
      auto p = prog("p" + std::to_string(i), pick(3), 1 + pick(2));
      for (int j = 0; j < i; ++j)
        if (programs[static_cast<std::size_t>(j)].priority <= p.priority && pick(2) == 0)
          p.depends_on.push_back(programs[static_cast<std::size_t>(j)].name);
      programs.push_back(p);
    }
    Strings all;
    for (const auto& p : programs)
      for (const auto& inst : p.instanceNames()) all.push_back(inst);
    const bool start = pick(2) == 0;
    auto plan = start ? startPlan(programs, {}) : stopPlan(programs, {});
    REQUIRE(plan.ok());
    RefPlan ref(start, programs, {});
    StatusMap m;
    for (int step = 0; step < 40; ++step) {
      CAPTURE(step);
      m[all[static_cast<std::size_t>(pick(static_cast<int>(all.size())))]] = randomStatus(rng);
      REQUIRE(render(plan->blocked(m)) == render(ref.blocked(m)));
      REQUIRE(plan->done(m) == ref.done(m));
      REQUIRE(plan->ready(m) == RefPlan(ref).take(m));
      REQUIRE(plan->take(m) == ref.take(m));
      if (pick(8) == 0) {
        const auto& inst = all[static_cast<std::size_t>(pick(static_cast<int>(all.size())))];
        plan->drop(inst);
        ref.drop(inst);
      }
    }
  }
}

namespace {

// A start of `n` instances in two bands (a second program depending on the first), driven one
// event at a time as the master drives it: returns the plan's work.
std::uint64_t startWork(int n) {
  const std::vector<config::ProgramSpec> programs{prog("db", 0, n), prog("web", 10, n, {"db"})};
  auto plan = startPlan(programs, {});
  REQUIRE(plan.ok());
  std::size_t running = 0;
  Strings wave = plan->take();
  while (!wave.empty()) {
    for (const auto& inst : wave) plan->update(inst, st(State::kStarting));
    Strings next;
    for (const auto& inst : wave) {  // one ChildStarted each
      plan->update(inst, st(State::kRunning));
      ++running;
      for (auto& x : plan->take()) next.push_back(std::move(x));
      (void)plan->blocked();
      (void)plan->done();
    }
    wave = std::move(next);
  }
  CHECK(running == static_cast<std::size_t>(2 * n));
  CHECK(plan->done());
  return plan->work();
}

}  // namespace

TEST_CASE("a start plan's work is linear in its instances", "[master][scheduler]") {
  const std::uint64_t small = startWork(250);
  const std::uint64_t large = startWork(4000);  // 16 times as many
  CAPTURE(small, large);
  // A few judgements and updates per instance, whatever the size.
  CHECK(large <= 16 * small + 100);
  CHECK(large <= 8u * 2u * 4000u);
}

TEST_CASE("a stop plan's work is linear in its instances", "[master][scheduler]") {
  auto work = [](int n) {
    const std::vector<config::ProgramSpec> programs{prog("db", 0, n), prog("web", 10, n, {"db"})};
    auto plan = stopPlan(programs, {});
    REQUIRE(plan.ok());
    for (const auto& inst : plan->instances()) plan->update(inst, st(State::kRunning));
    std::size_t down = 0;
    Strings wave = plan->take();
    while (!wave.empty()) {
      Strings next;
      for (const auto& inst : wave) {
        plan->update(inst, st(State::kStopped));
        ++down;
        for (auto& x : plan->take()) next.push_back(std::move(x));
        (void)plan->done();
      }
      wave = std::move(next);
    }
    CHECK(down == static_cast<std::size_t>(2 * n));
    CHECK(plan->done());
    return plan->work();
  };
  const std::uint64_t small = work(250);
  const std::uint64_t large = work(4000);
  CAPTURE(small, large);
  CHECK(large <= 16 * small + 100);
  CHECK(large <= 8u * 2u * 4000u);
}

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "provisr-plan-scale-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The master's boot of one program of `n` instances against a fake spawner that reports each
// child started in its own message: the plans' work for the whole start.
std::uint64_t masterBootWork(int n) {
  TempDir dir;
  std::ofstream(dir.path() + "/config.toml")
      << "[log]\ndir = \"" << dir.path() << "/logs\"\n[[processes]]\ntype = \"process\"\n[processes.spec]\n"
      << "name = \"s\"\ncommand = \"sleep 100\"\ninstances = " << n << "\nstart_duration = \"0\"\n";
  config::LoadOptions lo;
  lo.check_accounts = false;
  auto loaded = config::loadConfig(dir.path() + "/config.toml", lo);
  REQUIRE(loaded.ok());
  FakeClock clock;
  CoreOptions opts;
  opts.secret = "s";
  opts.pid = 42;
  opts.load = lo;
  opts.resolveExe = [](const std::string& p, const std::vector<std::string>&) { return "/bin/" + p; };
  MasterCore core(*loaded.config, PersistedState{}, clock, opts);
  core.setStore(StateStore(dir.path() + "/master.state"));

  auto findOne = [](const CoreEffects& fx, proto::MsgType type) -> std::optional<proto::Envelope> {
    for (const auto& m : fx.toSpawner) {
      auto env = proto::decodeEnvelope(m.data(), m.size());
      if (env.ok() && env->type == type) return *env;
    }
    return std::nullopt;
  };
  CoreEffects fx = core.start();
  auto hello = findOne(fx, proto::MsgType::kHello);
  REQUIRE(hello);
  proto::HelloReply hr;
  hr.epoch = 1;
  hr.pid = 7;
  fx = core.onSpawnerMessage(proto::encode(hr, hello->id));
  auto snap = findOne(fx, proto::MsgType::kSnapshot);
  REQUIRE(snap);
  fx = core.onSpawnerMessage(proto::encode(proto::SnapshotReply{}, snap->id));
  auto spawn = findOne(fx, proto::MsgType::kSpawn);
  REQUIRE(spawn);
  auto children = proto::decodeBody<proto::Spawn>(*spawn);
  REQUIRE(children.ok());
  REQUIRE(children->children.size() == static_cast<std::size_t>(n));
  std::uint64_t seq = 0;
  int pid = 1000;
  for (const auto& c : children->children) {
    proto::ChildStarted ev;
    ev.seq = ++seq;
    ev.key = c.key;
    ev.generation = c.generation;
    ev.pid = ++pid;
    (void)core.onSpawnerMessage(proto::encode(ev, ev.seq));
  }
  for (const auto& name : core.instanceNames()) CHECK(core.status(name)->state == proto::InstanceState::kRunning);
  return core.planWork();
}

}  // namespace

TEST_CASE("the master's plan work for a boot is linear in the instances", "[master][scheduler]") {
  const std::uint64_t small = masterBootWork(200);
  const std::uint64_t large = masterBootWork(2000);  // 10 times as many
  CAPTURE(small, large);
  CHECK(large <= 10 * small + 100);
  CHECK(large <= 6u * 2000u);
}

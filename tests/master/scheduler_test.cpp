// Tests of ordering: priority bands, depends_on (incl. failed dependencies and cycles), stop order.
#include "master/scheduler.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>

using namespace provisr;
using namespace provisr::master;
using Strings = std::vector<std::string>;

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

// The master's side of the loop: apply what the plan hands out, as the lifecycle would.
void markAll(StatusMap& m, const Strings& names, State s) {
  for (const auto& n : names) m[n] = st(s);
}

}  // namespace

TEST_CASE("priority bands are ascending and keep config order", "[master][scheduler]") {
  const auto bands = priorityBands({prog("web", 10), prog("db", 0), prog("cache", 0), prog("late", 99)});
  REQUIRE(bands.size() == 3);
  CHECK(bands[0].priority == 0);
  CHECK(bands[0].programs == Strings{"db", "cache"});
  CHECK(bands[1].programs == Strings{"web"});
  CHECK(bands[2].programs == Strings{"late"});
}

TEST_CASE("a start plan opens band k when band k-1 is running or ended", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0, 2), prog("web", 10), prog("batch", 20)};
  auto plan = startPlan(programs, {});
  REQUIRE(plan.ok());
  CHECK(plan->instances() == Strings{"db-1", "db-2", "web", "batch"});
  StatusMap m;
  CHECK(plan->ready(m) == Strings{"db-1", "db-2"});
  auto first = plan->take(m);
  CHECK(first == Strings{"db-1", "db-2"});
  markAll(m, first, State::kStarting);
  CHECK(plan->take(m).empty());  // issued once only; web waits for the whole band
  m["db-1"] = st(State::kRunning);
  CHECK(plan->take(m).empty());
  m["db-2"] = st(State::kBackoff);  // still trying: not settled
  CHECK(plan->take(m).empty());
  m["db-2"] = st(State::kFatal);  // ended: reported, does not block the rest
  CHECK(plan->take(m) == Strings{"web"});
  m["web"] = st(State::kStarting);
  CHECK_FALSE(plan->done(m));
  m["web"] = exitedWith(0, true);
  CHECK(plan->take(m) == Strings{"batch"});
  m["batch"] = st(State::kRunning);
  CHECK(plan->take(m).empty());
  CHECK(plan->done(m));
}

TEST_CASE("a start plan skips what is already running and re-runs explicit exited ones", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("a", 0), prog("b", 0), prog("c", 1)};
  auto plan = startPlan(programs, {});
  REQUIRE(plan.ok());
  StatusMap m{{"a", st(State::kRunning)}, {"b", exitedWith(1, false)}};
  CHECK(plan->take(m) == Strings{"b"});
  m["b"] = st(State::kRunning);
  CHECK(plan->take(m) == Strings{"c"});
}

TEST_CASE("what is already running opens the next bands within one call", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0), prog("api", 1, 1, {"db"}), prog("web", 2)};
  StatusMap m{{"db", st(State::kRunning)}, {"api", st(State::kRunning)}};
  auto plan = startPlan(programs, {});
  REQUIRE(plan.ok());
  CHECK(plan->ready(m) == Strings{"web"});
  CHECK(plan->take(m) == Strings{"web"});  // no further state change would come to call again
  m["web"] = st(State::kRunning);
  CHECK(plan->done(m));

  m["web"] = st(State::kRunning);
  auto all_up = startPlan(programs, {});
  REQUIRE(all_up.ok());
  CHECK(all_up->done(m));  // nothing to do at all
  CHECK(all_up->take(m).empty());
}

TEST_CASE("depends_on: dependencies first, then the dependent", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0), prog("migrate", 0, 1, {"db"}),
                                                  prog("api", 0, 2, {"migrate", "db"}), prog("other", 0)};
  auto plan = startPlan(programs, {"api"});
  REQUIRE(plan.ok());
  // The selection pulls in its dependencies transitively, not unrelated programs.
  CHECK(plan->instances() == Strings{"db", "migrate", "api-1", "api-2"});
  StatusMap m;
  CHECK(plan->take(m) == Strings{"db"});
  m["db"] = st(State::kStarting);
  CHECK(plan->take(m).empty());
  m["db"] = st(State::kRunning);
  CHECK(plan->take(m) == Strings{"migrate"});
  m["migrate"] = st(State::kRunning);  // a one-shot still running is satisfied too (running)
  m["migrate"] = exitedWith(0, true);  // ...and so is its success exit
  CHECK(plan->take(m) == Strings{"api-1", "api-2"});
  markAll(m, {"api-1", "api-2"}, State::kRunning);
  CHECK(plan->done(m));
  CHECK(plan->blocked(m).empty());
}

TEST_CASE("a completed one-shot dependency is not re-run — an explicit one is", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("migrate", 0), prog("api", 0, 1, {"migrate"})};
  StatusMap m{{"migrate", exitedWith(0, true)}};
  auto plan = startPlan(programs, {"api"});
  REQUIRE(plan.ok());
  CHECK(plan->take(m) == Strings{"api"});  // migrate consumed as satisfied

  auto both = startPlan(programs, {"api", "migrate"});
  REQUIRE(both.ok());
  // Asked for by name, it runs again; its old success exit does not let api start beside it.
  CHECK(both->take(m) == Strings{"migrate"});
  m["migrate"] = st(State::kStarting);
  CHECK(both->take(m).empty());
  m["migrate"] = exitedWith(0, true);
  CHECK(both->take(m) == Strings{"api"});
}

TEST_CASE("a fatal or failed dependency keeps its dependent stopped with a reason", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0), prog("migrate", 1, 1, {"db"}),
                                                  prog("api", 2, 1, {"migrate"}), prog("web", 3)};
  SECTION("fatal") {
    auto plan = startPlan(programs, {});
    REQUIRE(plan.ok());
    StatusMap m;
    CHECK(plan->take(m) == Strings{"db"});
    m["db"] = st(State::kFatal);
    // Band 1 opens (db ended), but migrate is blocked, and so is api behind it; blocked
    // instances are reported, not blocking: the last band starts at once.
    CHECK(plan->take(m) == Strings{"web"});
    const auto blocked = plan->blocked(m);
    REQUIRE(blocked.size() == 2);
    CHECK(blocked[0] == Blocked{"migrate", "dependency db ended fatal"});
    CHECK(blocked[1] == Blocked{"api", "dependency migrate is blocked: dependency db ended fatal"});
    m["web"] = st(State::kRunning);
    CHECK(plan->done(m));
    // The user fixes db and starts it: the plan lets the dependents go.
    m["db"] = st(State::kRunning);
    CHECK(plan->take(m) == Strings{"migrate"});
  }
  SECTION("exit with a failure code") {
    auto plan = startPlan(programs, {"api"});
    REQUIRE(plan.ok());
    StatusMap m;
    plan->take(m);
    m["db"] = st(State::kRunning);
    CHECK(plan->take(m) == Strings{"migrate"});
    m["migrate"] = exitedWith(3, false);
    CHECK(plan->take(m).empty());
    CHECK(plan->blocked(m) == std::vector<Blocked>{{"api", "dependency migrate exited with code 3"}});
    CHECK(plan->done(m));
  }
  SECTION("a dependency dropped by a user stop") {
    auto plan = startPlan(programs, {"migrate"});
    REQUIRE(plan.ok());
    StatusMap m;
    plan->take(m);
    m["db"] = st(State::kStopped);
    plan->drop("db");
    CHECK(plan->blocked(m) == std::vector<Blocked>{{"migrate", "dependency db was stopped"}});
    CHECK(plan->done(m));
  }
}

TEST_CASE("an old fatal dependency is retried by the plan before it blocks anything", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0), prog("api", 0, 1, {"db"})};
  StatusMap m{{"db", st(State::kFatal)}};
  auto plan = startPlan(programs, {"api"});
  REQUIRE(plan.ok());
  CHECK(plan->blocked(m).empty());
  CHECK(plan->take(m) == Strings{"db"});
  m["db"] = st(State::kStarting);
  CHECK(plan->blocked(m).empty());
  m["db"] = st(State::kRunning);
  CHECK(plan->take(m) == Strings{"api"});
}

TEST_CASE("a dropped instance never blocks the next band", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("a", 0), prog("b", 1)};
  auto plan = startPlan(programs, {});
  REQUIRE(plan.ok());
  StatusMap m;
  plan->take(m);
  m["a"] = st(State::kStopped);  // the user stopped it before it ran
  CHECK(plan->take(m).empty());
  plan->drop("a");
  CHECK(plan->take(m) == Strings{"b"});
}

TEST_CASE("stop plans run in reverse: highest band first, dependents before dependencies", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0, 2), prog("api", 0, 1, {"db"}),
                                                  prog("web", 10, 2), prog("idle", 20)};
  auto plan = stopPlan(programs, {});
  REQUIRE(plan.ok());
  StatusMap m;
  markAll(m, {"db-1", "db-2", "api", "web-1", "web-2"}, State::kRunning);
  m["idle"] = st(State::kStopped);
  CHECK(plan->instances() == Strings{"idle", "web-1", "web-2", "db-1", "db-2", "api"});
  // idle is already down (consumed); web's band goes next, in parallel.
  auto first = plan->take(m);
  CHECK(first == Strings{"web-1", "web-2"});
  markAll(m, first, State::kStopping);
  CHECK(plan->take(m).empty());
  m["web-1"] = st(State::kStopped);
  CHECK(plan->take(m).empty());
  m["web-2"] = st(State::kExited);
  CHECK(plan->take(m) == Strings{"api"});  // api depends on db: it stops first
  m["api"] = st(State::kStopped);
  CHECK(plan->take(m) == Strings{"db-1", "db-2"});
  markAll(m, {"db-1", "db-2"}, State::kStopped);
  CHECK(plan->done(m));
  CHECK_THAT(plan->str(), Catch::Contains("1. priority 20: idle"));
  CHECK_THAT(plan->str(), Catch::Contains("db (2 instances) [after api]"));
}

TEST_CASE("stopping a dependency does not stop its dependents", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> programs{prog("db", 0), prog("api", 0, 1, {"db"})};
  auto plan = stopPlan(programs, {"db"});
  REQUIRE(plan.ok());
  CHECK(plan->instances() == Strings{"db"});
  StatusMap m{{"db", st(State::kRunning)}, {"api", st(State::kRunning)}};
  CHECK(plan->take(m) == Strings{"db"});
}

TEST_CASE("cycles and unknown names", "[master][scheduler]") {
  const std::vector<config::ProgramSpec> cyclic{prog("a", 0, 1, {"b"}), prog("b", 0, 1, {"c"}),
                                                prog("c", 0, 1, {"a"}), prog("d", 0, 1, {"a"})};
  auto cycle = findDependencyCycle(cyclic);
  REQUIRE(cycle.has_value());
  CHECK(*cycle == Strings{"a", "b", "c", "a"});
  auto plan = startPlan(cyclic, {"d"});
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.error().code == ErrorCode::kConfigInvalid);
  CHECK_THAT(plan.error().message, Catch::Contains("a -> b -> c -> a"));

  CHECK_FALSE(findDependencyCycle({prog("a"), prog("b", 0, 1, {"a"}), prog("c", 0, 1, {"a", "b"})}).has_value());
  CHECK(findDependencyCycle({prog("self", 0, 1, {"self"})}) == Strings{"self", "self"});

  auto unknown = startPlan({prog("a")}, {"zzz"});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == ErrorCode::kNotFound);
  auto bad_dep = startPlan({prog("a", 0, 1, {"ghost"})}, {"a"});
  REQUIRE_FALSE(bad_dep.ok());
  CHECK_THAT(bad_dep.error().message, Catch::Contains("ghost"));
}

TEST_CASE("checkDependencies reports every load error of depends_on", "[master][scheduler]") {
  const auto problems = checkDependencies({prog("db", 5), prog("api", 0, 1, {"db", "ghost"}),
                                           prog("x", 0, 1, {"y"}), prog("y", 0, 1, {"x"}),
                                           prog("me", 0, 1, {"me"})});
  REQUIRE(problems.size() == 4);
  CHECK_THAT(problems[0], Catch::Contains("api: depends on db whose priority 5 is higher"));
  CHECK_THAT(problems[1], Catch::Contains("api: depends_on names an unknown program 'ghost'"));
  CHECK_THAT(problems[2], Catch::Contains("me: depends on itself"));
  CHECK_THAT(problems[3], Catch::Contains("x -> y -> x"));
  CHECK(checkDependencies({prog("db"), prog("api", 1, 1, {"db"})}).empty());
}

TEST_CASE("statusOf reads an Instance", "[master][scheduler]") {
  LifecyclePolicy p;
  p.success_exit_codes = {0};
  Instance in("job", p);
  FakeClock clock;
  in.apply(Event::start(), clock);
  in.apply(Event::spawned(in.generation(), 5), clock);
  in.apply(Event::exitedCode(in.generation(), 0), clock);
  const auto s = statusOf(in);
  CHECK(s.state == State::kExited);
  CHECK(s.exit_success);
  CHECK(s.exit_code == 0);
}

TEST_CASE("the start plan prints band by band", "[master][scheduler]") {
  auto plan = startPlan({prog("db"), prog("api", 5, 3, {"db"})}, {"api"});
  REQUIRE(plan.ok());
  CHECK(plan->str() ==
        "start plan (ascending priority):\n"
        "  1. priority 0: db [dependency]\n"
        "  2. priority 5: api (3 instances) [after db]\n");
}

TEST_CASE("random programs: nothing starts early and every plan finishes", "[master][scheduler]") {
  for (unsigned seed = 1; seed <= 300; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
    std::vector<config::ProgramSpec> programs;
    const int n = 2 + pick(7);
    for (int i = 0; i < n; ++i) {
      auto p = prog("p" + std::to_string(i), pick(4), 1 + pick(3));
      for (int j = 0; j < i; ++j)  // acyclic, and never on a later band (a load error)
        if (programs[static_cast<std::size_t>(j)].priority <= p.priority && pick(3) == 0)
          p.depends_on.push_back(programs[static_cast<std::size_t>(j)].name);
      programs.push_back(p);
    }
    auto plan = startPlan(programs, {});
    REQUIRE(plan.ok());
    StatusMap m;
    for (const auto& p : programs)  // some were up, or ended, before the plan
      for (const auto& inst : p.instanceNames()) {
        const int r = pick(8);
        if (r == 0) m[inst] = st(State::kRunning);
        if (r == 1) m[inst] = exitedWith(0, true);
        if (r == 2) m[inst] = st(State::kFatal);
      }
    std::set<std::string> starting;
    auto specOf = [&](const std::string& program) -> const config::ProgramSpec& {
      return *std::find_if(programs.begin(), programs.end(), [&](const auto& p) { return p.name == program; });
    };
    int steps = 0;
    while (!plan->done(m)) {
      REQUIRE(++steps < 2000);
      const auto blocked = plan->blocked(m);
      auto isBlocked = [&](const std::string& inst) {
        return std::any_of(blocked.begin(), blocked.end(), [&](const Blocked& b) { return b.instance == inst; });
      };
      const auto issued = plan->take(m);
      for (const auto& inst : issued) {
        m[inst] = st(State::kStarting);  // applied at once, as the master does
        starting.insert(inst);
      }
      for (const auto& inst : issued) {
        // Find its program, then check the two gates held when it was handed out.
        const auto& spec = *std::find_if(programs.begin(), programs.end(), [&](const auto& p) {
          const auto names = p.instanceNames();
          return std::find(names.begin(), names.end(), inst) != names.end();
        });
        for (const auto& other : programs) {
          if (other.priority >= spec.priority) continue;
          for (const auto& o : other.instanceNames()) {
            const State s = m[o].state;
            CHECK((s == State::kRunning || s == State::kExited || s == State::kFatal || isBlocked(o)));
          }
        }
        for (const auto& dep : spec.depends_on)
          for (const auto& d : specOf(dep).instanceNames())
            CHECK((m[d].state == State::kRunning || (m[d].state == State::kExited && m[d].exit_success)));
      }
      if (starting.empty()) continue;  // done() or blocked: the loop condition decides
      auto it = starting.begin();
      std::advance(it, pick(static_cast<int>(starting.size())));
      const int outcome = pick(10);
      m[*it] = outcome < 7   ? st(State::kRunning)
               : outcome < 8 ? st(State::kFatal)
               : outcome < 9 ? exitedWith(0, true)
                             : exitedWith(1, false);
      starting.erase(it);
    }
    for (const auto& b : plan->blocked(m)) CHECK_THAT(b.reason, Catch::StartsWith("dependency "));
  }
}

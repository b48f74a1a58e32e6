// Tests of the lifecycle table: every cell, then the SPEC §2.1 scenarios with a fake clock.
#include "master/lifecycle.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <utility>

using namespace provisr;
using namespace provisr::master;
using namespace std::chrono_literals;

namespace {

constexpr State S0 = State::kStopped;
constexpr State SG = State::kStarting;
constexpr State SR = State::kRunning;
constexpr State SB = State::kBackoff;
constexpr State SP = State::kStopping;
constexpr State SX = State::kExited;
constexpr State SF = State::kFatal;

LifecyclePolicy basePolicy() {
  LifecyclePolicy p;
  p.start_duration = 5s;
  p.retry_count = 1;
  p.retry_interval = 2s;
  p.restart_interval = 3s;
  p.stop_timeout = 10s;
  return p;
}

struct Rig {
  FakeClock clock;
  Instance in;
  explicit Rig(LifecyclePolicy p = basePolicy(), RandomSource r = {}) : in("web", std::move(p), std::move(r)) {}
  Effects send(Event e) { return in.apply(e, clock); }
  std::uint64_t gen() const { return in.generation(); }
  Effects spawned(pid_t pid = 100) { return send(Event::spawned(gen(), pid)); }
  Effects timer(EventKind k) { return send(Event::timer(k, gen())); }
  Effects exit(int code) { return send(Event::exitedCode(gen(), code)); }
  // start → Spawned → start_duration elapsed.
  void toRunning() {
    send(Event::start());
    spawned();
    clock.advance(in.policy().start_duration);
    if (in.state() == SG) timer(EventKind::kStartDurationElapsed);
    REQUIRE(in.state() == SR);
  }
};

// Puts a fresh rig (basePolicy: start_duration 5s, retry_count 1, auto_restart never) into `s`.
// `starting` is the moment right after the spawn request, before the spawner answered.
void driveTo(Rig& r, State s) {
  switch (s) {
    case State::kStopped: break;
    case State::kStarting: r.send(Event::start()); break;
    case State::kRunning: r.toRunning(); break;
    case State::kBackoff:
      r.send(Event::start());
      r.send(Event::spawnFailed(r.gen(), "no such file"));
      break;
    case State::kStopping:
      r.toRunning();
      r.send(Event::stop());
      break;
    case State::kExited:
      r.toRunning();
      r.exit(0);
      break;
    case State::kFatal:
      r.send(Event::start());
      r.send(Event::spawnFailed(r.gen(), "no such file"));
      r.timer(EventKind::kRetryTimer);
      r.send(Event::spawnFailed(r.gen(), "no such file"));
      break;
  }
  REQUIRE(r.in.state() == s);
}

Event eventFor(EventKind k, std::uint64_t gen) {
  switch (k) {
    case EventKind::kStartRequested: return Event::start();
    case EventKind::kStopRequested: return Event::stop();
    case EventKind::kRestartRequested: return Event::restart();
    case EventKind::kSpawned: return Event::spawned(gen, 4242);
    case EventKind::kSpawnFailed: return Event::spawnFailed(gen, "exec: permission denied");
    case EventKind::kExited: return Event::exitedCode(gen, 1);
    case EventKind::kAdopted: return Event::adopted(gen + 7, 4343, std::nullopt);
    default: return Event::timer(k, gen);
  }
}

std::vector<ActionKind> kinds(const Effects& fx) {
  std::vector<ActionKind> out;
  for (const auto& a : fx.actions) out.push_back(a.kind);
  return out;
}

}  // namespace

TEST_CASE("every cell of the lifecycle table does what the contract says", "[master][lifecycle]") {
  using D = Disposition;
  constexpr D T = D::kTransition, Q = D::kQueued, N = D::kNoop, I = D::kIgnored, X = D::kInvalid;
  struct Want {
    D d;
    State next;
  };
  // Columns: Start, Stop, Restart, Spawned, SpawnFailed, Exited(1), StartDurationElapsed,
  // RetryTimer, RestartTimer, StopTimeout, Adopted — written from SPEC §2.1, independently of the table.
  const std::map<State, std::array<Want, kEventCount>> expected = {
      {S0, {{{T, SG}, {N, S0}, {T, SG}, {X, S0}, {X, S0}, {X, S0}, {I, S0}, {I, S0}, {I, S0}, {I, S0}, {T, SR}}}},
      {SG, {{{Q, SG}, {Q, SG}, {Q, SG}, {T, SG}, {T, SB}, {T, SB}, {T, SR}, {X, SG}, {X, SG}, {X, SG}, {X, SG}}}},
      {SR, {{{N, SR}, {T, SP}, {T, SP}, {X, SR}, {X, SR}, {T, SX}, {I, SR}, {X, SR}, {X, SR}, {X, SR}, {X, SR}}}},
      {SB, {{{N, SB}, {T, S0}, {T, SG}, {X, SB}, {X, SB}, {X, SB}, {I, SB}, {T, SG}, {T, SG}, {X, SB}, {X, SB}}}},
      {SP, {{{Q, SP}, {Q, SP}, {Q, SP}, {X, SP}, {X, SP}, {T, S0}, {I, SP}, {X, SP}, {X, SP}, {T, SP}, {X, SP}}}},
      {SX, {{{T, SG}, {N, SX}, {T, SG}, {X, SX}, {X, SX}, {X, SX}, {I, SX}, {X, SX}, {X, SX}, {X, SX}, {T, SR}}}},
      {SF, {{{T, SG}, {N, SF}, {T, SG}, {X, SF}, {X, SF}, {X, SF}, {I, SF}, {X, SF}, {X, SF}, {X, SF}, {T, SR}}}},
  };
  REQUIRE(expected.size() == kStateCount);
  // The actions of every transition cell (from the states driveTo builds); other cells act not.
  using A = ActionKind;
  const A kSpawn = A::kSpawn, kArm = A::kArmTimer, kCancel = A::kCancelTimer;
  const std::map<std::pair<State, EventKind>, std::vector<ActionKind>> actions = {
      {{S0, EventKind::kStartRequested}, {kSpawn}},
      {{S0, EventKind::kRestartRequested}, {kSpawn}},
      {{S0, EventKind::kAdopted}, {}},
      {{SG, EventKind::kSpawned}, {kArm}},
      {{SG, EventKind::kSpawnFailed}, {kArm}},
      {{SG, EventKind::kExited}, {kArm}},  // no start_duration timer was armed yet: none to cancel
      {{SG, EventKind::kStartDurationElapsed}, {}},
      {{SR, EventKind::kStopRequested}, {A::kSendStopSignal, kArm}},
      {{SR, EventKind::kRestartRequested}, {A::kSendStopSignal, kArm}},
      {{SR, EventKind::kExited}, {}},
      {{SB, EventKind::kStopRequested}, {kCancel}},
      {{SB, EventKind::kRestartRequested}, {kCancel, kSpawn}},
      {{SB, EventKind::kRetryTimer}, {kSpawn}},
      {{SB, EventKind::kRestartTimer}, {A::kIncrementRestarts, kSpawn}},
      {{SP, EventKind::kExited}, {kCancel}},
      {{SP, EventKind::kStopTimeout}, {A::kSigKill}},
      {{SX, EventKind::kStartRequested}, {kSpawn}},
      {{SX, EventKind::kRestartRequested}, {kSpawn}},
      {{SX, EventKind::kAdopted}, {}},
      {{SF, EventKind::kStartRequested}, {kSpawn}},
      {{SF, EventKind::kRestartRequested}, {kSpawn}},
      {{SF, EventKind::kAdopted}, {}},
  };
  int cells = 0;
  for (std::size_t s = 0; s < kStateCount; ++s) {
    for (std::size_t e = 0; e < kEventCount; ++e) {
      const auto st = static_cast<State>(s);
      const auto ev = static_cast<EventKind>(e);
      CAPTURE(stateName(st), eventName(ev));
      const Want want = expected.at(st)[e];
      const CellInfo info = describeCell(st, ev);
      CHECK(info.disposition == want.d);
      CHECK_FALSE(info.what.empty());

      Rig r;
      driveTo(r, st);
      const auto gen = r.gen();
      const Effects fx = r.send(eventFor(ev, gen));
      CHECK(fx.disposition == want.d);
      CHECK(fx.from == st);
      CHECK(fx.to == want.next);
      CHECK(r.in.state() == want.next);
      if (want.d == D::kTransition) {
        REQUIRE(actions.count({st, ev}) == 1);
        CHECK(kinds(fx) == actions.at({st, ev}));
      } else {
        CHECK(actions.count({st, ev}) == 0);
        CHECK(fx.actions.empty());
      }
      // Stale: the same event from an older generation never reaches the table.
      if (gen > 0 && ev != EventKind::kStartRequested && ev != EventKind::kStopRequested &&
          ev != EventKind::kRestartRequested && ev != EventKind::kAdopted) {
        Rig r2;
        driveTo(r2, st);
        const Effects stale = r2.send(eventFor(ev, gen - 1));
        CHECK(stale.disposition == D::kIgnored);
        CHECK(stale.actions.empty());
        CHECK(r2.in.state() == st);
      }
      ++cells;
    }
  }
  CHECK(cells == 77);
}

TEST_CASE("the table renders one line per cell", "[master][lifecycle]") {
  const std::string text = renderLifecycleTable();
  CHECK(std::count(text.begin(), text.end(), '\n') == static_cast<long>(kStateCount * (kEventCount + 1)));
  CHECK_THAT(text, Catch::Contains("backoff\n  StartRequested        noop        a start is already scheduled\n"));
}

TEST_CASE("names of states round-trip", "[master][lifecycle]") {
  for (std::size_t s = 0; s < kStateCount; ++s) {
    const auto st = static_cast<State>(s);
    CHECK(parseState(stateName(st)) == st);
  }
  CHECK_FALSE(parseState("zombie").has_value());
}

TEST_CASE("start with start_duration: spawn, arm, then running", "[master][lifecycle]") {
  Rig r;
  auto fx = r.send(Event::start());
  REQUIRE(fx.actions == std::vector<Action>{Action::spawn(1)});
  CHECK(r.in.state() == SG);
  CHECK_FALSE(r.in.pid().has_value());
  CHECK_FALSE(r.in.startedAt().has_value());

  fx = r.spawned(77);
  CHECK(fx.actions == std::vector<Action>{Action::arm(TimerKind::kStartDuration, 5s, 1)});
  CHECK(r.in.state() == SG);
  CHECK(r.in.pid() == 77);
  CHECK(r.in.startedAt() == r.clock.wallNow());

  r.clock.advance(5s);
  fx = r.timer(EventKind::kStartDurationElapsed);
  CHECK(fx.actions.empty());
  CHECK(fx.to == SR);
}

TEST_CASE("start_duration 0: only a failed exec is a failed start", "[master][lifecycle]") {
  auto p = basePolicy();
  p.start_duration = 0s;
  p.retry_count = 0;
  Rig r(p);
  r.send(Event::start());
  auto fx = r.spawned();
  CHECK(fx.actions.empty());
  CHECK(r.in.state() == SR);
  // An immediate exit is an exit of a running instance, not a failed start.
  fx = r.exit(3);
  CHECK(r.in.state() == SX);
  CHECK(r.in.exitCode() == 3);
  CHECK(r.in.lastStartError().empty());

  Rig r2(p);
  r2.send(Event::start());
  r2.send(Event::spawnFailed(r2.gen(), "exec /nope: No such file or directory"));
  CHECK(r2.in.state() == SF);
  CHECK_THAT(r2.in.lastStartError(), Catch::Contains("No such file"));
  CHECK_THAT(r2.in.lastStartError(), Catch::Contains("1 attempt"));
}

TEST_CASE("an exit before start_duration is a failed attempt — after it the start counts", "[master][lifecycle]") {
  auto p = basePolicy();
  p.retry_count = 0;
  Rig fail(p);
  fail.send(Event::start());
  fail.spawned();
  fail.clock.advance(4900ms);
  auto fx = fail.exit(0);
  CHECK(fx.actions == std::vector<Action>{Action::cancel(TimerKind::kStartDuration)});
  CHECK(fail.in.state() == SF);
  CHECK_THAT(fail.in.lastStartError(), Catch::Contains("after 4900ms, before start_duration 5s"));
  CHECK(fail.in.stoppedAt() == fail.clock.wallNow());

  Rig ok(p);
  ok.toRunning();
  CHECK(ok.in.lastStartError().empty());
}

TEST_CASE("retry_count = 2 gives exactly 3 attempts, retry_interval apart, then fatal", "[master][lifecycle]") {
  auto p = basePolicy();
  p.retry_count = 2;
  Rig r(p);
  int spawns = 0;
  auto count = [&](const Effects& fx) {
    for (const auto& a : fx.actions) spawns += a.kind == ActionKind::kSpawn;
  };
  count(r.send(Event::start()));
  for (int attempt = 1; attempt <= 3; ++attempt) {
    CAPTURE(attempt);
    REQUIRE(r.in.state() == SG);
    r.spawned();
    r.clock.advance(1s);
    auto fx = r.exit(1);
    if (attempt < 3) {
      CHECK(fx.to == SB);
      CHECK(fx.actions.back() == Action::arm(TimerKind::kRetry, 2s, r.gen()));
      CHECK(r.in.retriesUsed() == attempt);
      r.clock.advance(2s);
      count(r.timer(EventKind::kRetryTimer));
    } else {
      CHECK(fx.to == SF);
    }
  }
  CHECK(spawns == 3);
  CHECK(r.in.restarts() == 0);  // retries are not restarts
  CHECK_THAT(r.in.lastStartError(), Catch::Contains("gave up after 3 attempts"));
  // fatal is left only by an explicit start, which gives a fresh series.
  auto fx = r.send(Event::start());
  CHECK(fx.to == SG);
  CHECK(r.in.retriesUsed() == 0);
  CHECK(r.in.lastStartError().empty());
}

TEST_CASE("a successful start resets the retries used", "[master][lifecycle]") {
  auto p = basePolicy();
  p.retry_count = 1;
  p.auto_restart = config::AutoRestart::kAlways;
  Rig r(p);
  r.send(Event::start());
  r.send(Event::spawnFailed(r.gen(), "boom"));
  r.timer(EventKind::kRetryTimer);
  r.spawned();
  r.clock.advance(5s);
  r.timer(EventKind::kStartDurationElapsed);
  CHECK(r.in.state() == SR);
  CHECK(r.in.retriesUsed() == 0);
}

TEST_CASE("auto_restart on-failure vs success exit codes", "[master][lifecycle]") {
  auto p = basePolicy();
  p.auto_restart = config::AutoRestart::kOnFailure;
  p.success_exit_codes = {0, 2};

  Rig ok(p);
  ok.toRunning();
  CHECK(ok.exit(2).to == SX);
  CHECK(ok.in.exitedSuccessfully());

  Rig bad(p);
  bad.toRunning();
  auto fx = bad.exit(1);
  CHECK(fx.to == SB);
  CHECK(fx.actions == std::vector<Action>{Action::arm(TimerKind::kRestart, 3s, bad.gen())});
  CHECK_FALSE(bad.in.exitedSuccessfully());

  Rig sig(p);
  sig.toRunning();
  CHECK_FALSE(sig.in.exitError().has_value());
  CHECK(sig.send(Event::exitedSignal(sig.gen(), 9)).to == SB);
  CHECK(sig.in.exitSignal() == 9);
  CHECK_FALSE(sig.in.exitCode().has_value());
  CHECK(sig.in.exitError() == "killed by signal 9");
  CHECK(bad.in.exitError() == "exited with code 1");
  CHECK_FALSE(ok.in.exitError().has_value());  // code 2 is a success code here

  p.auto_restart = config::AutoRestart::kAlways;
  Rig always(p);
  always.toRunning();
  CHECK(always.exit(0).to == SB);

  p.auto_restart = config::AutoRestart::kNever;
  Rig never(p);
  never.toRunning();
  CHECK(never.exit(1).to == SX);
  CHECK_FALSE(never.in.exitedSuccessfully());
}

TEST_CASE("an automatic restart counts in restarts — its timer spawns a new generation", "[master][lifecycle]") {
  auto p = basePolicy();
  p.auto_restart = config::AutoRestart::kAlways;
  Rig r(p);
  r.toRunning();
  const auto g1 = r.gen();
  r.exit(1);
  r.clock.advance(3s);
  auto fx = r.timer(EventKind::kRestartTimer);
  CHECK(fx.actions == std::vector<Action>{Action::incrementRestarts(), Action::spawn(g1 + 1)});
  CHECK(r.in.restarts() == 1);
  CHECK(fx.to == SG);
  // A user restart is not counted.
  r.spawned();
  r.clock.advance(5s);
  r.timer(EventKind::kStartDurationElapsed);
  r.send(Event::restart());
  r.exit(0);
  CHECK(r.in.state() == SG);
  CHECK(r.in.restarts() == 1);
}

TEST_CASE("restart backoff grows by factor up to max and resets after healthy running", "[master][lifecycle]") {
  auto p = basePolicy();
  p.start_duration = 0s;
  p.auto_restart = config::AutoRestart::kAlways;
  p.restart_interval = 1s;
  p.restart_backoff = config::RestartBackoff{10s, 2.0, 60s, 0.0};
  Rig r(p);
  r.send(Event::start());
  r.spawned();
  std::vector<Duration> delays;
  for (int i = 0; i < 6; ++i) {
    r.clock.advance(1s);  // a crash loop: dies after a second
    auto fx = r.exit(1);
    REQUIRE(fx.actions.size() == 1);
    delays.push_back(fx.actions[0].delay);
    r.clock.advance(fx.actions[0].delay);
    r.timer(EventKind::kRestartTimer);
    r.spawned();
  }
  CHECK(delays == std::vector<Duration>{1s, 2s, 4s, 8s, 10s, 10s});
  CHECK(r.in.restarts() == 6);
  // Healthy for reset_after: the next crash starts from restart_interval again.
  r.clock.advance(60s);
  auto fx = r.exit(1);
  CHECK(fx.actions[0].delay == 1s);
  r.timer(EventKind::kRestartTimer);
  r.spawned();
  r.clock.advance(59s);  // not long enough: keeps growing
  fx = r.exit(1);
  CHECK(fx.actions[0].delay == 2s);
}

TEST_CASE("restart backoff jitter comes from the injected random source", "[master][lifecycle]") {
  auto p = basePolicy();
  p.start_duration = 0s;
  p.auto_restart = config::AutoRestart::kAlways;
  p.restart_interval = 1s;
  p.restart_backoff = config::RestartBackoff{10s, 2.0, 60s, 0.1};
  double next = 0.0;
  Rig lo(p, [&next] { return next; });
  lo.send(Event::start());
  lo.spawned();
  auto fx = lo.exit(1);
  CHECK(fx.actions[0].delay == 900ms);  // u = 0 → −10 %
  lo.timer(EventKind::kRestartTimer);
  lo.spawned();
  next = 1.0;
  fx = lo.exit(1);
  CHECK(fx.actions[0].delay == 2200ms);  // u = 1 → +10 %
}

TEST_CASE("stop: stop_signal, stop_timeout, SIGKILL, never restarted", "[master][lifecycle]") {
  auto p = basePolicy();
  p.auto_restart = config::AutoRestart::kAlways;
  p.stop_signal = 2;
  Rig r(p);
  r.toRunning();
  auto fx = r.send(Event::stop());
  CHECK(fx.actions == std::vector<Action>{Action::stopSignal(2), Action::arm(TimerKind::kStopTimeout, 10s, r.gen())});
  r.clock.advance(10s);
  fx = r.timer(EventKind::kStopTimeout);
  CHECK(fx.actions == std::vector<Action>{Action::sigKill()});
  CHECK(r.in.state() == SP);
  fx = r.send(Event::exitedSignal(r.gen(), 9));
  CHECK(fx.actions == std::vector<Action>{Action::cancel(TimerKind::kStopTimeout)});
  CHECK(fx.to == S0);  // auto_restart = always does not undo a user stop
  CHECK(r.in.restarts() == 0);
  CHECK(r.in.stoppedAt() == r.clock.wallNow());
}

TEST_CASE("stop during backoff cancels the timer and goes stopped", "[master][lifecycle]") {
  auto p = basePolicy();
  p.auto_restart = config::AutoRestart::kAlways;
  Rig r(p);
  r.toRunning();
  r.exit(1);
  REQUIRE(r.in.state() == SB);
  auto fx = r.send(Event::stop());
  CHECK(fx.actions == std::vector<Action>{Action::cancel(TimerKind::kRestart)});
  CHECK(fx.to == S0);
  // If the timer fired anyway (its cancel raced), nothing happens.
  fx = r.timer(EventKind::kRestartTimer);
  CHECK(fx.disposition == Disposition::kIgnored);
  CHECK(r.in.state() == S0);
  CHECK(r.in.restarts() == 0);

  Rig retry;  // backoff of a failed start: the retry timer is the one cancelled
  driveTo(retry, SB);
  fx = retry.send(Event::stop());
  CHECK(fx.actions == std::vector<Action>{Action::cancel(TimerKind::kRetry)});
}

TEST_CASE("requests mid-transition are queued and run when it ends", "[master][lifecycle]") {
  SECTION("stop while starting runs once the start counted") {
    Rig r;
    r.send(Event::start());
    CHECK(r.send(Event::stop()).disposition == Disposition::kQueued);
    CHECK(r.in.pending() == Request::kStop);
    r.spawned();
    r.clock.advance(5s);
    auto fx = r.timer(EventKind::kStartDurationElapsed);
    CHECK(fx.from == SG);
    CHECK(fx.to == SP);
    CHECK(kinds(fx) == std::vector<ActionKind>{ActionKind::kSendStopSignal, ActionKind::kArmTimer});
    CHECK_FALSE(r.in.pending().has_value());
  }
  SECTION("stop while starting, then the attempt fails: no retry happens") {
    Rig r;
    r.send(Event::start());
    r.send(Event::stop());
    auto fx = r.send(Event::spawnFailed(r.gen(), "boom"));
    CHECK(fx.to == S0);
    CHECK(fx.actions == std::vector<Action>{Action::arm(TimerKind::kRetry, 2s, r.gen()),
                                            Action::cancel(TimerKind::kRetry)});
  }
  SECTION("start while stopping runs after the exit (a restart, queued)") {
    Rig r;
    r.toRunning();
    r.send(Event::stop());
    CHECK(r.send(Event::start()).disposition == Disposition::kQueued);
    const auto g = r.gen();
    auto fx = r.exit(0);
    CHECK(fx.to == SG);
    CHECK(fx.actions == std::vector<Action>{Action::cancel(TimerKind::kStopTimeout), Action::spawn(g + 1)});
  }
  SECTION("the last request wins") {
    Rig r;
    r.toRunning();
    r.send(Event::stop());
    r.send(Event::start());
    r.send(Event::stop());
    CHECK_FALSE(r.in.pending().has_value());
    CHECK(r.exit(0).to == S0);
  }
  SECTION("restart of running = stop, then start queued") {
    Rig r;
    r.toRunning();
    auto fx = r.send(Event::restart());
    CHECK(fx.to == SP);
    CHECK(r.in.pending() == Request::kStart);
    CHECK(r.exit(0).to == SG);
  }
  SECTION("restart while starting: once running, it is stopped and started again") {
    Rig r;
    r.send(Event::start());
    r.send(Event::restart());
    r.spawned();
    r.clock.advance(5s);
    auto fx = r.timer(EventKind::kStartDurationElapsed);
    CHECK(fx.to == SP);
    CHECK(r.in.pending() == Request::kStart);
  }
  SECTION("restart while starting that ends fatal starts afresh") {
    auto p = basePolicy();
    p.retry_count = 0;
    Rig r(p);
    r.send(Event::start());
    r.send(Event::restart());
    const auto g = r.gen();
    auto fx = r.send(Event::spawnFailed(g, "boom"));
    CHECK(fx.to == SG);
    CHECK(fx.actions == std::vector<Action>{Action::spawn(g + 1)});
  }
}

TEST_CASE("start of running and stop of stopped are no-ops", "[master][lifecycle]") {
  Rig r;
  CHECK(r.send(Event::stop()).disposition == Disposition::kNoop);
  r.toRunning();
  auto fx = r.send(Event::start());
  CHECK(fx.disposition == Disposition::kNoop);
  CHECK(fx.actions.empty());
  CHECK_FALSE(fx.changed());
}

TEST_CASE("stale-generation events are ignored", "[master][lifecycle]") {
  auto p = basePolicy();
  p.start_duration = 0s;
  Rig r(p);
  r.send(Event::start());
  r.spawned(10);
  const auto old = r.gen();
  r.send(Event::restart());
  r.exit(0);  // the old child is gone, a new spawn is asked for
  REQUIRE(r.in.state() == SG);
  REQUIRE(r.gen() == old + 1);
  // A duplicate exit or a late timer of the old child must not touch the new one.
  auto fx = r.send(Event::exitedCode(old, 1));
  CHECK(fx.disposition == Disposition::kIgnored);
  CHECK(r.in.state() == SG);
  fx = r.send(Event::timer(EventKind::kStopTimeout, old));
  CHECK(fx.disposition == Disposition::kIgnored);
  CHECK(fx.actions.empty());
  // An event from the future (a generation never spawned) is ignored as well.
  fx = r.send(Event::spawned(old + 5, 99));
  CHECK(fx.disposition == Disposition::kIgnored);
  r.spawned(11);
  CHECK(r.in.state() == SR);
  CHECK(r.in.pid() == 11);
}

TEST_CASE("LifecyclePolicy copies the knobs of a ProgramSpec", "[master][lifecycle]") {
  config::ProgramSpec spec;
  spec.name = "api";
  spec.start_duration = 2s;
  spec.retry_count = 4;
  spec.auto_restart = config::AutoRestart::kOnFailure;
  spec.success_exit_codes = {0, 3};
  spec.stop_signal = 2;
  spec.stop_timeout = 7s;
  const auto p = LifecyclePolicy::from(spec);
  CHECK(p.start_duration == 2s);
  CHECK(p.retry_count == 4);
  CHECK(p.auto_restart == config::AutoRestart::kOnFailure);
  CHECK(p.isSuccess(3, std::nullopt));
  CHECK_FALSE(p.isSuccess(1, std::nullopt));
  CHECK_FALSE(p.isSuccess(std::nullopt, 15));
  CHECK(p.stop_signal == 2);
  CHECK(p.stop_timeout == 7s);
}

TEST_CASE("a restarted master adopts a surviving child and keeps generations increasing", "[master][lifecycle]") {
  auto p = basePolicy();
  p.auto_restart = config::AutoRestart::kAlways;
  Rig r(p);
  r.in.setRestarts(4);  // restored from master.state
  const WallTime born = r.clock.wallNow() - std::chrono::hours(2);
  auto fx = r.send(Event::adopted(41, 999, born));
  CHECK(fx.disposition == Disposition::kTransition);
  CHECK(fx.to == SR);
  CHECK(fx.actions.empty());  // nothing is spawned or signalled
  CHECK(r.in.generation() == 41);
  CHECK(r.in.pid() == 999);
  CHECK(r.in.startedAt() == born);
  // Its exit (queued in the spawner while the master was down) applies as usual.
  fx = r.send(Event::exitedCode(41, 1));
  CHECK(fx.to == SB);
  r.timer(EventKind::kRestartTimer);
  CHECK(r.in.restarts() == 5);
  CHECK(r.gen() == 42);

  Rig fresh;
  fresh.in.seedGeneration(17);
  fresh.in.seedGeneration(3);  // never lowers it
  CHECK(fresh.send(Event::start()).actions == std::vector<Action>{Action::spawn(18)});
}

namespace {

// A well-behaved world around one Instance: a spawner that answers every spawn exactly once and
// reports each child's exit once, a timer heap that honours cancels, and a user who sends random
// requests. Whatever happens, the table must never see an "invalid" event, never run two children
// at once, and never spawn after a user stop until the user starts again.
struct World {
  FakeClock clock;
  Instance in;
  std::mt19937 rng;
  std::map<TimerKind, std::pair<MonoTime, std::uint64_t>> timers;
  std::optional<std::uint64_t> pending_spawn;  // asked for, not answered yet
  std::optional<std::uint64_t> live;           // a child that runs
  bool kill_sent = false;
  bool user_wants_down = false;                // the last request the user made was a stop
  std::uint64_t restart_timer_spawns = 0;

  World(LifecyclePolicy p, unsigned seed)
      : in("sim", std::move(p), [this] { return std::uniform_real_distribution<double>(0, 1)(rng); }), rng(seed) {}

  int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); }

  void deliver(const Event& e) {
    const State before = in.state();
    const Effects fx = in.apply(e, clock);
    INFO("event " << eventName(e.kind) << " in " << stateName(before));
    REQUIRE(fx.disposition != Disposition::kInvalid);
    for (const Action& a : fx.actions) {
      switch (a.kind) {
        case ActionKind::kSpawn:
          REQUIRE_FALSE(live.has_value());  // never two children at once
          REQUIRE_FALSE(pending_spawn.has_value());
          REQUIRE_FALSE(user_wants_down);   // a user stop is never undone behind their back
          pending_spawn = a.generation;
          kill_sent = false;
          break;
        case ActionKind::kArmTimer: timers[a.timer] = {clock.now() + a.delay, a.generation}; break;
        case ActionKind::kCancelTimer: timers.erase(a.timer); break;
        case ActionKind::kSendStopSignal: REQUIRE(live.has_value()); break;
        case ActionKind::kSigKill:
          REQUIRE(live.has_value());
          kill_sent = true;
          break;
        case ActionKind::kIncrementRestarts:
          REQUIRE(e.kind == EventKind::kRestartTimer);
          ++restart_timer_spawns;
          break;
      }
    }
    REQUIRE(in.restarts() == restart_timer_spawns);
  }

  void step() {
    switch (pick(6)) {
      case 0: {  // a user request
        const int r = pick(3);
        user_wants_down = r == 1;
        deliver(r == 0 ? Event::start() : r == 1 ? Event::stop() : Event::restart());
        return;
      }
      case 1:  // the spawner answers
        if (pending_spawn) {
          const auto g = *pending_spawn;
          pending_spawn.reset();
          if (pick(4) == 0) {
            deliver(Event::spawnFailed(g, "exec failed"));
          } else {
            live = g;
            deliver(Event::spawned(g, 1000 + static_cast<pid_t>(g)));
          }
        }
        return;
      case 2:  // the child dies (on its own, or of the kill)
        if (live && (pick(2) == 0 || kill_sent)) {
          const auto g = *live;
          live.reset();
          deliver(kill_sent ? Event::exitedSignal(g, 9) : Event::exitedCode(g, pick(3)));
        }
        return;
      default: {  // time passes and the earliest timer fires
        if (timers.empty()) {
          clock.advance(std::chrono::milliseconds(pick(3000)));
          return;
        }
        auto it = std::min_element(timers.begin(), timers.end(),
                                   [](const auto& a, const auto& b) { return a.second.first < b.second.first; });
        const auto [kind, when_gen] = *it;
        timers.erase(it);
        if (when_gen.first > clock.now()) clock.advance(when_gen.first - clock.now());
        static const std::map<TimerKind, EventKind> kEvent{{TimerKind::kStartDuration, EventKind::kStartDurationElapsed},
                                                           {TimerKind::kRetry, EventKind::kRetryTimer},
                                                           {TimerKind::kRestart, EventKind::kRestartTimer},
                                                           {TimerKind::kStopTimeout, EventKind::kStopTimeout}};
        deliver(Event::timer(kEvent.at(kind), when_gen.second));
        return;
      }
    }
  }
};

}  // namespace

TEST_CASE("random walks through a well-behaved world keep every invariant", "[master][lifecycle]") {
  std::map<State, int> seen;
  for (unsigned seed = 1; seed <= 300; ++seed) {
    auto p = basePolicy();
    p.start_duration = seed % 3 == 0 ? 0s : 2s;
    p.retry_count = static_cast<int>(seed % 4);
    p.auto_restart = static_cast<config::AutoRestart>(seed % 3);
    p.success_exit_codes = {0, 2};
    if (seed % 2) p.restart_backoff = config::RestartBackoff{20s, 2.0, 30s, 0.2};
    World w(p, seed);
    CAPTURE(seed);
    for (int i = 0; i < 400; ++i) {
      w.step();
      ++seen[w.in.state()];
    }
  }
  // The walk really went everywhere.
  CHECK(seen.size() == kStateCount);
}

// The lifecycle table (SPEC §2.1, DESIGN §3): every state × event cell, its handler and its why.
#include "master/lifecycle.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <string>

namespace provisr::master {

static_assert(static_cast<std::size_t>(State::kFatal) + 1 == kStateCount, "a state without a table row");
static_assert(static_cast<std::size_t>(EventKind::kAdopted) + 1 == kEventCount, "an event without a column");

namespace {

std::string describeExit(std::optional<int> code, std::optional<int> signal) {
  if (signal) return "killed by signal " + std::to_string(*signal);
  if (code) return "exited with code " + std::to_string(*code);
  return "exited";
}

std::string describeDuration(Duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool isMidTransition(State s) { return s == State::kStarting || s == State::kStopping; }

bool isSpawnerOrTimerEvent(EventKind e) {
  return e != EventKind::kStartRequested && e != EventKind::kStopRequested &&
         e != EventKind::kRestartRequested;
}

Event requestEvent(Request r) {
  switch (r) {
    case Request::kStart: return Event::start();
    case Request::kStop: return Event::stop();
    case Request::kRestart: return Event::restart();
  }
  return Event::start();
}

}  // namespace

Event Event::spawned(std::uint64_t gen, pid_t pid) {
  Event e = of(EventKind::kSpawned);
  e.generation = gen;
  e.pid = pid;
  return e;
}

Event Event::spawnFailed(std::uint64_t gen, std::string why) {
  Event e = of(EventKind::kSpawnFailed);
  e.generation = gen;
  e.error = std::move(why);
  return e;
}

Event Event::exitedCode(std::uint64_t gen, int code) {
  Event e = of(EventKind::kExited);
  e.generation = gen;
  e.exit_code = code;
  return e;
}

Event Event::exitedSignal(std::uint64_t gen, int sig) {
  Event e = of(EventKind::kExited);
  e.generation = gen;
  e.exit_signal = sig;
  return e;
}

Event Event::adopted(std::uint64_t gen, pid_t pid, std::optional<WallTime> started_at) {
  Event e = of(EventKind::kAdopted);
  e.generation = gen;
  e.pid = pid;
  e.started_at = started_at;
  return e;
}

Event Event::timer(EventKind kind, std::uint64_t gen) {
  Event e = of(kind);
  e.generation = gen;
  return e;
}

LifecyclePolicy LifecyclePolicy::from(const config::ProgramSpec& spec) {
  LifecyclePolicy p;
  p.start_duration = spec.start_duration;
  p.retry_count = spec.retry_count;
  p.retry_interval = spec.retry_interval;
  p.auto_restart = spec.auto_restart;
  p.restart_interval = spec.restart_interval;
  p.restart_backoff = spec.restart_backoff;
  p.success_exit_codes = spec.success_exit_codes;
  p.stop_signal = spec.stop_signal;
  p.stop_timeout = spec.stop_timeout;
  return p;
}

bool LifecyclePolicy::isSuccess(std::optional<int> code, std::optional<int> signal) const {
  // A child killed by a signal never "completed", whatever the code list says.
  if (signal || !code) return false;
  return std::find(success_exit_codes.begin(), success_exit_codes.end(), *code) !=
         success_exit_codes.end();
}

Instance::Instance(std::string name, LifecyclePolicy policy, RandomSource random)
    : name_(std::move(name)), policy_(std::move(policy)), random_(std::move(random)) {
  if (!random_) random_ = [] { return 0.5; };
}

bool Instance::exitedSuccessfully() const {
  return state_ == State::kExited && policy_.isSuccess(exit_code_, exit_signal_);
}

std::optional<std::string> Instance::exitError() const {
  if (!exit_code_ && !exit_signal_) return std::nullopt;
  if (policy_.isSuccess(exit_code_, exit_signal_)) return std::nullopt;
  return describeExit(exit_code_, exit_signal_);
}

// The handlers. Each one runs for exactly the cells that name it in kTable below and sets the
// next state itself, because several cells have a policy-dependent outcome (an exit of a running
// child goes to `exited` or `backoff`), which a static "next state" column could not express.
struct Machine {
  struct Ctx {
    Instance& in;
    const Event& ev;
    const Clock& clock;
    Effects& fx;
    void act(Action a) { fx.actions.push_back(a); }
  };
  using Handler = void (*)(Ctx&);
  struct Cell {
    Disposition disposition;
    Handler handler;  // null for kNoop / kIgnored / kInvalid
    std::string_view what;
  };
  using Table = std::array<std::array<Cell, kEventCount>, kStateCount>;
  static const Table kTable;

  // --- building blocks --------------------------------------------------------------------------
  static void spawnNext(Ctx& c) {
    Instance& in = c.in;
    ++in.generation_;
    in.alive_ = false;
    in.spawned_mono_.reset();  // a "died after Xs" must not measure from an older child
    c.act(Action::spawn(in.generation_));
    in.state_ = State::kStarting;
  }

  static void recordExit(Ctx& c) {
    Instance& in = c.in;
    in.alive_ = false;
    in.exit_code_ = c.ev.exit_code;
    in.exit_signal_ = c.ev.exit_signal;
    in.stopped_at_ = c.clock.wallNow();
  }

  static void enterRunning(Ctx& c) {
    c.in.state_ = State::kRunning;
    c.in.running_since_ = c.clock.now();
    c.in.retries_used_ = 0;  // a start that counted ends the series of failed attempts
    c.in.last_start_error_.clear();
  }

  // A failed start attempt: retry `retry_count` times, `retry_interval` apart, then fatal.
  static void attemptFailed(Ctx& c) {
    Instance& in = c.in;
    if (in.retries_used_ < in.policy_.retry_count) {
      ++in.retries_used_;
      in.backoff_timer_ = TimerKind::kRetry;
      c.act(Action::arm(TimerKind::kRetry, in.policy_.retry_interval, in.generation_));
      in.state_ = State::kBackoff;
      return;
    }
    const int attempts = in.retries_used_ + 1;
    in.last_start_error_ += " (gave up after " + std::to_string(attempts) +
                            (attempts == 1 ? " attempt)" : " attempts)");
    in.state_ = State::kFatal;
  }

  // interval × factor^k capped at max, then ± jitter; k counts consecutive restarts.
  static Duration restartDelay(Instance& in) {
    const auto& b = in.policy_.restart_backoff;
    if (!b) return in.policy_.restart_interval;
    const double base = static_cast<double>(in.policy_.restart_interval.count());
    const double cap = static_cast<double>(b->max.count());
    double ns = base * std::pow(b->factor, in.backoff_step_);
    if (!std::isfinite(ns) || ns > cap) ns = cap;
    // Jitter after the cap, so instances that all sit at `max` still spread out.
    const double u = std::clamp(in.random_(), 0.0, 1.0);
    ns *= 1.0 + b->jitter * (2.0 * u - 1.0);
    return Duration(static_cast<Duration::rep>(std::max(0.0, ns)));
  }

  // --- cells ------------------------------------------------------------------------------------
  // An explicit start from rest: a fresh series of attempts.
  static void start(Ctx& c) {
    Instance& in = c.in;
    in.retries_used_ = 0;
    in.backoff_step_ = 0;
    in.last_start_error_.clear();
    in.pending_.reset();
    spawnNext(c);
  }

  static void spawned(Ctx& c) {
    Instance& in = c.in;
    in.pid_ = c.ev.pid;
    in.alive_ = true;
    in.started_at_ = c.clock.wallNow();
    in.spawned_mono_ = c.clock.now();
    if (in.policy_.start_duration <= Duration::zero()) {
      enterRunning(c);  // with 0, only a failed exec is a failed start
      return;
    }
    c.act(Action::arm(TimerKind::kStartDuration, in.policy_.start_duration, in.generation_));
  }

  static void spawnFailed(Ctx& c) {
    c.in.last_start_error_ = c.ev.error.empty() ? std::string("spawn failed") : c.ev.error;
    attemptFailed(c);
  }

  static void exitedWhileStarting(Ctx& c) {
    Instance& in = c.in;
    const bool was_alive = in.alive_;
    recordExit(c);
    if (was_alive && in.policy_.start_duration > Duration::zero())
      c.act(Action::cancel(TimerKind::kStartDuration));
    std::string why = describeExit(c.ev.exit_code, c.ev.exit_signal);
    if (in.spawned_mono_)
      why += " after " + describeDuration(c.clock.now() - *in.spawned_mono_) + ", before start_duration " +
             describeDuration(in.policy_.start_duration);
    in.last_start_error_ = why;
    attemptFailed(c);
  }

  static void startDurationElapsed(Ctx& c) { enterRunning(c); }

  static void exitedWhileRunning(Ctx& c) {
    Instance& in = c.in;
    recordExit(c);
    const bool success = in.policy_.isSuccess(c.ev.exit_code, c.ev.exit_signal);
    const auto mode = in.policy_.auto_restart;
    const bool restart = mode == config::AutoRestart::kAlways ||
                         (mode == config::AutoRestart::kOnFailure && !success);
    if (!restart) {
      in.state_ = State::kExited;
      return;
    }
    const auto& b = in.policy_.restart_backoff;
    if (b && in.running_since_ && c.clock.now() - *in.running_since_ >= b->reset_after)
      in.backoff_step_ = 0;  // it ran healthy long enough: the crash loop is over
    const Duration delay = restartDelay(in);
    if (b) ++in.backoff_step_;
    in.backoff_timer_ = TimerKind::kRestart;
    c.act(Action::arm(TimerKind::kRestart, delay, in.generation_));
    in.state_ = State::kBackoff;
  }

  static void retryTimer(Ctx& c) { spawnNext(c); }

  static void restartTimer(Ctx& c) {
    ++c.in.restarts_;
    c.act(Action::incrementRestarts());
    c.in.retries_used_ = 0;
    spawnNext(c);
  }

  static void stopRunning(Ctx& c) {
    Instance& in = c.in;
    in.pending_.reset();
    c.act(Action::stopSignal(in.policy_.stop_signal));
    c.act(Action::arm(TimerKind::kStopTimeout, in.policy_.stop_timeout, in.generation_));
    in.state_ = State::kStopping;
  }

  static void restartRunning(Ctx& c) {
    stopRunning(c);
    c.in.pending_ = Request::kStart;
  }

  // A user stop beats the restart policy: the pending retry/restart never happens.
  static void stopBackoff(Ctx& c) {
    c.act(Action::cancel(c.in.backoff_timer_));
    c.in.pending_.reset();
    c.in.state_ = State::kStopped;
  }

  static void restartBackoff(Ctx& c) {
    c.act(Action::cancel(c.in.backoff_timer_));
    start(c);
  }

  static void exitedWhileStopping(Ctx& c) {
    c.act(Action::cancel(TimerKind::kStopTimeout));
    recordExit(c);
    c.in.state_ = State::kStopped;  // never restarted: the user asked for the stop
  }

  static void stopTimeout(Ctx& c) { c.act(Action::sigKill()); }  // stay stopping until the exit

  // A child found alive by a restarted master: it carries the spawner's generation.
  static void adopted(Ctx& c) {
    Instance& in = c.in;
    in.generation_ = c.ev.generation;
    in.pid_ = c.ev.pid;
    in.alive_ = true;
    in.started_at_ = c.ev.started_at ? c.ev.started_at : c.clock.wallNow();
    in.spawned_mono_ = c.clock.now();
    in.pending_.reset();
    enterRunning(c);
  }

  static void queueStop(Ctx& c) { c.in.pending_ = Request::kStop; }
  static void queueStart(Ctx& c) { c.in.pending_ = Request::kStart; }
  static void queueRestart(Ctx& c) { c.in.pending_ = Request::kRestart; }
  static void dropQueued(Ctx& c) { c.in.pending_.reset(); }

  static Effects apply(Instance& in, const Event& ev, const Clock& clock) {
    Effects fx;
    fx.from = in.state_;
    if (isSpawnerOrTimerEvent(ev.kind) && ev.kind != EventKind::kAdopted && ev.generation != in.generation_) {
      fx.disposition = Disposition::kIgnored;  // stale: it belongs to an older (or unknown) child
      fx.to = in.state_;
      return fx;
    }
    const Cell& cell = kTable[static_cast<std::size_t>(in.state_)][static_cast<std::size_t>(ev.kind)];
    fx.disposition = cell.disposition;
    Ctx c{in, ev, clock, fx};
    if (cell.handler) cell.handler(c);
    // The transition ended: run the request that waited for it (the last one wins).
    while (in.pending_ && !isMidTransition(in.state_)) {
      const Request r = *in.pending_;
      in.pending_.reset();
      const Event req = requestEvent(r);
      const Cell& next = kTable[static_cast<std::size_t>(in.state_)][static_cast<std::size_t>(req.kind)];
      Ctx rc{in, req, clock, fx};
      if (next.handler) next.handler(rc);
    }
    fx.to = in.state_;
    return fx;
  }
};

namespace {
using D = Disposition;
using M = Machine;
constexpr D kT = D::kTransition;
constexpr D kQ = D::kQueued;
constexpr D kN = D::kNoop;
constexpr D kI = D::kIgnored;
constexpr D kX = D::kInvalid;
}  // namespace

// Rows: states. Columns, in EventKind order: StartRequested, StopRequested, RestartRequested,
// Spawned, SpawnFailed, Exited, StartDurationElapsed, RetryTimer, RestartTimer, StopTimeout, Adopted.
// Only events of the current generation reach the table (stale ones are ignored before it);
// Adopted is the exception: it brings the generation with it, and is accepted only at rest.
// kIgnored marks a timer whose cancel may have raced its firing; kInvalid marks what the spawner
// or the timer heap can never deliver for the current generation.
const Machine::Table Machine::kTable = {{
    // stopped
    {{{kT, &M::start, "spawn a new generation -> starting"},
      {kN, nullptr, "already stopped"},
      {kT, &M::start, "nothing to stop: spawn -> starting"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "its exit was already applied"},
      {kI, nullptr, "late start_duration timer"},
      {kI, nullptr, "late retry timer (stop during backoff)"},
      {kI, nullptr, "late restart timer (stop during backoff)"},
      {kI, nullptr, "late stop timeout"},
      {kT, &M::adopted, "a child survived the master restart -> running"}}},
    // starting
    {{{kQ, &M::dropQueued, "already starting; drops a queued stop/restart"},
      {kQ, &M::queueStop, "queued until the start attempt ends"},
      {kQ, &M::queueRestart, "queued until the start attempt ends"},
      {kT, &M::spawned, "record pid; arm start_duration, or running when it is 0"},
      {kT, &M::spawnFailed, "failed attempt -> backoff (retry) or fatal"},
      {kT, &M::exitedWhileStarting, "died before start_duration: failed attempt -> backoff or fatal"},
      {kT, &M::startDurationElapsed, "the start counts -> running"},
      {kX, nullptr, "a retry timer belongs to backoff"},
      {kX, nullptr, "a restart timer belongs to backoff"},
      {kX, nullptr, "a stop timeout belongs to stopping"},
      {kX, nullptr, "adoption happens only before anything was started"}}},
    // running
    {{{kN, nullptr, "already running"},
      {kT, &M::stopRunning, "stop_signal, arm stop_timeout -> stopping"},
      {kT, &M::restartRunning, "stop now, start queued -> stopping"},
      {kX, nullptr, "the child already started"},
      {kX, nullptr, "the child already started"},
      {kT, &M::exitedWhileRunning, "restart policy: backoff (restart timer) or exited"},
      {kI, nullptr, "late start_duration timer"},
      {kX, nullptr, "a retry timer belongs to backoff"},
      {kX, nullptr, "a restart timer belongs to backoff"},
      {kX, nullptr, "a stop timeout belongs to stopping"},
      {kX, nullptr, "adoption happens only before anything was started"}}},
    // backoff
    {{{kN, nullptr, "a start is already scheduled"},
      {kT, &M::stopBackoff, "cancel the timer -> stopped (never restarted behind the user)"},
      {kT, &M::restartBackoff, "cancel the timer, fresh spawn -> starting"},
      {kX, nullptr, "no child is running"},
      {kX, nullptr, "no child is running"},
      {kX, nullptr, "its exit was already applied"},
      {kI, nullptr, "late start_duration timer"},
      {kT, &M::retryTimer, "next start attempt -> starting"},
      {kT, &M::restartTimer, "restarts += 1, spawn -> starting"},
      {kX, nullptr, "a stop timeout belongs to stopping"},
      {kX, nullptr, "adoption happens only before anything was started"}}},
    // stopping
    {{{kQ, &M::queueStart, "queued until the child is gone"},
      {kQ, &M::dropQueued, "already stopping; drops a queued start"},
      {kQ, &M::queueStart, "the stop is underway; the start is queued"},
      {kX, nullptr, "the child already started"},
      {kX, nullptr, "the child already started"},
      {kT, &M::exitedWhileStopping, "cancel stop_timeout -> stopped (no restart policy)"},
      {kI, nullptr, "late start_duration timer"},
      {kX, nullptr, "a retry timer belongs to backoff"},
      {kX, nullptr, "a restart timer belongs to backoff"},
      {kT, &M::stopTimeout, "SIGKILL the process group; wait for the exit"},
      {kX, nullptr, "adoption happens only before anything was started"}}},
    // exited
    {{{kT, &M::start, "explicit start: spawn -> starting"},
      {kN, nullptr, "not running"},
      {kT, &M::start, "nothing to stop: spawn -> starting"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "its exit was already applied"},
      {kI, nullptr, "late start_duration timer"},
      {kX, nullptr, "a retry timer belongs to backoff"},
      {kX, nullptr, "a restart timer belongs to backoff"},
      {kX, nullptr, "a stop timeout belongs to stopping"},
      {kT, &M::adopted, "a child survived the master restart -> running"}}},
    // fatal
    {{{kT, &M::start, "explicit start: fresh retries, spawn -> starting"},
      {kN, nullptr, "not running"},
      {kT, &M::start, "nothing to stop: spawn -> starting"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "no child was asked for"},
      {kX, nullptr, "its exit was already applied"},
      {kI, nullptr, "late start_duration timer"},
      {kX, nullptr, "a retry timer belongs to backoff"},
      {kX, nullptr, "a restart timer belongs to backoff"},
      {kX, nullptr, "a stop timeout belongs to stopping"},
      {kT, &M::adopted, "a child survived the master restart -> running"}}},
}};

Effects Instance::apply(const Event& event, const Clock& clock) { return Machine::apply(*this, event, clock); }

CellInfo describeCell(State s, EventKind e) {
  const auto& cell = Machine::kTable[static_cast<std::size_t>(s)][static_cast<std::size_t>(e)];
  return CellInfo{cell.disposition, cell.what};
}

std::string renderLifecycleTable() {
  std::string out;
  for (std::size_t s = 0; s < kStateCount; ++s) {
    out += stateName(static_cast<State>(s));
    out += '\n';
    for (std::size_t e = 0; e < kEventCount; ++e) {
      const auto ev = static_cast<EventKind>(e);
      const CellInfo cell = describeCell(static_cast<State>(s), ev);
      std::string line = "  " + std::string(eventName(ev));
      line.resize(24, ' ');
      line += dispositionName(cell.disposition);
      line.resize(36, ' ');
      out += line + std::string(cell.what) + "\n";
    }
  }
  return out;
}

std::string_view stateName(State s) {
  switch (s) {
    case State::kStopped: return "stopped";
    case State::kStarting: return "starting";
    case State::kRunning: return "running";
    case State::kBackoff: return "backoff";
    case State::kStopping: return "stopping";
    case State::kExited: return "exited";
    case State::kFatal: return "fatal";
  }
  return "unknown";
}

std::optional<State> parseState(std::string_view s) {
  for (std::size_t i = 0; i < kStateCount; ++i) {
    const auto st = static_cast<State>(i);
    if (stateName(st) == s) return st;
  }
  return std::nullopt;
}

std::string_view eventName(EventKind e) {
  switch (e) {
    case EventKind::kStartRequested: return "StartRequested";
    case EventKind::kStopRequested: return "StopRequested";
    case EventKind::kRestartRequested: return "RestartRequested";
    case EventKind::kSpawned: return "Spawned";
    case EventKind::kSpawnFailed: return "SpawnFailed";
    case EventKind::kExited: return "Exited";
    case EventKind::kStartDurationElapsed: return "StartDurationElapsed";
    case EventKind::kRetryTimer: return "RetryTimer";
    case EventKind::kRestartTimer: return "RestartTimer";
    case EventKind::kStopTimeout: return "StopTimeout";
    case EventKind::kAdopted: return "Adopted";
  }
  return "unknown";
}

std::string_view dispositionName(Disposition d) {
  switch (d) {
    case Disposition::kTransition: return "transition";
    case Disposition::kQueued: return "queued";
    case Disposition::kNoop: return "noop";
    case Disposition::kIgnored: return "ignored";
    case Disposition::kInvalid: return "invalid";
  }
  return "unknown";
}

std::string_view timerName(TimerKind t) {
  switch (t) {
    case TimerKind::kStartDuration: return "start_duration";
    case TimerKind::kRetry: return "retry";
    case TimerKind::kRestart: return "restart";
    case TimerKind::kStopTimeout: return "stop_timeout";
  }
  return "unknown";
}

}  // namespace provisr::master

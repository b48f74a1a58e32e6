// MasterCore: the spawner link, reconciliation, instances driven through the lifecycle table,
// plans and deferred replies. Request handlers live in handlers.cpp.
#include "master/master_core.hpp"

#include <algorithm>
#include <csignal>
#include <cstring>
#include <utility>

#include "master/proc_util.hpp"

namespace provisr::master {

namespace {

EventKind timerEvent(TimerKind k) {
  switch (k) {
    case TimerKind::kStartDuration: return EventKind::kStartDurationElapsed;
    case TimerKind::kRetry: return EventKind::kRetryTimer;
    case TimerKind::kRestart: return EventKind::kRestartTimer;
    case TimerKind::kStopTimeout: return EventKind::kStopTimeout;
  }
  return EventKind::kStopTimeout;
}

bool atRest(State s) { return s == State::kStopped || s == State::kExited || s == State::kFatal; }

std::int64_t toMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

void CoreEffects::merge(CoreEffects&& o) {
  for (auto& m : o.toSpawner) toSpawner.push_back(std::move(m));
  for (auto& m : o.toClients) toClients.push_back(std::move(m));
  for (auto& f : o.files) files.push_back(std::move(f));
  for (auto& l : o.logs) logs.push_back(std::move(l));
  exit = exit || o.exit;
}

MasterCore::MasterCore(config::Config cfg, PersistedState persisted, const Clock& clock, CoreOptions opts)
    : cfg_(std::move(cfg)), persisted_(std::move(persisted)), clock_(clock), opts_(std::move(opts)) {
  if (!opts_.resolveExe) opts_.resolveExe = resolveExecutable;
  if (!opts_.sample) opts_.sample = sampleProc;
  random_ = std::make_shared<std::mt19937_64>(std::mt19937_64::result_type{static_cast<std::uint64_t>(opts_.pid)} * std::mt19937_64::result_type{0x9e3779b97f4a7c15} + 1u);
  buildInstances();
}

std::int64_t MasterCore::wallMs() const { return toMs(clock_.wallNow()); }

// ---- instances ---------------------------------------------------------------------------------

std::vector<config::ProgramSpec> MasterCore::effectivePrograms() const {
  std::vector<config::ProgramSpec> out = cfg_.programs;
  const auto& scale = store_.state().scale;
  for (auto& p : out) {
    auto it = scale.find(p.name);
    if (it != scale.end()) p.instances = it->second;
  }
  return out;
}

MasterCore::Inst& MasterCore::addInstance(const config::ProgramSpec& spec, int index) {
  std::string name = spec.instanceName(index);
  auto it = insts_.find(name);
  touch(name);
  if (it != insts_.end()) {
    it->second.forget = false;
    it->second.life.setPolicy(LifecyclePolicy::from(spec));
    return it->second;
  }
  RandomSource jitter = [r = random_] { return std::uniform_real_distribution<double>(0.0, 1.0)(*r); };
  Inst in{name, spec.name, index, Instance(name, LifecyclePolicy::from(spec), std::move(jitter)), {}, {}, {}, 0, 0,
          {}, false, std::nullopt, false};
  // A name that ran before (reload, scale, register) must not reuse a generation the spawner saw.
  in.life.seedGeneration(store_.state().generationFloor);
  return insts_.emplace(name, std::move(in)).first->second;
}

void MasterCore::buildInstances() {
  for (const auto& p : effectivePrograms()) {
    for (int i = 1; i <= p.instances; ++i) addInstance(p, p.instances == 1 ? 1 : i);
  }
}

const config::ProgramSpec* MasterCore::programOf(const Inst& in) const { return cfg_.findProgram(in.program); }

std::vector<std::string> MasterCore::instanceNames() const {
  std::vector<std::string> out;
  for (const auto& [n, in] : insts_) out.push_back(n);
  return out;
}

void MasterCore::setIntent(const std::string& instance, Intent intent) { (void)store_.setIntent(instance, intent); }

void MasterCore::apply(Inst& in, const Event& ev, CoreEffects& fx) {
  const Effects r = in.life.apply(ev, clock_);
  touch(in.name);
  // A restart is finished once the spawner started its new child (persisted before the next Ack).
  if (ev.kind == EventKind::kSpawned && r.disposition != Disposition::kInvalid &&
      store_.intent(in.name) == Intent::kRestarting)
    setIntent(in.name, Intent::kStarted);
  if (in.forget) forgetting_.insert(in.name);
  if (r.disposition == Disposition::kInvalid) {
    fx.logs.push_back(in.name + ": " + std::string(eventName(ev.kind)) + " cannot happen in state " +
                      std::string(stateName(r.from)) + " (dropped)");
  }
  for (const auto& a : r.actions) carryOut(in, a, fx);
  if (r.from != r.to || r.disposition == Disposition::kTransition) {
    if (r.to == State::kExited || r.to == State::kFatal) setIntent(in.name, Intent::kStopped);
    if (atRest(r.to)) in.stopOverride.reset();
    if (r.from != r.to) publishState(in, r.from, fx);
    // pid_dir (SPEC §1.1): one <instance>.pid per running instance, for outside tools.
    if (cfg_.pid_dir && r.from != r.to) {
      const std::string path = *cfg_.pid_dir + "/" + in.name + ".pid";
      if (r.to == State::kRunning && in.life.pid()) {
        fx.files.push_back({path, std::to_string(*in.life.pid()) + "\n"});
      } else if (r.from == State::kRunning || r.from == State::kStopping) {
        fx.files.push_back({path, std::nullopt});
      }
    }
  }
}

void MasterCore::carryOut(Inst& in, const Action& a, CoreEffects& fx) {
  switch (a.kind) {
    case ActionKind::kSpawn: {
      in.adopted = false;
      // On disk before the Spawn goes out (the shell flushes the store first), in steps, so the
      // floor is written about once per 1024 spawns.
      if (a.generation >= store_.state().generationFloor) store_.raiseGenerationFloor(a.generation + 1024);
      pendingSpawns_.push_back(childSpec(in, a.generation));
      break;
    }
    case ActionKind::kSendStopSignal: {
      proto::StopChild s;
      s.key = in.name;
      s.signal = a.signal;
      const Duration t = in.stopOverride.value_or(in.life.policy().stop_timeout);
      s.timeout_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(t).count());
      toSpawner(std::move(s), fx);
      break;
    }
    case ActionKind::kSigKill: {
      proto::SignalChild s;
      s.key = in.name;
      s.signal = 9;
      toSpawner(std::move(s), fx);
      break;
    }
    case ActionKind::kArmTimer: {
      Duration d = a.delay;
      // The spawner SIGKILLs after its own timeout; ours is the backstop, a little later.
      if (a.timer == TimerKind::kStopTimeout) d = in.stopOverride.value_or(d) + std::chrono::seconds(1);
      timers_[TimerKey{in.name, a.timer}] = Armed{clock_.now() + d, a.generation};
      break;
    }
    case ActionKind::kCancelTimer: timers_.erase(TimerKey{in.name, a.timer}); break;
    case ActionKind::kIncrementRestarts: (void)store_.setRestarts(in.name, in.life.restarts()); break;
  }
}

void MasterCore::resendStop(Inst& in, CoreEffects& fx) {
  proto::StopChild s;
  s.key = in.name;
  s.signal = in.life.policy().stop_signal;
  const Duration t = in.stopOverride.value_or(in.life.policy().stop_timeout);
  s.timeout_ms = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(t).count());
  toSpawner(std::move(s), fx);
  // The spawner's SIGKILL comes `t` from now: move our backstop behind it.
  auto timer = timers_.find(TimerKey{in.name, TimerKind::kStopTimeout});
  if (timer != timers_.end()) timer->second.deadline = clock_.now() + t + std::chrono::seconds(1);
  fx.logs.push_back("asking again to stop " + in.name + ": the spawner restarted before it was stopped");
}

proto::ChildSpec MasterCore::childSpec(const Inst& in, std::uint64_t generation) const {
  proto::ChildSpec c;
  c.key = in.name;
  c.generation = generation;
  const config::ProgramSpec* p = programOf(in);
  if (p == nullptr) return c;
  // PROVISR_NAME follows the instance count, which a runtime scale changes: name the child as
  // the instance is named, not as the config's count would.
  config::ProgramSpec scaled;
  if (p->instanceName(in.index) != in.name) {
    scaled = *p;
    scaled.instances = in.name == p->name ? 1 : std::max({2, in.index, p->instances});
    p = &scaled;
  }
  c.env = config::childEnvironment(cfg_, *p, in.index, opts_.load);
  c.argv = p->argv;
  if (!c.argv.empty() && c.argv[0].find('/') == std::string::npos) c.argv[0] = opts_.resolveExe(c.argv[0], c.env);
  c.cwd = p->work_dir;
  c.user = p->user;
  c.group = p->group;
  c.umask = static_cast<std::uint32_t>(p->umask);
  c.log.stdout_path = p->log.stdoutFile(in.name);
  c.log.stderr_path = p->log.stderrFile(in.name);
  c.log.max_size_bytes = static_cast<std::uint64_t>(std::max(0, p->log.max_size_mb)) * 1024u * 1024u;
  c.log.max_backups = static_cast<std::uint32_t>(std::max(0, p->log.max_backups));
  c.log.max_age_days = static_cast<std::uint32_t>(std::max(0, p->log.max_age_days));
  c.log.compress = p->log.compress;
  c.log.timestamps = p->log.timestamps;
  if (p->memory_max) c.memory_max_bytes = static_cast<std::uint64_t>(*p->memory_max);
  if (p->pids_max) c.pids_max = static_cast<std::uint64_t>(*p->pids_max);
  // max_processes is the same cap (both become the leaf's pids.max); the smaller wins.
  if (p->max_processes) {
    const auto mp = static_cast<std::uint64_t>(*p->max_processes);
    c.pids_max = c.pids_max ? std::min(*c.pids_max, mp) : mp;
  }
  return c;
}

proto::InstanceStatus MasterCore::statusOf(const Inst& in, bool sample) const {
  proto::InstanceStatus s;
  const Instance& l = in.life;
  s.name = in.name;
  s.state = static_cast<proto::InstanceState>(l.state());
  s.running = l.state() == State::kRunning;
  if (l.pid()) s.pid = *l.pid();
  if (l.startedAt()) s.started_at = toMs(*l.startedAt());
  if (l.stoppedAt()) s.stopped_at = toMs(*l.stoppedAt());
  s.restarts = static_cast<std::uint32_t>(l.restarts());
  s.exit_error = l.exitError();
  s.program = in.program;
  s.instance = static_cast<std::uint32_t>(in.index);
  s.exit_code = l.exitCode();
  s.exit_signal = l.exitSignal();
  if (l.state() == State::kRunning && l.spawnedAtMono()) {
    s.uptime_ms = static_cast<std::uint64_t>(
        std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - *l.spawnedAtMono()).count()));
  }
  if (!l.lastStartError().empty()) s.last_start_error = l.lastStartError();
  s.log_dropped_bytes = in.logDropped.total();
  s.log_stdout_bytes = in.logStdout.total();
  s.log_stderr_bytes = in.logStderr.total();
  s.starts = in.starts;
  s.exits = in.exits;
  s.adopted = in.adopted;
  if (const config::ProgramSpec* p = programOf(in)) {
    s.provisioned = p->provisioned();
    s.priority = p->priority;
    s.log.stdout_path = p->log.stdoutFile(in.name);
    s.log.stderr_path = p->log.stderrFile(in.name);
  }
  for (const auto& g : cfg_.groups) {
    if (std::find(g.members.begin(), g.members.end(), in.program) != g.members.end()) s.groups.push_back(g.name);
  }
  if (sample && s.running && s.pid) opts_.sample(*s.pid, s);
  return s;
}

std::optional<proto::InstanceStatus> MasterCore::status(const std::string& instance) const {
  auto it = insts_.find(instance);
  if (it == insts_.end()) return std::nullopt;
  return statusOf(it->second, false);
}

// An instance changed (state, exit, policy, or it came or went): the plans learn it before they
// next judge anything.
void MasterCore::touch(const std::string& instance) {
  if (!plans_.empty()) touched_.push_back(instance);
}

void MasterCore::syncPlans() {
  auto current = [this](const std::string& name) {
    auto it = insts_.find(name);
    return it == insts_.end() ? InstanceStatus{} : master::statusOf(it->second.life);
  };
  for (auto& ap : plans_) {
    if (ap.synced && !resyncPlans_) continue;
    for (const auto& n : ap.plan.instances()) ap.plan.update(n, current(n));
    ap.synced = true;
  }
  resyncPlans_ = false;
  if (touched_.empty()) return;
  auto names = std::move(touched_);
  touched_.clear();
  for (const auto& n : names) {
    const InstanceStatus st = current(n);
    for (auto& ap : plans_) ap.plan.update(n, st);
  }
}

std::uint64_t MasterCore::planWork() const {
  std::uint64_t w = finishedPlanWork_;
  for (const auto& ap : plans_) w += ap.plan.work();
  return w;
}

void MasterCore::publishState(const Inst& in, State from, CoreEffects& fx) {
  if (subscribers_.empty()) return;
  const std::string topic = "state." + in.name;
  proto::StateChanged ev;
  ev.instance = in.name;
  ev.from = static_cast<proto::InstanceState>(from);
  ev.to = static_cast<proto::InstanceState>(in.life.state());
  ev.at = wallMs();
  ev.status = statusOf(in, false);
  std::string bytes;
  for (const auto& [route, topics] : subscribers_) {
    bool match = std::any_of(topics.begin(), topics.end(),
                             [&](const std::string& t) { return topic.compare(0, t.size(), t) == 0; });
    if (!match) continue;
    if (bytes.empty()) bytes = proto::encode(ev, 0);
    fx.toClients.push_back({route, bytes});
  }
}

// ---- plans and waiters -------------------------------------------------------------------------

void MasterCore::advancePlans(CoreEffects& fx) {
  if (plans_.empty()) {
    touched_.clear();
    resyncPlans_ = false;
    return;
  }
  for (int round = 0; round < 1000; ++round) {
    bool issued = false;
    for (std::size_t k = 0; k < plans_.size(); ++k) {
      syncPlans();  // what the plans before this one just issued
      const Plan::Kind kind = plans_[k].plan.kind();
      for (const auto& name : plans_[k].plan.take()) {
        auto it = insts_.find(name);
        if (it == insts_.end()) continue;
        issued = true;
        apply(it->second, kind == Plan::Kind::kStart ? Event::start() : Event::stop(), fx);
      }
      if (kind == Plan::Kind::kStart) {
        for (const auto& b : plans_[k].plan.blocked()) {
          auto it = insts_.find(b.instance);
          if (it != insts_.end() && it->second.life.lastStartError() != b.reason) it->second.life.setLastStartError(b.reason);
        }
      }
    }
    if (!issued) break;
  }
  syncPlans();
  plans_.erase(std::remove_if(plans_.begin(), plans_.end(),
                              [&](const ActivePlan& ap) {
                                if (!ap.plan.done()) return false;
                                finishedPlanWork_ += ap.plan.work();
                                return true;
                              }),
               plans_.end());
}

bool MasterCore::settled(const Waiter& w) const {
  auto one = [&](const std::string& name) {
    auto it = insts_.find(name);
    if (it == insts_.end()) return true;
    const Inst& in = it->second;
    const State s = in.life.state();
    if (in.life.pending()) return false;
    if (w.stop) return atRest(s);
    if (s == State::kRunning || s == State::kExited || s == State::kFatal) return true;
    if (s == State::kStopped) {
      if (!in.life.lastStartError().empty()) return true;  // blocked by a dependency
      return std::none_of(plans_.begin(), plans_.end(), [&](const ActivePlan& ap) { return ap.plan.contains(name); });
    }
    return false;
  };
  // Instances settle about in order: go on from the first one not seen settled, then check them
  // all once before answering yes (one may have moved again since).
  for (; w.checked < w.instances.size(); ++w.checked)
    if (!one(w.instances[w.checked])) return false;
  for (std::size_t k = 0; k < w.instances.size(); ++k) {
    if (!one(w.instances[k])) {
      w.checked = k;
      return false;
    }
  }
  return true;
}

void MasterCore::settleWaiters(CoreEffects& fx, bool timeoutsOnly) {
  const MonoTime now = clock_.now();
  std::vector<std::uint64_t> finished;
  for (auto& [token, w] : waiters_) {
    const bool timedOut = w.deadline && now >= *w.deadline;
    if ((!timeoutsOnly && settled(w)) || timedOut) finished.push_back(token);
  }
  for (auto token : finished) {
    auto node = waiters_.extract(token);
    Waiter& w = node.mapped();
    const bool timedOut = !settled(w);
    if (w.done) {
      w.done(fx, timedOut);
    } else {
      reply(w.route, w.id, actionReply(w.instances, std::move(w.plan), timedOut), fx);
    }
  }
}

void MasterCore::forgetDown(CoreEffects& fx) {
  for (auto f = forgetting_.begin(); f != forgetting_.end();) {
    auto it = insts_.find(*f);
    if (it == insts_.end() || !it->second.forget) {
      f = forgetting_.erase(f);
      continue;
    }
    Inst& in = it->second;
    if (atRest(in.life.state()) && !in.life.pending()) {
      timers_.erase(TimerKey{in.name, TimerKind::kStartDuration});
      timers_.erase(TimerKey{in.name, TimerKind::kRetry});
      timers_.erase(TimerKey{in.name, TimerKind::kRestart});
      timers_.erase(TimerKey{in.name, TimerKind::kStopTimeout});
      store_.forgetInstance(in.name);
      fx.logs.push_back("forgot instance " + in.name);
      touch(in.name);
      insts_.erase(it);
      f = forgetting_.erase(f);
    } else {
      ++f;
    }
  }
}

void MasterCore::flushSpawns(CoreEffects& fx) {
  if (pendingSpawns_.empty()) return;
  proto::Spawn s;
  s.children = std::move(pendingSpawns_);
  pendingSpawns_.clear();
  SpawnerCall call;
  call.kind = SpawnerCall::Kind::kSpawn;
  toSpawner(std::move(s), fx, call);
}

void MasterCore::afterChange(CoreEffects& fx) {
  advancePlans(fx);
  forgetDown(fx);
  settleWaiters(fx, false);
  flushSpawns(fx);
  if (shuttingDown_ && plans_.empty()) {
    bool allDown = std::all_of(insts_.begin(), insts_.end(), [](const auto& kv) { return atRest(kv.second.life.state()); });
    if (allDown) fx.exit = true;
  }
}

proto::ActionReply MasterCore::actionReply(const std::vector<std::string>& names, std::vector<proto::PlanStep> plan,
                                           bool timedOut) const {
  proto::ActionReply r;
  for (const auto& n : names) {
    auto it = insts_.find(n);
    if (it != insts_.end()) r.instances.push_back(statusOf(it->second, false));
  }
  r.plan = std::move(plan);
  r.timed_out = timedOut;
  return r;
}

void MasterCore::replyAction(const Route& route, std::uint64_t id, const std::vector<std::string>& names,
                             std::vector<proto::PlanStep> plan, std::optional<std::uint64_t> waitMs, bool stop,
                             CoreEffects& fx) {
  Waiter w;
  w.route = route;
  w.id = id;
  w.stop = stop;
  w.instances = names;
  if (!waitMs || settled(w)) {
    reply(route, id, actionReply(names, std::move(plan), false), fx);
    return;
  }
  w.plan = std::move(plan);
  w.token = nextToken_++;
  w.deadline = clock_.now() + std::chrono::milliseconds(*waitMs);
  waiters_.emplace(w.token, std::move(w));
}

// ---- timers ------------------------------------------------------------------------------------

std::optional<MonoTime> MasterCore::nextDeadline() const {
  std::optional<MonoTime> best = linkDeadline_;
  auto consider = [&](MonoTime t) {
    if (!best || t < *best) best = t;
  };
  for (const auto& [k, a] : timers_) consider(a.deadline);
  for (const auto& [t, w] : waiters_) {
    if (w.deadline) consider(*w.deadline);
  }
  for (const auto& [t, c] : logsCalls_) consider(c.deadline);
  return best;
}

CoreEffects MasterCore::tick() {
  CoreEffects fx;
  const MonoTime now = clock_.now();
  std::vector<std::pair<TimerKey, Armed>> due;
  for (const auto& [k, a] : timers_) {
    if (a.deadline <= now) due.emplace_back(k, a);
  }
  for (const auto& [k, a] : due) {
    timers_.erase(k);
    auto it = insts_.find(k.instance);
    if (it != insts_.end()) apply(it->second, Event::timer(timerEvent(k.kind), a.generation), fx);
  }
  if (linkDeadline_ && *linkDeadline_ <= now) {
    linkDeadline_.reset();
    if (spawnerUp_ || !spawnerSeenUp_) {
      // Before the first connect the Hello already waits in the socket: resending would only
      // pile Hellos up (each one a new epoch).
      if (spawnerSeenUp_) {
        fx.merge(reconnect("the spawner did not answer"));
      } else {
        linkDeadline_ = now + opts_.spawnerTimeout;
      }
    }
  }
  std::vector<std::uint64_t> lateLogs;
  for (const auto& [id, c] : logsCalls_) {
    if (c.deadline <= now) lateLogs.push_back(id);
  }
  for (auto id : lateLogs) {
    auto node = logsCalls_.extract(id);
    reply(node.mapped().route, node.mapped().id, node.mapped().reply, fx);
  }
  afterChange(fx);
  settleWaiters(fx, true);
  flushSpawns(fx);
  return fx;
}

// ---- spawner link ------------------------------------------------------------------------------

template <class T>
void MasterCore::toSpawner(T msg, CoreEffects& fx, SpawnerCall call) {
  constexpr bool kLinkSetup = std::is_same_v<T, proto::Hello> || std::is_same_v<T, proto::Snapshot> ||
                              std::is_same_v<T, proto::Ack>;
  if constexpr (!kLinkSetup) {
    if (link_ != Link::kReady) {
      heldForSpawner_.push_back([this, msg, call](std::uint64_t epoch) mutable {
        msg.epoch = epoch;
        const std::uint64_t id = nextSpawnerId_++;
        spawnerCalls_[id] = call;
        return proto::encode(msg, id);
      });
      return;
    }
  }
  if constexpr (!std::is_same_v<T, proto::Hello>) msg.epoch = epoch_;
  const std::uint64_t id = nextSpawnerId_++;
  if constexpr (!std::is_same_v<T, proto::Ack>) spawnerCalls_[id] = call;
  fx.toSpawner.push_back(proto::encode(msg, id));
}

// handlers.cpp sends these.
template void MasterCore::toSpawner<proto::ReopenLogs>(proto::ReopenLogs, CoreEffects&, SpawnerCall);
template void MasterCore::toSpawner<proto::LogTail>(proto::LogTail, CoreEffects&, SpawnerCall);
template void MasterCore::toSpawner<proto::LogFollow>(proto::LogFollow, CoreEffects&, SpawnerCall);

void MasterCore::sendHello(CoreEffects& fx) {
  link_ = Link::kHello;
  for (auto it = spawnerCalls_.begin(); it != spawnerCalls_.end();) {
    if (it->second.kind == SpawnerCall::Kind::kHello || it->second.kind == SpawnerCall::Kind::kSnapshot) {
      it = spawnerCalls_.erase(it);
    } else {
      ++it;
    }
  }
  proto::Hello h;
  h.secret = opts_.secret;
  h.pid = opts_.pid;
  SpawnerCall call;
  call.kind = SpawnerCall::Kind::kHello;
  toSpawner(std::move(h), fx, call);
  linkDeadline_ = clock_.now() + opts_.spawnerTimeout;
}

CoreEffects MasterCore::start() {
  CoreEffects fx;
  sendHello(fx);
  return fx;
}

CoreEffects MasterCore::reconnect(const std::string& why) {
  CoreEffects fx;
  fx.logs.push_back("reconnecting to the spawner: " + why);
  sendHello(fx);
  return fx;
}

CoreEffects MasterCore::onSpawnerConnection(bool up) {
  CoreEffects fx;
  const bool again = up && spawnerSeenUp_;
  spawnerUp_ = up;
  if (up) spawnerSeenUp_ = true;
  if (again) fx.merge(reconnect("the spawner connection came back"));
  return fx;
}

void MasterCore::ack(std::uint64_t seq, CoreEffects& fx) {
  proto::Ack a;
  a.seq = seq;
  toSpawner(std::move(a), fx);
}

CoreEffects MasterCore::onSpawnerMessage(std::string_view bytes) {
  CoreEffects fx;
  auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
  if (!env) {
    fx.logs.push_back("undecodable message from the spawner: " + env.error().message);
    return fx;
  }
  using proto::MsgType;
  std::optional<SpawnerCall> call;
  auto takeCall = [&] {
    auto it = spawnerCalls_.find(env->id);
    if (it != spawnerCalls_.end()) {
      call = it->second;
      spawnerCalls_.erase(it);
    }
  };
  auto event = [&](auto ev, auto&& handle) {
    if (link_ != Link::kReady) return;  // reflected in the Snapshot we are waiting for
    if (ev.seq > lastSeq_) {
      lastSeq_ = ev.seq;
      handle(ev);
    }
    ack(ev.seq, fx);
  };
  switch (env->type) {
    case MsgType::kHelloReply: takeCall(); if (call && call->kind == SpawnerCall::Kind::kHello) onHelloReply(*env, fx); break;
    case MsgType::kSnapshotReply:
      takeCall();
      if (call && call->kind == SpawnerCall::Kind::kSnapshot && link_ == Link::kSnapshot) onSnapshotReply(*env, fx);
      break;
    case MsgType::kSpawnReply: takeCall(); onSpawnReply(*env, fx); break;
    case MsgType::kChildStarted:
      if (auto ev = proto::decodeBody<proto::ChildStarted>(*env)) event(*ev, [&](const auto& e) { onChildStarted(e, fx); });
      break;
    case MsgType::kChildExited:
      if (auto ev = proto::decodeBody<proto::ChildExited>(*env)) event(*ev, [&](const auto& e) { onChildExited(e, fx); });
      break;
    case MsgType::kSpawnFailed:
      if (auto ev = proto::decodeBody<proto::SpawnFailed>(*env)) event(*ev, [&](const auto& e) { onSpawnFailed(e, fx); });
      break;
    case MsgType::kLogStats:
      if (auto ev = proto::decodeBody<proto::LogStats>(*env)) {
        event(*ev, [&](const proto::LogStats& e) {
          auto it = insts_.find(e.key);
          if (it == insts_.end()) return;
          it->second.logStdout.update(e.stdout_bytes);
          it->second.logStderr.update(e.stderr_bytes);
          it->second.logDropped.update(e.dropped_bytes);
        });
      }
      break;
    case MsgType::kLogLines:
      if (auto ev = proto::decodeBody<proto::LogLines>(*env)) {
        const std::string topic = "log." + ev->key;
        std::string out;
        for (const auto& [route, topics] : subscribers_) {
          if (std::find(topics.begin(), topics.end(), topic) == topics.end()) continue;
          if (out.empty()) out = proto::encode(*ev, 0);
          fx.toClients.push_back({route, out});
        }
      }
      break;
    case MsgType::kLogTailReply:
      takeCall();
      if (call && call->kind == SpawnerCall::Kind::kLogTail) onLogTailReply(call->logsCall, call->instance, &*env, fx);
      break;
    case MsgType::kOkReply: takeCall(); break;
    case MsgType::kErrorReply: {
      takeCall();
      auto er = proto::decodeBody<proto::ErrorReply>(*env);
      const std::string msg = er ? er->message : std::string("?");
      const ErrorCode code = er ? er->code : ErrorCode::kInternal;
      if (call && call->kind == SpawnerCall::Kind::kLogTail) {
        onLogTailReply(call->logsCall, call->instance, nullptr, fx);
      } else if (call && call->kind == SpawnerCall::Kind::kHello) {
        fx.logs.push_back("the spawner refused Hello: " + msg);  // retried when linkDeadline_ passes
      } else if (code == ErrorCode::kStaleEpoch || code == ErrorCode::kUnauthorized) {
        if (link_ == Link::kReady) fx.merge(reconnect("spawner: " + msg));
      } else if (call) {
        fx.logs.push_back("spawner error: " + msg);
      }
      break;
    }
    default: fx.logs.push_back("unexpected " + std::string(proto::msgTypeName(env->type)) + " from the spawner"); break;
  }
  afterChange(fx);
  return fx;
}

void MasterCore::onHelloReply(const proto::Envelope& env, CoreEffects& fx) {
  auto r = proto::decodeBody<proto::HelloReply>(env);
  if (!r) return;
  if (spawnerPid_ != 0 && spawnerPid_ != r->pid) fx.logs.push_back("the spawner restarted (pid " + std::to_string(r->pid) + ")");
  epoch_ = r->epoch;
  spawnerPid_ = r->pid;
  link_ = Link::kSnapshot;
  SpawnerCall call;
  call.kind = SpawnerCall::Kind::kSnapshot;
  toSpawner(proto::Snapshot{}, fx, call);
  linkDeadline_ = clock_.now() + opts_.spawnerTimeout;
}

void MasterCore::onSnapshotReply(const proto::Envelope& env, CoreEffects& fx) {
  auto r = proto::decodeBody<proto::SnapshotReply>(env);
  if (!r) {
    fx.logs.push_back("bad SnapshotReply: " + r.error().message);
    return;
  }
  link_ = Link::kReady;
  linkDeadline_.reset();
  lastSeq_ = r->last_seq;
  const bool first = !booted_;
  if (first) {
    continuing_ = epoch_ > 1 || !r->children.empty();
    if (continuing_) {
      // User intent counts only when the daemon is continuing (SPEC §2.1).
      for (const auto& [p, n] : persisted_.scale) (void)store_.setScale(p, n);
      for (const auto& [i, intent] : persisted_.intents) (void)store_.setIntent(i, intent);
      for (const auto& [i, n] : persisted_.restarts) (void)store_.setRestarts(i, n);
      store_.raiseGenerationFloor(persisted_.generationFloor);
      buildInstances();
      // The spawner remembers the generations it ran; those of children it no longer holds are
      // only known to be below the floor. Adoption below sets the generation of the others.
      for (auto& [n, in] : insts_) in.life.seedGeneration(persisted_.generationFloor);
      // Instances beyond a persisted scale-down do not exist any more.
      std::set<std::string> wanted;
      for (const auto& p : effectivePrograms()) {
        for (const auto& n : p.instanceNames()) wanted.insert(n);
      }
      for (auto it = insts_.begin(); it != insts_.end();) it = wanted.count(it->first) ? std::next(it) : insts_.erase(it);
      resyncPlans_ = true;
      for (auto& [n, in] : insts_) {
        auto rc = persisted_.restarts.find(n);
        if (rc != persisted_.restarts.end()) in.life.setRestarts(rc->second);
      }
    }
    fx.logs.push_back(std::string(continuing_ ? "continuing" : "fresh start") + ": epoch " + std::to_string(epoch_) +
                      ", " + std::to_string(r->children.size()) + " children held by the spawner");
  }
  std::set<std::string> seen;
  for (const auto& c : r->children) {
    seen.insert(c.key);
    auto it = insts_.find(c.key);
    if (it == insts_.end()) {
      if (c.state != proto::ChildState::kExited) {
        fx.logs.push_back("stopping " + c.key + " (pid " + std::to_string(c.pid) + "): no such instance any more");
        proto::StopChild s;
        s.key = c.key;
        toSpawner(std::move(s), fx);
      }
      continue;
    }
    Inst& in = it->second;
    // A user restart the previous master began and did not finish (its stop may have been carried
    // out, with any exit code, while no master ran): finished below, whatever the exit policy says.
    const bool restartUnfinished = first && store_.intent(in.name) == Intent::kRestarting;
    in.life.seedGeneration(c.generation);
    std::optional<WallTime> startedAt;
    if (c.started_at_ms > 0) startedAt = WallTime(std::chrono::milliseconds(c.started_at_ms));
    const State s = in.life.state();
    const bool ours = c.generation == in.life.generation();
    if (first || (atRest(s) && !ours)) {
      if (!atRest(s)) continue;
      in.adopted = c.adopted;
      apply(in, Event::adopted(c.generation, c.pid, startedAt), fx);
      fx.logs.push_back("adopted " + c.key + " (pid " + std::to_string(c.pid) + ")");
    } else if (!ours) {
      continue;
    } else if (s == State::kStarting && !in.life.spawnedAtMono()) {
      // (pid() is still the previous child's until this generation is reported spawned.)
      apply(in, Event::spawned(c.generation, c.pid), fx);
    } else if (s == State::kStopping && c.state == proto::ChildState::kRunning) {
      // The StopChild went to a spawner that died before carrying it out (or was refused by the
      // new one before our Hello): the child still runs, so ask again.
      resendStop(in, fx);
    }
    // Our own child, re-reported by a spawner that inherited it (its exit code will be unknown).
    if (ours && c.adopted) in.adopted = true;
    // Stopped by its user (maybe while the old master died): no restart policy applies to it.
    if (first && store_.intent(in.name) == Intent::kStopped && in.life.state() == State::kRunning) {
      apply(in, Event::stop(), fx);
    }
    if (c.state == proto::ChildState::kExited) {
      Event e = Event::of(EventKind::kExited);
      e.generation = c.generation;
      e.exit_code = c.exit_code;
      e.exit_signal = c.exit_signal;
      apply(in, e, fx);
    }
    if (restartUnfinished) {
      setIntent(in.name, Intent::kRestarting);
      const State now = in.life.state();
      if (now == State::kRunning) {
        fx.logs.push_back("restarting " + in.name + " again: the previous master was killed during its restart");
        apply(in, Event::restart(), fx);
      } else if (atRest(now)) {
        fx.logs.push_back("starting " + in.name + ": the previous master was killed between its restart's stop and start");
        apply(in, Event::start(), fx);
      }
    }
  }
  if (!first) {
    // A child we expected that the spawner no longer holds: gone, status unknown.
    for (auto& [n, in] : insts_) {
      const State s = in.life.state();
      if (seen.count(n) || atRest(s) || s == State::kBackoff) continue;
      if (s == State::kStarting && !in.life.spawnedAtMono()) {
        // The Spawn never reached a spawner that lived to carry it out: send it again. The same
        // generation keeps it idempotent (a spawner that did start it would have listed it).
        pendingSpawns_.push_back(childSpec(in, in.life.generation()));
        fx.logs.push_back("spawning " + n + " again: its spawn request was lost with the spawner");
        continue;
      }
      Event e = Event::of(EventKind::kExited);
      e.generation = in.life.generation();
      apply(in, e, fx);
    }
  }
  ack(r->last_seq, fx);
  // A spawner forgets who follows what on every Hello.
  for (const auto& k : followed_) {
    proto::LogFollow f;
    f.key = k;
    toSpawner(std::move(f), fx);
  }
  auto held = std::move(heldForSpawner_);
  heldForSpawner_.clear();
  for (auto& h : held) fx.toSpawner.push_back(h(epoch_));
  if (first) boot(fx);
}

void MasterCore::boot(CoreEffects& fx) {
  booted_ = true;
  if (!continuing_) {
    const PersistedState old = store_.state();
    for (const auto& [i, x] : old.intents) store_.clearIntent(i);
    for (const auto& [p, x] : old.scale) store_.clearScale(p);
    for (const auto& [i, x] : old.restarts) store_.forgetInstance(i);
  }
  auto plan = startPlan(effectivePrograms(), {});
  if (!plan) {
    fx.logs.push_back("boot plan failed: " + plan.error().message);
  } else {
    for (const auto& [n, in] : insts_) {
      if (continuing_ && (store_.intent(n) == Intent::kStopped || !atRest(in.life.state()) ||
                          in.life.state() != State::kStopped)) {
        plan->drop(n);
      }
    }
    plans_.push_back(ActivePlan{std::move(*plan)});
  }
  afterChange(fx);
  auto deferred = std::move(deferredClient_);
  deferredClient_.clear();
  for (auto& [route, bytes] : deferred) fx.merge(onClientMessage(route, bytes));
}

void MasterCore::onSpawnReply(const proto::Envelope& env, CoreEffects& fx) {
  auto r = proto::decodeBody<proto::SpawnReply>(env);
  if (!r) return;
  for (const auto& res : r->results) {
    if (res.accepted) continue;
    auto it = insts_.find(res.key);
    if (it == insts_.end()) continue;
    apply(it->second, Event::spawnFailed(res.generation, res.message), fx);
  }
}

void MasterCore::onChildStarted(const proto::ChildStarted& ev, CoreEffects& fx) {
  auto it = insts_.find(ev.key);
  if (it == insts_.end()) return;
  Inst& in = it->second;
  in.adopted = ev.adopted;
  if (!ev.adopted && ev.generation > in.lastStartedGen) {
    // A new child: the spawner's log counters start again from 0 for it.
    in.lastStartedGen = ev.generation;
    ++in.starts;
    in.logStdout.fold();
    in.logStderr.fold();
    in.logDropped.fold();
  }
  apply(in, Event::spawned(ev.generation, ev.pid), fx);
}

void MasterCore::onChildExited(const proto::ChildExited& ev, CoreEffects& fx) {
  auto it = insts_.find(ev.key);
  if (it == insts_.end()) return;
  if (ev.exit_code) {
    ++it->second.exits[std::to_string(*ev.exit_code)];
  } else if (ev.exit_signal) {
    const char* abbrev = ::sigabbrev_np(*ev.exit_signal);
    ++it->second.exits[abbrev != nullptr ? "SIG" + std::string(abbrev) : "SIG" + std::to_string(*ev.exit_signal)];
  }
  Event e = Event::of(EventKind::kExited);
  e.generation = ev.generation;
  e.exit_code = ev.exit_code;
  e.exit_signal = ev.exit_signal;
  apply(it->second, e, fx);
}

void MasterCore::onSpawnFailed(const proto::SpawnFailed& ev, CoreEffects& fx) {
  auto it = insts_.find(ev.key);
  if (it == insts_.end()) return;
  apply(it->second, Event::spawnFailed(ev.generation, ev.stage + ": " + ev.message), fx);
}

void MasterCore::onLogTailReply(std::uint64_t callId, const std::string& instance, const proto::Envelope* env,
                                CoreEffects& fx) {
  auto it = logsCalls_.find(callId);
  if (it == logsCalls_.end()) return;
  LogsCall& c = it->second;
  if (env != nullptr) {
    if (auto r = proto::decodeBody<proto::LogTailReply>(*env)) {
      for (auto& l : r->lines) {
        if (c.stream == proto::LogStreams::kStdout && l.stream != proto::LogStream::kStdout) continue;
        if (c.stream == proto::LogStreams::kStderr && l.stream != proto::LogStream::kStderr) continue;
        if (l.instance.empty()) l.instance = instance;
        c.reply.lines.push_back(std::move(l));
      }
      c.reply.next[instance] = r->next;
    }
  }
  if (c.remaining > 0) --c.remaining;
  if (c.remaining == 0) {
    reply(c.route, c.id, c.reply, fx);
    logsCalls_.erase(it);
  }
}

// ---- client requests ---------------------------------------------------------------------------

CoreEffects MasterCore::onClientMessage(const Route& route, std::string_view bytes) {
  CoreEffects fx;
  auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
  if (!env) {
    fx.toClients.push_back({route, proto::errorReplyFor(bytes.data(), bytes.size(), env.error())});
    return fx;
  }
  if (!booted_) {
    deferredClient_.emplace_back(route, std::string(bytes));
    return fx;
  }
  for (const auto& h : handlers()) {
    if (h.type != env->type) continue;
    try {
      (this->*h.fn)(route, *env, fx);
    } catch (const std::exception& e) {
      // A request the master cannot make sense of gets an ErrorReply, never a crash.
      replyError(route, env->id, ErrorCode::kInvalidArgument,
                 "bad " + std::string(proto::msgTypeName(env->type)) + " request: " + e.what(), fx);
    }
    afterChange(fx);
    return fx;
  }
  replyError(route, env->id, ErrorCode::kUnknownMessage,
             "the master takes no " + std::string(proto::msgTypeName(env->type)) + " message", fx);
  return fx;
}

}  // namespace provisr::master

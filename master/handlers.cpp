// The master's request handlers: one per gateway request type, all listed in handlers().
#include <fnmatch.h>

#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "master/master_core.hpp"
#include "master/reload_plan.hpp"

namespace provisr::master {

namespace {

using Json = nlohmann::json;

std::string joinDiagnostics(const std::vector<config::Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) {
    if (!out.empty()) out += "\n";
    out += d.str();
  }
  return out;
}

bool atRest(State s) { return s == State::kStopped || s == State::kExited || s == State::kFatal; }

// A program registered or updated through the API runs as [daemon] user unless [server]
// allow_root_programs (SPEC §3, DESIGN §6): the user is set on `spec` and in the file body, so the
// program keeps it after a restart or reload. (Without a [daemon] user, the gateway refuses
// registrations that would run as root.) Returns why a spec is refused.
std::optional<std::string> confineApiProgram(const config::Config& cfg, config::ProgramSpec& spec, Json& body) {
  if (cfg.server.allow_root_programs || !cfg.daemon.user) return std::nullopt;
  if (spec.user && *spec.user != *cfg.daemon.user) {
    return "programs registered through the API run as the daemon user " + *cfg.daemon.user + ", not as " +
           *spec.user + " (set [server] allow_root_programs = true to allow other users)";
  }
  spec.user = cfg.daemon.user;
  body["user"] = *cfg.daemon.user;
  return std::nullopt;
}

std::int64_t ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

Json specJson(const config::ProgramSpec& p) {
  Json j;
  j["name"] = p.name;
  if (p.command) j["command"] = *p.command;
  if (!p.args.empty()) j["args"] = p.args;
  j["work_dir"] = p.work_dir;
  j["env"] = p.env;
  j["priority"] = p.priority;
  j["instances"] = p.instances;
  j["start_duration"] = config::formatDuration(p.start_duration);
  j["retry_count"] = p.retry_count;
  j["retry_interval"] = config::formatDuration(p.retry_interval);
  j["auto_restart"] = p.auto_restart == config::AutoRestart::kAlways     ? Json(true)
                      : p.auto_restart == config::AutoRestart::kNever    ? Json(false)
                                                                          : Json("on-failure");
  j["restart_interval"] = config::formatDuration(p.restart_interval);
  j["success_exit_codes"] = p.success_exit_codes;
  j["stop_signal"] = p.stop_signal_name;
  j["stop_timeout"] = config::formatDuration(p.stop_timeout);
  if (p.user) j["user"] = *p.user;
  if (p.group) j["group"] = *p.group;
  j["depends_on"] = p.depends_on;
  Json log;
  log["dir"] = p.log.dir;
  if (p.log.stdout_path) log["stdout"] = *p.log.stdout_path;
  if (p.log.stderr_path) log["stderr"] = *p.log.stderr_path;
  log["max_size_mb"] = p.log.max_size_mb;
  log["max_backups"] = p.log.max_backups;
  log["max_age_days"] = p.log.max_age_days;
  log["compress"] = p.log.compress;
  log["timestamps"] = p.log.timestamps;
  j["log"] = log;
  return j;
}

const char* originName(config::Origin o) {
  switch (o) {
    case config::Origin::kInline: return "config";
    case config::Origin::kDirectory: return "file";
    case config::Origin::kApi: return "api";
  }
  return "file";
}

}  // namespace

#define PROVISR_BODY(T, var)                                                          \
  auto var##_r = proto::decodeBody<T>(env);                                          \
  if (!var##_r) return replyError(route, env.id, var##_r.error().code, var##_r.error().message, fx); \
  T& var = *var##_r

const std::vector<MasterCore::HandlerEntry>& MasterCore::handlers() {
  using proto::MsgType;
  static const std::vector<HandlerEntry> kTable = {
      {MsgType::kStatus, &MasterCore::onStatus},
      {MsgType::kStart, &MasterCore::onStart},
      {MsgType::kStop, &MasterCore::onStop},
      {MsgType::kRestart, &MasterCore::onRestart},
      {MsgType::kScale, &MasterCore::onScale},
      {MsgType::kRegister, &MasterCore::onRegister},
      {MsgType::kUnregister, &MasterCore::onUnregister},
      {MsgType::kUpdate, &MasterCore::onUpdate},
      {MsgType::kGroups, &MasterCore::onGroups},
      {MsgType::kGroupStatus, &MasterCore::onGroupStatus},
      {MsgType::kGroupStart, &MasterCore::onGroupStart},
      {MsgType::kGroupStop, &MasterCore::onGroupStop},
      {MsgType::kReload, &MasterCore::onReload},
      {MsgType::kLogs, &MasterCore::onLogs},
      {MsgType::kSpec, &MasterCore::onSpec},
      {MsgType::kSettings, &MasterCore::onSettings},
      {MsgType::kReopenLogs, &MasterCore::onReopenLogs},
      {MsgType::kShutdown, &MasterCore::onShutdown},
      {MsgType::kSubscribe, &MasterCore::onSubscribe},
  };
  return kTable;
}

// Instances named by a selector, in plan (priority, then config) order.
Result<std::vector<std::string>> MasterCore::select(const proto::Selector& sel) const {
  std::vector<std::string> out;
  auto byProgram = [&](const std::string& program) {
    for (const auto& [n, in] : insts_) {
      if (in.program == program) out.push_back(n);
    }
  };
  switch (sel.kind) {
    case proto::SelectorKind::kAll:
      for (const auto& [n, in] : insts_) out.push_back(n);
      break;
    case proto::SelectorKind::kName:
      if (insts_.count(sel.value)) {
        out.push_back(sel.value);
      } else {
        byProgram(sel.value);
      }
      if (out.empty()) return makeError(ErrorCode::kNotFound, "no instance or program named " + sel.value);
      break;
    case proto::SelectorKind::kBase:
      byProgram(sel.value);
      if (out.empty()) return makeError(ErrorCode::kNotFound, "no program named " + sel.value);
      break;
    case proto::SelectorKind::kWildcard:
      for (const auto& [n, in] : insts_) {
        if (::fnmatch(sel.value.c_str(), n.c_str(), 0) == 0) out.push_back(n);
      }
      break;
    case proto::SelectorKind::kGroup: {
      const config::GroupSpec* g = cfg_.findGroup(sel.value);
      if (g == nullptr) return makeError(ErrorCode::kNotFound, "no group named " + sel.value);
      for (const auto& m : g->members) byProgram(m);
      break;
    }
  }
  std::sort(out.begin(), out.end(), [&](const std::string& a, const std::string& b) {
    const auto* pa = programOf(insts_.at(a));
    const auto* pb = programOf(insts_.at(b));
    const int qa = pa ? pa->priority : 0;
    const int qb = pb ? pb->priority : 0;
    return qa != qb ? qa < qb : a < b;
  });
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {
// Programs all of whose instances are named, and the instances of partially named programs.
struct Split {
  std::vector<std::string> programs;
  std::vector<std::string> loose;
};
}  // namespace

void MasterCore::userStart(const std::vector<std::string>& names, std::vector<proto::PlanStep>& steps, bool dryRun,
                           CoreEffects& fx) {
  std::map<std::string, std::vector<std::string>> byProgram;
  for (const auto& n : names) byProgram[insts_.at(n).program].push_back(n);
  Split split;
  for (const auto& [program, list] : byProgram) {
    std::size_t total = 0;
    for (const auto& [n, in] : insts_) total += in.program == program && !in.forget ? 1u : 0u;
    if (list.size() == total) {
      split.programs.push_back(program);
    } else {
      split.loose.insert(split.loose.end(), list.begin(), list.end());
    }
  }
  const auto programs = effectivePrograms();
  std::optional<Plan> plan;
  if (!split.programs.empty()) {
    auto p = startPlan(programs, split.programs);
    if (p) plan = std::move(*p);
  }
  if (plan) {
    for (const auto& band : plan->bands()) {
      for (const auto& prog : band.programs) {
        proto::PlanStep s;
        s.action = proto::PlanAction::kStart;
        s.program = prog;
        s.band = band.priority;
        for (const auto& [n, in] : insts_) {
          if (in.program == prog) s.instances.push_back(n);
        }
        steps.push_back(std::move(s));
      }
    }
  }
  for (const auto& n : split.loose) {
    proto::PlanStep s;
    s.action = proto::PlanAction::kStart;
    s.program = insts_.at(n).program;
    s.instances = {n};
    if (const auto* p = programOf(insts_.at(n))) s.band = p->priority;
    steps.push_back(std::move(s));
  }
  if (dryRun) return;
  for (const auto& n : names) setIntent(n, Intent::kStarted);
  for (auto& ap : plans_) {
    if (ap.plan.kind() != Plan::Kind::kStop) continue;
    for (const auto& n : names) ap.plan.drop(n);
  }
  if (plan) {
    // Dependencies pulled in by the plan are started too: they become user intent as well.
    for (const auto& n : plan->instances()) setIntent(n, Intent::kStarted);
    plans_.push_back(ActivePlan{std::move(*plan)});
  }
  for (const auto& n : split.loose) apply(insts_.at(n), Event::start(), fx);
}

void MasterCore::userStop(const std::vector<std::string>& names, std::optional<Duration> timeout,
                          std::vector<proto::PlanStep>& steps, bool dryRun, CoreEffects& fx) {
  std::set<std::string> programs;
  for (const auto& n : names) programs.insert(insts_.at(n).program);
  auto plan = stopPlan(effectivePrograms(), std::vector<std::string>(programs.begin(), programs.end()));
  if (!plan) return;
  const std::set<std::string> wanted(names.begin(), names.end());
  for (const auto& n : plan->instances()) {
    if (!wanted.count(n)) plan->drop(n);
  }
  for (const auto& band : plan->bands()) {
    for (const auto& prog : band.programs) {
      proto::PlanStep s;
      s.action = proto::PlanAction::kStop;
      s.program = prog;
      s.band = band.priority;
      for (const auto& n : names) {
        if (insts_.at(n).program == prog) s.instances.push_back(n);
      }
      steps.push_back(std::move(s));
    }
  }
  if (dryRun) return;
  for (const auto& n : names) {
    setIntent(n, Intent::kStopped);
    if (timeout) insts_.at(n).stopOverride = *timeout;
  }
  for (auto& ap : plans_) {
    if (ap.plan.kind() != Plan::Kind::kStart) continue;
    for (const auto& n : names) ap.plan.drop(n);
  }
  plans_.push_back(ActivePlan{std::move(*plan)});
  (void)fx;
}

// ---- the handlers ------------------------------------------------------------------------------

void MasterCore::onStatus(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::StatusRequest, req);
  auto names = select(req.selector);
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  proto::StatusReply r;
  for (const auto& n : *names) r.instances.push_back(statusOf(insts_.at(n), req.sample));
  r.single = req.selector.kind == proto::SelectorKind::kName && r.instances.size() == 1 &&
             (insts_.count(req.selector.value) > 0 || r.instances[0].name == req.selector.value);
  reply(route, env.id, r, fx);
}

void MasterCore::onStart(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Start, req);
  auto names = select(req.selector);
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  std::vector<proto::PlanStep> steps;
  userStart(*names, steps, req.dry_run, fx);
  afterChange(fx);
  replyAction(route, env.id, *names, std::move(steps), req.dry_run ? std::nullopt : req.wait_ms, false, fx);
}

void MasterCore::onStop(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Stop, req);
  auto names = select(req.selector);
  if (!names) {
    if (names.error().code == ErrorCode::kNotFound) return reply(route, env.id, proto::ActionReply{}, fx);
    return replyError(route, env.id, names.error().code, names.error().message, fx);
  }
  std::vector<proto::PlanStep> steps;
  std::optional<Duration> timeout;
  if (req.wait_ms) timeout = std::chrono::milliseconds(*req.wait_ms);
  userStop(*names, timeout, steps, req.dry_run, fx);
  afterChange(fx);
  std::optional<std::uint64_t> wait;
  if (req.wait_ms && !req.dry_run) wait = *req.wait_ms + 2000;  // the grace, then the SIGKILL and its exit
  replyAction(route, env.id, *names, std::move(steps), wait, true, fx);
}

void MasterCore::onRestart(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Restart, req);
  auto names = select(req.selector);
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  std::vector<proto::PlanStep> steps;
  for (const auto& n : *names) {
    proto::PlanStep s;
    s.action = proto::PlanAction::kRestart;
    s.program = insts_.at(n).program;
    s.instances = {n};
    steps.push_back(std::move(s));
  }
  if (!req.dry_run) {
    for (const auto& n : *names) {
      // Until the new child runs: a master killed between the stop and the start finishes it.
      setIntent(n, Intent::kRestarting);
      apply(insts_.at(n), Event::restart(), fx);
    }
  }
  afterChange(fx);
  replyAction(route, env.id, *names, std::move(steps), req.dry_run ? std::nullopt : req.wait_ms, false, fx);
}

void MasterCore::onScale(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Scale, req);
  const config::ProgramSpec* p = cfg_.findProgram(req.program);
  if (p == nullptr) return replyError(route, env.id, ErrorCode::kNotFound, "no program named " + req.program, fx);
  if (req.instances > 1000) return replyError(route, env.id, ErrorCode::kInvalidArgument, "at most 1000 instances", fx);
  if (Status st = store_.setScale(req.program, static_cast<int>(req.instances)); !st.ok())
    return replyError(route, env.id, st.error().code, st.error().message, fx);
  config::ProgramSpec spec = *p;
  spec.instances = static_cast<int>(req.instances);
  std::set<std::string> wanted;
  for (const auto& n : spec.instanceNames()) wanted.insert(n);
  std::vector<std::string> touched;
  std::vector<std::string> added;
  for (auto& [n, in] : insts_) {
    if (in.program != req.program || wanted.count(n)) continue;
    in.forget = true;
    apply(in, Event::stop(), fx);
    touched.push_back(n);
  }
  for (int i = 1; i <= spec.instances; ++i) {
    const std::string name = spec.instanceName(i);
    if (insts_.count(name) && !insts_.at(name).forget) continue;
    addInstance(spec, spec.instances == 1 ? 1 : i);
    added.push_back(name);
  }
  for (const auto& n : added) {
    setIntent(n, Intent::kStarted);
    apply(insts_.at(n), Event::start(), fx);
    touched.push_back(n);
  }
  proto::PlanStep s;
  s.action = proto::PlanAction::kStart;
  s.program = req.program;
  s.instances = added;
  s.band = spec.priority;
  s.reason = "scaled to " + std::to_string(req.instances);
  afterChange(fx);
  replyAction(route, env.id, touched, {s}, std::nullopt, false, fx);
}

void MasterCore::onRegister(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Register, req);
  Json body = Json::parse(req.spec_json, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return replyError(route, env.id, ErrorCode::kInvalidArgument, "the spec is not a JSON object", fx);
  const std::string name = body.contains("name") && body["name"].is_string() ? body["name"].get<std::string>() : std::string();
  if (!config::isValidName(name))
    return replyError(route, env.id, ErrorCode::kInvalidArgument, "spec.name must match [A-Za-z0-9._-]{1,64}", fx);
  if (cfg_.findProgram(name) != nullptr || insts_.count(name))
    return replyError(route, env.id, ErrorCode::kConflict, "a program named " + name + " already exists", fx);
  const std::string path = cfg_.programs_directory + "/" + name + ".json";
  auto loaded = config::loadProgramText(req.spec_json, "json", path, cfg_, true, opts_.load);
  if (!loaded.ok()) return replyError(route, env.id, ErrorCode::kInvalidArgument, joinDiagnostics(loaded.errors()), fx);
  config::ProgramSpec spec = *loaded.program;
  spec.origin = config::Origin::kApi;
  spec.source_file = path;
  if (auto refused = confineApiProgram(cfg_, spec, body))
    return replyError(route, env.id, ErrorCode::kForbidden, *refused, fx);
  Json file;
  file["type"] = "process";
  file["origin"] = "api";
  file["spec"] = body;
  fx.files.push_back({path, file.dump(2) + "\n"});
  cfg_.programs.push_back(spec);
  for (int i = 1; i <= spec.instances; ++i) addInstance(spec, spec.instances == 1 ? 1 : i);
  std::vector<proto::PlanStep> steps;
  const auto names = spec.instanceNames();
  userStart(names, steps, false, fx);
  afterChange(fx);
  replyAction(route, env.id, names, std::move(steps), std::nullopt, false, fx);
}

void MasterCore::onUnregister(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Unregister, req);
  std::string program = req.selector.value;
  if (auto it = insts_.find(program); it != insts_.end()) program = it->second.program;
  const config::ProgramSpec* p = cfg_.findProgram(program);
  if (p == nullptr) return replyError(route, env.id, ErrorCode::kNotFound, "no program named " + program, fx);
  if (p->origin != config::Origin::kApi)
    return replyError(route, env.id, ErrorCode::kConflict,
                      program + " is managed by the config (" + p->source_file + "): change it there", fx);
  fx.files.push_back({p->source_file, std::nullopt});
  std::vector<std::string> names;
  for (auto& [n, in] : insts_) {
    if (in.program != program) continue;
    in.forget = true;
    apply(in, Event::stop(), fx);
    names.push_back(n);
  }
  proto::ActionReply r = actionReply(names, {}, false);
  cfg_.programs.erase(std::remove_if(cfg_.programs.begin(), cfg_.programs.end(),
                                     [&](const config::ProgramSpec& s) { return s.name == program; }),
                      cfg_.programs.end());
  store_.clearScale(program);
  reply(route, env.id, r, fx);
}

void MasterCore::onUpdate(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Update, req);
  Json body = Json::parse(req.spec_json, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return replyError(route, env.id, ErrorCode::kInvalidArgument, "the spec is not a JSON object", fx);
  const std::string name = body.contains("name") && body["name"].is_string() ? body["name"].get<std::string>() : std::string();
  config::ProgramSpec* p = nullptr;
  for (auto& s : cfg_.programs) {
    if (s.name == name) p = &s;
  }
  if (p == nullptr) return replyError(route, env.id, ErrorCode::kNotFound, "no program named " + name, fx);
  if (p->origin != config::Origin::kApi)
    return replyError(route, env.id, ErrorCode::kConflict, name + " is managed by the config: change it there", fx);
  // Validate against the config without the old spec (its name would collide).
  config::Config without = cfg_;
  without.programs.erase(std::remove_if(without.programs.begin(), without.programs.end(),
                                        [&](const config::ProgramSpec& s) { return s.name == name; }),
                         without.programs.end());
  auto loaded = config::loadProgramText(req.spec_json, "json", p->source_file, without, true, opts_.load);
  if (!loaded.ok()) return replyError(route, env.id, ErrorCode::kInvalidArgument, joinDiagnostics(loaded.errors()), fx);
  const config::ProgramSpec old = *p;
  config::ProgramSpec spec = *loaded.program;
  spec.origin = config::Origin::kApi;
  spec.source_file = old.source_file;
  if (auto refused = confineApiProgram(cfg_, spec, body))
    return replyError(route, env.id, ErrorCode::kForbidden, *refused, fx);
  Json file;
  file["type"] = "process";
  file["origin"] = "api";
  file["spec"] = body;
  fx.files.push_back({spec.source_file, file.dump(2) + "\n"});
  *p = spec;
  store_.clearScale(name);
  std::set<std::string> wanted;
  for (const auto& n : spec.instanceNames()) wanted.insert(n);
  std::vector<std::string> names;
  for (auto& [n, in] : insts_) {
    if (in.program != name) continue;
    if (!wanted.count(n)) {
      in.forget = true;
      apply(in, Event::stop(), fx);
      continue;
    }
    in.life.setPolicy(LifecyclePolicy::from(spec));
    touch(n);
  }
  for (int i = 1; i <= spec.instances; ++i) addInstance(spec, spec.instances == 1 ? 1 : i);
  for (const auto& n : spec.instanceNames()) {
    names.push_back(n);
    setIntent(n, Intent::kStarted);
    apply(insts_.at(n), Event::restart(), fx);
  }
  afterChange(fx);
  // Wait for the new spec to start; when it fails, go back to the old one.
  Waiter w;
  w.route = route;
  w.id = env.id;
  w.instances = names;
  w.token = nextToken_++;
  w.deadline = clock_.now() + std::chrono::milliseconds(req.wait_ms.value_or(
                                  static_cast<std::uint64_t>(ms(spec.start_duration)) + 30000));
  w.done = [this, old, names, route, id = env.id](CoreEffects& out, bool timedOut) {
    bool failed = false;
    for (const auto& n : names) {
      auto it = insts_.find(n);
      if (it != insts_.end() && it->second.life.state() == State::kFatal) failed = true;
    }
    if (!failed) {
      reply(route, id, actionReply(names, {}, timedOut), out);
      return;
    }
    for (auto& s : cfg_.programs) {
      if (s.name == old.name) s = old;
    }
    Json back;
    back["type"] = "process";
    back["origin"] = "api";
    back["spec"] = specJson(old);
    out.files.push_back({old.source_file, back.dump(2) + "\n"});
    for (auto& [n, in] : insts_) {
      if (in.program == old.name) in.life.setPolicy(LifecyclePolicy::from(old));
    }
    resyncPlans_ = true;
    out.logs.push_back("update of " + old.name + " failed to start: back to the previous spec");
    for (int i = 1; i <= old.instances; ++i) addInstance(old, old.instances == 1 ? 1 : i);
    for (const auto& n : old.instanceNames()) apply(insts_.at(n), Event::start(), out);
    replyError(route, id, ErrorCode::kSpawnFailed, "the new spec of " + old.name +
               " failed to start; the previous spec was restored", out);
  };
  waiters_.emplace(w.token, std::move(w));
}

void MasterCore::onGroups(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  proto::GroupsReply r;
  for (const auto& g : cfg_.groups) r.groups.push_back({g.name, g.members});
  reply(route, env.id, r, fx);
}

void MasterCore::onGroupStatus(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::GroupStatus, req);
  const config::GroupSpec* g = cfg_.findGroup(req.group);
  if (g == nullptr) return replyError(route, env.id, ErrorCode::kNotFound, "no group named " + req.group, fx);
  proto::GroupStatusReply r;
  for (const auto& m : g->members) {
    auto& list = r.members[m];
    for (const auto& [n, in] : insts_) {
      if (in.program == m) list.push_back(statusOf(in, false));
    }
  }
  reply(route, env.id, r, fx);
}

void MasterCore::onGroupStart(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::GroupStart, req);
  auto names = select(proto::Selector{proto::SelectorKind::kGroup, req.group});
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  std::vector<proto::PlanStep> steps;
  userStart(*names, steps, false, fx);
  afterChange(fx);
  replyAction(route, env.id, *names, std::move(steps), req.wait_ms, false, fx);
}

void MasterCore::onGroupStop(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::GroupStop, req);
  auto names = select(proto::Selector{proto::SelectorKind::kGroup, req.group});
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  std::vector<proto::PlanStep> steps;
  std::optional<Duration> timeout;
  if (req.wait_ms) timeout = std::chrono::milliseconds(*req.wait_ms);
  userStop(*names, timeout, steps, false, fx);
  afterChange(fx);
  std::optional<std::uint64_t> wait;
  if (req.wait_ms) wait = *req.wait_ms + 2000;
  replyAction(route, env.id, *names, std::move(steps), wait, true, fx);
}

void MasterCore::applyReload(const config::Config& next, CoreEffects& fx) {
  const ReloadPlan plan = planReload(cfg_, next);
  const config::Config before = cfg_;
  cfg_ = next;
  // A reload ends runtime scale overrides: the config is the truth again.
  for (const auto& [p, n] : PersistedState(store_.state()).scale) store_.clearScale(p);
  for (const auto& n : plan.toStop()) {
    if (auto it = insts_.find(n); it != insts_.end()) {
      it->second.forget = true;
      apply(it->second, Event::stop(), fx);
    }
  }
  for (auto& [n, in] : insts_) {
    if (const auto* p = programOf(in)) in.life.setPolicy(LifecyclePolicy::from(*p));
  }
  resyncPlans_ = true;
  for (const auto& p : cfg_.programs) {
    for (int i = 1; i <= p.instances; ++i) {
      const std::string name = p.instanceName(i);
      if (insts_.count(name) && insts_.at(name).forget) continue;
      addInstance(p, p.instances == 1 ? 1 : i);
    }
  }
  for (const auto& n : plan.toRestart()) {
    auto it = insts_.find(n);
    // A user stop survives a reload: only running instances restart.
    if (it != insts_.end() && !atRest(it->second.life.state())) apply(it->second, Event::restart(), fx);
  }
  std::vector<std::string> starts;
  for (const auto& n : plan.toStart()) {
    if (insts_.count(n)) starts.push_back(n);
  }
  if (!starts.empty()) {
    std::vector<proto::PlanStep> steps;
    userStart(starts, steps, false, fx);
  }
  (void)before;
}

void MasterCore::onReload(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Reload, req);
  auto loaded = config::loadConfig(cfg_.file, opts_.load);
  if (!loaded.ok())
    return replyError(route, env.id, ErrorCode::kConfigInvalid, joinDiagnostics(loaded.errors()), fx);
  const ReloadPlan plan = planReload(cfg_, *loaded.config);
  proto::ReloadReply r;
  r.applied = !req.dry_run;
  for (const auto& c : plan.programs) {
    if (c.kind == ProgramChange::Kind::kUnchanged) continue;
    proto::PlanStep s;
    s.program = c.program;
    if (const auto* p = loaded.config->findProgram(c.program)) s.band = p->priority;
    std::string reason(changeKindName(c.kind));
    for (const auto& f : c.fields) reason += (reason.empty() ? "" : ": ") + f;
    s.reason = reason;
    if (!c.restart.empty()) {
      s.action = proto::PlanAction::kRestart;
      s.instances = c.restart;
    } else if (!c.stop.empty() && c.start.empty()) {
      s.action = proto::PlanAction::kStop;
      s.instances = c.stop;
    } else if (!c.start.empty()) {
      s.action = proto::PlanAction::kStart;
      s.instances = c.start;
    } else {
      s.action = proto::PlanAction::kKeep;
    }
    r.plan.push_back(std::move(s));
  }
  r.restart_needed = plan.needs_restart;
  for (const auto& w : loaded.warnings()) r.warnings.push_back(w.str());
  if (!req.dry_run) applyReload(*loaded.config, fx);
  reply(route, env.id, r, fx);
}

void MasterCore::onLogs(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Logs, req);
  auto names = select(proto::Selector{proto::SelectorKind::kName, req.name});
  if (!names) return replyError(route, env.id, names.error().code, names.error().message, fx);
  const std::uint64_t callId = nextToken_++;
  LogsCall c;
  c.route = route;
  c.id = env.id;
  c.remaining = names->size();
  c.limit = req.limit;
  c.stream = req.stream;
  c.deadline = clock_.now() + opts_.spawnerTimeout;
  logsCalls_.emplace(callId, std::move(c));
  for (const auto& n : *names) {
    proto::LogTail t;
    t.key = n;
    t.since = req.since;
    t.limit = req.limit;
    SpawnerCall call;
    call.kind = SpawnerCall::Kind::kLogTail;
    call.logsCall = callId;
    call.instance = n;
    toSpawner(std::move(t), fx, call);
  }
}

void MasterCore::onSpec(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Spec, req);
  std::string program = req.name;
  if (auto it = insts_.find(program); it != insts_.end()) program = it->second.program;
  const config::ProgramSpec* p = cfg_.findProgram(program);
  if (p == nullptr) return replyError(route, env.id, ErrorCode::kNotFound, "no program named " + req.name, fx);
  proto::SpecReply r;
  r.spec_json = specJson(*p).dump();
  r.origin = originName(p->origin);
  if (!p->provisioned()) r.file = p->source_file;
  reply(route, env.id, r, fx);
}

void MasterCore::onSettings(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  Json j;
  j["config_file"] = cfg_.file;
  j["use_os_env"] = cfg_.use_os_env;
  j["programs_directory"] = cfg_.programs_directory;
  if (cfg_.pid_dir) j["pid_dir"] = *cfg_.pid_dir;
  j["server"] = {{"listen", cfg_.server.listen}, {"base_path", cfg_.server.base_path}};
  j["daemon"] = {{"run_dir", cfg_.daemon.run_dir}, {"log_dir", cfg_.daemon.log_dir}};
  j["metrics"] = {{"enabled", cfg_.metrics.enabled}};
  j["programs"] = cfg_.programs.size();
  j["instances"] = insts_.size();
  j["groups"] = cfg_.groups.size();
  proto::SettingsReply r;
  r.settings_json = j.dump();
  reply(route, env.id, r, fx);
}

void MasterCore::onReopenLogs(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  toSpawner(proto::ReopenLogs{}, fx);
  reply(route, env.id, proto::OkReply{}, fx);
}

void MasterCore::onShutdown(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  reply(route, env.id, proto::OkReply{}, fx);
  fx.merge(shutdown());
}

void MasterCore::onSubscribe(const Route& route, const proto::Envelope& env, CoreEffects& fx) {
  PROVISR_BODY(proto::Subscribe, req);
  std::set<std::string> want;
  for (const auto& [r, topics] : subscribers_) {
    if (r == route) continue;
    for (const auto& t : topics) want.insert(t);
  }
  for (const auto& t : req.topics) want.insert(t);
  if (req.topics.empty()) {
    subscribers_.erase(route);
  } else {
    subscribers_[route] = req.topics;
  }
  // Follow exactly the instances some subscriber wants lines of.
  std::set<std::string> follow;
  for (const auto& t : want) {
    if (t.rfind("log.", 0) == 0 && t.size() > 4) follow.insert(t.substr(4));
  }
  for (const auto& k : follow) {
    if (followed_.count(k)) continue;
    proto::LogFollow f;
    f.key = k;
    f.on = true;
    toSpawner(std::move(f), fx);
  }
  for (const auto& k : followed_) {
    if (follow.count(k)) continue;
    proto::LogFollow f;
    f.key = k;
    f.on = false;
    toSpawner(std::move(f), fx);
  }
  followed_ = follow;
  reply(route, env.id, proto::OkReply{}, fx);
}

// ---- daemon-level operations ------------------------------------------------------------------

CoreEffects MasterCore::shutdown() {
  CoreEffects fx;
  if (shuttingDown_) return fx;
  shuttingDown_ = true;
  fx.logs.push_back("shutting down: stopping every program in reverse priority order");
  plans_.clear();
  std::vector<std::string> programs;
  for (const auto& p : cfg_.programs) programs.push_back(p.name);
  auto plan = stopPlan(effectivePrograms(), programs);
  if (plan) plans_.push_back(ActivePlan{std::move(*plan)});
  afterChange(fx);
  return fx;
}

CoreEffects MasterCore::reload() {
  CoreEffects fx;
  auto loaded = config::loadConfig(cfg_.file, opts_.load);
  if (!loaded.ok()) {
    fx.logs.push_back("reload refused, the running set is kept:\n" + joinDiagnostics(loaded.errors()));
    return fx;
  }
  applyReload(*loaded.config, fx);
  afterChange(fx);
  fx.logs.push_back("reloaded " + cfg_.file);
  return fx;
}

CoreEffects MasterCore::reopenLogs() {
  CoreEffects fx;
  toSpawner(proto::ReopenLogs{}, fx);
  return fx;
}

}  // namespace provisr::master

// The reload diff (SPEC §2.4): field by field, program by program, then groups, env and globals.
#include "master/reload_plan.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

namespace provisr::master {

namespace {

using config::ProgramSpec;

// Collects the names of the fields that differ.
class FieldDiff {
 public:
  template <class T>
  void check(const char* key, const T& a, const T& b) {
    if (!(a == b)) fields_.emplace_back(key);
  }
  std::vector<std::string> take() { return std::move(fields_); }

 private:
  std::vector<std::string> fields_;
};

bool sameBackoff(const std::optional<config::RestartBackoff>& a, const std::optional<config::RestartBackoff>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a) return true;
  return a->max == b->max && a->factor == b->factor && a->reset_after == b->reset_after && a->jitter == b->jitter;
}

bool sameLog(const config::LogPolicy& a, const config::LogPolicy& b) {
  return a.dir == b.dir && a.stdout_path == b.stdout_path && a.stderr_path == b.stderr_path &&
         a.max_size_mb == b.max_size_mb && a.max_backups == b.max_backups && a.max_age_days == b.max_age_days &&
         a.compress == b.compress && a.timestamps == b.timestamps;
}

// Fields the child or its lifecycle uses: a difference restarts the instance.
std::vector<std::string> restartFields(const ProgramSpec& a, const ProgramSpec& b) {
  FieldDiff d;
  d.check("command", a.command, b.command);
  d.check("args", a.args, b.args);
  // argv is resolved from command/args (PATH lookup): report it only when the source is equal.
  if (a.command == b.command && a.args == b.args) d.check("argv", a.argv, b.argv);
  d.check("work_dir", a.work_dir, b.work_dir);
  d.check("env", a.env, b.env);
  d.check("start_duration", a.start_duration, b.start_duration);
  d.check("retry_count", a.retry_count, b.retry_count);
  d.check("retry_interval", a.retry_interval, b.retry_interval);
  d.check("auto_restart", a.auto_restart, b.auto_restart);
  d.check("restart_interval", a.restart_interval, b.restart_interval);
  if (!sameBackoff(a.restart_backoff, b.restart_backoff)) d.check("restart_backoff", 0, 1);
  d.check("success_exit_codes", a.success_exit_codes, b.success_exit_codes);
  d.check("stop_signal", a.stop_signal, b.stop_signal);
  d.check("stop_timeout", a.stop_timeout, b.stop_timeout);
  d.check("user", a.user, b.user);
  d.check("group", a.group, b.group);
  d.check("umask", a.umask, b.umask);
  d.check("max_processes", a.max_processes, b.max_processes);
  d.check("memory_max", a.memory_max, b.memory_max);
  d.check("pids_max", a.pids_max, b.pids_max);
  if (!sameLog(a.log, b.log)) d.check("log", 0, 1);
  return d.take();
}

// Fields that take effect without touching the child.
std::vector<std::string> inPlaceFields(const ProgramSpec& a, const ProgramSpec& b) {
  FieldDiff d;
  d.check("priority", a.priority, b.priority);
  d.check("depends_on", a.depends_on, b.depends_on);
  d.check("origin", a.origin, b.origin);
  d.check("source_file", a.source_file, b.source_file);
  return d.take();  // source_line alone is not a change: a comment moved the declaration
}

void scale(const ProgramSpec& a, const ProgramSpec& b, ProgramChange& c) {
  const auto old_names = a.instanceNames();
  const auto new_names = b.instanceNames();
  std::set<std::string> old_set(old_names.begin(), old_names.end());
  std::set<std::string> new_set(new_names.begin(), new_names.end());
  for (const auto& n : old_names)
    if (!new_set.count(n)) c.stop.push_back(n);
  for (const auto& n : new_names)
    if (!old_set.count(n)) c.start.push_back(n);
}

std::vector<std::string> keptInstances(const ProgramSpec& a, const ProgramSpec& b) {
  const auto old_names = a.instanceNames();
  std::vector<std::string> out;
  for (const auto& n : b.instanceNames())
    if (std::find(old_names.begin(), old_names.end(), n) != old_names.end()) out.push_back(n);
  return out;
}

ProgramChange diffProgram(const ProgramSpec& a, const ProgramSpec& b, bool global_env_changed) {
  ProgramChange c;
  c.program = b.name;
  auto restart = restartFields(a, b);
  if (global_env_changed) restart.emplace_back("global env");
  const bool scaled = a.instances != b.instances;
  if (scaled) {
    std::string f = "instances " + std::to_string(a.instances) + " -> " + std::to_string(b.instances);
    if ((a.instances == 1) != (b.instances == 1)) f += " (renamed)";
    c.fields.push_back(f);
    scale(a, b, c);
  }
  if (!restart.empty()) {
    c.kind = ProgramChange::Kind::kChanged;
    c.fields.insert(c.fields.end(), restart.begin(), restart.end());
    c.restart = keptInstances(a, b);
  } else if (scaled) {
    c.kind = ProgramChange::Kind::kScaled;
  }
  auto in_place = inPlaceFields(a, b);
  if (!in_place.empty()) {
    if (c.kind == ProgramChange::Kind::kUnchanged) c.kind = ProgramChange::Kind::kUpdated;
    c.fields.insert(c.fields.end(), in_place.begin(), in_place.end());
  }
  return c;
}

void diffGlobals(const config::Config& a, const config::Config& b, ReloadPlan& plan) {
  FieldDiff env;
  env.check("use_os_env", a.use_os_env, b.use_os_env);
  env.check("env", a.env, b.env);
  env.check("env_files", a.env_files, b.env_files);
  plan.global_env = env.take();

  FieldDiff g;
  const auto& s = a.server;
  const auto& t = b.server;
  g.check("server.listen", s.listen, t.listen);
  g.check("server.base_path", s.base_path, t.base_path);
  g.check("server.zmq_listen", s.zmq_listen, t.zmq_listen);
  g.check("server.zmq_events", s.zmq_events, t.zmq_events);
  g.check("server.allow_insecure", s.allow_insecure, t.allow_insecure);
  g.check("server.allow_root_programs", s.allow_root_programs, t.allow_root_programs);
  g.check("server.auth.token", s.auth.token, t.auth.token);
  g.check("server.auth.token_file", s.auth.token_file, t.auth.token_file);
  g.check("server.auth.read_only_token", s.auth.read_only_token, t.auth.read_only_token);
  g.check("server.auth.read_only_token_file", s.auth.read_only_token_file, t.auth.read_only_token_file);
  g.check("server.tls.cert_file", s.tls.cert_file, t.tls.cert_file);
  g.check("server.tls.key_file", s.tls.key_file, t.tls.key_file);
  g.check("server.zmq_curve.server_key_file", s.zmq_curve.server_key_file, t.zmq_curve.server_key_file);
  g.check("server.zmq_curve.client_keys_dir", s.zmq_curve.client_keys_dir, t.zmq_curve.client_keys_dir);
  g.check("metrics.enabled", a.metrics.enabled, b.metrics.enabled);
  g.check("metrics.listen", a.metrics.listen, b.metrics.listen);
  g.check("daemon.run_dir", a.daemon.run_dir, b.daemon.run_dir);
  g.check("daemon.log_dir", a.daemon.log_dir, b.daemon.log_dir);
  g.check("daemon.user", a.daemon.user, b.daemon.user);
  g.check("daemon.pid_file", a.daemon.pid_file, b.daemon.pid_file);
  g.check("daemon.log_file", a.daemon.log_file, b.daemon.log_file);
  g.check("pid_dir", a.pid_dir, b.pid_dir);
  plan.needs_restart = g.take();

  for (const auto& grp : b.groups) {
    const config::GroupSpec* old = a.findGroup(grp.name);
    if (!old) plan.groups_added.push_back(grp.name);
    else if (old->members != grp.members) plan.groups_changed.push_back(grp.name);
  }
  for (const auto& grp : a.groups)
    if (!b.findGroup(grp.name)) plan.groups_removed.push_back(grp.name);
}

std::string joined(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

}  // namespace

ReloadPlan planReload(const config::Config& before, const config::Config& after) {
  ReloadPlan plan;
  diffGlobals(before, after, plan);
  const bool env_changed = !plan.global_env.empty();
  for (const auto& p : after.programs) {
    const ProgramSpec* old = before.findProgram(p.name);
    if (!old) {
      plan.programs.push_back(ProgramChange{p.name, ProgramChange::Kind::kAdded, {}, p.instanceNames(), {}, {}});
      continue;
    }
    plan.programs.push_back(diffProgram(*old, p, env_changed));
  }
  for (const auto& p : before.programs)
    if (!after.findProgram(p.name))
      plan.programs.push_back(ProgramChange{p.name, ProgramChange::Kind::kRemoved, {}, {}, p.instanceNames(), {}});
  return plan;
}

bool ReloadPlan::empty() const {
  const bool programs_same = std::all_of(programs.begin(), programs.end(), [](const ProgramChange& c) {
    return c.kind == ProgramChange::Kind::kUnchanged;
  });
  return programs_same && groups_added.empty() && groups_removed.empty() && groups_changed.empty() &&
         global_env.empty() && needs_restart.empty();
}

std::vector<std::string> ReloadPlan::toStop() const {
  std::vector<std::string> out;
  for (const auto& c : programs) out.insert(out.end(), c.stop.begin(), c.stop.end());
  return out;
}

std::vector<std::string> ReloadPlan::toStart() const {
  std::vector<std::string> out;
  for (const auto& c : programs) out.insert(out.end(), c.start.begin(), c.start.end());
  return out;
}

std::vector<std::string> ReloadPlan::toRestart() const {
  std::vector<std::string> out;
  for (const auto& c : programs) out.insert(out.end(), c.restart.begin(), c.restart.end());
  return out;
}

const ProgramChange* ReloadPlan::find(const std::string& program) const {
  for (const auto& c : programs)
    if (c.program == program) return &c;
  return nullptr;
}

std::string_view changeKindName(ProgramChange::Kind k) {
  switch (k) {
    case ProgramChange::Kind::kAdded: return "added";
    case ProgramChange::Kind::kRemoved: return "removed";
    case ProgramChange::Kind::kChanged: return "changed";
    case ProgramChange::Kind::kScaled: return "scaled";
    case ProgramChange::Kind::kUpdated: return "updated";
    case ProgramChange::Kind::kUnchanged: return "unchanged";
  }
  return "unknown";
}

std::string ReloadPlan::str() const {
  if (empty()) return "reload plan: nothing to change\n";
  std::ostringstream os;
  os << "reload plan:\n";
  std::size_t unchanged = 0;
  for (const auto& c : programs) {
    using K = ProgramChange::Kind;
    if (c.kind == K::kUnchanged) {
      ++unchanged;
      continue;
    }
    const char mark = c.kind == K::kAdded ? '+' : c.kind == K::kRemoved ? '-' : '~';
    os << "  " << mark << " " << c.program << " (" << changeKindName(c.kind);
    if (!c.fields.empty()) os << ": " << joined(c.fields);
    os << ")";
    std::vector<std::string> steps;
    if (!c.stop.empty()) steps.push_back("stop " + joined(c.stop, " "));
    if (!c.restart.empty()) steps.push_back("restart " + joined(c.restart, " "));
    if (!c.start.empty()) steps.push_back("start " + joined(c.start, " "));
    if (steps.empty()) steps.emplace_back("no restart");
    os << ": " << joined(steps, "; ") << "\n";
  }
  if (unchanged > 0) os << "  = " << unchanged << " program" << (unchanged == 1 ? "" : "s") << " unchanged\n";
  if (!groups_added.empty()) os << "  groups added: " << joined(groups_added) << "\n";
  if (!groups_removed.empty()) os << "  groups removed: " << joined(groups_removed) << "\n";
  if (!groups_changed.empty()) os << "  groups changed: " << joined(groups_changed) << "\n";
  if (!global_env.empty()) os << "  global environment changed (" << joined(global_env) << "): every program restarts\n";
  if (!needs_restart.empty())
    os << "  needs a restart of provisr serve (not applied by reload): " << joined(needs_restart) << "\n";
  return os.str();
}

}  // namespace provisr::master

// Decoding one program (SPEC §1.3/§1.4): the `{type, spec}` envelope and every spec field.
#include "common/config/program.hpp"

#include <cctype>
#include <csignal>
#include <limits>

#include "common/config/loader.hpp"

namespace provisr::config::detail {

namespace {

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();

struct SignalName {
  const char* name;
  int number;
};
constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},   {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"BUS", SIGBUS},   {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"USR1", SIGUSR1},
    {"SEGV", SIGSEGV}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}, {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU}, {"URG", SIGURG},   {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM},
    {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},  {"PWR", SIGPWR},   {"SYS", SIGSYS},
};

void readStopSignal(Sink& s, const Node* n, const std::string& key, ProgramSpec& p) {
  if (!n) return;
  if (n->kind == Node::Kind::kInt) {
    for (const auto& sig : kSignals)
      if (sig.number == n->integer) {
        p.stop_signal = sig.number;
        p.stop_signal_name = sig.name;
        return;
      }
    s.error(n->line, key, "unknown signal number " + std::to_string(n->integer));
    return;
  }
  auto text = readString(s, n, key);
  if (!text) return;
  std::string up;
  for (char c : *text) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (up.rfind("SIG", 0) == 0) up = up.substr(3);
  for (const auto& sig : kSignals)
    if (up == sig.name) {
      p.stop_signal = sig.number;
      p.stop_signal_name = sig.name;
      return;
    }
  s.error(n->line, key, "unknown signal `" + *text + "` (use a name such as \"TERM\", \"INT\", \"QUIT\" or a number)");
}

void readUmask(Sink& s, const Node* n, const std::string& key, ProgramSpec& p) {
  if (!n) return;
  std::string digits;
  if (n->kind == Node::Kind::kString) digits = n->text;
  else if (n->kind == Node::Kind::kInt && !n->text.empty()) digits = n->text;  // YAML `umask: 022`
  else {
    s.error(n->line, key, std::string("must be an octal string such as \"022\", not ") + kindName(n->kind));
    return;
  }
  if (digits.rfind("0o", 0) == 0) digits = digits.substr(2);
  bool ok = !digits.empty() && digits.size() <= 4;
  unsigned v = 0;
  for (char c : digits) {
    if (c < '0' || c > '7') ok = false;
    v = v * 8 + static_cast<unsigned>(c - '0');
  }
  if (!ok || v > 0777) {
    s.error(n->line, key, "must be an octal string such as \"022\" (0 to 0777), not `" + digits + "`");
    return;
  }
  p.umask = static_cast<mode_t>(v);
}

std::optional<std::int64_t> readBytes(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind == Node::Kind::kInt) return readInt(s, n, key, 1, std::numeric_limits<std::int64_t>::max());
  auto text = readString(s, n, key);
  if (!text) return std::nullopt;
  std::size_t i = 0;
  while (i < text->size() && std::isdigit(static_cast<unsigned char>((*text)[i]))) ++i;
  std::string unit = text->substr(i);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  int shift = unit.empty() ? 0 : unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : unit == "T" ? 40 : -1;
  if (unit == "B") shift = 0;
  if (i == 0 || i > 15 || shift < 0) {
    s.error(n->line, key, "must be bytes or a size such as \"512M\" or \"1G\", not `" + *text + "`");
    return std::nullopt;
  }
  std::int64_t v = std::stoll(text->substr(0, i));
  if (v <= 0 || v > (std::numeric_limits<std::int64_t>::max() >> shift)) {
    s.error(n->line, key, "size out of range: `" + *text + "`");
    return std::nullopt;
  }
  return v << shift;
}

void readAutoRestart(Sink& s, const Node* n, const std::string& key, ProgramSpec& p) {
  if (!n) return;
  if (n->kind == Node::Kind::kBool) {
    p.auto_restart = n->boolean ? AutoRestart::kAlways : AutoRestart::kNever;
    return;
  }
  if (n->kind == Node::Kind::kString) {
    if (n->text == "on-failure") p.auto_restart = AutoRestart::kOnFailure;
    else if (n->text == "always" || n->text == "true") p.auto_restart = AutoRestart::kAlways;
    else if (n->text == "never" || n->text == "false") p.auto_restart = AutoRestart::kNever;
    else s.error(n->line, key, "must be true, false or \"on-failure\", not `" + n->text + "`");
    return;
  }
  s.error(n->line, key, std::string("must be true, false or \"on-failure\", not ") + kindName(n->kind));
}

void readBackoff(Sink& s, const Node* n, const std::string& key, ProgramSpec& p) {
  if (!expectTable(s, n, key)) return;
  TableReader t(s, *n, key);
  RestartBackoff b;
  if (auto v = readDuration(s, t.get("max"), t.key("max"))) b.max = *v;
  if (auto v = readNumber(s, t.get("factor"), t.key("factor"))) {
    if (*v < 1.0) s.error(t.get("factor")->line, t.key("factor"), "must be at least 1.0");
    else b.factor = *v;
  }
  if (auto v = readDuration(s, t.get("reset_after"), t.key("reset_after"))) b.reset_after = *v;
  if (auto v = readNumber(s, t.get("jitter"), t.key("jitter"))) {
    if (*v < 0.0 || *v > 1.0) s.error(t.get("jitter")->line, t.key("jitter"), "must be between 0 and 1");
    else b.jitter = *v;
  }
  t.finish();
  p.restart_backoff = b;
}

}  // namespace

LogSettings decodeLog(Sink& s, const Node& n, const std::string& key, const std::string& base_dir) {
  LogSettings out;
  TableReader t(s, n, key);
  out.dir = readPath(s, t.get("dir"), t.key("dir"), base_dir);
  out.stdout_path = readPath(s, t.get("stdout"), t.key("stdout"), base_dir);
  out.stderr_path = readPath(s, t.get("stderr"), t.key("stderr"), base_dir);
  out.max_size_mb = readInt32(s, t.get("max_size_mb"), t.key("max_size_mb"), 1, 1 << 20);
  out.max_backups = readInt32(s, t.get("max_backups"), t.key("max_backups"), 0, 100000);
  out.max_age_days = readInt32(s, t.get("max_age_days"), t.key("max_age_days"), 0, 100000);
  out.compress = readBool(s, t.get("compress"), t.key("compress"));
  out.timestamps = readBool(s, t.get("timestamps"), t.key("timestamps"));
  // The Go API's nested shape `log.file.{dir, stdoutPath, …}`.
  if (const Node* f = t.get("file"); expectTable(s, f, t.key("file"))) {
    TableReader g(s, *f, t.key("file"));
    auto fill = [&](auto& field, const char* go_key, const char* flat_key, auto value) {
      if (!value) return;
      if (field) s.error(g.get(go_key)->line, g.key(go_key), std::string("conflicts with `") + t.key(flat_key) + "`: set only one");
      else field = value;
    };
    fill(out.dir, "dir", "dir", readPath(s, g.get("dir"), g.key("dir"), base_dir));
    fill(out.stdout_path, "stdoutPath", "stdout", readPath(s, g.get("stdoutPath"), g.key("stdoutPath"), base_dir));
    fill(out.stderr_path, "stderrPath", "stderr", readPath(s, g.get("stderrPath"), g.key("stderrPath"), base_dir));
    fill(out.max_size_mb, "maxSizeMB", "max_size_mb", readInt32(s, g.get("maxSizeMB"), g.key("maxSizeMB"), 1, 1 << 20));
    fill(out.max_backups, "maxBackups", "max_backups", readInt32(s, g.get("maxBackups"), g.key("maxBackups"), 0, 100000));
    fill(out.max_age_days, "maxAgeDays", "max_age_days", readInt32(s, g.get("maxAgeDays"), g.key("maxAgeDays"), 0, 100000));
    fill(out.compress, "compress", "compress", readBool(s, g.get("compress"), g.key("compress")));
    g.finish();
  }
  t.finish();
  return out;
}

std::optional<Draft> decodeSpec(Sink& s, const Node& n, const std::string& key, const SpecContext& ctx) {
  Draft d;
  ProgramSpec& p = d.spec;
  int errors_before = s.errors();
  d.key = key;
  d.line = n.line;
  p.origin = ctx.origin;
  p.source_file = s.file();
  p.source_line = n.line;
  p.work_dir = ctx.default_work_dir;
  TableReader t(s, n, key);

  const Node* name = t.get("name");
  d.name_line = name ? name->line : n.line;
  if (!name) s.error(n.line, key, "missing required key `name`");
  else if (auto v = readString(s, name, t.key("name"))) {
    if (!isValidName(*v))
      s.error(name->line, t.key("name"),
              "invalid program name `" + *v + "`: use 1 to 64 of A-Z a-z 0-9 . _ - (and no `..`)");
    p.name = *v;
  }

  const Node* command = t.get("command");
  const Node* args = t.get("args");
  if (command && args)
    s.error(args->line, t.key("args"), "set either `command` or `args`, not both");
  else if (!command && !args)
    s.error(n.line, key, "needs `command` (a command line) or `args` (an argv list)");
  if (auto v = readString(s, command, t.key("command"))) {
    p.command = *v;
    if (!args) {
      auto argv = commandToArgv(*v);
      if (!argv) s.error(command->line, t.key("command"), argv.error().message);
      else p.argv = *argv;
    }
  }
  if (auto v = readStringList(s, args, t.key("args"))) {
    if (v->empty() || (*v)[0].empty()) s.error(args->line, t.key("args"), "must hold at least the program to run");
    p.args = *v;
    if (!command) p.argv = *v;
  }

  if (auto v = readPath(s, t.get("work_dir"), t.key("work_dir"), ctx.file_dir)) p.work_dir = *v;
  if (const Node* env = t.get("env")) {
    d.env_line = env->line;
    if (auto v = readStringList(s, env, t.key("env"))) {
      for (std::size_t i = 0; i < v->size(); ++i) {
        const std::string& e = (*v)[i];
        auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0)
          s.error(env->items[i].line, indexKey(t.key("env"), i), "must be \"NAME=value\", not `" + e + "`");
      }
      p.env = *v;
    }
  }
  if (auto v = readInt32(s, t.get("priority"), t.key("priority"), -1000000, 1000000)) p.priority = *v;
  if (auto v = readInt32(s, t.get("instances"), t.key("instances"), 1, 10000)) p.instances = *v;
  if (auto v = readDuration(s, t.get("start_duration"), t.key("start_duration"))) p.start_duration = *v;
  if (auto v = readInt32(s, t.get("retry_count"), t.key("retry_count"), 0, 1000000)) p.retry_count = *v;
  if (auto v = readDuration(s, t.get("retry_interval"), t.key("retry_interval"))) p.retry_interval = *v;
  readAutoRestart(s, t.get("auto_restart"), t.key("auto_restart"), p);
  if (auto v = readDuration(s, t.get("restart_interval"), t.key("restart_interval"))) p.restart_interval = *v;
  readBackoff(s, t.get("restart_backoff"), t.key("restart_backoff"), p);
  if (const Node* codes = t.get("success_exit_codes")) {
    if (codes->kind != Node::Kind::kArray) {
      s.error(codes->line, t.key("success_exit_codes"), std::string("must be a list of exit codes, not ") + kindName(codes->kind));
    } else {
      std::vector<int> out;
      for (std::size_t i = 0; i < codes->items.size(); ++i)
        if (auto c = readInt32(s, &codes->items[i], indexKey(t.key("success_exit_codes"), i), 0, 255)) out.push_back(*c);
      p.success_exit_codes = out;
    }
  }
  readStopSignal(s, t.get("stop_signal"), t.key("stop_signal"), p);
  if (auto v = readDuration(s, t.get("stop_timeout"), t.key("stop_timeout"))) p.stop_timeout = *v;
  if (const Node* u = t.get("user")) {
    d.user_line = u->line;
    p.user = readString(s, u, t.key("user"));
  }
  if (const Node* g = t.get("group")) {
    d.group_line = g->line;
    p.group = readString(s, g, t.key("group"));
  }
  readUmask(s, t.get("umask"), t.key("umask"), p);
  for (const char* cap : {"max_processes", "pids_max"}) {
    const Node* c = t.get(cap);
    if (!c) continue;
    if (d.caps_field.empty()) d.caps_line = c->line, d.caps_field = cap;
    auto v = readInt(s, c, t.key(cap), 1, kIntMax);
    (std::string_view(cap) == "max_processes" ? p.max_processes : p.pids_max) = v;
  }
  if (const Node* m = t.get("memory_max")) {
    if (d.caps_field.empty()) d.caps_line = m->line, d.caps_field = "memory_max";
    p.memory_max = readBytes(s, m, t.key("memory_max"));
  }
  if (const Node* dep = t.get("depends_on")) {
    d.depends_line = dep->line;
    if (auto v = readStringList(s, dep, t.key("depends_on"))) p.depends_on = *v;
  }
  if (const Node* log = t.get("log"); expectTable(s, log, t.key("log"))) {
    d.log_line = log->line;
    d.log = decodeLog(s, *log, t.key("log"), ctx.file_dir);
  }
  for (const char* k : {"detectors", "lifecycle", "detached", "pid_file"}) t.unsupported(k);
  t.finish();
  d.valid = s.errors() == errors_before;
  return d;
}

std::optional<Draft> decodeEnvelope(Sink& s, const Node& root, const std::string& key, SpecContext ctx,
                                    bool allow_origin) {
  TableReader t(s, root, key);
  const Node* type = t.get("type");
  std::string type_name = "process";
  if (auto v = readString(s, type, t.key("type"))) type_name = v->empty() ? "process" : *v;
  if (allow_origin) {
    if (auto v = readString(s, t.get("origin"), t.key("origin"))) {
      if (*v == "api") ctx.origin = Origin::kApi;
      else if (*v != "file" && *v != "directory")
        s.error(t.get("origin")->line, t.key("origin"), "must be \"api\" (or absent), not `" + *v + "`");
    }
  }
  const Node* spec = t.get("spec");
  if (type_name == "cronjob") {
    s.warn(type ? type->line : root.line, t.key("type"), "`cronjob` programs are not supported yet; this entry is skipped");
    return std::nullopt;
  }
  if (type_name != "process") {
    s.error(type->line, t.key("type"), "unknown type `" + type_name + "` (expected \"process\")");
    t.finish();
    return std::nullopt;
  }
  t.finish();
  if (!spec) {
    s.error(root.line, key, "missing `spec`");
    return std::nullopt;
  }
  if (!expectTable(s, spec, t.key("spec"))) return std::nullopt;
  return decodeSpec(s, *spec, t.key("spec"), ctx);
}

}  // namespace provisr::config::detail

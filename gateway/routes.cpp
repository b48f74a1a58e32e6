// The route table and its handlers: one master request per call (two for GET /groups).
#include "gateway/routes.hpp"

#include <pwd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <fstream>
#include <sstream>

#include "common/util/version.hpp"
#include "gateway/reply_decode.hpp"

namespace provisr::gateway {
namespace {

using namespace std::chrono_literals;
using proto::Selector;
using proto::SelectorKind;

Error invalid(std::string m) { return Error{ErrorCode::kInvalidArgument, std::move(m)}; }

std::chrono::milliseconds extraWait(const std::optional<std::uint64_t>& ms) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms.value_or(0)));
}

Result<Selector> requiredSelector(const Args& args) {
  auto sel = argSelector(args);
  if (!sel) return sel.error();
  if (!*sel) return invalid("give exactly one of name, base or wildcard");
  return **sel;
}

// A master request whose reply is an ActionReply (decoded in one pass: it may carry thousands
// of statuses).
template <class Msg>
Result<proto::ActionReply> actionCall(Context& ctx, const Msg& msg, std::chrono::milliseconds extra = 0ms) {
  auto env = ctx.master.request(msg, extra);
  if (!env) return env.error();
  return decodeActionReply(*env);
}

// start / stop / restart share everything but the message type.
template <class Msg>
Result<proto::ActionReply> selectorAction(const Call& c, Context& ctx) {
  auto sel = requiredSelector(c.args);
  if (!sel) return sel.error();
  auto wait = argWaitMs(c.args);
  if (!wait) return wait.error();
  auto dry = argFlag(c.args, "dry_run");
  if (!dry) return dry.error();
  return actionCall(ctx, Msg{*sel, *wait, *dry}, extraWait(*wait));
}

// Paths in a spec from the API must be absolute and must not climb with `..` (DESIGN §6): there
// is no file they could be relative to, and a traversal hides where a log really goes.
std::optional<Error> checkSpecPaths(const Json& spec) {
  auto check = [](const Json& v, const std::string& key) -> std::optional<Error> {
    if (!v.is_string()) return std::nullopt;  // the master's loader reports a wrong type
    const std::string p = v.get<std::string>();
    if (p.empty()) return std::nullopt;
    if (p.front() != '/') return invalid(key + " must be an absolute path (got '" + p.substr(0, 80) + "')");
    if (p.find('\0') != std::string::npos) return invalid(key + " contains a NUL byte");
    std::size_t start = 0;
    while (start <= p.size()) {
      const std::size_t end = std::min(p.find('/', start), p.size());
      if (p.compare(start, end - start, "..") == 0) {
        return invalid(key + " must not contain '..' (got '" + p.substr(0, 80) + "')");
      }
      start = end + 1;
    }
    return std::nullopt;
  };
  if (auto it = spec.find("work_dir"); it != spec.end()) {
    if (auto e = check(*it, "work_dir")) return e;
  }
  if (auto log = spec.find("log"); log != spec.end() && log->is_object()) {
    for (const char* k : {"dir", "stdout", "stderr"}) {
      if (auto it = log->find(k); it != log->end()) {
        if (auto e = check(*it, std::string("log.") + k)) return e;
      }
    }
    if (auto file = log->find("file"); file != log->end() && file->is_object()) {
      for (const char* k : {"dir", "stdoutPath", "stderrPath"}) {
        if (auto it = file->find(k); it != file->end()) {
          if (auto e = check(*it, std::string("log.file.") + k)) return e;
        }
      }
    }
  }
  if (auto it = spec.find("env_files"); it != spec.end() && it->is_array()) {
    for (const auto& f : *it) {
      if (auto e = check(f, "env_files")) return e;
    }
  }
  return std::nullopt;
}

// The spec of register/update: the HTTP body, or the ZeroMQ args' `spec` map / `spec_json`.
Result<std::string> specJson(const Call& c) {
  auto checked = [](Json spec) -> Result<std::string> {
    if (auto n = spec.find("name"); n != spec.end() && !n->is_string()) return invalid("the spec's name must be a string");
    if (auto e = checkSpecPaths(spec)) return *e;
    return spec.dump();
  };
  if (auto s = argText(c.args, "spec_json")) {
    auto parsed = parseJsonBody(*s);
    if (!parsed) return parsed.error();
    if (!parsed->is_object()) return invalid("the spec must be a JSON object");
    return checked(std::move(*parsed));
  }
  if (c.args.is_object() && c.args.contains("spec") && c.args["spec"].is_object()) return checked(c.args["spec"]);
  auto body = argText(c.args, "body");
  if (!body || body->empty()) return invalid("send the program spec as a JSON object in the body");
  auto parsed = parseJsonBody(*body);
  if (!parsed) return parsed.error();
  if (!parsed->is_object()) return invalid("the spec must be a JSON object");
  if (!parsed->contains("name")) return invalid("the spec needs a name");
  return checked(std::move(*parsed));
}

// The root rule of register/update (Context::refuse_root_programs).
std::optional<Error> rootProgramRefused(const std::string& spec, const Context& ctx) {
  if (!ctx.refuse_root_programs) return std::nullopt;
  auto j = parseJsonBody(spec);
  if (!j || !j->is_object()) return std::nullopt;  // the master reports what is wrong with it
  bool root = true;
  if (auto u = j->find("user"); u != j->end() && u->is_string() && !u->get<std::string>().empty()) {
    passwd pwd{};
    passwd* pw = nullptr;
    std::array<char, 4096> buf{};
    ::getpwnam_r(u->get<std::string>().c_str(), &pwd, buf.data(), buf.size(), &pw);  // handlers run on many threads
    if (pw == nullptr) return std::nullopt;  // an unknown user: the master's loader says so
    root = pw->pw_uid == 0;
  }
  if (!root) return std::nullopt;
  return Error{ErrorCode::kForbidden,
               "provisr runs as root without a [daemon] user, so this program would run as root: set [daemon] user, "
               "give the spec a non-root \"user\", or set [server] allow_root_programs = true"};
}

// ---- handlers, one per route -------------------------------------------------------------------

// What GET /status answers: the health check (no selector over HTTP), one instance's object, or
// a list sorted by name.
struct StatusAnswer {
  bool health = false;
  bool single = false;
  std::vector<proto::InstanceStatus> instances;
};

Result<StatusAnswer> statusAnswer(const Call& c, Context& ctx) {
  auto sel = argSelector(c.args);
  if (!sel) return sel.error();
  if (!*sel && c.transport == Transport::kHttp) return StatusAnswer{true, false, {}};  // the Go health probe
  auto sample = argFlag(c.args, "sample");
  if (!sample) return sample.error();
  proto::StatusRequest req{sel->value_or(Selector{SelectorKind::kAll, ""}), *sample};
  auto env = ctx.master.request(req);
  if (!env) return env.error();
  auto r = decodeStatusReply(*env);
  if (!r) return r.error();
  if (r->single && r->instances.size() == 1) return StatusAnswer{false, true, std::move(r->instances)};
  if (req.selector.kind == SelectorKind::kName && r->instances.empty()) {
    return Error{ErrorCode::kNotFound, "no instance or program named '" + req.selector.value + "'"};
  }
  return StatusAnswer{false, false, std::move(r->instances)};
}

Result<Json> status(const Call& c, Context& ctx) {
  auto a = statusAnswer(c, ctx);
  if (!a) return a.error();
  if (a->health) return Json{{"ok", true}};
  if (a->single) return renderStatus(a->instances.front());
  return renderStatusList(std::move(a->instances));
}

Result<std::string> statusText(const Call& c, Context& ctx) {
  auto a = statusAnswer(c, ctx);
  if (!a) return a.error();
  if (a->health) return std::string(R"({"ok":true})");
  if (a->single) return renderStatusText(a->instances.front());
  return renderStatusListText(a->instances);
}

// The routes whose answer is an ActionReply: a function giving the reply, rendered as a json
// tree (ZeroMQ) or as text (HTTP).
using ActionFetch = Result<proto::ActionReply> (*)(const Call&, Context&);

template <ActionFetch Fetch>
Result<Json> actionJson(const Call& c, Context& ctx) {
  auto r = Fetch(c, ctx);
  if (!r) return r.error();
  return renderAction(*r);
}

template <ActionFetch Fetch>
Result<std::string> actionText(const Call& c, Context& ctx) {
  auto r = Fetch(c, ctx);
  if (!r) return r.error();
  return renderActionText(*r);
}

Result<proto::ActionReply> start(const Call& c, Context& ctx) { return selectorAction<proto::Start>(c, ctx); }

Result<proto::ActionReply> stop(const Call& c, Context& ctx) {
  auto r = selectorAction<proto::Stop>(c, ctx);
  // Go: a stop that matched nothing succeeds.
  if (!r && r.error().code == ErrorCode::kNotFound) return proto::ActionReply{};
  return r;
}

Result<proto::ActionReply> restart(const Call& c, Context& ctx) { return selectorAction<proto::Restart>(c, ctx); }

Result<proto::ActionReply> registerProgram(const Call& c, Context& ctx) {
  auto spec = specJson(c);
  if (!spec) return spec.error();
  if (auto refused = rootProgramRefused(*spec, ctx)) return *refused;
  return actionCall(ctx, proto::Register{*spec});
}

Result<proto::ActionReply> unregister(const Call& c, Context& ctx) {
  auto sel = requiredSelector(c.args);
  if (!sel) return sel.error();
  return actionCall(ctx, proto::Unregister{*sel});
}

Result<proto::ActionReply> update(const Call& c, Context& ctx) {
  auto spec = specJson(c);
  if (!spec) return spec.error();
  if (auto refused = rootProgramRefused(*spec, ctx)) return *refused;
  auto wait = argWaitMs(c.args);
  if (!wait) return wait.error();
  return actionCall(ctx, proto::Update{*spec, *wait}, extraWait(*wait));
}

Result<Json> groups(const Call&, Context& ctx) {
  auto g = ctx.master.call<proto::GroupsReply>(proto::Groups{});
  if (!g) return g.error();
  auto all = ctx.master.call<proto::StatusReply>(proto::StatusRequest{Selector{SelectorKind::kAll, ""}, false});
  if (!all) return all.error();
  return renderGroups(*g, all->instances);
}

Result<proto::GroupStatusReply> groupStatusReply(const Call& c, Context& ctx) {
  auto g = argName(c.args, "group");
  if (!g) return g.error();
  auto env = ctx.master.request(proto::GroupStatus{*g});
  if (!env) return env.error();
  return decodeGroupStatusReply(*env);
}

Result<Json> groupStatus(const Call& c, Context& ctx) {
  auto r = groupStatusReply(c, ctx);
  if (!r) return r.error();
  return renderGroupStatus(*r);
}

Result<std::string> groupStatusText(const Call& c, Context& ctx) {
  auto r = groupStatusReply(c, ctx);
  if (!r) return r.error();
  return renderGroupStatusText(*r);
}

template <class Msg>
Result<proto::ActionReply> groupAction(const Call& c, Context& ctx) {
  auto g = argName(c.args, "group");
  if (!g) return g.error();
  auto wait = argWaitMs(c.args);
  if (!wait) return wait.error();
  return actionCall(ctx, Msg{*g, *wait}, extraWait(*wait));
}

Result<proto::ActionReply> groupStart(const Call& c, Context& ctx) { return groupAction<proto::GroupStart>(c, ctx); }
Result<proto::ActionReply> groupStop(const Call& c, Context& ctx) { return groupAction<proto::GroupStop>(c, ctx); }

Result<std::vector<proto::InstanceStatus>> debugList(const Call& c, Context& ctx) {
  std::string pattern = argText(c.args, "pattern").value_or("*");
  if (pattern.empty()) pattern = "*";
  if (!isSafePattern(pattern)) return invalid("invalid pattern '" + pattern.substr(0, 80) + "'");
  auto env = ctx.master.request(proto::StatusRequest{Selector{SelectorKind::kWildcard, pattern}, false});
  if (!env) return env.error();
  auto r = decodeStatusReply(*env);
  if (!r) return r.error();
  return std::move(r->instances);
}

Result<Json> debugProcesses(const Call& c, Context& ctx) {
  auto list = debugList(c, ctx);
  if (!list) return list.error();
  return renderDebugProcesses(*list);
}

Result<std::string> debugProcessesText(const Call& c, Context& ctx) {
  auto list = debugList(c, ctx);
  if (!list) return list.error();
  return renderDebugProcessesText(*list);
}

Result<Json> logs(const Call& c, Context& ctx) {
  auto name = argName(c.args, "name");
  if (!name) return name.error();
  auto since = argUint(c.args, "since");
  if (!since) return since.error();
  auto limit = argUint(c.args, "limit");
  if (!limit) return limit.error();
  proto::Logs req;
  req.name = *name;
  req.since = *since;
  req.limit = static_cast<std::uint32_t>(std::min<std::uint64_t>(limit->value_or(200), 1000));
  if (auto s = argText(c.args, "stream")) {
    auto parsed = proto::parseWireName<proto::LogStreams>(*s);
    if (!parsed) return invalid("stream must be both, stdout or stderr");
    req.stream = *parsed;
  }
  auto r = ctx.master.call<proto::LogsReply>(req);
  if (!r) return r.error();
  return renderLogs(*name, *r);
}

Result<std::optional<std::string>> logsStream(const Args& args) {
  auto follow = argFlag(args, "follow");
  if (!follow) return follow.error();
  if (!*follow) return std::optional<std::string>();
  auto name = argName(args, "name");
  if (!name) return name.error();
  return std::optional<std::string>("log." + *name);
}

Result<Json> events(const Call&, Context&) {
  return Error{ErrorCode::kInvalidArgument, "events are a stream: use GET /events (SSE) or the zmq_events PUB socket"};
}

Result<std::optional<std::string>> eventsStream(const Args&) { return std::optional<std::string>("state."); }

Result<Json> spec(const Call& c, Context& ctx) {
  auto name = argName(c.args, "name");
  if (!name) return name.error();
  auto r = ctx.master.call<proto::SpecReply>(proto::Spec{*name});
  if (!r) return r.error();
  auto parsed = parseJsonBody(r->spec_json);
  if (!parsed || !parsed->is_object()) return Error{ErrorCode::kInternal, "the master sent a spec that is not a JSON object"};
  Json out = std::move(*parsed);
  out["provisioned"] = r->origin == "config";
  out["origin"] = r->origin;
  return out;
}

Result<Json> settings(const Call&, Context& ctx) {
  auto r = ctx.master.call<proto::SettingsReply>(proto::Settings{});
  if (!r) return r.error();
  Json out = Json::object();
  if (auto parsed = parseJsonBody(r->settings_json); parsed && parsed->is_object()) out = std::move(*parsed);
  // The Go shape; the gateway's own view of auth and metrics wins.
  out["auth_enabled"] = ctx.auth_enabled;
  out["metrics_enabled"] = ctx.metrics_enabled;
  out["history_enabled"] = false;
  out["cron_scheduler_enabled"] = false;
  out["program_persistence"] = true;
  if (!out.contains("configured_group_count")) out["configured_group_count"] = ctx.configured_groups;
  return out;
}

Result<proto::ActionReply> scale(const Call& c, Context& ctx) {
  auto name = argName(c.args, "name");
  if (!name) return name.error();
  auto n = argUint(c.args, "instances");
  if (!n) return n.error();
  if (!*n || **n > 1000) return invalid("instances must be an integer from 0 to 1000");
  return actionCall(ctx, proto::Scale{*name, static_cast<std::uint32_t>(**n)});
}

Result<Json> reload(const Call& c, Context& ctx) {
  auto dry = argFlag(c.args, "dry_run");
  if (!dry) return dry.error();
  auto r = ctx.master.call<proto::ReloadReply>(proto::Reload{*dry}, 30s);
  if (!r) return r.error();
  return renderReload(*r);
}

Result<Json> reopenLogs(const Call&, Context& ctx) {
  auto r = ctx.master.call<proto::OkReply>(proto::ReopenLogs{});
  if (!r) return r.error();
  return Json{{"ok", true}};
}

Result<Json> shutdown(const Call&, Context& ctx) {
  auto r = ctx.master.call<proto::OkReply>(proto::Shutdown{});
  if (!r) return r.error();
  return Json{{"ok", true}};
}

Result<Json> health(const Call&, Context& ctx) {
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  return readHealth(ctx.run_dir, now);
}

Result<Json> versionInfo(const Call&, Context&) { return Json{{"version", std::string(provisr::version())}}; }

Result<Json> metricsGone(const Call&, Context&) {
  return Error{ErrorCode::kNotFound,
               "the JSON metrics endpoints were replaced by Prometheus: scrape http://<[metrics] listen>/metrics"};
}

// THE table. Paths are under base_path.
constexpr std::array kRoutes = {
    Route{"GET", "/status", "status", Access::kStatus, status, nullptr, statusText},
    Route{"POST", "/start", "start", Access::kFull, actionJson<start>, nullptr, actionText<start>},
    Route{"POST", "/stop", "stop", Access::kFull, actionJson<stop>, nullptr, actionText<stop>},
    Route{"POST", "/restart", "restart", Access::kFull, actionJson<restart>, nullptr, actionText<restart>},
    Route{"POST", "/register", "register", Access::kRegistration, actionJson<registerProgram>, nullptr,
          actionText<registerProgram>},
    Route{"POST", "/unregister", "unregister", Access::kRegistration, actionJson<unregister>, nullptr,
          actionText<unregister>},
    Route{"POST", "/update", "update", Access::kRegistration, actionJson<update>, nullptr, actionText<update>},
    Route{"GET", "/groups", "groups", Access::kRead, groups},
    Route{"GET", "/group/status", "group_status", Access::kRead, groupStatus, nullptr, groupStatusText},
    Route{"POST", "/group/start", "group_start", Access::kFull, actionJson<groupStart>, nullptr,
          actionText<groupStart>},
    Route{"POST", "/group/stop", "group_stop", Access::kFull, actionJson<groupStop>, nullptr, actionText<groupStop>},
    Route{"GET", "/debug/processes", "debug_processes", Access::kRead, debugProcesses, nullptr, debugProcessesText},
    Route{"GET", "/processes/([^/]+)/logs", "logs", Access::kRead, logs, logsStream},
    Route{"GET", "/processes/([^/]+)/spec", "spec", Access::kFull, spec},
    Route{"GET", "/settings/status", "settings", Access::kFull, settings},
    Route{"POST", "/scale", "scale", Access::kFull, actionJson<scale>, nullptr, actionText<scale>},
    Route{"POST", "/reload", "reload", Access::kFull, reload},
    Route{"POST", "/reopen-logs", "reopen_logs", Access::kFull, reopenLogs},
    Route{"POST", "/shutdown", "shutdown", Access::kFull, shutdown},
    Route{"GET", "/events", "", Access::kRead, events, eventsStream},
    Route{"GET", "/health", "health", Access::kOpen, health},
    Route{"GET", "/version", "version", Access::kRead, versionInfo},
    Route{"GET", "/metrics", "", Access::kRead, metricsGone},
    Route{"GET", "/metrics/group", "", Access::kRead, metricsGone},
    Route{"GET", "/metrics/history", "", Access::kRead, metricsGone},
};

}  // namespace

std::span<const Route> routeTable() { return kRoutes; }

const Route* findOp(std::string_view op) {
  if (op.empty()) return nullptr;
  for (const auto& r : kRoutes) {
    if (r.op == op) return &r;
  }
  return nullptr;
}

Result<Json> runRoute(const Route& route, const Call& call, Context& ctx) {
  try {
    return route.handler(call, ctx);
  } catch (const std::exception& e) {
    return Error{ErrorCode::kInternal, std::string("internal error in ") + std::string(route.path) + ": " + e.what()};
  }
}

Result<std::string> runRouteText(const Route& route, const Call& call, Context& ctx) {
  try {
    if (route.text) return route.text(call, ctx);
    auto r = route.handler(call, ctx);
    if (!r) return r.error();
    return r->dump(-1, ' ', false, Json::error_handler_t::replace);
  } catch (const std::exception& e) {
    return Error{ErrorCode::kInternal, std::string("internal error in ") + std::string(route.path) + ": " + e.what()};
  }
}

Result<Json> readHealth(const std::string& run_dir, std::int64_t now_ms) {
  const std::string path = run_dir + "/components.json";
  std::ifstream in(path);
  if (!in) {
    return Error{ErrorCode::kUnavailable, "cannot read " + path + " (is the keeper running? start provisr serve)"};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto parsed = parseJsonBody(ss.str());
  if (!parsed || !parsed->is_object()) return Error{ErrorCode::kUnavailable, path + " is not a JSON object"};
  Json components = Json::object();
  bool ok = true;
  for (auto it = parsed->begin(); it != parsed->end(); ++it) {
    const Json& c = it.value();
    if (!c.is_object()) continue;
    Json out = Json::object();
    out["pid"] = c.value("pid", Json(nullptr));
    out["restarts"] = c.value("restarts", 0);
    out["state"] = c.value("state", std::string("unknown"));
    if (c.contains("started_at_ms") && c["started_at_ms"].is_number_integer()) {
      const auto at = c["started_at_ms"].get<std::int64_t>();
      out["started_at"] = rfc3339Ms(at);
      out["up_seconds"] = static_cast<double>(now_ms - at) / 1000.0;
    } else {
      out["started_at"] = nullptr;
      out["up_seconds"] = nullptr;
    }
    if (out["state"] != "running") ok = false;
    components[it.key()] = std::move(out);
  }
  return Json{{"ok", ok}, {"components", components}};
}

}  // namespace provisr::gateway

// Pure translation between call arguments, master messages and the HTTP API's JSON shapes.
#include "gateway/translate.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>

#include "common/config/loader.hpp"
#include "gateway/json_text.hpp"

namespace provisr::gateway {
namespace {

Error invalid(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

bool safeChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '_' || c == '-';
}

// A request value as JSON text for a message. Query values are raw bytes: invalid UTF-8 is shown
// replaced rather than thrown on.
std::string shown(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

}  // namespace

std::optional<std::string> argText(const Args& args, std::string_view key) {
  if (!args.is_object()) return std::nullopt;
  auto it = args.find(std::string(key));
  if (it == args.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return std::string(it->get<bool>() ? "true" : "false");
  return shown(*it);
}

Result<bool> argFlag(const Args& args, std::string_view key) {
  if (!args.is_object()) return false;
  auto it = args.find(std::string(key));
  if (it == args.end() || it->is_null()) return false;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<std::int64_t>() != 0;
  if (it->is_string()) {
    const auto v = it->get<std::string>();
    if (v.empty() || v == "1" || v == "true" || v == "yes") return true;
    if (v == "0" || v == "false" || v == "no") return false;
  }
  return invalid(std::string(key) + " must be true or false (got " + shown(*it) + ")");
}

Result<std::optional<std::uint64_t>> argUint(const Args& args, std::string_view key) {
  if (!args.is_object()) return std::optional<std::uint64_t>();
  auto it = args.find(std::string(key));
  if (it == args.end() || it->is_null()) return std::optional<std::uint64_t>();
  if (it->is_number_unsigned()) return std::optional<std::uint64_t>(it->get<std::uint64_t>());
  if (it->is_number_integer() && it->get<std::int64_t>() >= 0) {
    return std::optional<std::uint64_t>(static_cast<std::uint64_t>(it->get<std::int64_t>()));
  }
  if (it->is_string()) {
    const auto v = it->get<std::string>();
    if (!v.empty() && v.size() <= 19 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::optional<std::uint64_t>(std::stoull(v));
    }
  }
  return invalid(std::string(key) + " must be a non-negative integer (got " + shown(*it) + ")");
}

Result<std::optional<std::uint64_t>> argWaitMs(const Args& args) {
  auto ms = argUint(args, "wait_ms");
  if (!ms) return ms.error();
  if (*ms) return *ms;
  auto text = argText(args, "wait");
  if (!text || text->empty()) return std::optional<std::uint64_t>();
  auto d = config::parseDuration(*text);
  if (!d) return invalid("wait: " + d.error().message + " (use a duration such as 5s or 500ms)");
  const auto count = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  return std::optional<std::uint64_t>(static_cast<std::uint64_t>(std::max<std::int64_t>(0, count)));
}

bool isSafeName(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  if (name.find("..") != std::string_view::npos) return false;
  return std::all_of(name.begin(), name.end(), safeChar);
}

bool isSafePattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > 128) return false;
  if (pattern.find("..") != std::string_view::npos) return false;
  return std::all_of(pattern.begin(), pattern.end(), [](char c) { return safeChar(c) || c == '*' || c == '?'; });
}

Result<std::optional<proto::Selector>> argSelector(const Args& args) {
  static constexpr std::array<std::pair<std::string_view, proto::SelectorKind>, 3> kKinds = {{
      {"name", proto::SelectorKind::kName},
      {"base", proto::SelectorKind::kBase},
      {"wildcard", proto::SelectorKind::kWildcard},
  }};
  std::optional<proto::Selector> found;
  for (const auto& [key, kind] : kKinds) {
    auto v = argText(args, key);
    if (!v) continue;
    if (found) return invalid("give exactly one of name, base or wildcard");
    const bool ok = kind == proto::SelectorKind::kWildcard ? isSafePattern(*v) : isSafeName(*v);
    if (!ok) {
      return invalid("invalid " + std::string(key) + " '" + v->substr(0, 80) +
                     "': use letters, digits, '.', '_', '-'" +
                     (kind == proto::SelectorKind::kWildcard ? ", '*', '?'" : "") + " and no '..'");
    }
    found = proto::Selector{kind, *v};
  }
  return found;
}

Result<std::string> argName(const Args& args, std::string_view key) {
  auto v = argText(args, key);
  if (!v || v->empty()) return invalid(std::string(key) + " is required");
  if (!isSafeName(*v)) {
    return invalid("invalid " + std::string(key) + " '" + v->substr(0, 80) +
                   "': use letters, digits, '.', '_', '-' and no '..'");
  }
  return *v;
}

Result<Json> parseJsonBody(std::string_view body) {
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& e) {
    // Locate the byte the parser stopped at as line:column (1-based).
    std::size_t line = 1, column = 1;
    const std::size_t stop = std::min<std::size_t>(e.byte > 0 ? e.byte - 1 : 0, body.size());
    for (std::size_t i = 0; i < stop; ++i) {
      if (body[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string what = e.what();
    if (auto pos = what.find("parse error"); pos != std::string::npos) what = what.substr(pos);
    return invalid("request body is not valid JSON at line " + std::to_string(line) + ", column " +
                   std::to_string(column) + ": " + what);
  } catch (const Json::exception& e) {
    // Valid syntax the library cannot hold, e.g. a number beyond a double (out_of_range.406).
    return invalid(std::string("request body cannot be read: ") + e.what());
  }
}

// ---- rendering -------------------------------------------------------------------------------

namespace {
// rfc3339Ms into a caller's buffer; returns the length (24 for years 0000-9999).
std::size_t formatRfc3339Ms(std::int64_t ms, char (&buf)[64]) {
  std::int64_t secs = ms / 1000;
  std::int64_t rem = ms % 1000;
  if (rem < 0) {
    rem += 1000;
    secs -= 1;
  }
  const auto t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(rem));
  return n < 0 ? 0 : std::min<std::size_t>(static_cast<std::size_t>(n), sizeof buf - 1);
}
}  // namespace

std::string rfc3339Ms(std::int64_t ms) {
  char buf[64];
  return std::string(buf, formatRfc3339Ms(ms, buf));
}

Json timeOrNull(const std::optional<std::int64_t>& ms) { return ms ? Json(rfc3339Ms(*ms)) : Json(nullptr); }

namespace {
template <class T>
Json orNull(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}
}  // namespace

Json renderStatus(const proto::InstanceStatus& s) {
  Json j = Json::object();
  j["name"] = s.name;
  j["running"] = s.running;
  j["pid"] = orNull(s.pid);
  j["started_at"] = timeOrNull(s.started_at);
  j["stopped_at"] = timeOrNull(s.stopped_at);
  j["restarts"] = s.restarts;
  j["state"] = std::string(proto::wireName(s.state));
  j["provisioned"] = s.provisioned;
  j["exit_error"] = orNull(s.exit_error);
  j["program"] = s.program;
  j["instance"] = s.instance;
  j["priority"] = s.priority;
  j["groups"] = s.groups;
  j["exit_code"] = orNull(s.exit_code);
  j["exit_signal"] = orNull(s.exit_signal);
  j["uptime_ms"] = s.uptime_ms;
  j["last_start_error"] = orNull(s.last_start_error);
  j["log"] = Json{{"stdout", s.log.stdout_path}, {"stderr", s.log.stderr_path}};
  j["log_dropped_bytes"] = s.log_dropped_bytes;
  j["adopted"] = s.adopted;
  j["rss_bytes"] = orNull(s.rss_bytes);
  j["cpu_seconds"] = orNull(s.cpu_seconds);
  return j;
}

Json renderStatusList(std::vector<proto::InstanceStatus> list) {
  std::sort(list.begin(), list.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Json out = Json::array();
  for (const auto& s : list) out.push_back(renderStatus(s));
  return out;
}

Json renderPlanStep(const proto::PlanStep& step) {
  return Json{{"action", std::string(proto::wireName(step.action))},
              {"program", step.program},
              {"instances", step.instances},
              {"band", step.band},
              {"reason", step.reason}};
}

Json renderAction(const proto::ActionReply& reply) {
  Json plan = Json::array();
  for (const auto& p : reply.plan) plan.push_back(renderPlanStep(p));
  return Json{{"ok", true}, {"instances", renderStatusList(reply.instances)}, {"plan", plan}, {"timed_out", reply.timed_out}};
}

Json renderGroups(const proto::GroupsReply& groups, const std::vector<proto::InstanceStatus>& all) {
  std::map<std::string, std::pair<std::uint32_t, std::uint32_t>> byProgram;  // program → (total, running)
  for (const auto& s : all) {
    auto& [total, running] = byProgram[s.program.empty() ? s.name : s.program];
    ++total;
    if (s.running) ++running;
  }
  auto sorted = groups.groups;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Json out = Json::array();
  for (const auto& g : sorted) {
    Json members = Json::array();
    std::uint32_t total = 0, running = 0;
    for (const auto& m : g.members) {
      auto it = byProgram.find(m);
      const std::uint32_t n = it == byProgram.end() ? 0 : it->second.first;
      members.push_back(Json{{"name", m}, {"instances", n}});
      total += n;
      running += it == byProgram.end() ? 0 : it->second.second;
    }
    const char* state = (total > 0 && running == total) ? "running" : running > 0 ? "degraded" : "stopped";
    out.push_back(Json{{"name", g.name}, {"members", members}, {"state", state}, {"running", running}, {"total", total}});
  }
  return out;
}

Json renderGroupStatus(const proto::GroupStatusReply& reply) {
  Json out = Json::object();
  for (const auto& [member, list] : reply.members) out[member] = renderStatusList(list);
  return out;
}

namespace {
// The Go API's health_check of GET /debug/processes.
const char* debugHealth(const proto::InstanceStatus& s) {
  switch (s.state) {
    case proto::InstanceState::kRunning: return s.pid ? "healthy" : "no_pid";
    case proto::InstanceState::kStarting:
    case proto::InstanceState::kStopping:
    case proto::InstanceState::kBackoff: return "transitioning";
    default: return "not_running";
  }
}
}  // namespace

Json renderDebugProcesses(const std::vector<proto::InstanceStatus>& list) {
  auto sorted = list;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  Json out = Json::array();
  for (const auto& s : sorted) {
    out.push_back(Json{{"status", renderStatus(s)},
                       {"internal_state", std::string(proto::wireName(s.state))},
                       {"health_check", debugHealth(s)}});
  }
  return out;
}

Json renderLogs(const std::string& name, const proto::LogsReply& reply) {
  // One instance: the Go shape. Otherwise (a program, or lines of several instances) tagged.
  bool single = reply.next.size() <= 1 && (reply.next.empty() || reply.next.begin()->first == name);
  for (const auto& l : reply.lines) {
    if (!l.instance.empty() && l.instance != name) single = false;
  }
  Json lines = Json::array();
  for (const auto& l : reply.lines) {
    Json line{{"offset", l.offset}, {"stream", std::string(proto::wireName(l.stream))}, {"text", l.text}};
    if (!single) line["instance"] = l.instance;
    lines.push_back(std::move(line));
  }
  Json next;
  if (single) {
    next = reply.next.empty() ? Json(0) : Json(reply.next.begin()->second);
  } else {
    next = Json::object();
    for (const auto& [inst, off] : reply.next) next[inst] = off;
  }
  return Json{{"lines", lines}, {"next", next}};
}

Json renderReload(const proto::ReloadReply& reply) {
  Json plan = Json::array();
  for (const auto& p : reply.plan) plan.push_back(renderPlanStep(p));
  return Json{{"ok", true},
              {"applied", reply.applied},
              {"plan", plan},
              {"restart_needed", reply.restart_needed},
              {"warnings", reply.warnings}};
}

Json renderStateChanged(const proto::StateChanged& ev) {
  return Json{{"instance", ev.instance},
              {"from", std::string(proto::wireName(ev.from))},
              {"to", std::string(proto::wireName(ev.to))},
              {"at", rfc3339Ms(ev.at)},
              {"status", renderStatus(ev.status)}};
}

Json renderLogLines(const proto::LogLines& ev) {
  Json lines = Json::array();
  for (const auto& l : ev.lines) {
    lines.push_back(Json{{"offset", l.offset}, {"stream", std::string(proto::wireName(l.stream))}, {"text", l.text}});
  }
  return Json{{"instance", ev.key}, {"lines", lines}, {"dropped", ev.dropped}};
}

// ---- rendering as text -------------------------------------------------------------------------
// Keys are written in the order nlohmann's std::map-backed objects dump them: sorted bytewise.

namespace {

using json::appendBool;
using json::appendInt;
using json::appendKey;
using json::appendString;
using json::appendUint;

void appendTime(std::string& out, const std::optional<std::int64_t>& ms) {
  if (!ms) {
    json::appendNull(out);
    return;
  }
  char buf[64];
  const std::size_t n = formatRfc3339Ms(*ms, buf);
  out.push_back('"');
  out.append(buf, n);  // digits, '-', ':', '.', 'T', 'Z': nothing to escape
  out.push_back('"');
}

void appendOptInt(std::string& out, const std::optional<std::int32_t>& v) {
  if (v) {
    appendInt(out, *v);
  } else {
    json::appendNull(out);
  }
}

void appendOptString(std::string& out, const std::optional<std::string>& v) {
  if (v) {
    appendString(out, *v);
  } else {
    json::appendNull(out);
  }
}

// A wire name (an enum's fixed lower-case name): nothing to escape.
template <class E>
void appendWireName(std::string& out, E e) {
  out.push_back('"');
  out.append(proto::wireName(e));
  out.push_back('"');
}

void appendStringArray(std::string& out, const std::vector<std::string>& v) {
  out.push_back('[');
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(',');
    appendString(out, v[i]);
  }
  out.push_back(']');
}

std::vector<const proto::InstanceStatus*> sortedByName(const std::vector<proto::InstanceStatus>& list) {
  std::vector<const proto::InstanceStatus*> sorted;
  sorted.reserve(list.size());
  for (const auto& s : list) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  return sorted;
}

// What one status takes as text, to reserve the whole list at once (paths and names vary).
constexpr std::size_t kStatusTextGuess = 640;

void appendStatusList(std::string& out, const std::vector<proto::InstanceStatus>& list) {
  out.push_back('[');
  bool first = true;
  for (const auto* s : sortedByName(list)) {
    if (!first) out.push_back(',');
    first = false;
    appendStatus(out, *s);
  }
  out.push_back(']');
}

void appendPlanStep(std::string& out, const proto::PlanStep& step) {
  out.push_back('{');
  appendKey(out, "action");
  appendWireName(out, step.action);
  out.push_back(',');
  appendKey(out, "band");
  appendInt(out, step.band);
  out.push_back(',');
  appendKey(out, "instances");
  appendStringArray(out, step.instances);
  out.push_back(',');
  appendKey(out, "program");
  appendString(out, step.program);
  out.push_back(',');
  appendKey(out, "reason");
  appendString(out, step.reason);
  out.push_back('}');
}

}  // namespace

void appendStatus(std::string& out, const proto::InstanceStatus& s) {
  out.push_back('{');
  appendKey(out, "adopted");
  appendBool(out, s.adopted);
  out.append(",\"cpu_seconds\":");
  if (s.cpu_seconds) {
    json::appendDouble(out, *s.cpu_seconds);
  } else {
    json::appendNull(out);
  }
  out.append(",\"exit_code\":");
  appendOptInt(out, s.exit_code);
  out.append(",\"exit_error\":");
  appendOptString(out, s.exit_error);
  out.append(",\"exit_signal\":");
  appendOptInt(out, s.exit_signal);
  out.append(",\"groups\":");
  appendStringArray(out, s.groups);
  out.append(",\"instance\":");
  appendUint(out, s.instance);
  out.append(",\"last_start_error\":");
  appendOptString(out, s.last_start_error);
  out.append(",\"log\":{\"stderr\":");
  appendString(out, s.log.stderr_path);
  out.append(",\"stdout\":");
  appendString(out, s.log.stdout_path);
  out.append("},\"log_dropped_bytes\":");
  appendUint(out, s.log_dropped_bytes);
  out.append(",\"name\":");
  appendString(out, s.name);
  out.append(",\"pid\":");
  appendOptInt(out, s.pid);
  out.append(",\"priority\":");
  appendInt(out, s.priority);
  out.append(",\"program\":");
  appendString(out, s.program);
  out.append(",\"provisioned\":");
  appendBool(out, s.provisioned);
  out.append(",\"restarts\":");
  appendUint(out, s.restarts);
  out.append(",\"rss_bytes\":");
  if (s.rss_bytes) {
    appendUint(out, *s.rss_bytes);
  } else {
    json::appendNull(out);
  }
  out.append(",\"running\":");
  appendBool(out, s.running);
  out.append(",\"started_at\":");
  appendTime(out, s.started_at);
  out.append(",\"state\":");
  appendWireName(out, s.state);
  out.append(",\"stopped_at\":");
  appendTime(out, s.stopped_at);
  out.append(",\"uptime_ms\":");
  appendUint(out, s.uptime_ms);
  out.push_back('}');
}

std::string renderStatusText(const proto::InstanceStatus& s) {
  std::string out;
  out.reserve(kStatusTextGuess);
  appendStatus(out, s);
  return out;
}

std::string renderStatusListText(const std::vector<proto::InstanceStatus>& list) {
  std::string out;
  out.reserve(2 + list.size() * kStatusTextGuess);
  appendStatusList(out, list);
  return out;
}

std::string renderActionText(const proto::ActionReply& reply) {
  std::string out;
  out.reserve(64 + reply.instances.size() * kStatusTextGuess + reply.plan.size() * 128);
  out.append("{\"instances\":");
  appendStatusList(out, reply.instances);
  out.append(",\"ok\":true,\"plan\":[");
  for (std::size_t i = 0; i < reply.plan.size(); ++i) {
    if (i > 0) out.push_back(',');
    appendPlanStep(out, reply.plan[i]);
  }
  out.append("],\"timed_out\":");
  appendBool(out, reply.timed_out);
  out.push_back('}');
  return out;
}

std::string renderGroupStatusText(const proto::GroupStatusReply& reply) {
  std::size_t n = 0;
  for (const auto& [member, list] : reply.members) n += list.size();
  std::string out;
  out.reserve(2 + n * kStatusTextGuess);
  out.push_back('{');
  bool first = true;
  for (const auto& [member, list] : reply.members) {  // a std::map: sorted as nlohmann's keys
    if (!first) out.push_back(',');
    first = false;
    appendString(out, member);
    out.push_back(':');
    appendStatusList(out, list);
  }
  out.push_back('}');
  return out;
}

std::string renderDebugProcessesText(const std::vector<proto::InstanceStatus>& list) {
  std::string out;
  out.reserve(2 + list.size() * (kStatusTextGuess + 80));
  out.push_back('[');
  bool first = true;
  for (const auto* s : sortedByName(list)) {
    if (!first) out.push_back(',');
    first = false;
    out.append("{\"health_check\":\"");
    out.append(debugHealth(*s));
    out.append("\",\"internal_state\":");
    appendWireName(out, s->state);
    out.append(",\"status\":");
    appendStatus(out, *s);
    out.push_back('}');
  }
  out.push_back(']');
  return out;
}

// ---- errors ----------------------------------------------------------------------------------

int httpStatusFor(ErrorCode code, std::string_view op) {
  switch (code) {
    case ErrorCode::kOk: return 200;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kUnknownMessage:
    case ErrorCode::kMalformed:
    case ErrorCode::kConfigInvalid: return 400;
    case ErrorCode::kNotFound: {
      constexpr std::array<std::string_view, 5> kGoBadRequest = {"status", "start", "update", "unregister", "logs"};
      return std::find(kGoBadRequest.begin(), kGoBadRequest.end(), op) != kGoBadRequest.end() ? 400 : 404;
    }
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kUnavailable:
    case ErrorCode::kStaleEpoch: return 503;
    case ErrorCode::kForbidden: return 403;
    case ErrorCode::kUnauthorized: return 401;
    case ErrorCode::kTimeout: return 504;
    case ErrorCode::kSpawnFailed:
    case ErrorCode::kInternal: return 500;
  }
  return 500;
}

Json errorBody(const Error& e) { return Json{{"error", e.message}, {"code", std::string(errorCodeName(e.code))}}; }

}  // namespace provisr::gateway

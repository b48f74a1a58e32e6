// Verbs that talk to the daemon through the gateway's HTTP API (SPEC §3), with the offline
// fallbacks the Go CLI had for register/unregister.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"
#include "cli/json_indent.hpp"
#include "common/config/loader.hpp"

namespace provisr::cli {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::optional<std::string> tokenFor(const ClientOptions& opts) { return resolveToken(opts.token, opts.config); }

ApiClient clientFor(const ClientOptions& opts) {
  return ApiClient(resolveApiUrl(opts.api_url, opts.config), tokenFor(opts));
}

int unreachable(const ApiClient& client, const HttpResponse& r) {
  std::cerr << "provisr: daemon not reachable at " << client.baseUrl() << " (" << r.error
            << ")\nhint: start it with `provisr serve CONFIG`, or point --api-url / PROVISR_API_URL at it\n";
  return kExitUnreachable;
}

// An error answer: prints its message and maps it to an exit code. The gateway adds a `code`
// (a shared error-code name) beside the Go-compatible `error` field.
int failed(const HttpResponse& r) {
  std::string message = r.body;
  std::string code;
  auto body = json::parse(r.body, nullptr, false);
  if (body.is_object()) {
    if (body.contains("error") && body["error"].is_string()) message = body["error"].get<std::string>();
    if (body.contains("code") && body["code"].is_string()) code = body["code"].get<std::string>();
  }
  while (!message.empty() && message.back() == '\n') message.pop_back();
  std::cerr << "provisr: " << message << " (HTTP " << r.status << ")\n";
  if (code == "not_found" || r.status == 404) return kExitNotFound;
  if (code == "unavailable" || r.status == 503) return kExitUnreachable;
  return kExitFailed;
}

// Sends one request; on success hands the parsed body to `onOk`.
template <class F>
int call(const ApiClient& client, const char* method, const std::string& path, const std::string& body, F&& onOk) {
  HttpResponse r = std::string(method) == "GET" ? client.get(path) : client.post(path, body);
  if (r.status == 0) return unreachable(client, r);
  if (r.status < 200 || r.status >= 300) return failed(r);
  auto parsed = json::parse(r.body, nullptr, false);
  if (parsed.is_discarded()) {
    std::cerr << "provisr: the daemon answered something that is not JSON: " << r.body.substr(0, 200) << "\n";
    return kExitFailed;
  }
  return onOk(parsed);
}

// Sends one request and prints its reply as JSON (SPEC §3: 2-space indent, keys sorted): the
// gateway's compact reply re-indented as it is; only a reply indentJson cannot copy is parsed
// and dumped.
int callPrintJson(const ApiClient& client, const char* method, const std::string& path, const std::string& body) {
  HttpResponse r = std::string(method) == "GET" ? client.get(path) : client.post(path, body);
  if (r.status == 0) return unreachable(client, r);
  if (r.status < 200 || r.status >= 300) return failed(r);
  if (auto text = indentJson(r.body)) {
    std::cout << *text << "\n";
    return kExitOk;
  }
  auto parsed = json::parse(r.body, nullptr, false);
  if (parsed.is_discarded()) {
    std::cerr << "provisr: the daemon answered something that is not JSON: " << r.body.substr(0, 200) << "\n";
    return kExitFailed;
  }
  std::cout << parsed.dump(2) << "\n";
  return kExitOk;
}

std::string cell(const json& row, const char* key) {
  if (!row.contains(key) || row[key].is_null()) return "-";
  const auto& v = row[key];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string formatUptime(const json& row) {
  if (!row.contains("uptime_ms") || !row["uptime_ms"].is_number()) return "-";
  auto ms = row["uptime_ms"].get<long long>();
  if (ms <= 0) return "-";
  long long s = ms / 1000;
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lld.%llds", s, ms % 1000 / 100);
  return buf;
}

void printStatusTable(const json& body) {
  json rows = body.is_array() ? body : json::array({body});
  std::printf("%-24s %-10s %-8s %-10s %-8s %s\n", "NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST ERROR");
  for (const auto& row : rows) {
    std::string err = cell(row, "last_start_error");
    if (err == "-") err = cell(row, "exit_error");
    std::printf("%-24s %-10s %-8s %-10s %-8s %s\n", cell(row, "name").c_str(), cell(row, "state").c_str(),
                cell(row, "pid").c_str(), formatUptime(row).c_str(), cell(row, "restarts").c_str(), err.c_str());
  }
}

void printJsonOrTable(const ClientOptions& opts, const json& body) {
  if (opts.json()) std::cout << body.dump(2) << "\n";
  else printStatusTable(body);
}

// One line on the supervisor's own processes from GET /health (which works while the master is
// down), for `status`: nullopt when every component runs and none was ever restarted, or when the
// gateway does not answer it. `all` lists healthy components too.
std::optional<std::string> componentSummary(const ApiClient& client, bool all) {
  HttpResponse r = client.get("/health");
  if (r.status != 200 && r.status != 503) return std::nullopt;
  auto body = json::parse(r.body, nullptr, false);
  if (!body.is_object() || !body.contains("components") || !body["components"].is_object()) return std::nullopt;
  const json& comps = body["components"];
  bool unusual = all;
  std::string line = "components:";
  auto describe = [&](const std::string& name, const json& c) {
    const std::string state = c.value("state", std::string("unknown"));
    const int restarts = c.contains("restarts") && c["restarts"].is_number_integer() ? c["restarts"].get<int>() : 0;
    if (state != "running" || restarts > 0) unusual = true;
    line += " " + name + " " + state;
    if (restarts > 0) line += " (" + std::to_string(restarts) + (restarts == 1 ? " restart)" : " restarts)");
    line += ",";
  };
  for (const char* name : {"keeper", "spawner", "master", "gateway"})
    if (comps.contains(name) && comps[name].is_object()) describe(name, comps[name]);
  for (const auto& [name, c] : comps.items())
    if (name != "keeper" && name != "spawner" && name != "master" && name != "gateway" && c.is_object()) describe(name, c);
  if (!unusual || line.back() != ',') return std::nullopt;
  line.pop_back();
  return line;
}

// `--name X`: a glob when it has * or ?, else an instance or program name.
std::string selectorQuery(const std::optional<std::string>& name) {
  if (!name || *name == "*") return "wildcard=" + urlEncode("*");
  if (name->find_first_of("*?") != std::string::npos) return "wildcard=" + urlEncode(*name);
  return "name=" + urlEncode(*name);
}

bool validWait(const std::optional<std::string>& wait) {
  if (!wait) return true;
  if (config::parseDuration(*wait).ok()) return true;
  std::cerr << "provisr: --wait: not a duration: '" << *wait << "' (use 500ms, 5s, 1m30s)\n";
  return false;
}

// The programs directory register/unregister write to when no daemon answers.
std::optional<fs::path> localProgramsDir(const ClientOptions& opts, std::optional<config::Config>* cfg_out) {
  std::optional<std::string> path = opts.config;
  if (!path && ::access("config.toml", R_OK) == 0) path = "config.toml";
  if (!path) return fs::path("programs");
  config::LoadOptions lo;
  lo.check_accounts = false;
  auto loaded = config::loadConfig(*path, lo);
  if (!loaded.ok()) {
    for (const auto& d : loaded.errors()) std::cerr << d.str() << "\n";
    std::cerr << "provisr: " << *path << " is invalid; fix it before registering offline\n";
    return std::nullopt;
  }
  fs::path dir = loaded.config->programs_directory;
  if (cfg_out) *cfg_out = std::move(loaded.config);
  return dir;
}

}  // namespace

bool daemonAnswers(const ClientOptions& opts) {
  auto r = clientFor(opts).get("/status");
  return r.status != 0 && r.status != 404;
}

int runStatus(const ClientOptions& opts, const std::optional<std::string>& name,
              const std::optional<std::string>& group, bool watch) {
  ApiClient client = clientFor(opts);
  std::string path = group ? "/group/status?group=" + urlEncode(*group)
                           : (name ? "/status?name=" + urlEncode(*name) : "/status?wildcard=*");
  for (;;) {
    HttpResponse r = client.get(path);
    if (r.status == 0) {
      int rc = unreachable(client, r);
      if (opts.config && !group) {
        std::cerr << "what " << *opts.config << " would load:\n";
        if (int listed = printConfigListing(opts, name); listed != kExitOk) return listed;
      }
      return rc;
    }
    if (r.status != 200) {
      int rc = failed(r);
      // The master is down or restarting: say which component is, and how often it restarted.
      if (r.status == 503)
        if (auto summary = componentSummary(client, true)) std::cerr << *summary << "\n";
      return rc;
    }
    // JSON output is the reply re-indented, without a parse (the common case off a terminal).
    std::optional<std::string> text = opts.json() ? indentJson(r.body) : std::nullopt;
    if (text) {
      std::cout << *text << "\n";
    } else {
      auto body = json::parse(r.body, nullptr, false);
      if (body.is_discarded()) {
        std::cerr << "provisr: the daemon answered something that is not JSON: " << r.body.substr(0, 200) << "\n";
        return kExitFailed;
      }
      if (watch && !opts.json()) std::printf("\033[H\033[2J");
      if (group && !opts.json()) {
        json all = json::array();
        for (auto& [member, rows] : body.items())
          for (auto& row : rows) all.push_back(row);
        printStatusTable(all);
      } else {
        printJsonOrTable(opts, body);
      }
    }
    if (!opts.json())
      if (auto summary = componentSummary(client, false)) std::printf("\n%s\n", summary->c_str());
    if (!watch) return kExitOk;
    std::fflush(stdout);
    std::this_thread::sleep_for(std::chrono::seconds(2));  // --watch refresh interval
  }
}

int runAction(const ClientOptions& opts, const std::string& verb, const ActionOptions& action) {
  if (!validWait(action.wait)) return kExitUsage;
  ApiClient client = clientFor(opts);
  std::string query = selectorQuery(action.name);
  if (action.wait) query += "&wait=" + urlEncode(*action.wait);
  if (action.dry_run) query += "&dry_run=1";
  if (action.dry_run || opts.json()) return callPrintJson(client, "POST", "/" + verb + "?" + query, "");
  int rc = call(client, "POST", "/" + verb + "?" + query, "", [&](const json&) { return kExitOk; });
  if (rc != kExitOk) return rc;
  // Show where the action left the instances it touched.
  std::string status_path = "/status?" + (action.name ? selectorQuery(action.name) : std::string("wildcard=*"));
  return call(client, "GET", status_path, "", [&](const json& body) {
    printStatusTable(body);
    return kExitOk;
  });
}

int runGroupAction(const ClientOptions& opts, const std::string& verb, const std::string& group,
                   const std::optional<std::string>& wait) {
  if (!validWait(wait)) return kExitUsage;
  ApiClient client = clientFor(opts);
  if (verb == "status") {
    return callPrintJson(client, "GET", "/group/status?group=" + urlEncode(group), "");
  }
  std::string path = "/group/" + verb + "?group=" + urlEncode(group);
  if (wait) path += "&wait=" + urlEncode(*wait);
  return call(client, "POST", path, "", [&](const json&) {
    std::cout << (verb == "start" ? "Started group: " : "Stopped group: ") << group << "\n";
    return kExitOk;
  });
}

int runLogs(const ClientOptions& opts, const std::string& name, int lines, bool follow, bool stderr_only) {
  ApiClient client = clientFor(opts);
  auto wanted = [&](const json& line) {
    if (!stderr_only) return true;
    return line.contains("stream") && line["stream"] == "stderr";
  };
  auto printLine = [&](const json& line) {
    if (!wanted(line)) return;
    if (opts.json()) {
      std::cout << line.dump() << "\n";
      return;
    }
    if (line.contains("instance") && line["instance"].is_string() && line["instance"] != name)
      std::cout << line["instance"].get<std::string>() << " | ";
    std::cout << (line.contains("text") && line["text"].is_string() ? line["text"].get<std::string>() : "") << "\n";
  };
  int rc = call(client, "GET", "/processes/" + urlEncode(name) + "/logs?limit=" + std::to_string(lines), "",
                [&](const json& body) {
                  if (body.contains("lines") && body["lines"].is_array())
                    for (const auto& l : body["lines"]) printLine(l);
                  std::cout.flush();
                  return kExitOk;
                });
  if (rc != kExitOk || !follow) return rc;
  // Server-Sent Events: `data: <json>` lines, one event per blank-line-terminated block.
  std::string pending;
  HttpResponse r = client.stream("/processes/" + urlEncode(name) + "/logs?follow=1", [&](std::string_view chunk) {
    pending.append(chunk);
    for (auto nl = pending.find('\n'); nl != std::string::npos; nl = pending.find('\n')) {
      std::string l = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (l.rfind("data: ", 0) != 0) continue;
      auto ev = json::parse(l.substr(6), nullptr, false);
      if (ev.is_discarded()) continue;
      if (ev.contains("lines") && ev["lines"].is_array()) {
        for (const auto& line : ev["lines"]) printLine(line);
      } else {
        printLine(ev);
      }
      std::cout.flush();
    }
    return true;
  });
  if (r.status == 0) return unreachable(client, r);
  if (r.status != 200) return failed(r);
  return kExitOk;
}

int runRegister(const ClientOptions& opts, const RegisterOptions& reg) {
  json spec{{"name", reg.name}, {"command", reg.command}, {"auto_restart", reg.auto_start}};
  if (reg.work_dir) spec["work_dir"] = fs::absolute(*reg.work_dir).string();
  if (reg.log_dir) spec["log"] = json{{"dir", fs::absolute(*reg.log_dir).string()}};
  if (daemonAnswers(opts)) {
    return call(clientFor(opts), "POST", "/register", spec.dump(), [&](const json&) {
      std::cout << "Registered program: " << reg.name << "\n";
      return kExitOk;
    });
  }
  std::optional<config::Config> cfg;
  auto dir = localProgramsDir(opts, &cfg);
  if (!dir) return kExitFailed;
  if (!config::isValidName(reg.name)) {
    std::cerr << "provisr: --name: '" << reg.name << "' is not a valid program name ([A-Za-z0-9._-]{1,64}, no '..')\n";
    return kExitFailed;
  }
  fs::path file = *dir / (reg.name + ".json");
  std::error_code ec;
  if (fs::exists(file, ec)) {
    std::cerr << "provisr: " << file.string() << " already exists; unregister it first\n";
    return kExitFailed;
  }
  fs::create_directories(*dir, ec);
  std::ofstream(file) << json{{"type", "process"}, {"origin", "api"}, {"spec", spec}}.dump(2) << "\n";
  std::cout << "Registered program " << reg.name << " in " << file.string()
            << " (no daemon answered: it starts with the next `provisr serve`)\n";
  return kExitOk;
}

int runRegisterFile(const ClientOptions& opts, const std::string& file) {
  std::ifstream in(file);
  if (!in) {
    std::cerr << "provisr: cannot read " << file << "\n";
    return kExitFailed;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto spec = json::parse(text, nullptr, false);
  if (spec.is_discarded() || !spec.is_object() || !spec.contains("name") || !spec["name"].is_string()) {
    std::cerr << "provisr: " << file << ": expected a JSON program spec with a string `name`\n";
    return kExitFailed;
  }
  if (daemonAnswers(opts)) {
    return call(clientFor(opts), "POST", "/register", spec.dump(), [&](const json&) {
      std::cout << "Registered program: " << spec["name"].get<std::string>() << "\n";
      return kExitOk;
    });
  }
  auto dir = localProgramsDir(opts, nullptr);
  if (!dir) return kExitFailed;
  std::string name = spec["name"].get<std::string>();
  if (!config::isValidName(name)) {
    std::cerr << "provisr: " << file << ": `name` '" << name << "' is not a valid program name\n";
    return kExitFailed;
  }
  fs::path out = *dir / (name + ".json");
  std::error_code ec;
  if (fs::exists(out, ec)) {
    std::cerr << "provisr: " << out.string() << " already exists; unregister it first\n";
    return kExitFailed;
  }
  fs::create_directories(*dir, ec);
  std::ofstream(out) << json{{"type", "process"}, {"origin", "api"}, {"spec", spec}}.dump(2) << "\n";
  std::cout << "Registered program " << name << " in " << out.string()
            << " (no daemon answered: it starts with the next `provisr serve`)\n";
  return kExitOk;
}

int runUnregister(const ClientOptions& opts, const std::string& name) {
  if (daemonAnswers(opts)) {
    return call(clientFor(opts), "POST", "/unregister?name=" + urlEncode(name), "", [&](const json&) {
      std::cout << "Unregistered program: " << name << "\n";
      return kExitOk;
    });
  }
  std::optional<config::Config> cfg;
  auto dir = localProgramsDir(opts, &cfg);
  if (!dir) return kExitFailed;
  if (cfg) {
    if (const auto* p = cfg->findProgram(name); p && p->provisioned()) {
      std::cerr << "provisr: " << name << " is declared in " << cfg->file
                << " ([[processes]]); remove it there instead\n";
      return kExitFailed;
    }
  }
  for (const char* ext : {".json", ".toml", ".yaml", ".yml"}) {
    fs::path file = *dir / (name + ext);
    std::error_code ec;
    if (fs::remove(file, ec)) {
      std::cout << "Unregistered program " << name << ": removed " << file.string() << "\n";
      return kExitOk;
    }
  }
  std::cerr << "provisr: no program file for '" << name << "' in " << dir->string() << "\n";
  return kExitNotFound;
}

int runScale(const ClientOptions& opts, const std::string& name, int instances) {
  if (instances < 0) {
    std::cerr << "provisr: scale: the instance count must be 0 or more\n";
    return kExitUsage;
  }
  const std::string path = "/scale?name=" + urlEncode(name) + "&instances=" + std::to_string(instances);
  if (opts.json()) return callPrintJson(clientFor(opts), "POST", path, "");
  return call(clientFor(opts), "POST", path, "", [&](const json&) {
    std::cout << "Scaled " << name << " to " << instances << " instances\n";
    return kExitOk;
  });
}

int runReload(const ClientOptions& opts, bool dry_run) {
  return callPrintJson(clientFor(opts), "POST", dry_run ? "/reload?dry_run=1" : "/reload", "");
}

int runSimplePost(const ClientOptions& opts, const std::string& route, const std::string& done_message) {
  return call(clientFor(opts), "POST", route, "", [&](const json&) {
    std::cout << done_message << "\n";
    return kExitOk;
  });
}

int runCompleteNames(const ClientOptions& opts) {
  ApiClient client = clientFor(opts);
  auto r = client.get("/status?wildcard=*");
  if (r.status == 200) {
    auto body = json::parse(r.body, nullptr, false);
    if (body.is_array())
      for (const auto& row : body)
        if (row.contains("name") && row["name"].is_string()) std::cout << row["name"].get<std::string>() << "\n";
  }
  auto g = client.get("/groups");
  if (g.status == 200) {
    auto body = json::parse(g.body, nullptr, false);
    if (body.is_array())
      for (const auto& row : body)
        if (row.contains("name") && row["name"].is_string()) std::cout << row["name"].get<std::string>() << "\n";
  }
  return kExitOk;
}

}  // namespace provisr::cli

// Verbs that talk to the daemon through the gateway's HTTP API.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/api_client.hpp"
#include "cli/cli.hpp"

namespace provisr::cli {

int printConfigListing(const ClientOptions& opts, const std::optional<std::string>& name);

namespace {

using nlohmann::json;

std::optional<std::string> tokenFor(const ClientOptions& opts) {
  if (opts.token) return opts.token;
  if (const char* t = std::getenv("PROVISR_TOKEN"); t && *t) return std::string(t);
  return std::nullopt;
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
  std::cerr << "provisr: " << message << " (HTTP " << r.status << ")\n";
  if (code == "not_found" || r.status == 404) return kExitNotFound;
  if (code == "unavailable" || r.status == 503) return kExitUnreachable;
  return kExitFailed;
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

}  // namespace

int runStatus(const ClientOptions& opts, const std::optional<std::string>& name) {
  ApiClient client(resolveApiUrl(opts.api_url, opts.config), tokenFor(opts));
  HttpResponse r = client.get(name ? "/status?name=" + urlEncode(*name) : "/status?wildcard=*");
  if (r.status == 0) {
    int rc = unreachable(client, r);
    if (opts.config) {
      std::cerr << "what " << *opts.config << " would load:\n";
      if (int listed = printConfigListing(opts, name); listed != kExitOk) return listed;
    }
    return rc;
  }
  if (r.status != 200) return failed(r);
  auto body = json::parse(r.body, nullptr, false);
  if (body.is_discarded()) {
    std::cerr << "provisr: the daemon answered something that is not JSON: " << r.body.substr(0, 200) << "\n";
    return kExitFailed;
  }
  if (opts.json()) {
    std::cout << body.dump(2) << "\n";
    return kExitOk;
  }
  json rows = body.is_array() ? body : json::array({body});
  std::printf("%-24s %-10s %-8s %-10s %s\n", "NAME", "STATE", "PID", "UPTIME", "RESTARTS");
  for (const auto& row : rows) {
    std::printf("%-24s %-10s %-8s %-10s %s\n", cell(row, "name").c_str(), cell(row, "state").c_str(),
                cell(row, "pid").c_str(), formatUptime(row).c_str(), cell(row, "restarts").c_str());
  }
  return kExitOk;
}

}  // namespace provisr::cli

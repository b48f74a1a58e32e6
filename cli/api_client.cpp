// The CLI's HTTP client of the gateway (cpp-httplib), and the daemon URL resolution of SPEC §3.
#include "cli/api_client.hpp"

#include <httplib.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>

#include "common/config/loader.hpp"

namespace provisr::cli {

namespace {

constexpr const char* kDefaultUrl = "http://127.0.0.1:8080/api";

struct SplitUrl {
  std::string scheme_host_port;  // "http://127.0.0.1:8080"
  std::string path;              // "/api" (no trailing slash)
};

SplitUrl splitUrl(const std::string& url) {
  SplitUrl out;
  auto scheme_end = url.find("://");
  auto host_start = scheme_end == std::string::npos ? 0 : scheme_end + 3;
  auto path_start = url.find('/', host_start);
  if (path_start == std::string::npos) {
    out.scheme_host_port = url;
  } else {
    out.scheme_host_port = url.substr(0, path_start);
    out.path = url.substr(path_start);
  }
  if (scheme_end == std::string::npos) out.scheme_host_port = "http://" + out.scheme_host_port;
  while (!out.path.empty() && out.path.back() == '/') out.path.pop_back();
  return out;
}

// `[server.tls] cert_file` of the config resolveApiUrl read (the CLI runs one verb per process).
std::optional<std::string>& configCaFile() {
  static std::optional<std::string> ca;
  return ca;
}

// An https client verifies the daemon's certificate and host name (httplib checks the
// subjectAltName against the host of the URL).
void configure(httplib::Client& client, const std::string& scheme_host_port, const std::optional<std::string>& ca) {
  if (scheme_host_port.rfind("https://", 0) != 0) return;
  client.enable_server_certificate_verification(true);
  if (ca) client.set_ca_cert_path(ca->c_str());
}

}  // namespace

std::optional<std::string> resolveCaFile() {
  if (const char* env = std::getenv("PROVISR_CA_FILE"); env && *env) return std::string(env);
  return configCaFile();
}

std::string apiUrlFromListen(const std::string& listen, const std::string& base_path, bool tls) {
  std::string host = listen;
  std::string port = "8080";
  if (auto colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") host = "127.0.0.1";
  std::string base = base_path;
  if (!base.empty() && base.front() != '/') base.insert(base.begin(), '/');
  while (!base.empty() && base.back() == '/') base.pop_back();
  return (tls ? "https://" : "http://") + host + ":" + port + base;
}

std::string resolveApiUrl(const std::optional<std::string>& api_url,
                          const std::optional<std::string>& config_path) {
  std::optional<std::string> path = config_path;
  if (!path && ::access("config.toml", R_OK) == 0) path = "config.toml";
  std::optional<std::string> fromConfig;
  if (path) {
    config::LoadOptions opts;
    opts.check_accounts = false;
    auto loaded = config::loadConfig(*path, opts);
    if (loaded.ok()) {
      const auto& server = loaded.config->server;
      const bool tls = server.tls.cert_file && server.tls.key_file;
      configCaFile() = tls ? server.tls.cert_file : std::nullopt;
      fromConfig = apiUrlFromListen(server.listen, server.base_path, tls);
    }
  }
  if (api_url && !api_url->empty()) return *api_url;
  if (const char* env = std::getenv("PROVISR_API_URL"); env && *env) return env;
  return fromConfig ? *fromConfig : kDefaultUrl;
}

std::optional<std::string> resolveToken(const std::optional<std::string>& token,
                                        const std::optional<std::string>& config_path) {
  if (token && !token->empty()) return token;
  if (const char* env = std::getenv("PROVISR_TOKEN"); env && *env) return std::string(env);
  std::optional<std::string> path = config_path;
  if (!path && ::access("config.toml", R_OK) == 0) path = "config.toml";
  if (!path) return std::nullopt;
  config::LoadOptions opts;
  opts.check_accounts = false;
  auto loaded = config::loadConfig(*path, opts);
  if (!loaded.ok()) return std::nullopt;
  const auto& auth = loaded.config->server.auth;
  if (auth.token && !auth.token->empty()) return auth.token;
  if (!auth.token_file) return std::nullopt;
  std::ifstream in(*auth.token_file);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;  // not readable by this user: no token
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
  if (line.empty()) return std::nullopt;
  return line;
}

ApiClient::ApiClient(std::string base_url, std::optional<std::string> token)
    : base_url_(std::move(base_url)), token_(std::move(token)), ca_file_(resolveCaFile()) {}

HttpResponse ApiClient::get(const std::string& path_and_query) const {
  return request("GET", path_and_query, "");
}

HttpResponse ApiClient::post(const std::string& path_and_query, const std::string& body) const {
  return request("POST", path_and_query, body);
}

HttpResponse ApiClient::stream(const std::string& path_and_query,
                              const std::function<bool(std::string_view)>& on_chunk) const {
  SplitUrl url = splitUrl(base_url_);
  httplib::Client client(url.scheme_host_port);
  configure(client, url.scheme_host_port, ca_file_);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::hours(24 * 365));
  httplib::Headers headers{{"Accept", "text/event-stream"}};
  if (token_) headers.emplace("Authorization", "Bearer " + *token_);
  int status = 0;
  std::string error_body;
  auto res = client.Get(
      url.path + path_and_query, headers,
      [&](const httplib::Response& r) {
        status = r.status;
        return true;
      },
      [&](const char* data, size_t len) {
        if (status != 200) {
          error_body.append(data, len);
          return true;
        }
        return on_chunk(std::string_view(data, len));
      });
  HttpResponse out;
  out.status = status;
  out.body = error_body;
  if (!res && status == 0) out.error = httplib::to_string(res.error());
  return out;
}

HttpResponse ApiClient::request(const char* method, const std::string& path_and_query,
                                const std::string& body) const {
  SplitUrl url = splitUrl(base_url_);
  httplib::Client client(url.scheme_host_port);
  configure(client, url.scheme_host_port, ca_file_);
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_read_timeout(std::chrono::seconds(60));
  client.set_write_timeout(std::chrono::seconds(10));
  httplib::Headers headers;
  if (token_) headers.emplace("Authorization", "Bearer " + *token_);
  std::string full = url.path + path_and_query;
  httplib::Result res = std::string(method) == "GET"
                            ? client.Get(full, headers)
                            : client.Post(full, headers, body, "application/json");
  HttpResponse out;
  if (!res) {
    out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  return out;
}

}  // namespace provisr::cli

namespace provisr::cli {
std::string urlEncode(const std::string& value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : value) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}
}  // namespace provisr::cli

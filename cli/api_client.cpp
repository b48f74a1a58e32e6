// The CLI's client of the gateway (plain HTTP through http_client.hpp, https:// through
// tls_handoff.hpp), and the daemon URL resolution of SPEC §3.
#include "cli/api_client.hpp"

#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <fstream>

#include "cli/tls_handoff.hpp"
#include "common/config/loader.hpp"

namespace provisr::cli {

namespace {

constexpr const char* kDefaultUrl = "http://127.0.0.1:8080/api";

// `[server.tls] cert_file` of the config resolveApiUrl read (the CLI runs one verb per process).
std::optional<std::string>& configCaFile() {
  static std::optional<std::string> ca;
  return ca;
}

// The config a client verb locates the daemon from (`--config F` or ./config.toml), loaded once
// per process: resolveApiUrl and resolveToken both read it, and some verbs build their client
// twice; a load with its programs directory was 80 % of `status --config F`.
const config::LoadResult& clientConfig(const std::string& path) {
  static std::optional<std::pair<std::string, config::LoadResult>> cached;
  if (!cached || cached->first != path) {
    config::LoadOptions opts;
    opts.check_accounts = false;
    cached.emplace(path, config::loadConfig(path, opts));
  }
  return cached->second;
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
    const auto& loaded = clientConfig(*path);
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
  const auto& loaded = clientConfig(*path);
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
  return send("GET", path_and_query, "", &on_chunk);
}

HttpResponse ApiClient::request(const char* method, const std::string& path_and_query,
                                const std::string& body) const {
  return send(method, path_and_query, body, nullptr);
}

HttpResponse ApiClient::send(std::string_view method, const std::string& path_and_query, const std::string& body,
                             const std::function<bool(std::string_view)>* on_chunk) const {
  HttpResponse out;
  auto url = http::parseUrl(base_url_, &out.error);
  if (!url) return out;
  if (url->scheme == "https") return tlsRequest(base_url_, token_, ca_file_, method, path_and_query, body, on_chunk);
  http::Request req;
  req.method = method;
  req.target = path_and_query;
  req.body = body;
  if (token_) req.headers.emplace_back("Authorization", "Bearer " + *token_);
  http::Timeouts timeouts;
  if (on_chunk) {
    req.headers.emplace_back("Accept", "text/event-stream");
    timeouts.read = std::chrono::milliseconds(0);  // a stream lasts until the server or the callback ends it
    return http::perform(*url, req, timeouts, *on_chunk);
  }
  return http::perform(*url, req, timeouts);
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

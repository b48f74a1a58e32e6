// The CLI's HTTP client of the gateway, and how it finds the daemon (SPEC §3).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cli/http_client.hpp"

namespace provisr::cli {

// `--api-url`, `PROVISR_API_URL`, the `[server]` of `--config F`, of `./config.toml`, then the
// default `http://127.0.0.1:8080/api`. A listen address of `:8080` or `0.0.0.0:8080` is reached
// at 127.0.0.1.
std::string resolveApiUrl(const std::optional<std::string>& api_url,
                          const std::optional<std::string>& config_path);

// The bearer token to send: `--token`, `PROVISR_TOKEN`, then the `[server.auth]` token (or the
// first line of its token_file, when readable) of `--config F` or of `./config.toml`.
std::optional<std::string> resolveToken(const std::optional<std::string>& token,
                                        const std::optional<std::string>& config_path);

// `[server] listen` + `base_path` as a URL a local client can reach (https:// with `tls`).
std::string apiUrlFromListen(const std::string& listen, const std::string& base_path, bool tls = false);

// The certificate an https:// daemon is verified against: `PROVISR_CA_FILE` when set, else the
// `[server.tls] cert_file` of the config the URL was resolved from (a self-signed certificate is
// its own authority); nullopt means the system's trusted authorities.
std::optional<std::string> resolveCaFile();

class ApiClient {
 public:
  explicit ApiClient(std::string base_url, std::optional<std::string> token = std::nullopt);
  HttpResponse get(const std::string& path_and_query) const;
  HttpResponse post(const std::string& path_and_query, const std::string& body = "") const;
  // A streaming GET (Server-Sent Events): `on_chunk` sees the body as it arrives and returns false
  // to stop. No read timeout: it lasts until the server or the callback ends it.
  HttpResponse stream(const std::string& path_and_query,
                      const std::function<bool(std::string_view)>& on_chunk) const;
  const std::string& baseUrl() const { return base_url_; }

 private:
  HttpResponse request(const char* method, const std::string& path_and_query,
                       const std::string& body) const;
  HttpResponse send(std::string_view method, const std::string& path_and_query, const std::string& body,
                    const std::function<bool(std::string_view)>* on_chunk) const;
  std::string base_url_;
  std::optional<std::string> token_;
  std::optional<std::string> ca_file_;
};

}  // namespace provisr::cli

namespace provisr::cli {
// Percent-encodes a query value.
std::string urlEncode(const std::string& value);
}  // namespace provisr::cli

// tls_handoff.hpp for `provisr-tls`: https:// requests and the certificate check through
// cpp-httplib with OpenSSL (plain http:// still goes through http_client.hpp).
#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cli/tls_handoff.hpp"

namespace provisr::cli {

void rememberInvocation(int, char**) {}

bool tlsBuiltIn() { return true; }

void handOffToTls(const char* why) {
  std::fprintf(stderr, "provisr-tls: internal error: a handoff for %s in the TLS build\n", why);
  std::abort();
}

HttpResponse tlsRequest(const std::string& base_url, const std::optional<std::string>& token,
                        const std::optional<std::string>& ca_file, std::string_view method,
                        const std::string& path_and_query, const std::string& body,
                        const std::function<bool(std::string_view)>* on_chunk) {
  std::string error;
  auto url = http::parseUrl(base_url, &error);
  HttpResponse out;
  if (!url) {
    out.error = error;
    return out;
  }
  httplib::Client client(url->scheme + "://" + url->host_header);
  // The daemon's certificate and host name are verified (httplib checks the subjectAltName
  // against the host of the URL).
  client.enable_server_certificate_verification(true);
  if (ca_file) client.set_ca_cert_path(ca_file->c_str());
  client.set_connection_timeout(std::chrono::seconds(2));
  client.set_write_timeout(std::chrono::seconds(10));
  httplib::Headers headers;
  if (token) headers.emplace("Authorization", "Bearer " + *token);
  const std::string full = url->path + path_and_query;

  if (on_chunk) {
    client.set_read_timeout(std::chrono::hours(24 * 365));
    headers.emplace("Accept", "text/event-stream");
    int status = 0;
    auto res = client.Get(
        full, headers,
        [&](const httplib::Response& r) {
          status = r.status;
          return true;
        },
        [&](const char* data, size_t len) {
          if (status != 200) {
            out.body.append(data, len);
            return true;
          }
          return (*on_chunk)(std::string_view(data, len));
        });
    out.status = status;
    if (!res && status == 0) out.error = httplib::to_string(res.error());
    return out;
  }

  client.set_read_timeout(std::chrono::seconds(60));
  httplib::Result res = method == "GET" ? client.Get(full, headers)
                                        : client.Post(full, headers, body, "application/json");
  if (!res) {
    out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.body = res->body;
  return out;
}

bool tlsPairLoads(const std::string& cert_file, const std::string& key_file) {
  httplib::SSLServer probe(cert_file.c_str(), key_file.c_str());
  return probe.is_valid();
}

}  // namespace provisr::cli

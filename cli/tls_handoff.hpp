// What in the CLI needs OpenSSL: requests to an https:// daemon and `serve`'s check of the
// `[server.tls]` certificate and key. `provisr` itself links no TLS library (every run would load
// and initialise OpenSSL): when a command needs TLS it execs `provisr-tls`, installed beside it,
// with the same arguments — the same CLI, built with cpp-httplib and OpenSSL. The two binaries
// differ only in which implementation of this header they link: tls_handoff.cpp (provisr) or
// tls_httplib.cpp (provisr-tls).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cli/http_client.hpp"

namespace provisr::cli {

// main() records its arguments so a handoff can run the same command.
void rememberInvocation(int argc, char** argv);

// True in provisr-tls, which runs TLS itself.
bool tlsBuiltIn();

// provisr: execs provisr-tls with the remembered arguments (never returns; exits 1 with a
// message naming `why` and the path tried when provisr-tls cannot run). Nothing must have been
// written to stdout before.
[[noreturn]] void handOffToTls(const char* why);

// One request to an https:// `base_url`, the daemon verified against `ca_file` (nullopt: the
// system's authorities). With `on_chunk`, a stream without read timeout (as ApiClient::stream).
HttpResponse tlsRequest(const std::string& base_url, const std::optional<std::string>& token,
                        const std::optional<std::string>& ca_file, std::string_view method,
                        const std::string& path_and_query, const std::string& body,
                        const std::function<bool(std::string_view)>* on_chunk);

// Whether the certificate and key load as the gateway will load them (provisr-tls only).
bool tlsPairLoads(const std::string& cert_file, const std::string& key_file);

}  // namespace provisr::cli

// Access rules of SPEC §4, shared by HTTP, the ZeroMQ API and the metrics endpoint: bearer
// tokens (full and read-only, compared in constant time), protected mode, root registrations.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/config/model.hpp"
#include "common/util/result.hpp"
#include "gateway/routes.hpp"

namespace provisr::gateway {

struct AccessPolicy {
  std::optional<std::string> token;            // full access
  std::optional<std::string> read_only_token;  // GETs of status, logs, metrics
  bool protected_mode = false;     // no auth, non-loopback listen, no allow_insecure: loopback peers only
  bool root_without_auth = false;  // registrations are refused
  bool authEnabled() const { return token.has_value(); }
};

// Reads the token files; kInvalidArgument when one cannot be read or is empty.
Result<AccessPolicy> makeAccessPolicy(const config::ServerConfig& server, std::string_view listen, uid_t euid);

// Whether a call at `level` may proceed: nullopt, or the Error to answer (kUnauthorized for a
// missing or wrong token, kForbidden otherwise). `health_call` marks the selector-less GET /status.
std::optional<Error> checkAccess(const AccessPolicy& policy, Access level, const std::optional<std::string>& token,
                                 bool loopback_peer, bool health_call);

// "Bearer <token>" → token.
std::optional<std::string> bearerToken(std::string_view authorization);
bool constantTimeEquals(std::string_view a, std::string_view b);
// 127.0.0.0/8, ::1, ::ffff:127.x, "localhost".
bool isLoopbackAddress(std::string_view addr);
// The host of "host:port" / "[v6]:port" / ":port" (empty host = every interface).
std::string listenHost(std::string_view listen);

}  // namespace provisr::gateway

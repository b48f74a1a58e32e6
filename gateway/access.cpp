// Access decisions: tokens, protected mode and the root registration rule.
#include "gateway/access.hpp"

#include <fstream>
#include <sstream>

namespace provisr::gateway {
namespace {

Result<std::optional<std::string>> readToken(const std::optional<std::string>& inline_token,
                                             const std::optional<std::string>& file, const char* key) {
  if (inline_token && !inline_token->empty()) return std::optional<std::string>(*inline_token);
  if (!file) return std::optional<std::string>();
  std::ifstream in(*file);
  if (!in) return Error{ErrorCode::kInvalidArgument, std::string("server.auth.") + key + "_file: cannot read " + *file};
  std::stringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ' || t.back() == '\t')) t.pop_back();
  if (t.empty()) return Error{ErrorCode::kInvalidArgument, std::string("server.auth.") + key + "_file: " + *file + " is empty"};
  return std::optional<std::string>(t);
}

}  // namespace

Result<AccessPolicy> makeAccessPolicy(const config::ServerConfig& server, std::string_view listen, uid_t euid) {
  AccessPolicy p;
  auto full = readToken(server.auth.token, server.auth.token_file, "token");
  if (!full) return full.error();
  auto ro = readToken(server.auth.read_only_token, server.auth.read_only_token_file, "read_only_token");
  if (!ro) return ro.error();
  p.token = *full;
  p.read_only_token = *ro;
  if (!p.token) p.read_only_token.reset();  // a read-only token alone would protect nothing
  const std::string host = listenHost(listen);
  p.protected_mode = !p.token && !server.allow_insecure && !isLoopbackAddress(host);
  p.root_without_auth = !p.token && euid == 0;
  return p;
}

std::optional<Error> checkAccess(const AccessPolicy& policy, Access level, const std::optional<std::string>& token,
                                 bool loopback_peer, bool health_call) {
  const bool open = level == Access::kOpen || (level == Access::kStatus && health_call);
  if (policy.protected_mode && !loopback_peer && !open) {
    return Error{ErrorCode::kForbidden,
                 "protected mode: this gateway listens on a non-loopback address without authentication, so it "
                 "answers only loopback clients; set [server.auth] token (or token_file) or [server] "
                 "allow_insecure = true"};
  }
  if (open) return std::nullopt;
  if (policy.token) {
    if (!token) {
      return Error{ErrorCode::kUnauthorized, "authentication required: send Authorization: Bearer <token>"};
    }
    if (constantTimeEquals(*token, *policy.token)) return std::nullopt;
    const bool readOk = level == Access::kRead || level == Access::kStatus;
    if (policy.read_only_token && constantTimeEquals(*token, *policy.read_only_token)) {
      if (readOk) return std::nullopt;
      return Error{ErrorCode::kForbidden, "the read-only token cannot do this: use the full token"};
    }
    return Error{ErrorCode::kUnauthorized, "invalid token"};
  }
  if (level == Access::kRegistration && policy.root_without_auth) {
    return Error{ErrorCode::kForbidden,
                 "register, update and unregister are refused while provisr runs as root without authentication: "
                 "set [server.auth] token (or token_file)"};
  }
  return std::nullopt;
}

std::optional<std::string> bearerToken(std::string_view h) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (h.size() <= kPrefix.size()) return std::nullopt;
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    const char a = static_cast<char>(h[i] | 0x20), b = static_cast<char>(kPrefix[i] | 0x20);
    if (a != b) return std::nullopt;
  }
  std::string_view t = h.substr(kPrefix.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  if (t.empty()) return std::nullopt;
  return std::string(t);
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  // Time depends on the length of `a` (the presented token) only.
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const char cb = b.empty() ? '\0' : b[i % b.size()];
    diff |= static_cast<unsigned>(static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(cb));
  }
  return diff == 0;
}

bool isLoopbackAddress(std::string_view addr) {
  if (addr == "localhost" || addr == "::1" || addr == "[::1]") return true;
  if (addr.substr(0, 4) == "127.") return true;
  if (addr.substr(0, 11) == "::ffff:127.") return true;
  return false;
}

std::string listenHost(std::string_view listen) {
  if (!listen.empty() && listen.front() == '[') {
    auto end = listen.find(']');
    return std::string(listen.substr(1, end == std::string_view::npos ? std::string_view::npos : end - 1));
  }
  auto colon = listen.rfind(':');
  return std::string(colon == std::string_view::npos ? listen : listen.substr(0, colon));
}

}  // namespace provisr::gateway

// The one table of the gateway's operations: HTTP method and path, ZeroMQ op name, access level
// and the handler that turns the call into one master request and its reply into JSON.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "gateway/master_link.hpp"
#include "gateway/translate.hpp"

namespace provisr::gateway {

// What a route needs from the caller (SPEC §4).
enum class Access : std::uint8_t {
  kOpen,          // health checks: no token ever
  kStatus,        // GET /status: open without a selector (the health check), else kRead
  kRead,          // the read-only token is enough
  kFull,          // the full token
  kRegistration,  // kFull, and refused while running as root without auth
};

struct Call {
  Transport transport = Transport::kHttp;
  Args args = Args::object();
};

// What the gateway knows besides the master: its run_dir and its own settings.
struct Context {
  MasterLink& master;
  std::string run_dir;
  bool auth_enabled = false;
  bool metrics_enabled = false;
  std::size_t configured_groups = 0;
  // Running as root without [daemon] user nor [server] allow_root_programs: register/update of a
  // spec that would run as root (no `user`, or a uid-0 one) is refused (SPEC §3).
  bool refuse_root_programs = false;
};

// A handler's success: the JSON body (HTTP status 200) — failures are Errors, mapped by
// httpStatusFor.
using Handler = Result<Json> (*)(const Call&, Context&);
// For streaming (SSE) routes: the event topic prefix to follow, or nullopt to answer normally.
using StreamTopic = Result<std::optional<std::string>> (*)(const Args&);
// The same answer as `Handler`, rendered as JSON text without a json tree (byte for byte the
// Handler's body dumped): the routes whose replies carry a status per instance have one, and the
// HTTP edge prefers it — a status of thousands of instances is one string, not a tree of maps.
using TextHandler = Result<std::string> (*)(const Call&, Context&);

struct Route {
  std::string_view method;  // "GET" | "POST"
  std::string_view path;    // under base_path, an httplib regex; a group captures `name`
  std::string_view op;      // the ZeroMQ op, "" for HTTP-only routes
  Access access;
  Handler handler;
  StreamTopic stream = nullptr;
  TextHandler text = nullptr;
};

std::span<const Route> routeTable();
const Route* findOp(std::string_view op);

// Runs a route's handler, never throwing: an exception becomes kInternal.
Result<Json> runRoute(const Route& route, const Call& call, Context& ctx);
// The route's text handler if it has one, else its handler's body dumped; never throws.
Result<std::string> runRouteText(const Route& route, const Call& call, Context& ctx);

// Reads run_dir/components.json into the /health body.
Result<Json> readHealth(const std::string& run_dir, std::int64_t now_ms);

}  // namespace provisr::gateway

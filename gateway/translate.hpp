// The pure translation layer: request arguments (HTTP query/body or ZeroMQ args) → master
// messages, master replies → the JSON shapes of the HTTP API, and ErrorCode → HTTP status.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/proto/schema.hpp"
#include "common/util/result.hpp"

namespace provisr::gateway {

using Json = nlohmann::json;

// Arguments of one call: a JSON object. From HTTP every value is a string (query parameters, and
// the body under "body"); from the ZeroMQ API values keep their MessagePack types.
using Args = Json;

// Where a call came from; a few routes differ (GET /status without selector is a health check).
enum class Transport : std::uint8_t { kHttp, kZmq };

// ---- reading arguments ------------------------------------------------------------------------
// The value of `key` as text (strings as they are, numbers and bools printed); nullopt when absent.
std::optional<std::string> argText(const Args& args, std::string_view key);
// A boolean flag: true/false, 1/0, "1"/"0", "true"/"false", "yes"/"no", "" (= true: `?dry_run`).
Result<bool> argFlag(const Args& args, std::string_view key);
// An unsigned integer (number or decimal text).
Result<std::optional<std::uint64_t>> argUint(const Args& args, std::string_view key);
// The wait of a mutation: `wait_ms` (integer ms) or `wait` (a duration, "5s", "500ms").
Result<std::optional<std::uint64_t>> argWaitMs(const Args& args);

// `[A-Za-z0-9._-]{1,128}` without `..`: a name that may go into the master's request.
bool isSafeName(std::string_view name);
// A glob of safe characters plus `*` and `?`.
bool isSafePattern(std::string_view pattern);

// Exactly one of name | base | wildcard; nullopt when none is given (the caller decides whether
// that is allowed); kInvalidArgument for several or an unsafe value.
Result<std::optional<proto::Selector>> argSelector(const Args& args);
// A required safe name under `key` (`group`, `name`).
Result<std::string> argName(const Args& args, std::string_view key);

// Parses a JSON request body; a parse error names its line and column.
Result<Json> parseJsonBody(std::string_view body);

// ---- rendering -------------------------------------------------------------------------------
// RFC 3339 UTC with milliseconds ("2026-11-27T15:04:05.123Z").
std::string rfc3339Ms(std::int64_t ms_since_epoch);
Json timeOrNull(const std::optional<std::int64_t>& ms);

Json renderStatus(const proto::InstanceStatus& s);
Json renderStatusList(std::vector<proto::InstanceStatus> list);  // sorted by name
Json renderPlanStep(const proto::PlanStep& step);
// {ok: true, instances, plan, timed_out}: the body of every mutation.
Json renderAction(const proto::ActionReply& reply);
// Go's GET /groups: [{name, members: [{name, instances}], state, running, total}] sorted by name.
Json renderGroups(const proto::GroupsReply& groups, const std::vector<proto::InstanceStatus>& all);
Json renderGroupStatus(const proto::GroupStatusReply& reply);
// Go's GET /debug/processes entries: {status, internal_state, health_check}.
Json renderDebugProcesses(const std::vector<proto::InstanceStatus>& list);
// `name` is an instance: {lines: [{offset, stream, text}], next: n}; a program: lines tagged with
// their instance and `next` a map instance → offset.
Json renderLogs(const std::string& name, const proto::LogsReply& reply);
Json renderReload(const proto::ReloadReply& reply);

// The same bodies as JSON text written straight into one string, without a json tree: equal,
// byte for byte, to renderX(...).dump(-1, ' ', false, error_handler_t::replace). The HTTP edge
// uses these for the replies that carry a status per instance (thousands at scale).
void appendStatus(std::string& out, const proto::InstanceStatus& s);
std::string renderStatusText(const proto::InstanceStatus& s);
std::string renderStatusListText(const std::vector<proto::InstanceStatus>& list);  // sorted by name
std::string renderActionText(const proto::ActionReply& reply);
std::string renderGroupStatusText(const proto::GroupStatusReply& reply);
std::string renderDebugProcessesText(const std::vector<proto::InstanceStatus>& list);
// The pushed events as the PUB and SSE streams carry them.
Json renderStateChanged(const proto::StateChanged& ev);
Json renderLogLines(const proto::LogLines& ev);

// ---- errors ----------------------------------------------------------------------------------
// THE mapping of error codes to HTTP statuses. `op` matters only for the Go API's quirk: an
// unknown name is 400 (not 404) on the routes the Go version had (status, start, update,
// unregister, logs).
int httpStatusFor(ErrorCode code, std::string_view op);
// {"error": message, "code": "<errorCodeName>"}.
Json errorBody(const Error& e);

}  // namespace provisr::gateway

// The one list of error codes shared by every component; the gateway maps them to HTTP statuses
// and the CLI to exit codes, each in one function.
#pragma once

#include <cstdint>
#include <string_view>

namespace provisr {

enum class ErrorCode : std::uint16_t {
  kOk = 0,
  kInvalidArgument = 1,   // bad input: a malformed name, selector, body, flag or value
  kNotFound = 2,          // no such instance, program or group
  kConflict = 3,          // e.g. changing a config-managed (provisioned) program
  kUnavailable = 4,       // a component is down or restarting; retry later
  kForbidden = 5,         // access rules refuse the request
  kUnauthorized = 6,      // missing or wrong token
  kUnknownMessage = 7,    // a message type the receiver does not know
  kMalformed = 8,         // a message that does not decode (truncated, garbage, over the limits)
  kSpawnFailed = 9,       // the spawner could not start a child
  kTimeout = 10,          // a bounded wait ran out
  kInternal = 11,         // an invariant broke; the message says which
  kStaleEpoch = 12,       // a request from a master that is no longer the newest
  kConfigInvalid = 13,    // a config (file or reload) failed validation
};

constexpr std::string_view errorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::kOk: return "ok";
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kUnauthorized: return "unauthorized";
    case ErrorCode::kUnknownMessage: return "unknown_message";
    case ErrorCode::kMalformed: return "malformed";
    case ErrorCode::kSpawnFailed: return "spawn_failed";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kInternal: return "internal";
    case ErrorCode::kStaleEpoch: return "stale_epoch";
    case ErrorCode::kConfigInvalid: return "config_invalid";
  }
  return "unknown";
}

}  // namespace provisr

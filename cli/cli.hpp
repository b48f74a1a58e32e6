// Shared declarations of the `provisr` CLI: exit codes, output mode and the verb handlers that
// main.cpp (the only file that includes CLI11) dispatches to.
#pragma once

#include <optional>
#include <string>

#include "common/errors.hpp"

namespace provisr::cli {

// SPEC §3 exit codes.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailed = 1,
  kExitUsage = 2,
  kExitUnreachable = 3,
  kExitNotFound = 4,
};

// Maps a shared error code to the CLI's exit code (the one place that does).
int exitCodeFor(ErrorCode code);

enum class Output { kAuto, kTable, kJson };

// Flags every client verb understands.
struct ClientOptions {
  std::optional<std::string> api_url;
  std::optional<std::string> config;
  std::optional<std::string> token;
  Output output = Output::kAuto;
  bool json() const;  // JSON when asked, or when stdout is not a terminal
};

int runValidate(const std::string& config_path);
int runStartDryRun(const ClientOptions& opts, const std::optional<std::string>& name);
int runStatus(const ClientOptions& opts, const std::optional<std::string>& name);

}  // namespace provisr::cli

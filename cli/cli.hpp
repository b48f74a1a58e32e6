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

// What start/stop/restart act on and how long they wait.
struct ActionOptions {
  std::optional<std::string> name;  // instance, program or glob; unset = all
  std::optional<std::string> wait;  // duration text ("5s")
  bool dry_run = false;
};

struct RegisterOptions {
  std::string name;
  std::string command;
  std::optional<std::string> work_dir;
  std::optional<std::string> log_dir;
  bool auto_start = false;  // the Go flag: maps to auto_restart
};

int runValidate(const std::string& config_path);
// The start/stop/restart plan computed from --config alone (no daemon answers).
int runLocalPlan(const ClientOptions& opts, const std::string& verb, const std::optional<std::string>& name);
int runStatus(const ClientOptions& opts, const std::optional<std::string>& name,
              const std::optional<std::string>& group, bool watch);
int runAction(const ClientOptions& opts, const std::string& verb, const ActionOptions& action);
int runGroupAction(const ClientOptions& opts, const std::string& verb, const std::string& group,
                   const std::optional<std::string>& wait);
int runLogs(const ClientOptions& opts, const std::string& name, int lines, bool follow, bool stderr_only);
int runRegister(const ClientOptions& opts, const RegisterOptions& reg);
int runRegisterFile(const ClientOptions& opts, const std::string& file);
int runUnregister(const ClientOptions& opts, const std::string& name);
int runScale(const ClientOptions& opts, const std::string& name, int instances);
int runReload(const ClientOptions& opts, bool dry_run);
int runSimplePost(const ClientOptions& opts, const std::string& route, const std::string& done_message);
int runCompletion(const std::string& shell);
int runCompleteNames(const ClientOptions& opts);

// `serve`: validates the config, then execs the keeper (never returns on success).
struct ServeOptions {
  std::string config;
  std::optional<std::string> run_dir;
  bool daemonize = false;
};
int runServe(const ServeOptions& serve);

// Offline listing of what a config would load (status while no daemon answers).
int printConfigListing(const ClientOptions& opts, const std::optional<std::string>& name);
// True when the daemon answered at `url` (any HTTP answer).
bool daemonAnswers(const ClientOptions& opts);

}  // namespace provisr::cli

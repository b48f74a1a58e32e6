// Loading a provisr config (SPEC §1): the main file, inline `[[processes]]` and the programs
// directory, through one model and one validator behind the TOML, YAML and JSON parsers.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/model.hpp"
#include "common/util/result.hpp"

namespace provisr::config {

struct LoadOptions {
  // The daemon's environment: the base for `use_os_env = true` and for `${NAME}` expansion.
  // Unset = the calling process's environ.
  std::optional<std::map<std::string, std::string>> os_env;
  // Effective uid, used for the run_dir/log_dir defaults and the root-only checks. Unset = geteuid().
  std::optional<uid_t> euid;
  // Look up `user`/`group` with getpwnam/getgrnam (unknown user = error). Tests may turn it off.
  bool check_accounts = true;
};

struct LoadResult {
  std::optional<Config> config;          // set when there is no error
  std::vector<Diagnostic> diagnostics;   // errors and warnings, in file order

  bool ok() const { return config.has_value(); }
  std::vector<Diagnostic> errors() const;
  std::vector<Diagnostic> warnings() const;
};

// Loads and validates the main config at `path`, its env files and its programs directory.
// Collects every problem; `config` is set only when none is an error.
LoadResult loadConfig(const std::string& path, const LoadOptions& options = {});

// Loads one program file (`{type, spec}`) as if it sat in cfg's programs directory: used for
// registration and reload. Validates it against cfg (names, depends_on, accounts).
struct ProgramLoadResult {
  std::optional<ProgramSpec> program;
  std::vector<Diagnostic> diagnostics;
  bool skipped = false;  // a valid file of a type provisr skips (`cronjob`): no program, no error
  bool ok() const { return program.has_value(); }
  std::vector<Diagnostic> errors() const;
  std::vector<Diagnostic> warnings() const;
};
ProgramLoadResult loadProgramFile(const std::string& path, const Config& cfg,
                                  const LoadOptions& options = {});
// The same from text (format = "toml" | "yaml" | "json"); `virtual_path` names it in messages and
// anchors relative paths. Accepts the envelope `{type, spec}` or, when `flat_spec`, a bare spec
// (the Go `register-file` / HTTP `/register` shape).
ProgramLoadResult loadProgramText(std::string_view text, std::string_view format,
                                  const std::string& virtual_path, const Config& cfg,
                                  bool flat_spec, const LoadOptions& options = {});

// The child's environment for one instance (SPEC §1.5): base (use_os_env), env_files, global env,
// program env, then PROVISR_INSTANCE / PROVISR_NAME; `${NAME}` expanded from what came before.
std::vector<std::string> childEnvironment(const Config& cfg, const ProgramSpec& program, int instance,
                                          const LoadOptions& options = {});

// SPEC §1.5: `sh -c SCRIPT [$0 args…]` as that argv; shell metacharacters → `/bin/sh -c COMMAND`;
// otherwise split on whitespace. Errors on unbalanced quotes or an empty command.
Result<std::vector<std::string>> commandToArgv(std::string_view command);

// "500ms", "2s", "1.5s", "1m30s" (units ns, us, ms, s, m, h).
Result<Duration> parseDuration(std::string_view text);
// Formats a duration the way parseDuration reads it back ("1m30s", "500ms", "0s").
std::string formatDuration(Duration d);

// dotenv: `K=V` lines, `#` comments, optional single or double quotes, optional `export `.
// Errors name the 1-based line.
Result<std::vector<std::pair<std::string, std::string>>> parseDotenv(std::string_view text);

// `${NAME}` from `vars` (unknown → empty, its name appended to `unknown` when given); `$$` → `$`.
std::string expandVars(std::string_view value, const std::map<std::string, std::string>& vars,
                       std::vector<std::string>* unknown = nullptr);

// `[A-Za-z0-9._-]{1,64}` without `..`.
bool isValidName(std::string_view name);

}  // namespace provisr::config

// The configuration model (SPEC §1): what the three parsers (TOML, YAML, JSON) and the one
// validator produce. Every path in it is absolute and every default is filled in.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/util/clock.hpp"

namespace provisr::config {

using namespace std::chrono_literals;

// A problem found while loading: printed as `file:line: key: message` (line omitted when unknown).
struct Diagnostic {
  enum class Severity { kError, kWarning };
  Severity severity = Severity::kError;
  std::string file;     // absolute path of the file that holds the problem
  int line = 0;         // 1-based; 0 when the parser gives no line
  std::string key;      // dotted path such as `spec.log.max_size_mb`; empty for a whole-file problem
  std::string message;

  bool isError() const { return severity == Severity::kError; }
  std::string str() const;  // `file:line: key: message` (warnings prefixed `warning: ` in the message)
};

enum class AutoRestart { kNever, kAlways, kOnFailure };

// Log settings as written (program `log`, or global `[log]`); unset fields inherit.
struct LogSettings {
  std::optional<std::string> dir;
  std::optional<std::string> stdout_path;  // explicit file; wins over dir
  std::optional<std::string> stderr_path;
  std::optional<int> max_size_mb;
  std::optional<int> max_backups;
  std::optional<int> max_age_days;
  std::optional<bool> compress;
  std::optional<bool> timestamps;
  bool operator==(const LogSettings&) const = default;
};

// Log settings after the global `[log]` and `[daemon] log_dir` filled every gap (SPEC §1.6).
struct LogPolicy {
  std::string dir;                 // directory created for the program (0750)
  std::optional<std::string> stdout_path;  // explicit file, shared by every instance
  std::optional<std::string> stderr_path;
  int max_size_mb = 10;
  int max_backups = 3;
  int max_age_days = 7;
  bool compress = false;
  bool timestamps = false;

  // `<dir>/<instance>.stdout.log` unless an explicit path is set.
  std::string stdoutFile(const std::string& instance) const;
  std::string stderrFile(const std::string& instance) const;
  bool operator==(const LogPolicy&) const = default;
};

struct RestartBackoff {
  Duration max = std::chrono::minutes(1);
  double factor = 2.0;
  Duration reset_after = 60s;
  double jitter = 0.0;  // fraction, 0..1
  bool operator==(const RestartBackoff&) const = default;
};

enum class Origin {
  kInline,     // `[[processes]]` in the main file: provisioned, read-only through the API
  kDirectory,  // a file in programs_directory written by a person
  kApi,        // a file in programs_directory carrying `origin = "api"` (registered at runtime)
};

struct ProgramSpec {
  std::string name;
  std::optional<std::string> command;      // as written
  std::vector<std::string> args;           // as written (when `args` is used)
  std::vector<std::string> argv;           // what is exec'd (SPEC §1.5), resolved at load
  std::string work_dir;                    // absolute
  std::vector<std::string> env;            // program `env` as written ("K=V")
  int priority = 0;
  int instances = 1;
  Duration start_duration = 0s;
  int retry_count = 0;
  Duration retry_interval = 1s;
  AutoRestart auto_restart = AutoRestart::kNever;
  Duration restart_interval = 1s;
  std::optional<RestartBackoff> restart_backoff;
  std::vector<int> success_exit_codes{0};
  int stop_signal = 15;                    // SIGTERM
  std::string stop_signal_name = "TERM";
  Duration stop_timeout = 10s;
  std::optional<std::string> user;
  std::optional<std::string> group;
  mode_t umask = 022;
  std::optional<std::int64_t> max_processes;
  std::optional<std::int64_t> memory_max;  // bytes
  std::optional<std::int64_t> pids_max;
  std::vector<std::string> depends_on;
  LogPolicy log;

  Origin origin = Origin::kDirectory;
  std::string source_file;                 // absolute path of the file that declared it
  int source_line = 0;

  bool provisioned() const { return origin == Origin::kInline; }
  // `<name>` for one instance, `<name>-1 … <name>-N` otherwise.
  std::vector<std::string> instanceNames() const;
  std::string instanceName(int index) const;  // index is 1-based
  bool operator==(const ProgramSpec&) const = default;
};

struct GroupSpec {
  std::string name;
  std::vector<std::string> members;  // program base names
  bool operator==(const GroupSpec&) const = default;
};

struct AuthConfig {
  std::optional<std::string> token;
  std::optional<std::string> token_file;
  std::optional<std::string> read_only_token;
  std::optional<std::string> read_only_token_file;
  bool enabled() const { return token || token_file; }
};

struct TlsConfig {
  std::optional<std::string> cert_file;
  std::optional<std::string> key_file;
};

struct ZmqCurveConfig {
  std::optional<std::string> server_key_file;
  std::optional<std::string> client_keys_dir;
};

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  std::string base_path = "/api";
  std::optional<std::string> zmq_listen;
  std::optional<std::string> zmq_events;
  bool allow_insecure = false;
  bool allow_root_programs = false;
  AuthConfig auth;
  TlsConfig tls;
  ZmqCurveConfig zmq_curve;
};

struct MetricsConfig {
  bool enabled = false;
  std::optional<std::string> listen;
};

struct DaemonConfig {
  std::string run_dir;   // resolved default when unset (SPEC §1.1)
  std::string log_dir;   // resolved default when unset
  std::optional<std::string> user;
  std::optional<std::string> pid_file;
  std::optional<std::string> log_file;
};

struct Config {
  std::string file;  // absolute path of the main file
  std::string dir;   // its directory
  bool use_os_env = false;
  std::vector<std::string> env;        // global "K=V" list as written
  std::vector<std::string> env_files;  // absolute
  // What env_files held at load time, merged in file order (values still unexpanded: `${NAME}`
  // is expanded per child by childEnvironment, from the layers before it).
  std::vector<std::pair<std::string, std::string>> env_file_vars;
  std::string programs_directory;      // absolute
  std::optional<std::string> pid_dir;  // absolute
  LogSettings log;                     // global `[log]`
  ServerConfig server;
  MetricsConfig metrics;
  DaemonConfig daemon;
  std::vector<GroupSpec> groups;
  std::vector<ProgramSpec> programs;   // inline first, then programs_directory files by name

  const ProgramSpec* findProgram(const std::string& name) const;
  const GroupSpec* findGroup(const std::string& name) const;
};

}  // namespace provisr::config

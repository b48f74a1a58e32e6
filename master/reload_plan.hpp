// Reload (SPEC §2.4): the difference between the running config and a new one, as a printable plan.
//
// What restarts: an instance restarts when anything its child or its lifecycle uses changed
// (command/argv, work_dir, env, user/group, umask, caps, log, start/retry/restart/stop knobs) or
// when the global environment changed (every child's env is built from it). Ordering fields
// (priority, depends_on) and where a program was declared (origin, source file/line) take effect
// without a restart: the running child does not depend on them. A changed instance count adds or
// removes only the extra instances, except between 1 and more, where `name` becomes `name-1`.
#pragma once

#include <string>
#include <vector>

#include "common/config/model.hpp"

namespace provisr::master {

struct ProgramChange {
  enum class Kind {
    kAdded,      // start every instance
    kRemoved,    // stop every instance, then forget it
    kChanged,    // restart the kept instances (and add/remove extras when scaled too)
    kScaled,     // only the instance count changed
    kUpdated,    // ordering or metadata only: applied in place, nothing restarts
    kUnchanged,
  };
  std::string program;
  Kind kind = Kind::kUnchanged;
  std::vector<std::string> fields;   // what differs, e.g. "command", "instances 2 -> 4"
  std::vector<std::string> start;    // instances to start (new names)
  std::vector<std::string> stop;     // instances to stop and forget
  std::vector<std::string> restart;  // instances to stop, then start with the new spec
};

struct ReloadPlan {
  std::vector<ProgramChange> programs;  // new config order, then removed programs in old order
  std::vector<std::string> groups_added;
  std::vector<std::string> groups_removed;
  std::vector<std::string> groups_changed;
  std::vector<std::string> global_env;     // "use_os_env", "env", "env_files" when they changed
  std::vector<std::string> needs_restart;  // dotted keys under [server]/[daemon]/[metrics], pid_dir

  // Nothing to apply and nothing to report.
  bool empty() const;
  // Instances across every program, for the master to act on (stop before start).
  std::vector<std::string> toStop() const;
  std::vector<std::string> toStart() const;
  std::vector<std::string> toRestart() const;
  const ProgramChange* find(const std::string& program) const;
  std::string str() const;  // what `provisr reload --dry-run` prints
};

ReloadPlan planReload(const config::Config& before, const config::Config& after);

std::string_view changeKindName(ProgramChange::Kind k);

}  // namespace provisr::master

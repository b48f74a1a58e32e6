// Decoding one program spec and its envelope into a Draft (internal to provisr_config): the
// program plus what cross-program validation needs (its unresolved log settings and key lines).
#pragma once

#include <optional>
#include <string>

#include "common/config/decode.hpp"

namespace provisr::config::detail {

struct Draft {
  ProgramSpec spec;
  LogSettings log;       // as written; resolved into spec.log once the globals are known
  std::string key;       // `spec` or `processes[2].spec`
  int line = 0;
  int name_line = 0;
  int env_line = 0;
  int user_line = 0;
  int group_line = 0;
  int caps_line = 0;
  std::string caps_field;  // the first resource cap set, for the "cannot be enforced" warning
  int depends_line = 0;
  int log_line = 0;
  bool check = true;     // false for programs already in a Config (only the new ones are judged)
  bool valid = true;     // false when the spec itself had an error: kept only so its name is known
};

struct SpecContext {
  std::string file_dir;          // relative paths in this file resolve here
  std::string default_work_dir;  // the main config's directory
  Origin origin = Origin::kDirectory;
};

LogSettings decodeLog(Sink& s, const Node& n, const std::string& key, const std::string& base_dir);
// Always a Draft; `valid` is false when the spec had an error (all of them recorded), so that
// a broken program does not also make every group and dependency naming it "unknown".
std::optional<Draft> decodeSpec(Sink& s, const Node& n, const std::string& key, const SpecContext& ctx);
// `{type, spec}` (plus `origin` in program files); nullopt for errors and skipped cronjobs.
std::optional<Draft> decodeEnvelope(Sink& s, const Node& root, const std::string& key, SpecContext ctx,
                                    bool allow_origin);

}  // namespace provisr::config::detail

// Small behaviours of the configuration model: instance naming, log file names, diagnostics.
#include "common/config/model.hpp"

namespace provisr::config {

std::string Diagnostic::str() const {
  std::string out = file;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  if (severity == Severity::kWarning) out += "warning: ";
  out += message;
  return out;
}

std::string LogPolicy::stdoutFile(const std::string& instance) const {
  return stdout_path ? *stdout_path : dir + "/" + instance + ".stdout.log";
}

std::string LogPolicy::stderrFile(const std::string& instance) const {
  return stderr_path ? *stderr_path : dir + "/" + instance + ".stderr.log";
}

std::string ProgramSpec::instanceName(int index) const {
  return instances == 1 ? name : name + "-" + std::to_string(index);
}

std::vector<std::string> ProgramSpec::instanceNames() const {
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(instances > 0 ? instances : 0));
  for (int i = 1; i <= instances; ++i) out.push_back(instanceName(i));
  return out;
}

const ProgramSpec* Config::findProgram(const std::string& n) const {
  for (const auto& p : programs)
    if (p.name == n) return &p;
  return nullptr;
}

const GroupSpec* Config::findGroup(const std::string& n) const {
  for (const auto& g : groups)
    if (g.name == n) return &g;
  return nullptr;
}

}  // namespace provisr::config

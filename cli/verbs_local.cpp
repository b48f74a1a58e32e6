// Verbs that work from a config file alone: `validate`, the offline `start --dry-run` plan, and the
// offline listing `status --config F` prints when no daemon answers.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/cli.hpp"
#include "common/config/loader.hpp"

namespace provisr::cli {

namespace {

using nlohmann::json;

bool stdoutIsTerminal() { return ::isatty(STDOUT_FILENO) == 1; }

void printDiagnostics(const std::vector<config::Diagnostic>& diags) {
  for (const auto& d : diags) std::cerr << d.str() << "\n";
}

// Loads a config for a CLI verb, printing every problem; nullopt when it is invalid.
std::optional<config::Config> loadForCli(const std::string& path, bool print_warnings) {
  config::LoadOptions opts;
  auto loaded = config::loadConfig(path, opts);
  if (!loaded.ok()) {
    printDiagnostics(loaded.diagnostics);
    std::cerr << "provisr: " << path << ": invalid configuration (" << loaded.errors().size()
              << (loaded.errors().size() == 1 ? " error" : " errors") << ")\n";
    return std::nullopt;
  }
  if (print_warnings) printDiagnostics(loaded.warnings());
  return std::move(loaded.config);
}

std::vector<std::string> groupsOf(const config::Config& cfg, const std::string& program) {
  std::vector<std::string> out;
  for (const auto& g : cfg.groups)
    if (std::find(g.members.begin(), g.members.end(), program) != g.members.end()) out.push_back(g.name);
  return out;
}

std::string joinWords(const std::vector<std::string>& words, const char* sep = ", ") {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += sep;
    out += w;
  }
  return out;
}

// A shell-like rendering of argv for people to read.
std::string quoteArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`|&;<>()*?[]{}~#!") == std::string::npos;
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

// Keys a child of `program` gets from the config itself (not from the daemon's environment).
std::vector<std::string> configEnvKeys(const config::Config& cfg, const config::ProgramSpec& program) {
  config::LoadOptions opts;
  opts.os_env = std::map<std::string, std::string>{};
  std::set<std::string> keys;
  for (const auto& kv : config::childEnvironment(cfg, program, 1, opts)) keys.insert(kv.substr(0, kv.find('=')));
  return {keys.begin(), keys.end()};
}

// Programs by priority band, lowest first; names sorted within a band.
std::map<int, std::vector<const config::ProgramSpec*>> bands(const config::Config& cfg,
                                                              const std::optional<std::string>& name) {
  std::map<int, std::vector<const config::ProgramSpec*>> out;
  for (const auto& p : cfg.programs) {
    if (name && p.name != *name) {
      auto names = p.instanceNames();
      if (std::find(names.begin(), names.end(), *name) == names.end()) continue;
    }
    out[p.priority].push_back(&p);
  }
  for (auto& [prio, progs] : out)
    std::sort(progs.begin(), progs.end(), [](auto* a, auto* b) { return a->name < b->name; });
  return out;
}

}  // namespace

int exitCodeFor(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return kExitOk;
    case ErrorCode::kNotFound: return kExitNotFound;
    case ErrorCode::kUnavailable: return kExitUnreachable;
    default: return kExitFailed;
  }
}

bool ClientOptions::json() const {
  if (output == Output::kJson) return true;
  if (output == Output::kTable) return false;
  return !stdoutIsTerminal();
}

int runValidate(const std::string& config_path) {
  config::LoadOptions opts;
  auto loaded = config::loadConfig(config_path, opts);
  printDiagnostics(loaded.diagnostics);
  if (!loaded.ok()) {
    auto n = loaded.errors().size();
    std::cerr << config_path << ": invalid (" << n << (n == 1 ? " error" : " errors") << ")\n";
    return kExitFailed;
  }
  const auto& cfg = *loaded.config;
  std::size_t instances = 0;
  for (const auto& p : cfg.programs) instances += static_cast<std::size_t>(p.instances);
  auto warnings = loaded.warnings().size();
  std::cout << config_path << ": valid: " << cfg.programs.size() << " programs (" << instances
            << " instances), " << cfg.groups.size() << " groups";
  if (warnings > 0) std::cout << ", " << warnings << (warnings == 1 ? " warning" : " warnings");
  std::cout << "\n";
  return kExitOk;
}

int runLocalPlan(const ClientOptions& opts, const std::string& verb, const std::optional<std::string>& name) {
  if (!opts.config) {
    std::cerr << "provisr: " << verb << " --dry-run needs --config FILE when no daemon answers\n";
    return kExitUsage;
  }
  auto cfg = loadForCli(*opts.config, false);
  if (!cfg) return kExitFailed;
  auto by_priority = bands(*cfg, name);
  // Stop goes in reverse priority order (SPEC §2.3); start and restart in priority order.
  std::vector<std::pair<int, std::vector<const config::ProgramSpec*>>> plan(by_priority.begin(), by_priority.end());
  if (verb == "stop") std::reverse(plan.begin(), plan.end());
  if (name && plan.empty()) {
    std::cerr << "provisr: no program or instance named '" << *name << "' in " << cfg->file << "\n";
    return kExitNotFound;
  }

  if (opts.json()) {
    json out;
    out["config"] = cfg->file;
    out["source"] = "config";
    out["action"] = verb;
    out["bands"] = json::array();
    for (const auto& [prio, progs] : plan) {
      json band{{"priority", prio}, {"programs", json::array()}};
      for (const auto* p : progs) {
        band["programs"].push_back(json{
            {"name", p->name},
            {"instances", p->instanceNames()},
            {"argv", p->argv},
            {"work_dir", p->work_dir},
            {"log", {{"stdout", p->log.stdoutFile(p->instanceName(1))}, {"stderr", p->log.stderrFile(p->instanceName(1))}}},
            {"env_keys", configEnvKeys(*cfg, *p)},
            {"depends_on", p->depends_on},
            {"groups", groupsOf(*cfg, p->name)},
        });
      }
      out["bands"].push_back(std::move(band));
    }
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }

  std::string title = verb;
  title[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(title[0])));
  std::cout << title << " plan for " << cfg->file << " (dry run: nothing is " << verb
            << (verb == "stop" ? "ped" : "ed") << ")\n";
  int band_no = 0;
  for (const auto& [prio, progs] : plan) {
    ++band_no;
    std::cout << "\nband " << band_no << " (priority " << prio << ")"
              << (band_no == 1 ? "" : (verb == "stop" ? ": after the band before has stopped" : ": after the band before is running")) << "\n";
    for (const auto* p : progs) {
      std::cout << "  " << p->name;
      if (p->instances > 1) std::cout << " x" << p->instances << ": " << joinWords(p->instanceNames());
      std::cout << "\n";
      std::cout << "    argv:     " << quoteArgv(p->argv) << "\n";
      std::cout << "    work_dir: " << p->work_dir << "\n";
      std::cout << "    stdout:   " << p->log.stdoutFile(p->instanceName(1)) << "\n";
      std::cout << "    stderr:   " << p->log.stderrFile(p->instanceName(1)) << "\n";
      std::cout << "    env:      " << joinWords(configEnvKeys(*cfg, *p), " ")
                << (cfg->use_os_env ? " (+ the daemon's environment)" : "") << "\n";
      if (!p->depends_on.empty()) std::cout << "    after:    " << joinWords(p->depends_on) << "\n";
    }
  }
  return kExitOk;
}

// What F would load, for `status --config F` while no daemon answers.
int printConfigListing(const ClientOptions& opts, const std::optional<std::string>& name) {
  auto cfg = loadForCli(*opts.config, false);
  if (!cfg) return kExitFailed;
  std::vector<const config::ProgramSpec*> progs;
  for (const auto& p : cfg->programs) progs.push_back(&p);
  std::stable_sort(progs.begin(), progs.end(), [](auto* a, auto* b) {
    return a->priority != b->priority ? a->priority < b->priority : a->name < b->name;
  });
  json rows = json::array();
  for (const auto* p : progs) {
    for (int i = 1; i <= p->instances; ++i) {
      std::string inst = p->instanceName(i);
      if (name && *name != inst && *name != p->name) continue;
      rows.push_back(json{{"name", inst}, {"program", p->name}, {"instance", i},
                          {"priority", p->priority}, {"groups", groupsOf(*cfg, p->name)},
                          {"state", "not running"}, {"running", false}});
    }
  }
  if (opts.json()) {
    std::cout << rows.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-24s %-18s %-8s %-28s %s\n", "NAME", "PROGRAM", "PRIORITY", "GROUPS", "STATE");
  for (const auto& r : rows) {
    std::printf("%-24s %-18s %-8d %-28s %s\n", r["name"].get<std::string>().c_str(),
                r["program"].get<std::string>().c_str(), r["priority"].get<int>(),
                joinWords(r["groups"].get<std::vector<std::string>>(), ",").c_str(), "not running");
  }
  return kExitOk;
}

}  // namespace provisr::cli

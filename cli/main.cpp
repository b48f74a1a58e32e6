// `provisr`: parses the verb and its flags (the only file that includes CLI11) and hands them to
// the verb's handler.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>

#include "cli/cli.hpp"
#include "common/util/version.hpp"

using namespace provisr::cli;

namespace {

// Flags every client verb takes.
void addClientFlags(CLI::App* verb, ClientOptions& opts, std::string& output) {
  verb->add_option("--api-url", opts.api_url, "gateway URL, e.g. http://127.0.0.1:8080/api (or PROVISR_API_URL)");
  verb->add_option("--config", opts.config, "a config file whose [server] section locates the daemon");
  verb->add_option("--token", opts.token, "bearer token (or PROVISR_TOKEN)");
  verb->add_option("-o,--output", output, "table or json (default: table on a terminal, json otherwise)")
      ->check(CLI::IsMember({"table", "json"}));
}

Output parseOutput(const std::string& s) {
  if (s == "json") return Output::kJson;
  if (s == "table") return Output::kTable;
  return Output::kAuto;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"provisr: a process supervisor whose control plane can die without a managed process noticing"};
  app.require_subcommand(1);
  app.fallthrough(false);

  ClientOptions opts;
  std::string output;
  std::string config_path;
  std::optional<std::string> name;
  bool dry_run = false;

  auto* version = app.add_subcommand("version", "print the version");

  auto* validate = app.add_subcommand("validate", "check a config file; exit 0 when valid, 1 with every problem listed");
  validate->add_option("config", config_path, "the main config file (.toml, .yaml, .yml, .json)")->required();
  validate->footer("Example:\n  provisr validate examples/programs_directory/config.toml");

  auto* start = app.add_subcommand("start", "start programs (all, in priority order, without --name)");
  start->add_option("--name", name, "instance, program or glob (* and ?)");
  start->add_flag("--dry-run", dry_run, "print the start plan and change nothing");
  addClientFlags(start, opts, output);
  start->footer("Examples:\n  provisr start --config config.toml --dry-run\n  provisr start --name api-server");

  auto* status = app.add_subcommand("status", "status of one instance or program, or of all");
  status->add_option("--name", name, "instance or program name");
  addClientFlags(status, opts, output);
  status->footer("Examples:\n  provisr status --api-url http://127.0.0.1:8080/api\n  provisr status --config config.toml --name worker");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  opts.output = parseOutput(output);

  if (*version) {
    auto v = provisr::version();
    std::printf("provisr %.*s\n", static_cast<int>(v.size()), v.data());
    return kExitOk;
  }
  if (*validate) return runValidate(config_path);
  if (*start) {
    if (dry_run) return runStartDryRun(opts, name);
    std::cerr << "provisr: start needs the daemon's HTTP API, which this build does not include yet; "
                 "use --dry-run to see the plan\n";
    return kExitFailed;
  }
  if (*status) return runStatus(opts, name);
  return kExitUsage;
}

// `provisr`: parses the verb and its flags (the only file that includes CLI11) and hands them to
// the verb's handler. One table of verbs; each handler lives in verbs_*.cpp.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string_view>
#include <iostream>

#include "cli/cli.hpp"
#include "cli/tls_handoff.hpp"
#include "common/util/version.hpp"

using namespace provisr::cli;

namespace {

struct Flags {
  ClientOptions client;
  std::string output;
  std::optional<std::string> name;
  std::optional<std::string> group;
  std::optional<std::string> wait;
  std::string config_positional;
  std::string file;
  std::string shell;
  bool dry_run = false;
  bool watch = false;
  bool follow = false;
  bool stderr_only = false;
  int lines = 100;
  int instances = 0;
  RegisterOptions reg;
  ServeOptions serve;
  std::optional<std::string> serve_config_flag;
  bool foreground = false;
};

// Flags every client verb takes.
void addClientFlags(CLI::App* verb, Flags& f) {
  verb->add_option("--api-url", f.client.api_url, "gateway URL, e.g. http://127.0.0.1:8080/api (or PROVISR_API_URL)");
  verb->add_option("--config", f.client.config, "a config file whose [server] section locates the daemon");
  verb->add_option("--token", f.client.token, "bearer token (or PROVISR_TOKEN)");
  verb->add_option("-o,--output", f.output, "table or json (default: table on a terminal, json otherwise)")
      ->check(CLI::IsMember({"table", "json"}));
}

// Every verb, as the subcommands below are named.
constexpr const char* kVerbs[] = {"serve", "validate", "status", "start", "stop", "restart", "scale",
                                  "group-start", "group-stop", "group-status", "logs", "register",
                                  "register-file", "unregister", "reload", "reopen-logs", "shutdown",
                                  "version", "completion", "__complete"};

Output parseOutput(const std::string& s) {
  if (s == "json") return Output::kJson;
  if (s == "table") return Output::kTable;
  return Output::kAuto;
}

}  // namespace

int main(int argc, char** argv) {
  rememberInvocation(argc, argv);
  CLI::App app{"provisr: a process supervisor whose control plane can die without a managed process noticing"};
  app.require_subcommand(1);
  Flags f;
  // Only the chosen verb's flags are declared: CLI11 builds every option object up front, which
  // was a third of the instructions of a `provisr status`. The top-level help lists verbs
  // without their flags, so the output is the same; without a known verb (a typo, --help, none)
  // every verb declares its flags, as before.
  const std::string_view chosen = argc > 1 ? argv[1] : "";
  bool known = false;
  for (const char* v : kVerbs) known = known || chosen == v;
  auto declare = [&](std::string_view verb) { return !known || chosen == verb; };

  auto* serve = app.add_subcommand("serve", "run the daemon (keeper, spawner, master, gateway) on CONFIG");
  if (declare("serve")) {
    serve->add_option("config", f.serve.config, "the main config file");
    serve->add_option("--config", f.serve_config_flag, "the main config file (instead of the argument)");
    serve->add_option("--run-dir", f.serve.run_dir, "sockets, locks and state (or PROVISR_RUN_DIR; default [daemon] run_dir)");
    serve->add_flag("--foreground", f.foreground, "stay in the foreground (the default)");
    serve->add_flag("--daemonize", f.serve.daemonize, "detach; write [daemon] pid_file, log to [daemon] log_file");
    serve->footer("Example:\n  provisr serve config.toml");
  }

  auto* validate = app.add_subcommand("validate", "check a config file; exit 0 when valid, 1 with every problem listed");
  if (declare("validate")) {
    validate->add_option("config", f.config_positional, "the main config file (.toml, .yaml, .yml, .json)")->required();
    validate->footer("Example:\n  provisr validate examples/programs_directory/config.toml");
  }

  auto* status = app.add_subcommand("status", "status of one instance, program or group, or of all");
  if (declare("status")) {
    status->add_option("--name", f.name, "instance or program name");
    status->add_option("--group", f.group, "a group's members");
    status->add_flag("--watch", f.watch, "refresh every 2 seconds until interrupted");
    addClientFlags(status, f);
    status->footer("Examples:\n  provisr status --api-url http://127.0.0.1:8080/api\n  provisr status --config config.toml --name worker");
  }

  CLI::App* actions[3];
  const char* action_names[3] = {"start", "stop", "restart"};
  const char* action_help[3] = {"start programs (all, in priority order, without --name)",
                                "stop programs (all, in reverse priority order, without --name)",
                                "restart programs (stop, then start)"};
  for (int i = 0; i < 3; ++i) {
    actions[i] = app.add_subcommand(action_names[i], action_help[i]);
    if (!declare(action_names[i])) continue;
    actions[i]->add_option("--name", f.name, "instance, program base name, or glob with * and ?");
    actions[i]->add_flag("--dry-run", f.dry_run, "print the plan and change nothing");
    actions[i]->add_option("--wait", f.wait,
                           i == 1 ? "grace before SIGKILL instead of stop_timeout; returns when stopped"
                                  : "return when running (or failed), at most this long");
    addClientFlags(actions[i], f);
    actions[i]->footer(std::string("Examples:\n  provisr ") + action_names[i] + " --name api-server\n  provisr " +
                       action_names[i] + " --config config.toml --dry-run");
  }

  auto* scale = app.add_subcommand("scale", "set a program's instance count at runtime");
  if (declare("scale")) {
    scale->add_option("name", f.reg.name, "program name")->required();
    scale->add_option("instances", f.instances, "instance count")->required();
    addClientFlags(scale, f);
    scale->footer("Example:\n  provisr scale worker 5");
  }

  CLI::App* groups[3];
  const char* group_names[3] = {"group-start", "group-stop", "group-status"};
  const char* group_help[3] = {"start a group's members in priority order", "stop a group's members in reverse priority order",
                               "status of a group's members: {member: [status...]}"};
  for (int i = 0; i < 3; ++i) {
    groups[i] = app.add_subcommand(group_names[i], group_help[i]);
    if (!declare(group_names[i])) continue;
    groups[i]->add_option("--group", f.group, "group name")->required();
    if (i < 2) groups[i]->add_option("--wait", f.wait, "how long to wait");
    addClientFlags(groups[i], f);
    groups[i]->footer(std::string("Example:\n  provisr ") + group_names[i] + " --config config.toml --group web-services");
  }

  auto* logs = app.add_subcommand("logs", "recent log lines of an instance or program, or follow them");
  if (declare("logs")) {
    logs->add_option("name", f.reg.name, "instance or program name")->required();
    logs->add_flag("-f,--follow", f.follow, "keep printing new lines");
    logs->add_option("-n,--lines", f.lines, "how many recent lines (default 100)");
    logs->add_flag("--stderr", f.stderr_only, "only stderr lines");
    addClientFlags(logs, f);
    logs->footer("Example:\n  provisr logs api-server -n 20 -f");
  }

  auto* reg = app.add_subcommand("register", "add a program at runtime (or to the programs directory when no daemon answers)");
  if (declare("register")) {
    reg->add_option("--name", f.reg.name, "program name")->required();
    reg->add_option("--command", f.reg.command, "command line")->required();
    reg->add_option("--work-dir", f.reg.work_dir, "working directory");
    reg->add_option("--log-dir", f.reg.log_dir, "log directory");
    reg->add_flag("--auto-start", f.reg.auto_start, "restart it when it exits (auto_restart)");
    addClientFlags(reg, f);
    reg->footer("Example:\n  provisr register --name web --command 'python3 -m http.server 8000'");
  }

  auto* reg_file = app.add_subcommand("register-file", "add a program from a JSON spec file");
  if (declare("register-file")) {
    reg_file->add_option("--file", f.file, "a flat JSON program spec")->required();
    addClientFlags(reg_file, f);
    reg_file->footer("Example:\n  provisr register-file --file web.json");
  }

  auto* unreg = app.add_subcommand("unregister", "remove a program added at runtime");
  if (declare("unregister")) {
    unreg->add_option("--name", f.reg.name, "program name")->required();
    addClientFlags(unreg, f);
    unreg->footer("Example:\n  provisr unregister --name web");
  }

  auto* reload = app.add_subcommand("reload", "re-read the config and apply the difference");
  if (declare("reload")) {
    reload->add_flag("--dry-run", f.dry_run, "print the plan only");
    addClientFlags(reload, f);
    reload->footer("Example:\n  provisr reload --dry-run");
  }

  auto* reopen = app.add_subcommand("reopen-logs", "reopen every log file (after an outside logrotate)");
  if (declare("reopen-logs")) addClientFlags(reopen, f);
  auto* shutdown = app.add_subcommand("shutdown", "stop every program and the daemon");
  if (declare("shutdown")) addClientFlags(shutdown, f);
  auto* version = app.add_subcommand("version", "print the version");
  auto* completion = app.add_subcommand("completion", "print a shell completion script");
  if (declare("completion")) {
    completion->add_option("shell", f.shell, "bash")->required();
    completion->footer("Example:\n  eval \"$(provisr completion bash)\"");
  }
  auto* complete_names = app.add_subcommand("__complete", "");
  complete_names->group("");  // hidden: names for the completion script
  if (declare("__complete")) addClientFlags(complete_names, f);

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
  f.client.output = parseOutput(f.output);

  if (*serve) {
    if (f.serve_config_flag) f.serve.config = *f.serve_config_flag;
    if (f.serve.config.empty()) {
      std::cerr << "provisr: serve needs a config file: provisr serve CONFIG\n";
      return kExitUsage;
    }
    return runServe(f.serve);
  }
  if (*version) {
    auto v = provisr::version();
    std::printf("provisr %.*s\n", static_cast<int>(v.size()), v.data());
    return kExitOk;
  }
  if (*validate) return runValidate(f.config_positional);
  if (*status) return runStatus(f.client, f.name, f.group, f.watch);
  for (int i = 0; i < 3; ++i) {
    if (!*actions[i]) continue;
    // A dry run with no daemon answering is computed from --config (SPEC §1.2).
    if (f.dry_run && !daemonAnswers(f.client)) return runLocalPlan(f.client, action_names[i], f.name);
    return runAction(f.client, action_names[i], ActionOptions{f.name, f.wait, f.dry_run});
  }
  if (*scale) return runScale(f.client, f.reg.name, f.instances);
  for (int i = 0; i < 3; ++i)
    if (*groups[i]) return runGroupAction(f.client, std::string(group_names[i]).substr(6), *f.group, f.wait);
  if (*logs) return runLogs(f.client, f.reg.name, f.lines, f.follow, f.stderr_only);
  if (*reg) return runRegister(f.client, f.reg);
  if (*reg_file) return runRegisterFile(f.client, f.file);
  if (*unreg) return runUnregister(f.client, f.reg.name);
  if (*reload) return runReload(f.client, f.dry_run);
  if (*reopen) return runSimplePost(f.client, "/reopen-logs", "Log files reopened");
  if (*shutdown) return runSimplePost(f.client, "/shutdown", "Shutdown requested: programs stop in reverse priority order");
  if (*completion) return runCompletion(f.shell);
  if (*complete_names) return runCompleteNames(f.client);
  return kExitUsage;
}

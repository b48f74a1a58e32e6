// Defaults of an empty config (SPEC §1.1, §1.4, §1.6) and the run_dir / log_dir fallbacks.
#include "config_test_util.hpp"

using namespace provisr::config;
using namespace provisr::config::test;
using namespace std::chrono_literals;

TEST_CASE("an empty main file gets every default", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  CHECK(r.diagnostics.empty());
  const Config& c = *r.config;
  CHECK_FALSE(c.use_os_env);
  CHECK(c.env.empty());
  CHECK(c.env_files.empty());
  CHECK(c.programs_directory == tmp.path() + "/programs");  // missing: no programs, no error
  CHECK_FALSE(c.pid_dir);
  CHECK(c.log == LogSettings{});
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.base_path == "/api");
  CHECK_FALSE(c.server.zmq_listen);
  CHECK_FALSE(c.server.zmq_events);
  CHECK_FALSE(c.server.allow_insecure);
  CHECK_FALSE(c.server.allow_root_programs);
  CHECK_FALSE(c.server.auth.enabled());
  CHECK_FALSE(c.server.tls.cert_file);
  CHECK_FALSE(c.metrics.enabled);
  CHECK_FALSE(c.metrics.listen);
  CHECK(c.daemon.run_dir == "/run/user/1000/provisr");
  CHECK(c.daemon.log_dir == "/home/tester/.local/state/provisr/logs");
  CHECK(c.groups.empty());
  CHECK(c.programs.empty());
}

TEST_CASE("run_dir and log_dir defaults follow uid and XDG variables", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.yaml", "");
  LoadOptions o = testOptions();
  o.euid = 0;
  auto root = loadConfig(main, o);
  REQUIRE(root.ok());
  CHECK(root.config->daemon.run_dir == "/run/provisr");
  CHECK(root.config->daemon.log_dir == "/var/log/provisr");

  o.euid = 1234;
  o.os_env = std::map<std::string, std::string>{{"HOME", "/h"}, {"XDG_STATE_HOME", "/state"}};
  auto xdg = loadConfig(main, o);
  REQUIRE(xdg.ok());
  CHECK(xdg.config->daemon.run_dir == "/tmp/provisr-1234");
  CHECK(xdg.config->daemon.log_dir == "/state/provisr/logs");

  o.os_env = std::map<std::string, std::string>{{"HOME", "/h"}};
  auto home = loadConfig(main, o);
  REQUIRE(home.ok());
  CHECK(home.config->daemon.log_dir == "/h/.local/state/provisr/logs");
}

TEST_CASE("a minimal program gets every spec default", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.json", "{}");
  tmp.write("programs/p.json", R"({"spec": {"name": "p", "command": "sleep 1"}})");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  const ProgramSpec& p = r.config->programs.at(0);
  CHECK(p.origin == Origin::kDirectory);  // `type` absent = process
  CHECK(p.work_dir == tmp.path());
  CHECK(p.env.empty());
  CHECK(p.priority == 0);
  CHECK(p.instances == 1);
  CHECK(p.instanceNames() == std::vector<std::string>{"p"});
  CHECK(p.start_duration == 0s);
  CHECK(p.retry_count == 0);
  CHECK(p.retry_interval == 1s);
  CHECK(p.auto_restart == AutoRestart::kNever);
  CHECK(p.restart_interval == 1s);
  CHECK_FALSE(p.restart_backoff);
  CHECK(p.success_exit_codes == std::vector<int>{0});
  CHECK(p.stop_signal == 15);
  CHECK(p.stop_signal_name == "TERM");
  CHECK(p.stop_timeout == 10s);
  CHECK_FALSE(p.user);
  CHECK_FALSE(p.group);
  CHECK(p.umask == 022);
  CHECK_FALSE(p.max_processes);
  CHECK_FALSE(p.memory_max);
  CHECK_FALSE(p.pids_max);
  CHECK(p.depends_on.empty());
  // Logs fall back to [daemon] log_dir with the documented rotation defaults.
  CHECK(p.log.dir == "/home/tester/.local/state/provisr/logs");
  CHECK_FALSE(p.log.stdout_path);
  CHECK(p.log.max_size_mb == 10);
  CHECK(p.log.max_backups == 3);
  CHECK(p.log.max_age_days == 7);
  CHECK_FALSE(p.log.compress);
  CHECK_FALSE(p.log.timestamps);
  CHECK(p.log.stdoutFile("p") == "/home/tester/.local/state/provisr/logs/p.stdout.log");
}

TEST_CASE("auto_restart and stop_signal spellings", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "");
  struct Spelling {
    const char* toml;
    AutoRestart restart;
    int signal;
  };
  for (const auto& s : {Spelling{"auto_restart = false\nstop_signal = \"TERM\"", AutoRestart::kNever, 15},
                        Spelling{"auto_restart = true\nstop_signal = \"SIGTERM\"", AutoRestart::kAlways, 15},
                        Spelling{"auto_restart = \"on-failure\"\nstop_signal = \"hup\"", AutoRestart::kOnFailure, 1},
                        Spelling{"stop_signal = \"KILL\"", AutoRestart::kNever, 9},
                        Spelling{"stop_signal = \"QUIT\"", AutoRestart::kNever, 3},
                        Spelling{"stop_signal = \"USR1\"", AutoRestart::kNever, 10},
                        Spelling{"stop_signal = \"SIGUSR2\"", AutoRestart::kNever, 12},
                        Spelling{"stop_signal = 2", AutoRestart::kNever, 2}}) {
    INFO(s.toml);
    tmp.write("programs/p.toml", std::string("[spec]\nname = \"p\"\ncommand = \"x\"\n") + s.toml + "\n");
    auto r = loadConfig(main, testOptions());
    INFO(dump(r.diagnostics));
    REQUIRE(r.ok());
    CHECK(r.config->programs[0].auto_restart == s.restart);
    CHECK(r.config->programs[0].stop_signal == s.signal);
  }
}

TEST_CASE("memory_max sizes", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "");
  for (const auto& [text, bytes] : std::vector<std::pair<std::string, std::int64_t>>{
           {"4096", 4096}, {"\"512M\"", 512LL << 20}, {"\"1G\"", 1LL << 30}, {"\"64k\"", 64LL << 10},
           {"\"2GiB\"", 2LL << 30}, {"\"100MB\"", 100LL << 20}}) {
    INFO(text);
    tmp.write("programs/p.toml", "[spec]\nname = \"p\"\ncommand = \"x\"\nmemory_max = " + text + "\n");
    auto r = loadConfig(main, testOptions());
    REQUIRE(r.ok());
    CHECK(r.config->programs[0].memory_max == bytes);
  }
}

TEST_CASE("server.auth: inline token and read-only token file", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.yaml",
                               "server:\n  auth:\n    token: s3cret\n    read_only_token_file: secrets/ro.token\n");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  CHECK(r.config->server.auth.token == "s3cret");
  CHECK(r.config->server.auth.read_only_token_file == tmp.path() + "/secrets/ro.token");
  CHECK(r.config->server.auth.enabled());
}

TEST_CASE("Go auth enabled = false only warns", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "[server.auth]\nenabled = false\njwt_secret = \"x\"\n");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  CHECK(r.warnings().size() == 2);
  CHECK_FALSE(r.config->server.auth.enabled());
}

TEST_CASE("programs_directory may hold the main file itself", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "programs_directory = \".\"\n");
  tmp.write("p.yml", "spec:\n  name: p\n  args: [/bin/true]\n");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  REQUIRE(r.config->programs.size() == 1);
  CHECK(r.config->programs[0].name == "p");
  CHECK(r.config->programs_directory == tmp.path());
}

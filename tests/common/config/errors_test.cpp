// Bad configs: each one is reported with the right file, line, dotted key and message, and every
// problem of a file is collected (not just the first).
#include "config_test_util.hpp"

using namespace provisr::config;
using namespace provisr::config::test;

namespace {

struct Case {
  const char* what;
  std::vector<std::pair<std::string, std::string>> files;  // relative path → text; main is config.*
  std::string file;                                        // where the problem is expected
  int line;
  std::string key;
  std::string fragment;
  bool warning = false;
  bool check_accounts = false;
};

const char* kOk = "type = \"process\"\n[spec]\nname = \"%s\"\ncommand = \"sleep 1\"\n";

std::string program(const std::string& name, const std::string& extra = "") {
  std::string s = kOk;
  s.replace(s.find("%s"), 2, name);
  return s + extra;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // ---- main file ----
      {"unknown top-level key with a near miss", {{"config.toml", "use_os_evn = true\n"}}, "config.toml", 1,
       "use_os_evn", "unknown key (did you mean `use_os_env`?)"},
      {"unknown key far from anything", {{"config.toml", "\n\nfrobnicate = 1\n"}}, "config.toml", 3, "frobnicate",
       "unknown key"},
      {"bool given as a string", {{"config.toml", "use_os_env = \"yes\"\n"}}, "config.toml", 1, "use_os_env",
       "must be true or false, not a string"},
      {"listen given as an integer", {{"config.toml", "[server]\nlisten = 8080\n"}}, "config.toml", 2,
       "server.listen", "must be a string, not an integer"},
      {"tls cert file missing", {{"config.toml", "[server.tls]\ncert_file = \"nope.pem\"\nkey_file = \"k.pem\"\n"}, {"k.pem", "-----BEGIN PRIVATE KEY-----\n"}},
       "config.toml", 2, "server.tls.cert_file", "nope.pem: No such file or directory"},
      {"tls cert file not PEM", {{"config.toml", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n"}, {"c.pem", "hello\n"}, {"k.pem", "-----BEGIN EC PRIVATE KEY-----\n"}},
       "config.toml", 2, "server.tls.cert_file", "is not a PEM certificate"},
      {"tls key file holds a certificate", {{"config.toml", "[server.tls]\ncert_file = \"c.pem\"\nkey_file = \"c.pem\"\n"}, {"c.pem", "-----BEGIN CERTIFICATE-----\n"}},
       "config.toml", 3, "server.tls.key_file", "is not a PEM private key"},
      {"zmq api on every interface without CURVE", {{"config.toml", "[server]\nzmq_listen = \"tcp://0.0.0.0:5555\"\n"}},
       "config.toml", 2, "server.zmq_listen", "is not a loopback address: set [server.zmq_curve]"},
      {"zmq events on a wildcard without CURVE", {{"config.toml", "[server]\nzmq_events = \"tcp://*:5556\"\n"}},
       "config.toml", 2, "server.zmq_events", "is not a loopback address"},
      {"curve key without a client keys dir", {{"config.toml", "[server.zmq_curve]\nserver_key_file = \"s.key\"\n"}, {"s.key", "x\n"}},
       "config.toml", 1, "server.zmq_curve", "set both `server_key_file` and `client_keys_dir`"},
      {"Go auth enabled without a provisr token", {{"config.toml", "[server.auth]\nenabled = true\n"}},
       "config.toml", 2, "server.auth.enabled", "set `token` or `token_file`"},
      {"token and token_file", {{"config.toml", "[server.auth]\ntoken = \"a\"\ntoken_file = \"t\"\n"}},
       "config.toml", 3, "server.auth.token_file", "not both"},
      {"tls cert without key", {{"config.toml", "[server.tls]\ncert_file = \"c.pem\"\n"}}, "config.toml", 1,
       "server.tls", "set both `cert_file` and `key_file`"},
      {"daemon typo", {{"config.toml", "[daemon]\nrun_dri = \"/x\"\n"}}, "config.toml", 2, "daemon.run_dri",
       "did you mean `run_dir`?"},
      {"unknown group member",
       {{"config.toml", "[[groups]]\nname = \"g\"\nmembers = [\n  \"a\",\n  \"nope\",\n]\n"}, {"programs/a.toml", program("a")}},
       "config.toml", 5, "groups[0].members[1]", "unknown member `nope`"},
      {"bad group name", {{"config.toml", "[[groups]]\nname = \"bad name\"\nmembers = []\n"}}, "config.toml", 2,
       "groups[0].name", "invalid group name"},
      {"duplicate group",
       {{"config.toml", "[[groups]]\nname = \"g\"\nmembers = []\n[[groups]]\nname = \"g\"\nmembers = []\n"}},
       "config.toml", 4, "groups[1].name", "duplicate group name `g`"},
      {"global env entry without =", {{"config.toml", "env = [\n  \"A=1\",\n  \"JUSTNAME\",\n]\n"}}, "config.toml",
       3, "env[1]", "must be \"NAME=value\""},
      {"missing env file", {{"config.toml", "env_files = [\"missing.env\"]\n"}}, "config.toml", 1, "env_files[0]",
       "cannot read"},
      {"dotenv syntax error", {{"config.toml", "env_files = [\"vars.env\"]\n"}, {"vars.env", "A=1\nnot a pair\n"}},
       "vars.env", 2, "", "expected KEY=VALUE"},
      {"[log] max_size_mb out of range", {{"config.toml", "[log]\nmax_size_mb = 0\n"}}, "config.toml", 2,
       "log.max_size_mb", "must be between 1 and"},
      {"TOML syntax error", {{"config.toml", "a = 1\nb = \n"}}, "config.toml", 2, "", "cannot parse"},
      {"YAML syntax error", {{"config.yaml", "server:\n  listen: [unclosed\n"}}, "config.yaml", 3, "",
       "cannot parse"},
      {"JSON syntax error", {{"config.json", "{\n  \"use_os_env\": true,\n  \"env\": [\n}\n"}}, "config.json", 4, "",
       "cannot parse"},
      {"inline process without a name",
       {{"config.toml", "[[processes]]\ntype = \"process\"\n[processes.spec]\ncommand = \"sleep 1\"\n"}},
       "config.toml", 3, "processes[0].spec", "missing required key `name`"},
      {"JSON main unknown key on its line", {{"config.json", "{\n  \"use_os_env\": true,\n  \"pid_dri\": \"x\"\n}\n"}},
       "config.json", 3, "pid_dri", "did you mean `pid_dir`?"},
      {"programs_directory is a file", {{"config.toml", "programs_directory = \"f\"\n"}, {"f", "x"}}, "config.toml",
       0, "programs_directory", "is not a directory"},
      {"metrics section of the wrong type", {{"config.toml", "metrics = 1\n"}}, "config.toml", 1, "metrics",
       "must be a table"},
      // ---- program files ----
      {"spec typo", {{"programs/p.toml", program("p", "comand = \"x\"\n")}}, "programs/p.toml", 5, "spec.comand",
       "did you mean `command`?"},
      {"command and args", {{"programs/p.toml", program("p", "args = [\"x\"]\n")}}, "programs/p.toml", 5,
       "spec.args", "not both"},
      {"neither command nor args", {{"programs/p.toml", "type = \"process\"\n[spec]\nname = \"p\"\n"}},
       "programs/p.toml", 2, "spec", "needs `command`"},
      {"instances below 1", {{"programs/p.toml", program("p", "instances = 0\n")}}, "programs/p.toml", 5,
       "spec.instances", "must be between 1 and"},
      {"bad duration", {{"programs/p.toml", program("p", "stop_timeout = \"5 seconds\"\n")}}, "programs/p.toml", 5,
       "spec.stop_timeout", "invalid duration `5 seconds`"},
      {"bad name", {{"programs/p.toml", program("a..b")}}, "programs/p.toml", 3, "spec.name",
       "invalid program name `a..b`"},
      {"bad auto_restart", {{"programs/p.toml", program("p", "auto_restart = \"sometimes\"\n")}}, "programs/p.toml",
       5, "spec.auto_restart", "must be true, false or \"on-failure\""},
      {"bad stop_signal", {{"programs/p.toml", program("p", "stop_signal = \"TERMINATE\"\n")}}, "programs/p.toml", 5,
       "spec.stop_signal", "unknown signal `TERMINATE`"},
      {"bad umask", {{"programs/p.toml", program("p", "umask = \"099\"\n")}}, "programs/p.toml", 5, "spec.umask",
       "must be an octal string"},
      {"umask as a TOML integer", {{"programs/p.toml", program("p", "umask = 18\n")}}, "programs/p.toml", 5,
       "spec.umask", "must be an octal string"},
      {"bad memory_max", {{"programs/p.toml", program("p", "memory_max = \"12Q\"\n")}}, "programs/p.toml", 5,
       "spec.memory_max", "must be bytes or a size"},
      {"exit code out of range", {{"programs/p.toml", program("p", "success_exit_codes = [0, 300]\n")}},
       "programs/p.toml", 5, "spec.success_exit_codes[1]", "between 0 and 255"},
      {"backoff jitter above 1", {{"programs/p.toml", program("p", "[spec.restart_backoff]\njitter = 2.0\n")}},
       "programs/p.toml", 6, "spec.restart_backoff.jitter", "between 0 and 1"},
      {"log field of the wrong type", {{"programs/p.toml", program("p", "[spec.log]\nmax_backups = \"three\"\n")}},
       "programs/p.toml", 6, "spec.log.max_backups", "must be an integer, not a string"},
      {"Go log shape typo", {{"programs/p.toml", program("p", "[spec.log.file]\nstdoutPat = \"x\"\n")}},
       "programs/p.toml", 6, "spec.log.file.stdoutPat", "did you mean `stdoutPath`?"},
      {"unbalanced quote in command",
       {{"programs/p.toml", "type = \"process\"\n[spec]\nname = \"p\"\ncommand = \"echo 'a\"\n"}}, "programs/p.toml",
       4, "spec.command", "unbalanced single quote"},
      {"unknown type", {{"programs/p.toml", "type = \"service\"\n[spec]\nname = \"p\"\n"}}, "programs/p.toml", 1,
       "type", "unknown type `service`"},
      {"bad origin", {{"programs/p.toml", "origin = \"robot\"\n" + program("p")}}, "programs/p.toml", 1, "origin",
       "must be \"api\""},
      {"missing spec", {{"programs/p.toml", "type = \"process\"\n"}}, "programs/p.toml", 1, "", "missing `spec`"},
      {"duplicate program across files",
       {{"programs/a.toml", program("x")}, {"programs/b.toml", program("x")}}, "programs/b.toml", 3, "spec.name",
       "duplicate program name `x`: also defined in "},
      {"program name equal to an instance name",
       {{"programs/a.toml", program("worker", "instances = 3\n")}, {"programs/b.toml", program("worker-1")}},
       "programs/b.toml", 3, "spec.name", "equals an instance name of `worker`"},
      {"unknown dependency", {{"programs/a.toml", program("a", "depends_on = [\"dbb\"]\n")}, {"programs/db.toml", program("db")}},
       "programs/a.toml", 5, "spec.depends_on", "unknown program `dbb` (did you mean `db`?)"},
      {"dependency cycle",
       {{"programs/a.toml", program("a", "depends_on = [\"b\"]\n")},
        {"programs/b.toml", program("b", "depends_on = [\"a\"]\n")}},
       "programs/a.toml", 5, "spec.depends_on", "dependency cycle: a -> b -> a"},
      {"dependency with a higher priority number",
       {{"programs/a.toml", program("a", "priority = 1\ndepends_on = [\"b\"]\n")},
        {"programs/b.toml", program("b", "priority = 9\n")}},
       "programs/a.toml", 6, "spec.depends_on", "whose priority 9 is higher"},
      {"unknown user", {{"programs/p.toml", program("p", "user = \"no-such-user-provisr\"\n")}}, "programs/p.toml", 5,
       "spec.user", "unknown user `no-such-user-provisr`", false, true},
      {"unknown group", {{"programs/p.toml", program("p", "group = \"no-such-group-provisr\"\n")}}, "programs/p.toml",
       5, "spec.group", "unknown group `no-such-group-provisr`", false, true},
      {"JSON program unknown key on its line",
       {{"programs/p.json", "{\n  \"type\": \"process\",\n  \"spec\": {\n    \"name\": \"p\",\n    \"command\": \"x\",\n"
                            "    \"work_dri\": \"/\"\n  }\n}\n"}},
       "programs/p.json", 6, "spec.work_dri", "did you mean `work_dir`?"},
      {"YAML program wrong type on its line",
       {{"programs/p.yaml", "type: process\nspec:\n  name: p\n  command: x\n  instances: many\n"}}, "programs/p.yaml",
       5, "spec.instances", "must be an integer, not a string"},
      {"program env entry without =", {{"programs/p.toml", program("p", "env = [\"=x\"]\n")}}, "programs/p.toml", 5,
       "spec.env[0]", "must be \"NAME=value\""},
      {"empty args", {{"programs/p.toml", "[spec]\nname = \"p\"\nargs = []\n"}}, "programs/p.toml", 3, "spec.args",
       "at least the program"},
      {"negative integer duration", {{"programs/p.toml", program("p", "retry_interval = -5\n")}}, "programs/p.toml", 5,
       "spec.retry_interval", "cannot be negative"},
      {"log both flat and Go shapes", {{"programs/p.toml", program("p", "[spec.log]\ndir = \"a\"\n[spec.log.file]\ndir = \"b\"\n")}},
       "programs/p.toml", 8, "spec.log.file.dir", "conflicts with `spec.log.dir`"},
      {"JSON lines survive escaped quotes and brackets inside strings",
       {{"programs/p.json", "{\"type\": \"process\", \"spec\": {\n  \"name\": \"p\",\n"
                            "  \"command\": \"sh -c 'echo \\\"{[}]\\\" \\\\'\",\n  \"env\": [\n    \"A=1\",\n"
                            "    \"B\"\n  ],\n  \"stop_timeout\": \"9x\"\n}}\n"}},
       "programs/p.json", 6, "spec.env[1]", "must be \"NAME=value\""},
      {"unknown daemon user", {{"config.toml", "[daemon]\n\nuser = \"no-such-user-provisr\"\n"}}, "config.toml", 3,
       "daemon.user", "unknown user", false, true},
      // ---- warnings ----
      {"integer duration below 1000", {{"programs/p.toml", program("p", "retry_interval = 5\n")}}, "programs/p.toml", 5,
       "spec.retry_interval", "integer durations are nanoseconds", true},
      {"unknown ${X} in program env", {{"programs/p.toml", program("p", "env = [\"A=${NOPE}\"]\n")}}, "programs/p.toml",
       5, "spec.env[0]", "`${NOPE}` is not defined", true},
      {"unknown ${X} in global env", {{"config.toml", "env = [\"A=${NOPE}\"]\n"}}, "config.toml", 1, "env[0]",
       "`${NOPE}` is not defined", true},
      {"resource caps not enforceable", {{"programs/p.toml", program("p", "pids_max = 10\n")}}, "programs/p.toml", 5,
       "spec.pids_max", "cannot be enforced", true},
      {"shared log file with differing rotation",
       {{"programs/a.toml", program("a", "[spec.log]\nstdout = \"/tmp/shared.log\"\nmax_size_mb = 1\n")},
        {"programs/b.toml", program("b", "[spec.log]\nstdout = \"/tmp/shared.log\"\nmax_size_mb = 2\n")}},
       "programs/b.toml", 5, "spec.log", "shared with program `a`", true},
      {"Go-era spec key", {{"programs/p.toml", program("p", "detached = true\n")}}, "programs/p.toml", 5,
       "spec.detached", "not supported yet", true},
      {"cronjob file skipped", {{"programs/c.toml", "type = \"cronjob\"\n[spec]\nname = \"c\"\n"}}, "programs/c.toml",
       1, "type", "not supported yet", true},
  };
  return all;
}

}  // namespace

TEST_CASE("bad configs are reported with file, line, key and message", "[common]") {
  for (const auto& c : cases()) {
    // One section per case: a failure names its case and the others still run.
    DYNAMIC_SECTION(c.what) {
      TempDir tmp;
      std::string main;
      for (const auto& [rel, text] : c.files) {
        std::string p = tmp.write(rel, text);
        if (rel.rfind("config.", 0) == 0) main = p;
      }
      if (main.empty()) main = tmp.write("config.toml", "");
      LoadOptions o = testOptions();
      o.check_accounts = c.check_accounts;
      auto r = loadConfig(main, o);
      INFO(dump(r.diagnostics));
      const Diagnostic* d = findDiag(r.diagnostics, c.key, c.fragment);
      REQUIRE(d != nullptr);
      CHECK(d->file == tmp.path() + "/" + c.file);
      CHECK(d->line == c.line);
      CHECK(d->isError() == !c.warning);
      CHECK(r.ok() == c.warning);
      // The printed form is `file:line: key: message`.
      std::string printed = d->str();
      CHECK(printed.rfind(tmp.path() + "/" + c.file + (c.line ? ":" + std::to_string(c.line) : "") + ": ", 0) == 0);
    }
  }
}

TEST_CASE("at least 30 distinct bad inputs are covered", "[common]") {
  int errors = 0;
  for (const auto& c : cases()) errors += c.warning ? 0 : 1;
  CHECK(errors >= 30);
}

TEST_CASE("every problem of a file is collected, in file order", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "use_os_evn = true\n[server]\nlisten = 1\n[daemon]\nusr = \"x\"\n");
  tmp.write("programs/p.toml", program("p", "instances = 0\nstop_timeout = \"x\"\nbogus = 1\n"));
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE_FALSE(r.ok());
  auto e = r.errors();
  REQUIRE(e.size() == 6);
  CHECK(e[0].key == "use_os_evn");
  CHECK(e[1].key == "server.listen");
  CHECK(e[2].key == "daemon.usr");
  CHECK(e[3].key == "spec.instances");
  CHECK(e[4].key == "spec.stop_timeout");
  CHECK(e[5].key == "spec.bogus");
}

TEST_CASE("missing or unreadable main files are errors, not crashes", "[common]") {
  TempDir tmp;
  auto r = loadConfig(tmp.path() + "/nope.toml", testOptions());
  REQUIRE(r.errors().size() == 1);
  CHECK(r.errors()[0].message.find("cannot read") != std::string::npos);
  auto ext = loadConfig(tmp.write("config.ini", "a=1"), testOptions());
  REQUIRE(ext.errors().size() == 1);
  CHECK(ext.errors()[0].message.find("must end in .toml") != std::string::npos);
  auto yaml_list = loadConfig(tmp.write("list.yaml", "- a\n- b\n"), testOptions());
  CHECK_FALSE(yaml_list.ok());
  auto json_list = loadConfig(tmp.write("list.json", "[1]"), testOptions());
  CHECK_FALSE(json_list.ok());
}

TEST_CASE("a broken program is not also an unknown group member or dependency", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "[[groups]]\nname = \"g\"\nmembers = [\"a\", \"b\"]\n");
  tmp.write("programs/a.toml", program("a", "instances = -1\n"));
  tmp.write("programs/b.toml", program("b", "depends_on = [\"a\"]\n"));
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.errors().size() == 1);
  CHECK(r.errors()[0].key == "spec.instances");
}

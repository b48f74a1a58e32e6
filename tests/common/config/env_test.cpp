// The child's environment (SPEC §1.5): layers, dotenv files, `${NAME}` expansion, the minimal base.
#include <algorithm>

#include "config_test_util.hpp"

using namespace provisr::config;
using namespace provisr::config::test;

namespace {

std::optional<std::string> get(const std::vector<std::string>& env, const std::string& name) {
  for (const auto& kv : env)
    if (kv.rfind(name + "=", 0) == 0) return kv.substr(name.size() + 1);
  return std::nullopt;
}

}  // namespace

TEST_CASE("child env: layers in order, expansion from earlier layers and entries", "[common]") {
  TempDir tmp;
  tmp.write("vars.env", "# dotenv\nFROM_FILE=file\nexport LAYER=file\nDERIVED=${FROM_FILE}-d\n");
  std::string main = tmp.write("config.toml",
                               "env_files = [\"vars.env\"]\n"
                               "env = [\"GLOBAL_NAME=provisr\", \"CHAIN=${GLOBAL_NAME}-x\", \"LAYER=global\"]\n");
  tmp.write("programs/p.toml",
            "[spec]\nname = \"p\"\ncommand = \"x\"\ninstances = 2\n"
            "env = [\"PATH=${PATH}:/opt/bin\", \"LAYER=program\", \"COST=$$5\", \"MINE=${CHAIN}/${LAYER}\"]\n");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  CHECK(r.diagnostics.empty());
  const Config& c = *r.config;
  auto env = childEnvironment(c, c.programs[0], 2, testOptions());
  CHECK(get(env, "PATH") == "/usr/bin:/bin:/opt/bin");
  CHECK(get(env, "HOME") == "/home/tester");
  CHECK(get(env, "USER") == "tester");
  CHECK_FALSE(get(env, "XDG_RUNTIME_DIR"));  // use_os_env = false: only the minimal base
  CHECK_FALSE(get(env, "LANG"));             // not set in the daemon's env
  CHECK(get(env, "FROM_FILE") == "file");
  CHECK(get(env, "DERIVED") == "file-d");
  CHECK(get(env, "CHAIN") == "provisr-x");
  CHECK(get(env, "LAYER") == "program");
  CHECK(get(env, "COST") == "$5");
  CHECK(get(env, "MINE") == "provisr-x/program");
  CHECK(get(env, "PROVISR_INSTANCE") == "2");
  CHECK(get(env, "PROVISR_NAME") == "p-2");
  // Each name appears once.
  CHECK(std::count_if(env.begin(), env.end(), [](const std::string& kv) { return kv.rfind("LAYER=", 0) == 0; }) == 1);
}

TEST_CASE("child env: use_os_env inherits the daemon's environment", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.yaml", "use_os_env: true\n");
  tmp.write("programs/p.yaml", "spec:\n  name: p\n  command: x\n");
  auto r = loadConfig(main, testOptions());
  REQUIRE(r.ok());
  auto env = childEnvironment(*r.config, r.config->programs[0], 1, testOptions());
  CHECK(get(env, "XDG_RUNTIME_DIR") == "/run/user/1000");
  CHECK(get(env, "PROVISR_NAME") == "p");
  CHECK(get(env, "PROVISR_INSTANCE") == "1");
}

TEST_CASE("child env: minimal base keeps LANG and supplies a PATH", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "");
  tmp.write("programs/p.toml", "[spec]\nname = \"p\"\ncommand = \"x\"\n");
  auto r = loadConfig(main, testOptions());
  REQUIRE(r.ok());
  LoadOptions o = testOptions();
  o.os_env = std::map<std::string, std::string>{{"LANG", "C.UTF-8"}, {"SECRET", "x"}};
  auto env = childEnvironment(*r.config, r.config->programs[0], 1, o);
  CHECK(get(env, "LANG") == "C.UTF-8");
  CHECK_FALSE(get(env, "SECRET"));
  CHECK(get(env, "PATH").has_value());
  CHECK_FALSE(get(env, "HOME"));
}

TEST_CASE("loadProgramText: registration shapes validated against a loaded config", "[common]") {
  TempDir tmp;
  std::string main = tmp.write("config.toml", "");
  tmp.write("programs/db.toml", "[spec]\nname = \"db\"\ncommand = \"x\"\npriority = 1\n");
  auto r = loadConfig(main, testOptions());
  REQUIRE(r.ok());
  const Config& c = *r.config;

  // The Go `register-file` / HTTP /register flat JSON spec with the nested log shape.
  auto flat = loadProgramText(R"({"name": "api", "command": "sleep 5", "work_dir": "/srv", "auto_restart": true,
                                  "log": {"file": {"dir": "/var/log/api"}}, "depends_on": ["db"], "priority": 2})",
                              "json", tmp.path() + "/programs/api.json", c, true, testOptions());
  INFO(dump(flat.diagnostics));
  REQUIRE(flat.ok());
  CHECK(flat.program->origin == Origin::kApi);
  CHECK(flat.program->log.dir == "/var/log/api");
  CHECK(flat.program->argv == std::vector<std::string>{"sleep", "5"});

  // A name another file already holds.
  auto dup = loadProgramText("type: process\nspec:\n  name: db\n  command: x\n", "yaml",
                             tmp.path() + "/programs/other.yaml", c, false, testOptions());
  REQUIRE_FALSE(dup.ok());
  REQUIRE(dup.errors().size() == 1);
  CHECK(dup.errors()[0].key == "spec.name");
  CHECK(dup.errors()[0].line == 3);
  CHECK(dup.errors()[0].message.find(tmp.path() + "/programs/db.toml") != std::string::npos);

  // Reloading the file that holds it replaces it.
  auto same = loadProgramFile(tmp.path() + "/programs/db.toml", c, testOptions());
  CHECK(same.ok());

  // Unknown dependency and a priority inversion against the config's programs.
  auto dep = loadProgramText("[spec]\nname = \"late\"\ncommand = \"x\"\npriority = 0\ndepends_on = [\"db\", \"ghost\"]\n",
                             "toml", tmp.path() + "/programs/late.toml", c, false, testOptions());
  INFO(dump(dep.diagnostics));
  CHECK(findDiag(dep.diagnostics, "spec.depends_on", "unknown program `ghost`"));
  CHECK(findDiag(dep.diagnostics, "spec.depends_on", "whose priority 1 is higher"));

  auto cron = loadProgramText("type = \"cronjob\"\n[spec]\nname = \"c\"\n", "toml", tmp.path() + "/c.toml", c, false,
                              testOptions());
  CHECK_FALSE(cron.ok());
  CHECK(cron.skipped);
  CHECK(cron.errors().empty());
}

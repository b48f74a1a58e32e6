// The Go provisr's config files (shared/compat/go-provisr) load: warnings only, except the one
// auth error of config/config.toml.
#include <filesystem>

#include "config_test_util.hpp"

using namespace provisr::config;
using namespace provisr::config::test;

namespace {
const std::string kCompat = std::string(PROVISR_SHARED_DIR) + "/compat/go-provisr";
}

TEST_CASE("compat: config/config.toml fails only with the auth error", "[common]") {
  auto r = loadConfig(kCompat + "/config/config.toml", testOptions());
  INFO(dump(r.diagnostics));
  CHECK_FALSE(r.ok());
  auto errors = r.errors();
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].key == "server.auth.enabled");
  CHECK(errors[0].file == kCompat + "/config/config.toml");
  CHECK(errors[0].line == 62);
  CHECK(errors[0].message.find("token") != std::string::npos);
  // Every Go-era key is named in a warning.
  for (const char* key : {"history", "server.tls.enabled", "server.tls.min_version", "server.tls.max_version",
                          "server.tls.auto_gen", "metrics.process_metrics", "server.auth.store", "spec.detectors",
                          "type"}) {
    INFO(key);
    bool found = false;
    for (const auto& w : r.warnings()) found = found || w.key == key;
    CHECK(found);
  }
}

TEST_CASE("compat: config.toml with a provisr token loads, programs and group included", "[common]") {
  TempDir tmp;
  // The same file plus a token: everything else must load as the Go version wrote it.
  std::ifstream in(kCompat + "/config/config.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto at = text.find("[server.auth]\n");
  REQUIRE(at != std::string::npos);
  text.insert(at + 14, "token = \"secret\"\n");
  std::string main = tmp.write("config.toml", text);
  std::filesystem::copy(kCompat + "/config/programs", tmp.path() + "/programs");
  auto r = loadConfig(main, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  CHECK(c.programs.size() == 3);  // cron-clean is skipped
  REQUIRE(c.findProgram("long-sleeper"));
  CHECK(c.findProgram("long-sleeper")->argv == std::vector<std::string>{"sleep", "300"});
  CHECK(c.findProgram("long-sleeper")->start_duration == std::chrono::milliseconds(500));
  CHECK(c.findProgram("api-server")->log.stdout_path == tmp.path() + "/programs/api-server.stdout.log");
  CHECK(c.pid_dir == tmp.path() + "/run");
  CHECK(c.log.dir == tmp.path() + "/provisr-logs");
  CHECK(c.server.auth.token == "secret");
  REQUIRE(c.findGroup("backend"));
  CHECK(c.env == std::vector<std::string>{"GLOBAL_NAME=provisr", "SHARED_PORT=9000", "CHAIN=${GLOBAL_NAME}-x"});
  auto env = childEnvironment(c, *c.findProgram("cleanup"), 1, testOptions());
  CHECK(std::find(env.begin(), env.end(), "CHAIN=provisr-x") != env.end());
}

TEST_CASE("compat: every other Go main config loads with warnings", "[common]") {
  for (const char* f : {"/config/process_metrics_demo.toml", "/examples/programs_directory/config.toml"}) {
    INFO(f);
    auto r = loadConfig(kCompat + f, testOptions());
    INFO(dump(r.diagnostics));
    CHECK(r.ok());
  }
  auto demo = loadConfig(kCompat + "/config/process_metrics_demo.toml", testOptions());
  REQUIRE(demo.ok());
  // Inline programs come first, then the default programs directory (config/programs).
  REQUIRE(demo.config->programs.size() == 4);
  const auto& app = demo.config->programs[0];
  CHECK(app.name == "demo-app");
  CHECK(app.origin == Origin::kInline);
  CHECK(app.instances == 3);
  CHECK(app.work_dir == kCompat + "/config");
  CHECK(app.auto_restart == AutoRestart::kAlways);
  auto ex = loadConfig(kCompat + "/examples/programs_directory/config.toml", testOptions());
  REQUIRE(ex.ok());
  CHECK(ex.config->programs.size() == 9);
  CHECK(ex.config->groups.size() == 4);
  // frontend and test-frontend share a stdout file with different rotation: a warning, not an error.
  CHECK(findDiag(ex.diagnostics, "spec.log", "shared with program `frontend`"));
}

TEST_CASE("compat: every Go program file loads on its own", "[common]") {
  auto base = loadConfig(kCompat + "/examples/programs_directory/config.toml", testOptions());
  REQUIRE(base.ok());
  Config empty = *base.config;
  empty.programs.clear();
  for (const char* dir : {"/config/programs", "/examples/programs_directory/programs"}) {
    for (const auto& e : std::filesystem::directory_iterator(kCompat + dir)) {
      INFO(e.path().string());
      auto r = loadProgramFile(e.path().string(), empty, testOptions());
      INFO(dump(r.diagnostics));
      CHECK(r.errors().empty());
      if (e.path().filename() == "cron-clean.toml") CHECK_FALSE(r.ok());
      else CHECK(r.ok());
    }
  }
}

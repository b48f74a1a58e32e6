// Tests of reload plans: add, remove, change, scale (incl. 1 <-> N), in-place updates, globals, no-op.
#include "master/reload_plan.hpp"

#include <catch2/catch.hpp>

using namespace provisr;
using namespace provisr::master;
using Strings = std::vector<std::string>;
using Kind = ProgramChange::Kind;

namespace {

config::ProgramSpec prog(std::string name, int instances = 1) {
  config::ProgramSpec p;
  p.name = std::move(name);
  p.instances = instances;
  p.command = "sleep 100";
  p.argv = {"/bin/sleep", "100"};
  p.work_dir = "/srv";
  p.log.dir = "/var/log/provisr";
  return p;
}

config::Config configOf(std::vector<config::ProgramSpec> programs) {
  config::Config c;
  c.file = "/etc/provisr/config.toml";
  c.programs = std::move(programs);
  return c;
}

}  // namespace

TEST_CASE("identical configs give an empty plan", "[master][reload]") {
  const auto a = configOf({prog("web", 2), prog("db")});
  const auto plan = planReload(a, a);
  CHECK(plan.empty());
  CHECK(plan.toStart().empty());
  CHECK(plan.toStop().empty());
  CHECK(plan.toRestart().empty());
  CHECK(plan.str() == "reload plan: nothing to change\n");
}

TEST_CASE("added programs start, removed ones stop, unchanged ones are untouched", "[master][reload]") {
  const auto a = configOf({prog("web"), prog("old", 2)});
  const auto b = configOf({prog("web"), prog("api", 3)});
  const auto plan = planReload(a, b);
  REQUIRE(plan.programs.size() == 3);
  CHECK(plan.find("web")->kind == Kind::kUnchanged);
  CHECK(plan.find("api")->kind == Kind::kAdded);
  CHECK(plan.find("old")->kind == Kind::kRemoved);
  CHECK(plan.toStart() == Strings{"api-1", "api-2", "api-3"});
  CHECK(plan.toStop() == Strings{"old-1", "old-2"});
  CHECK(plan.toRestart().empty());
  CHECK(plan.str() ==
        "reload plan:\n"
        "  + api (added): start api-1 api-2 api-3\n"
        "  - old (removed): stop old-1 old-2\n"
        "  = 1 program unchanged\n");
}

TEST_CASE("a changed program restarts only its instances and names what changed", "[master][reload]") {
  auto changed = prog("web", 2);
  changed.command = "sleep 200";
  changed.argv = {"/bin/sleep", "200"};
  changed.env = {"A=1"};
  const auto plan = planReload(configOf({prog("web", 2), prog("db")}), configOf({changed, prog("db")}));
  const auto* c = plan.find("web");
  REQUIRE(c);
  CHECK(c->kind == Kind::kChanged);
  CHECK(c->fields == Strings{"command", "env"});  // argv follows command: not listed twice
  CHECK(c->restart == Strings{"web-1", "web-2"});
  CHECK(plan.find("db")->kind == Kind::kUnchanged);
  CHECK_THAT(plan.str(), Catch::Contains("~ web (changed: command, env): restart web-1 web-2"));
}

TEST_CASE("each restart-relevant field is detected", "[master][reload]") {
  using Mutator = void (*)(config::ProgramSpec&);
  const std::vector<std::pair<std::string, Mutator>> cases{
      {"args", [](config::ProgramSpec& p) { p.args = {"x"}; }},
      {"argv", [](config::ProgramSpec& p) { p.argv = {"/usr/bin/sleep", "100"}; }},
      {"work_dir", [](config::ProgramSpec& p) { p.work_dir = "/tmp"; }},
      {"start_duration", [](config::ProgramSpec& p) { p.start_duration = std::chrono::seconds(3); }},
      {"retry_count", [](config::ProgramSpec& p) { p.retry_count = 3; }},
      {"retry_interval", [](config::ProgramSpec& p) { p.retry_interval = std::chrono::seconds(3); }},
      {"auto_restart", [](config::ProgramSpec& p) { p.auto_restart = config::AutoRestart::kAlways; }},
      {"restart_interval", [](config::ProgramSpec& p) { p.restart_interval = std::chrono::seconds(3); }},
      {"restart_backoff", [](config::ProgramSpec& p) { p.restart_backoff = config::RestartBackoff{}; }},
      {"success_exit_codes", [](config::ProgramSpec& p) { p.success_exit_codes = {0, 1}; }},
      {"stop_signal", [](config::ProgramSpec& p) { p.stop_signal = 2; }},
      {"stop_timeout", [](config::ProgramSpec& p) { p.stop_timeout = std::chrono::seconds(1); }},
      {"user", [](config::ProgramSpec& p) { p.user = "nobody"; }},
      {"group", [](config::ProgramSpec& p) { p.group = "nogroup"; }},
      {"umask", [](config::ProgramSpec& p) { p.umask = 077; }},
      {"max_processes", [](config::ProgramSpec& p) { p.max_processes = 10; }},
      {"memory_max", [](config::ProgramSpec& p) { p.memory_max = 1 << 20; }},
      {"pids_max", [](config::ProgramSpec& p) { p.pids_max = 10; }},
      {"log", [](config::ProgramSpec& p) { p.log.max_backups = 9; }},
  };
  for (const auto& [field, mutate] : cases) {
    CAPTURE(field);
    auto b = prog("web");
    mutate(b);
    const auto plan = planReload(configOf({prog("web")}), configOf({b}));
    CHECK(plan.find("web")->kind == Kind::kChanged);
    CHECK(plan.find("web")->fields == Strings{field});
    CHECK(plan.toRestart() == Strings{"web"});
  }
}

TEST_CASE("ordering and metadata changes apply in place", "[master][reload]") {
  auto b = prog("web");
  b.priority = 5;
  b.source_file = "/etc/provisr/programs/web.toml";
  b.source_line = 12;
  const auto plan = planReload(configOf({prog("web")}), configOf({b}));
  CHECK(plan.find("web")->kind == Kind::kUpdated);
  CHECK(plan.find("web")->fields == Strings{"priority", "source_file"});
  CHECK(plan.toRestart().empty());
  CHECK_THAT(plan.str(), Catch::Contains("~ web (updated: priority, source_file): no restart"));

  auto moved = prog("web");
  moved.source_line = 40;  // a comment moved it: not a change at all
  CHECK(planReload(configOf({prog("web")}), configOf({moved})).empty());
}

TEST_CASE("scaling adds or removes only the extra instances", "[master][reload]") {
  SECTION("up") {
    const auto plan = planReload(configOf({prog("w", 2)}), configOf({prog("w", 4)}));
    const auto* c = plan.find("w");
    CHECK(c->kind == Kind::kScaled);
    CHECK(c->fields == Strings{"instances 2 -> 4"});
    CHECK(c->start == Strings{"w-3", "w-4"});
    CHECK(c->stop.empty());
    CHECK(c->restart.empty());
    CHECK_THAT(plan.str(), Catch::Contains("~ w (scaled: instances 2 -> 4): start w-3 w-4"));
  }
  SECTION("down") {
    const auto plan = planReload(configOf({prog("w", 4)}), configOf({prog("w", 2)}));
    CHECK(plan.find("w")->stop == Strings{"w-3", "w-4"});
    CHECK(plan.find("w")->start.empty());
  }
  SECTION("1 -> N renames name to name-1") {
    const auto plan = planReload(configOf({prog("w", 1)}), configOf({prog("w", 3)}));
    const auto* c = plan.find("w");
    CHECK(c->kind == Kind::kScaled);
    CHECK(c->fields == Strings{"instances 1 -> 3 (renamed)"});
    CHECK(c->stop == Strings{"w"});
    CHECK(c->start == Strings{"w-1", "w-2", "w-3"});
  }
  SECTION("N -> 1 renames back") {
    const auto plan = planReload(configOf({prog("w", 2)}), configOf({prog("w", 1)}));
    CHECK(plan.find("w")->stop == Strings{"w-1", "w-2"});
    CHECK(plan.find("w")->start == Strings{"w"});
  }
  SECTION("scaled and changed: kept instances restart, extras are added") {
    auto b = prog("w", 3);
    b.env = {"X=1"};
    const auto plan = planReload(configOf({prog("w", 2)}), configOf({b}));
    const auto* c = plan.find("w");
    CHECK(c->kind == Kind::kChanged);
    CHECK(c->restart == Strings{"w-1", "w-2"});
    CHECK(c->start == Strings{"w-3"});
    CHECK(c->fields == Strings{"instances 2 -> 3", "env"});
  }
}

TEST_CASE("a global env change restarts every program", "[master][reload]") {
  auto a = configOf({prog("web"), prog("db", 2)});
  auto b = a;
  b.env = {"GLOBAL=1"};
  const auto plan = planReload(a, b);
  CHECK(plan.global_env == Strings{"env"});
  CHECK(plan.toRestart() == Strings{"web", "db-1", "db-2"});
  CHECK(plan.find("web")->fields == Strings{"global env"});
  CHECK_THAT(plan.str(), Catch::Contains("global environment changed (env): every program restarts"));
}

TEST_CASE("groups are diffed by name and members", "[master][reload]") {
  auto a = configOf({prog("web"), prog("db")});
  a.groups = {{"all", {"web", "db"}}, {"gone", {"web"}}, {"same", {"db"}}};
  auto b = a;
  b.groups = {{"all", {"web"}}, {"same", {"db"}}, {"new", {"db"}}};
  const auto plan = planReload(a, b);
  CHECK(plan.groups_added == Strings{"new"});
  CHECK(plan.groups_removed == Strings{"gone"});
  CHECK(plan.groups_changed == Strings{"all"});
  CHECK(plan.toRestart().empty());
  CHECK_FALSE(plan.empty());
}

TEST_CASE("[server]/[daemon]/[metrics] changes are reported as needing a restart", "[master][reload]") {
  auto a = configOf({prog("web")});
  auto b = a;
  b.server.listen = "127.0.0.1:9090";
  b.metrics.enabled = true;
  b.daemon.user = "provisr";
  b.server.auth.token = "secret";
  const auto plan = planReload(a, b);
  CHECK(plan.needs_restart == Strings{"server.listen", "server.auth.token", "metrics.enabled", "daemon.user"});
  CHECK(plan.toRestart().empty());
  CHECK(plan.str() ==
        "reload plan:\n"
        "  = 1 program unchanged\n"
        "  needs a restart of provisr serve (not applied by reload): server.listen, server.auth.token, "
        "metrics.enabled, daemon.user\n");
}

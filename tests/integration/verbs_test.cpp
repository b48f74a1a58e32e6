// CLI verbs against a real daemon beyond the seed README: serve refusing a bad config, scale,
// reload --dry-run, reopen-logs, logs, and shutdown through the API.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr::test;
using nlohmann::json;

TEST_CASE("serve refuses an invalid config, prints every problem and starts nothing", "[integration]") {
  TempDir dir;
  auto config = dir.write("config.toml",
                          "[[processes]]\ntype = \"process\"\nspec.name = \"a\"\nspec.command = \"sleep 100\"\n"
                          "spec.instancez = 2\n[[groups]]\nname = \"g\"\nmembers = [\"nosuch\"]\n");
  auto r = run({binPath("provisr"), "serve", config, "--run-dir", dir.str() + "/run"}, "", {}, std::chrono::seconds(20));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("spec.instancez") != std::string::npos);
  CHECK(r.err.find("unknown member") != std::string::npos);
  CHECK(r.err.find("nothing was started") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "run/keeper/keeper.lock"));
}

TEST_CASE("scale, reload --dry-run, reopen-logs, logs and shutdown through the CLI", "[integration]") {
  TempDir dir;
  int port = freePort();
  std::ostringstream cfg;
  cfg << "[log]\ndir = \"" << dir.str() << "/logs\"\n"
      << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
      << "[[processes]]\ntype = \"process\"\nspec.name = \"web\"\n"
      << "spec.command = \"sh -c 'echo hello from $PROVISR_NAME; exec sleep 1000'\"\n";
  auto config = dir.write("config.toml", cfg.str());
  std::string api = "http://127.0.0.1:" + std::to_string(port) + "/api";
  Daemon daemon(config, dir.str() + "/run", dir.str() + "/serve.log");
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), binPath("provisr"));
    args.insert(args.end(), {"--api-url", api});
    return run(args);
  };
  auto states = [&] {
    std::map<std::string, std::string> out;
    auto rows = json::parse(cli({"status", "-o", "json"}).out, nullptr, false);
    if (rows.is_array())
      for (const auto& r : rows) out[r["name"].get<std::string>()] = r["state"].get<std::string>();
    return out;
  };
  REQUIRE(waitFor([&] { return states()["web"] == "running"; }, std::chrono::seconds(20)));
  INFO(daemon.log());

  // scale 1 -> 3: `web` becomes web-1..web-3 (SPEC §2.4), all running.
  auto scaled = cli({"scale", "web", "3"});
  INFO(scaled.out << scaled.err);
  REQUIRE(scaled.exit_code == 0);
  REQUIRE(waitFor(
      [&] {
        auto s = states();
        return s.size() == 3 && s["web-1"] == "running" && s["web-2"] == "running" && s["web-3"] == "running";
      },
      std::chrono::seconds(20)));

  // logs of a program: lines of every instance.
  REQUIRE(waitFor([&] { return cli({"logs", "web", "-n", "10", "-o", "table"}).out.find("hello from web-3") != std::string::npos; },
                  std::chrono::seconds(10)));

  auto plan = cli({"reload", "--dry-run"});
  INFO(plan.out << plan.err);
  CHECK(plan.exit_code == 0);
  CHECK(states().size() == 3);  // a dry run changes nothing

  CHECK(cli({"reopen-logs"}).exit_code == 0);
  CHECK(cli({"status", "--name", "nosuch"}).exit_code == 4);

  auto down = cli({"shutdown"});
  INFO(down.out << down.err);
  CHECK(down.exit_code == 0);
  REQUIRE(daemon.waitExit(std::chrono::seconds(30)));
  CHECK(daemon.exitCode() == 0);
  CHECK(cli({"status"}).exit_code == 3);
}

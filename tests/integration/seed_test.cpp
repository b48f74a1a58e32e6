// The seed README, step by step, against a copy of examples/programs_directory with its ports
// and log directory moved to free/temp ones and its worker shortened: the real `provisr serve`
// and the real CLI, as a user would type them.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string readFile(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeFile(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

std::string replaceAll(std::string s, const std::string& from, const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) s.replace(pos, from.size(), to);
  return s;
}

// The example, copied into `dir` with its ports, log directory and worker duration changed.
struct SeedCopy {
  int api_port = freePort();
  int metrics_port = freePort();
  std::string api_url;
  fs::path root;
  fs::path logs;

  explicit SeedCopy(const TempDir& dir) : root(dir.path() / "example"), logs(dir.path() / "logs") {
    api_url = "http://127.0.0.1:" + std::to_string(api_port) + "/api";
    fs::copy(fs::path(PROVISR_SOURCE_DIR) / "examples/programs_directory", root, fs::copy_options::recursive);
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (!entry.is_regular_file()) continue;
      std::string text = readFile(entry.path());
      text = replaceAll(text, "/tmp/provisr-programs-demo", logs.string());
      text = replaceAll(text, "127.0.0.1:8080", "127.0.0.1:" + std::to_string(api_port));
      text = replaceAll(text, "127.0.0.1:9090", "127.0.0.1:" + std::to_string(metrics_port));
      if (entry.path().filename() == "worker.yaml") {
        text = replaceAll(text, "-le 60", "-le 3");
        text = replaceAll(text, "sleep 2", "sleep 0.3");
        text = replaceAll(text, "all 60 jobs", "all 3 jobs");
      }
      writeFile(entry.path(), text);
    }
  }
};

std::map<std::string, std::string> cliEnv() {
  return {{"PATH", std::string(PROVISR_BIN_DIR) + ":/usr/bin:/bin"}};
}

RunResult cli(const SeedCopy& seed, std::vector<std::string> args) {
  args.insert(args.begin(), binPath("provisr"));
  return run(args, seed.root.string(), cliEnv(), std::chrono::seconds(60));
}

json statusAll(const SeedCopy& seed) {
  auto r = cli(seed, {"status", "--api-url", seed.api_url, "-o", "json"});
  if (r.exit_code != 0) return json::array();
  auto j = json::parse(r.out, nullptr, false);
  return j.is_array() ? j : json::array();
}

std::map<std::string, json> byName(const json& rows) {
  std::map<std::string, json> out;
  for (const auto& r : rows) out[r["name"].get<std::string>()] = r;
  return out;
}

}  // namespace

TEST_CASE("the seed README runs as written", "[integration]") {
  TempDir dir;
  SeedCopy seed(dir);
  std::string run_dir = (dir.path() / "run").string();

  // 1. provisr serve config.toml
  Daemon daemon((seed.root / "config.toml").string(), run_dir, (dir.path() / "serve.log").string());
  REQUIRE(waitFor([&] { return cli(seed, {"status", "--api-url", seed.api_url}).exit_code == 0; },
                  std::chrono::seconds(20)));

  // 2. provisr status --api-url ...
  auto st = cli(seed, {"status", "--api-url", seed.api_url});
  INFO(st.out << st.err << daemon.log());
  CHECK(st.exit_code == 0);

  // 3. provisr start --config config.toml
  auto start = cli(seed, {"start", "--config", "config.toml"});
  INFO(start.out << start.err);
  CHECK(start.exit_code == 0);
  const std::vector<std::string> order = {"database", "cache-redis", "api-server-1", "api-server-2",
                                          "frontend", "scheduler", "worker-1", "worker-2", "worker-3"};
  // Every instance has started (the workers may already have finished their three jobs).
  REQUIRE(waitFor(
      [&] {
        auto rows = byName(statusAll(seed));
        return std::all_of(order.begin(), order.end(), [&](const std::string& n) {
          return rows.count(n) && !rows[n]["started_at"].is_null() &&
                 (rows[n]["state"] == "running" || rows[n]["state"] == "exited");
        });
      },
      std::chrono::seconds(40)));
  auto rows = byName(statusAll(seed));
  // Priority order by started_at: each band starts no earlier than the band before it.
  auto startedAt = [&](const std::string& n) { return rows[n]["started_at"].get<std::string>(); };
  CHECK(startedAt("database") <= startedAt("cache-redis"));
  CHECK(startedAt("cache-redis") <= startedAt("api-server-1"));
  CHECK(startedAt("api-server-2") <= startedAt("frontend"));
  CHECK(startedAt("frontend") <= startedAt("scheduler"));
  CHECK(startedAt("scheduler") <= startedAt("worker-1"));
  CHECK(rows.count("api-server-3") == 0);
  CHECK(rows.count("worker-4") == 0);

  // 4. group-status for the three groups: {member: [status...]}
  for (const auto& [group, members] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"web-services", {"frontend", "api-server"}},
           {"background-tasks", {"worker", "scheduler"}},
           {"infrastructure", {"database", "cache-redis"}}}) {
    auto gs = cli(seed, {"group-status", "--config", "config.toml", "--group", group});
    INFO(group << ": " << gs.out << gs.err);
    REQUIRE(gs.exit_code == 0);
    auto j = json::parse(gs.out, nullptr, false);
    REQUIRE(j.is_object());
    for (const auto& m : members) {
      REQUIRE(j.contains(m));
      CHECK(j[m].is_array());
      CHECK(!j[m].empty());
    }
  }
  auto api_group = json::parse(cli(seed, {"group-status", "--config", "config.toml", "--group", "web-services"}).out);
  CHECK(api_group["api-server"].size() == 2);

  // The workers finish their jobs and end `exited`, not restarted.
  REQUIRE(waitFor(
      [&] {
        auto r = byName(statusAll(seed));
        return r["worker-1"]["state"] == "exited" && r["worker-2"]["state"] == "exited" &&
               r["worker-3"]["state"] == "exited";
      },
      std::chrono::seconds(30)));
  rows = byName(statusAll(seed));
  CHECK(rows["worker-1"]["restarts"] == 0);
  CHECK(rows["worker-1"]["exit_code"] == 0);
  auto worker_log = readFile(seed.logs / "worker/worker.out.log");
  CHECK(worker_log.find("worker-2 finished all 3 jobs") != std::string::npos);

  // 6. ./demo.sh against the running daemon.
  auto demo = run({(seed.root / "demo.sh").string()}, seed.root.string(),
                  {{"PATH", std::string(PROVISR_BIN_DIR) + ":/usr/bin:/bin"}, {"PROVISR_API_URL", seed.api_url}},
                  std::chrono::seconds(120));
  INFO("demo: " << demo.out << demo.err);
  CHECK(demo.exit_code == 0);
  CHECK(demo.out.find("already answers") != std::string::npos);

  // 7. Stop processes.
  auto stop = cli(seed, {"stop", "--config", "config.toml", "--name", "frontend"});
  INFO(stop.out << stop.err);
  CHECK(stop.exit_code == 0);
  CHECK(byName(statusAll(seed))["frontend"]["state"] == "stopped");
  CHECK(cli(seed, {"group-stop", "--config", "config.toml", "--group", "infrastructure"}).exit_code == 0);
  CHECK(cli(seed, {"group-stop", "--config", "config.toml", "--group", "background-tasks"}).exit_code == 0);
  rows = byName(statusAll(seed));
  INFO(daemon.log());
  CHECK(rows["database"]["state"] == "stopped");
  CHECK(rows["cache-redis"]["state"] == "stopped");
  CHECK(rows["scheduler"]["state"] == "stopped");
  // The demo restarted api-server-1; the web group was not stopped, so it runs again.
  CHECK(waitFor([&] { return byName(statusAll(seed))["api-server-1"]["state"] == "running"; },
                std::chrono::seconds(10)));

  // Testing configuration: a dry run starts nothing.
  auto dry = cli(seed, {"start", "--config", "config.toml", "--dry-run"});
  INFO(dry.out << dry.err);
  CHECK(dry.exit_code == 0);
  rows = byName(statusAll(seed));
  INFO(daemon.log());
  CHECK(rows["database"]["state"] == "stopped");
  CHECK(rows["frontend"]["state"] == "stopped");
  CHECK(cli(seed, {"status", "--config", "config.toml"}).exit_code == 0);

  // Log files where the README says.
  for (const auto* f : {"frontend/frontend.out.log", "api/api.out.log", "worker/worker.out.log",
                        "scheduler/scheduler.out.log", "database/database.out.log", "redis/redis.out.log"})
    CHECK(fs::exists(seed.logs / f));

  // Shut down: exit 0, then status says the daemon is gone (exit 3 with a hint).
  daemon.signal(SIGTERM);
  REQUIRE(daemon.waitExit(std::chrono::seconds(30)));
  CHECK(daemon.exitCode() == 0);
  auto gone = cli(seed, {"status", "--config", "config.toml"});
  CHECK(gone.exit_code == 3);
  CHECK(gone.err.find("provisr serve") != std::string::npos);
}

// `provisr validate` and `provisr start --dry-run` run as real binaries on real config files.
#include <catch2/catch.hpp>

#include "tests/support/run.hpp"

using namespace provisr::test;

namespace {
const std::string kExample = std::string(PROVISR_SOURCE_DIR) + "/examples/programs_directory/config.toml";
}

TEST_CASE("validate accepts the seed example", "[cli]") {
  auto r = run({binPath("provisr"), "validate", kExample});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("valid: 6 programs (9 instances), 4 groups") != std::string::npos);
}

TEST_CASE("validate lists every problem with its location and exits 1", "[cli]") {
  TempDir dir;
  auto cfg = dir.write("config.toml",
                       "programs_directory = \"programs\"\n"
                       "[[groups]]\nname = \"web\"\nmembers = [\"nosuch\"]\n");
  dir.write("programs/a.toml", "type = \"process\"\n[spec]\nname = \"a\"\ncommand = \"sleep 1\"\nretry_intervall = \"1s\"\n");
  auto r = run({binPath("provisr"), "validate", cfg});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("a.toml:5: spec.retry_intervall") != std::string::npos);
  CHECK(r.err.find("retry_interval") != std::string::npos);  // the "did you mean"
  CHECK(r.err.find("unknown member") != std::string::npos);
  CHECK(r.err.find("nosuch") != std::string::npos);
}

TEST_CASE("validate of a missing file says so", "[cli]") {
  auto r = run({binPath("provisr"), "validate", "/nonexistent/provisr.toml"});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("/nonexistent/provisr.toml") != std::string::npos);
}

TEST_CASE("a verb without its required argument is a usage error", "[cli]") {
  auto r = run({binPath("provisr"), "validate"});
  CHECK(r.exit_code == 2);
  auto none = run({binPath("provisr")});
  CHECK(none.exit_code == 2);
  auto bad = run({binPath("provisr"), "no-such-verb"});
  CHECK(bad.exit_code == 2);
}

TEST_CASE("start --dry-run prints priority bands: database first, worker x3 last", "[cli]") {
  auto r = run({binPath("provisr"), "start", "--config", kExample, "--dry-run", "-o", "table"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  auto db = r.out.find("  database");
  auto redis = r.out.find("  cache-redis");
  auto api = r.out.find("  api-server x2: api-server-1, api-server-2");
  auto front = r.out.find("  frontend");
  auto sched = r.out.find("  scheduler");
  auto worker = r.out.find("  worker x3: worker-1, worker-2, worker-3");
  REQUIRE(db != std::string::npos);
  REQUIRE(worker != std::string::npos);
  CHECK(db < redis);
  CHECK(redis < api);
  CHECK(api < front);
  CHECK(front < sched);
  CHECK(sched < worker);
  CHECK(r.out.find("/tmp/provisr-programs-demo/worker/worker.out.log") != std::string::npos);
}

TEST_CASE("start --dry-run as JSON has the bands in order with argv and env keys", "[cli]") {
  auto r = run({binPath("provisr"), "start", "--config", kExample, "--dry-run", "-o", "json"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"priority\": 1") < r.out.find("\"priority\": 20"));
  CHECK(r.out.find("\"PROVISR_NAME\"") != std::string::npos);
  CHECK(r.out.find("\"DB_PORT\"") != std::string::npos);
}

TEST_CASE("status --config without a daemon lists what the config would load and exits 3", "[cli]") {
  TempDir dir;
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  auto r = run({binPath("provisr"), "status", "--config", kExample, "--api-url", "http://127.0.0.1:1/api", "-o", "json"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("not reachable at http://127.0.0.1:1/api") != std::string::npos);
  CHECK(r.err.find("provisr serve") != std::string::npos);
  CHECK(r.out.find("\"name\": \"worker-3\"") != std::string::npos);
  CHECK(r.out.find("\"state\": \"not running\"") != std::string::npos);
}

TEST_CASE("stop --dry-run without a daemon plans reverse priority order", "[cli]") {
  auto r = run({binPath("provisr"), "stop", "--config", kExample, "--dry-run", "-o", "table", "--api-url",
                "http://127.0.0.1:1/api"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("Stop plan for") != std::string::npos);
  auto worker = r.out.find("  worker x3");
  auto db = r.out.find("  database");
  REQUIRE(worker != std::string::npos);
  REQUIRE(db != std::string::npos);
  CHECK(worker < db);
}

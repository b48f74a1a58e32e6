// SIGTERM to `provisr serve` with 20 children: programs stop in reverse priority order, the
// daemon exits 0, nothing of the tree is left and the run_dir lock is free again.
#include <catch2/catch.hpp>

#include <sys/file.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr::test;
using nlohmann::json;

TEST_CASE("SIGTERM stops 20 children in reverse priority order and leaves nothing", "[integration]") {
  TempDir dir;
  int port = freePort();
  std::string order_file = dir.str() + "/stop-order";
  std::ostringstream cfg;
  cfg << "[log]\ndir = \"" << dir.str() << "/logs\"\n"
      << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n";
  // Four programs x five instances; each records its name when SIGTERM arrives, then exits.
  for (int p = 1; p <= 4; ++p) {
    cfg << "[[processes]]\ntype = \"process\"\n"
        << "spec.name = \"band" << p << "\"\n"
        << "spec.priority = " << p * 10 << "\n"
        << "spec.instances = 5\n"
        << "spec.stop_timeout = \"5s\"\n"
        << "spec.command = \"sh -c 'trap \\\"echo $PROVISR_NAME >> " << order_file
        << "; exit 0\\\" TERM; while :; do sleep 0.05; done'\"\n";
  }
  auto config = dir.write("config.toml", cfg.str());
  std::string api = "http://127.0.0.1:" + std::to_string(port) + "/api";
  std::string run_dir = dir.str() + "/run";

  Daemon daemon(config, run_dir, dir.str() + "/serve.log");
  std::vector<int> pids;
  REQUIRE(waitFor(
      [&] {
        auto r = run({binPath("provisr"), "status", "--api-url", api, "-o", "json"});
        auto rows = json::parse(r.out, nullptr, false);
        if (!rows.is_array() || rows.size() != 20) return false;
        pids.clear();
        for (const auto& row : rows) {
          if (row["state"] != "running") return false;
          pids.push_back(row["pid"].get<int>());
        }
        return true;
      },
      std::chrono::seconds(30)));
  INFO(daemon.log());

  daemon.signal(SIGTERM);
  REQUIRE(daemon.waitExit(std::chrono::seconds(30)));
  CHECK(daemon.exitCode() == 0);

  // Reverse priority: every band4 line before any band3 line, and so on.
  std::ifstream in(order_file);
  std::vector<int> bands;
  for (std::string line; std::getline(in, line);) bands.push_back(line[4] - '0');
  REQUIRE(bands.size() == 20);
  CHECK(std::is_sorted(bands.begin(), bands.end(), std::greater<int>()));

  // Nothing of the tree is left: no managed child, nothing re-parented to the test.
  for (int pid : pids) CHECK(::kill(pid, 0) != 0);
  CHECK(childrenOfThisProcess().empty());
  // The run_dir lock is free.
  int fd = ::open((run_dir + "/keeper/keeper.lock").c_str(), O_RDWR | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(::flock(fd, LOCK_EX | LOCK_NB) == 0);
  ::close(fd);
}

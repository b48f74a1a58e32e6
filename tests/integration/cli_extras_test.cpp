// The parts of the CLI and the keeper's signal handling that need a whole daemon or none at all:
// SIGHUP reload and SIGUSR1 log reopening end to end, `status --watch`, `completion bash`, and
// register/unregister when no daemon answers.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <fstream>
#include <sstream>

#include "tests/support/daemon.hpp"
#include "tests/support/run.hpp"

using namespace provisr::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string slurpFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string programToml(const std::string& name, const std::string& command) {
  return "[[processes]]\ntype = \"process\"\nspec.name = \"" + name + "\"\nspec.command = \"" + command + "\"\n";
}

// Runs the CLI against the daemon at `api`; answers status rows by instance name.
struct Cli {
  std::string api;
  RunResult operator()(std::vector<std::string> args) const {
    args.insert(args.begin(), binPath("provisr"));
    args.insert(args.end(), {"--api-url", api});
    return run(args);
  }
  std::map<std::string, json> rows() const {
    std::map<std::string, json> out;
    auto body = json::parse((*this)({"status", "-o", "json"}).out, nullptr, false);
    if (body.is_array())
      for (const auto& r : body) out[r["name"].get<std::string>()] = r;
    return out;
  }
  bool running(const std::string& name) const {
    auto r = rows();
    return r.count(name) && r[name]["state"] == "running";
  }
};

}  // namespace

TEST_CASE("SIGHUP to serve reloads the config — SIGUSR1 reopens the log files", "[integration]") {
  TempDir dir;
  const int port = freePort();
  const std::string head = "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                           std::to_string(port) + "\"\n";
  const std::string ticker = std::string(PROVISR_TEST_HELPERS) + "/ticker 20";
  auto config = dir.write("config.toml", head + programToml("tick", ticker));
  Daemon daemon(config, dir.str() + "/run", dir.str() + "/serve.log");
  Cli cli{"http://127.0.0.1:" + std::to_string(port) + "/api"};
  REQUIRE(waitFor([&] { return cli.running("tick"); }, 20s));
  INFO(daemon.log());
  const auto tickPid = cli.rows()["tick"]["pid"];

  // SIGHUP: the added program starts, the unchanged one keeps its pid.
  dir.write("config.toml", head + programToml("tick", ticker) + programToml("extra", "sleep 1000"));
  daemon.signal(SIGHUP);
  REQUIRE(waitFor([&] { return cli.running("extra"); }, 20s));
  CHECK(cli.rows()["tick"]["pid"] == tickPid);

  // SIGUSR1: after a rename (what logrotate does), new lines go to a new file at the old path.
  const auto log = dir.path() / "logs/tick.stdout.log";
  const auto moved = dir.path() / "logs/tick.stdout.log.moved";
  REQUIRE(waitFor([&] { return std::filesystem::exists(log) && std::filesystem::file_size(log) > 0; }));
  std::filesystem::rename(log, moved);
  daemon.signal(SIGUSR1);
  REQUIRE(waitFor([&] { return std::filesystem::exists(log) && std::filesystem::file_size(log) > 0; }));
  CHECK(cli.rows()["tick"]["pid"] == tickPid);

  // Nothing lost or doubled across the reopen: the two files continue one count.
  auto r = cli({"stop", "--name", "tick", "--wait", "10s"});
  REQUIRE(r.exit_code == 0);
  std::istringstream all(slurpFile(moved) + slurpFile(log));
  long expect = -1;
  long lines = 0;
  for (std::string line; std::getline(all, line);) {
    long n = 0;
    REQUIRE(std::sscanf(line.c_str(), "tick %ld", &n) == 1);
    if (expect >= 0) REQUIRE(n == expect);
    expect = n + 1;
    ++lines;
  }
  CHECK(lines > 2);
}

TEST_CASE("status --watch keeps printing fresh status until interrupted", "[integration]") {
  TempDir dir;
  const int port = freePort();
  auto config = dir.write("config.toml", "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n" +
                                             programToml("w", "sleep 1000"));
  Daemon daemon(config, dir.str() + "/run", dir.str() + "/serve.log");
  Cli cli{"http://127.0.0.1:" + std::to_string(port) + "/api"};
  REQUIRE(waitFor([&] { return cli.running("w"); }, 20s));

  // Not a terminal: each refresh is one JSON document. The run is ended at its deadline; two
  // refreshes are 2 s apart, so 7 s leaves ample room for at least two.
  auto r = run({binPath("provisr"), "status", "--watch", "-o", "json", "--api-url", cli.api}, "", {}, 7s);
  INFO(r.out << r.err);
  CHECK(r.timed_out);
  int docs = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) docs += line == "[" ? 1 : 0;
  CHECK(docs >= 2);
  CHECK(r.out.find("\"name\": \"w\"") != std::string::npos);
}

TEST_CASE("completion bash defines a completion for provisr that offers the verbs", "[integration]") {
  auto r = run({"/bin/bash", "-c",
                "eval \"$(\"$0\" completion bash)\" && complete -p provisr && "
                "COMP_WORDS=(provisr sta) && COMP_CWORD=1 && _provisr && printf '%s\\n' \"${COMPREPLY[@]}\" && "
                "COMP_WORDS=(provisr status --wa) && COMP_CWORD=2 && _provisr && printf '%s\\n' \"${COMPREPLY[@]}\"",
                binPath("provisr")});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("complete") != std::string::npos);
  CHECK(r.out.find("\nstatus\n") != std::string::npos);
  CHECK(r.out.find("\nstart\n") != std::string::npos);
  CHECK(r.out.find("\nstop\n") == std::string::npos);
  CHECK(r.out.find("\n--watch\n") != std::string::npos);
  CHECK(run({binPath("provisr"), "completion", "fish"}).exit_code != 0);
}

TEST_CASE("register and unregister without a daemon edit the programs directory", "[integration]") {
  TempDir dir;
  const int port = freePort();  // nobody listens there
  auto config = dir.write("config.toml", "programs_directory = \"" + dir.str() + "/programs\"\n[server]\nlisten = \"127.0.0.1:" +
                                             std::to_string(port) + "\"\n" + programToml("fixed", "sleep 1"));
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), binPath("provisr"));
    args.insert(args.end(), {"--config", config, "--api-url", "http://127.0.0.1:" + std::to_string(port) + "/api"});
    return run(args);
  };
  auto reg = cli({"register", "--name", "web", "--command", "sleep 1000", "--auto-start"});
  INFO(reg.out << reg.err);
  REQUIRE(reg.exit_code == 0);
  const auto file = dir.path() / "programs/web.json";
  REQUIRE(std::filesystem::exists(file));
  auto spec = json::parse(slurpFile(file));
  CHECK(spec["spec"]["name"] == "web");
  CHECK(spec["spec"]["command"] == "sleep 1000");

  // The written file is part of the config from now on.
  auto plan = run({binPath("provisr"), "start", "--dry-run", "-o", "json", "--config", config});
  INFO(plan.out << plan.err);
  CHECK(plan.out.find("\"web\"") != std::string::npos);
  CHECK(run({binPath("provisr"), "validate", config}).exit_code == 0);

  CHECK(cli({"register", "--name", "web", "--command", "sleep 1"}).exit_code == 1);  // exists
  CHECK(cli({"register", "--name", "../evil", "--command", "sleep 1"}).exit_code == 1);
  CHECK_FALSE(std::filesystem::exists(dir.path() / "evil.json"));
  auto fixed = cli({"unregister", "--name", "fixed"});
  CHECK(fixed.exit_code == 1);
  CHECK(fixed.err.find("remove it there instead") != std::string::npos);

  auto unreg = cli({"unregister", "--name", "web"});
  INFO(unreg.out << unreg.err);
  CHECK(unreg.exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(file));
}

TEST_CASE("status names a component that restarted or is down below the table", "[integration]") {
  TempDir dir;
  const int port = freePort();
  auto config = dir.write("config.toml", "[log]\ndir = \"" + dir.str() + "/logs\"\n[server]\nlisten = \"127.0.0.1:" +
                                             std::to_string(port) + "\"\n" + programToml("svc", "sleep 1000"));
  const std::string runDir = dir.str() + "/run";
  Daemon daemon(config, runDir, dir.str() + "/serve.log");
  Cli cli{"http://127.0.0.1:" + std::to_string(port) + "/api"};
  REQUIRE(waitFor([&] { return cli.running("svc"); }, 20s));
  INFO(daemon.log());
  auto components = [&] { return json::parse(slurpFile(runDir + "/components.json"), nullptr, false); };

  // All healthy: the table alone.
  auto healthy = cli({"status", "-o", "table"});
  CHECK(healthy.exit_code == 0);
  CHECK(healthy.out.find("components:") == std::string::npos);

  // The master killed once and back: the table, then a line saying so.
  const int master = components()["master"]["pid"].get<int>();
  REQUIRE(::kill(master, SIGKILL) == 0);
  REQUIRE(waitFor([&] {
    auto c = components();
    return c.is_object() && c["master"]["state"] == "running" && c["master"]["pid"] != master && cli.running("svc");
  }, 20s));
  auto after = cli({"status", "-o", "table"});
  INFO(after.out << after.err);
  CHECK(after.exit_code == 0);
  CHECK(after.out.find("svc") != std::string::npos);
  CHECK(after.out.find("components: keeper running, spawner running, master running (1 restart), gateway running") !=
        std::string::npos);
  // JSON output stays the process list only.
  CHECK(json::parse(cli({"status", "-o", "json"}).out, nullptr, false).is_array());
}

// Authentication and access (SPEC §4, issue 9) against the real trio: the token guards every
// route but the health checks, the read-only token only reads, token_file works, the CLI sends
// the token from --token, PROVISR_TOKEN or the config, and programs registered through the API
// do not run as root unless the config allows it.
#include <catch2/catch.hpp>

#include <fstream>

#include "tests/api/trio.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

namespace {

std::string sleeperProgram(const std::string& name) {
  return "[[processes]]\ntype = \"process\"\nspec.name = \"" + name + "\"\nspec.args = [\"" + helper("sleeper") +
         "\"]\n[[groups]]\nname = \"g\"\nmembers = [\"" + name + "\"]\n";
}

struct RouteCase {
  std::string method;
  std::string path;
  bool read;  // the read-only token is enough
};

// Every route of the table with arguments that would succeed (or at least reach the master).
const std::vector<RouteCase> kRoutes = {
    {"GET", "/status?name=web", true},          {"POST", "/start?name=web", false},
    {"POST", "/stop?name=nosuch", false},       {"POST", "/restart?name=nosuch", false},
    {"POST", "/register", false},               {"POST", "/unregister?name=nosuch", false},
    {"POST", "/update", false},                 {"GET", "/groups", true},
    {"GET", "/group/status?group=g", true},     {"POST", "/group/start?group=g", false},
    {"POST", "/group/stop?group=nosuch", false}, {"GET", "/debug/processes", true},
    {"GET", "/processes/web/logs", true},       {"GET", "/processes/web/spec", false},
    {"GET", "/settings/status", false},         {"POST", "/scale?name=nosuch&instances=1", false},
    {"POST", "/reload?dry_run=1", false},       {"POST", "/reopen-logs", false},
    {"GET", "/version", true},                  {"GET", "/metrics", true},
};

int send(const Trio& t, const RouteCase& r, std::optional<std::string> token) {
  auto c = t.client(std::move(token));
  auto res = r.method == "GET" ? c->Get(("/api" + r.path).c_str())
                               : c->Post(("/api" + r.path).c_str(), "{}", "application/json");
  return res ? res->status : 0;
}

}  // namespace

// The "Uid:" line of /proc/PID/status (real, effective, saved, fs uids).
static std::string uidLine(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  std::string line, uid;
  while (std::getline(st, line))
    if (line.rfind("Uid:", 0) == 0) uid = line;
  return uid;
}

TEST_CASE("auth: every route but the health checks needs the token — read-only only reads", "[api]") {
  Trio t(TrioOptions{.token_file = true, .extra = sleeperProgram("web")});
  REQUIRE(t.ready());
  INFO(t.log());
  // Health checks are open.
  CHECK(t.get("/status", std::nullopt)->status == 200);
  CHECK(t.get("/health", std::nullopt)->status == 200);
  for (const auto& r : kRoutes) {
    INFO(r.method << " " << r.path);
    CHECK(send(t, r, std::nullopt) == 401);
    CHECK(send(t, r, std::string("wrong-token")) == 401);
    CHECK(send(t, r, std::string(kToken) + "x") == 401);       // a longer token with the right prefix
    CHECK(send(t, r, std::string(kToken).substr(0, 5)) == 401);  // a prefix of the token
    const int ro = send(t, r, std::string(kReadToken));
    if (r.read) {
      CHECK(ro != 401);
      CHECK(ro != 403);
    } else {
      CHECK(ro == 403);
    }
    const int full = send(t, r, std::string(kToken));
    CHECK(full != 401);
    CHECK(full != 403);
  }
  // The 401 says what to send; a lowercase scheme is accepted.
  auto r = t.get("/status?name=web", std::nullopt);
  CHECK(r->body.find("Authorization: Bearer") != std::string::npos);
  httplib::Client c("127.0.0.1", t.port);
  auto lower = c.Get("/api/status?name=web", {{"Authorization", std::string("bearer ") + kToken}});
  REQUIRE(lower);
  CHECK(lower->status == 200);
  // The settings say auth is on.
  CHECK(body(t.get("/settings/status"))["auth_enabled"] == true);
  // The token file's content never shows up in the settings.
  CHECK(t.get("/settings/status")->body.find(kToken) == std::string::npos);
}

TEST_CASE("auth: the CLI sends the token from --token, PROVISR_TOKEN or the config", "[api]") {
  Trio t(TrioOptions{.token_file = true, .extra = sleeperProgram("web")});
  REQUIRE(t.ready());
  INFO(t.log());
  const std::string url = "http://127.0.0.1:" + std::to_string(t.port) + "/api";
  const std::string cli = binPath("provisr");
  // Without a token: refused, exit 1 with the server's message.
  auto none = run({cli, "status", "--name", "web", "--api-url", url, "-o", "json"}, "/");
  CHECK(none.exit_code != 0);
  CHECK(none.err.find("authentication required") != std::string::npos);
  auto flag = run({cli, "status", "--name", "web", "--api-url", url, "--token", kToken, "-o", "json"}, t.dir.str());
  CHECK(flag.exit_code == 0);
  auto env = run({cli, "status", "--name", "web", "--api-url", url, "-o", "json"}, t.dir.str(), {{"PROVISR_TOKEN", kToken}});
  CHECK(env.exit_code == 0);
  // --config finds both the daemon and the token file.
  auto cfg = run({cli, "status", "--name", "web", "--config", t.config, "-o", "json"}, "/");
  INFO(cfg.out << cfg.err);
  CHECK(cfg.exit_code == 0);
  CHECK(cfg.out.find("\"name\": \"web\"") != std::string::npos);
  // A wrong --token wins over the config (and fails).
  auto wrong = run({cli, "stop", "--name", "web", "--config", t.config, "--token", "nope"}, "/");
  CHECK(wrong.exit_code != 0);
  CHECK(t.state("web") == "running");
}

TEST_CASE("auth: registrations as root need [daemon] user or allow_root_programs", "[api]") {
  if (::geteuid() != 0) {
    WARN("not root: the root registration rule does not apply");
    return;
  }
  SECTION("no daemon user, root programs not allowed: a spec that would run as root is refused") {
    Trio t(TrioOptions{.allow_root_programs = false, .extra = ""});
    REQUIRE(t.ready());
    INFO(t.log());
    auto r = t.post("/register", R"({"name":"rootish","command":"sleep 100"})");
    REQUIRE(r);
    CHECK(r->status == 403);
    CHECK(r->body.find("allow_root_programs") != std::string::npos);
    auto asRoot = t.post("/register", R"({"name":"rootish","command":"sleep 100","user":"root"})");
    CHECK(asRoot->status == 403);
    // The same rule on the ZeroMQ API.
    zmq::context_t ctx;
    ZmqApi api(ctx, t.zmq_port);
    auto z = api.call("register", {{"spec", {{"name", "rootish"}, {"command", "sleep 100"}}}});
    CHECK(z["error"]["code"] == "forbidden");
    CHECK(t.get("/status?name=rootish")->status == 400);
    // A non-root user is fine.
    auto nobody = t.post("/register", R"({"name":"asnobody","args":["/bin/sleep","100"],"user":"nobody","work_dir":"/"})");
    REQUIRE(nobody);
    CHECK(nobody->status == 200);
    REQUIRE(t.waitState("asnobody", "running"));
    auto pid = t.pid("asnobody");
    REQUIRE(pid);
    CHECK(uidLine(*pid).find("\t0\t") == std::string::npos);
  }
  SECTION("[daemon] user: registered programs run as that user") {
    Trio t(TrioOptions{.allow_root_programs = false, .extra = "[daemon]\nuser = \"nobody\"\n"});
    if (!t.ready()) {
      WARN("serve did not start with [daemon] user = nobody: " << t.log());
      return;
    }
    INFO(t.log());
    auto r = t.post("/register", R"({"name":"dropped","args":["/bin/sleep","100"],"work_dir":"/"})");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(t.waitState("dropped", "running"));
    auto pid = t.pid("dropped");
    REQUIRE(pid);
    CHECK(uidLine(*pid).find("\t0\t") == std::string::npos);
    auto other = t.post("/register", R"({"name":"other","args":["/bin/sleep","100"],"user":"root"})");
    CHECK(other->status == 403);
  }
}

TEST_CASE("protected mode: a wildcard listen without auth warns and still answers loopback", "[api]") {
  TempDir dir;
  const int port = freePort();
  std::ostringstream cfg;
  cfg << "[server]\nlisten = \":" << port << "\"\n";
  auto config = dir.write("config.toml", cfg.str());
  Daemon d(config, dir.str() + "/run", dir.str() + "/serve.log");
  httplib::Client c("127.0.0.1", port);
  REQUIRE(waitFor(
      [&] {
        auto r = c.Get("/api/status?wildcard=*");
        return r && r->status == 200;
      },
      20s));
  CHECK(d.log().find("protected mode") != std::string::npos);
  CHECK(d.log().find("allow_insecure") != std::string::npos);
}

// Bad input at runtime (issue 9) against the real trio: malformed and huge bodies, unknown fields,
// unsafe names and paths, missing or doubled selectors, wrong methods, half requests and many
// connections. Each gets a clear 4xx (or a bounded wait), the daemon keeps serving, and nothing
// already running changes.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "tests/api/trio.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

namespace {

struct Case {
  std::string what;
  std::string method;
  std::string path;  // under /api, already URL-encoded
  std::string body;
  int want;          // expected status; 0 = any 4xx
  std::string says;  // a part of the error message, when it matters
};

std::string rawRequest(const std::string& method, const std::string& path, const std::string& body) {
  std::string r = method + " /api" + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                  "Authorization: Bearer " + kToken + "\r\nContent-Type: application/json\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  return r;
}

}  // namespace

TEST_CASE("hostile HTTP requests get a clear 4xx and change nothing", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web-1", "running"));
  REQUIRE(t.waitState("web-2", "running"));
  INFO(t.log());
  const auto web1 = t.pid("web-1");
  const auto web2 = t.pid("web-2");
  const std::string name10k(10240, 'a');
  const std::string dir = t.dir.str();

  const std::vector<Case> cases = {
      {"malformed JSON", "POST", "/register", "{\"name\": \"x\", ", 400, "not valid JSON at line 1"},
      {"JSON not an object", "POST", "/register", "[1,2,3]", 400, "JSON object"},
      {"empty body", "POST", "/register", "", 400, "program spec"},
      {"spec without name", "POST", "/register", R"({"command":"true"})", 400, "name"},
      {"unknown spec field", "POST", "/register", R"({"name":"u1","command":"true","comand":"x"})", 400, "comand"},
      {"name with ..", "POST", "/register", R"({"name":"..","command":"true"})", 400, ""},
      {"name with /", "POST", "/register", R"({"name":"a/b","command":"true"})", 400, ""},
      {"name with NUL", "POST", "/register", "{\"name\":\"a\\u0000b\",\"command\":\"true\"}", 400, ""},
      {"10 KB name in a body", "POST", "/register", "{\"name\":\"" + name10k + "\",\"command\":\"true\"}", 400, ""},
      {"relative work_dir", "POST", "/register", R"({"name":"r1","command":"true","work_dir":"tmp"})", 400, "work_dir"},
      {"traversing work_dir", "POST", "/register", R"({"name":"r2","command":"true","work_dir":"/tmp/../../etc"})", 400,
       "work_dir"},
      {"relative log file", "POST", "/register",
       R"({"name":"r3","command":"true","log":{"stdout":"../../x.log"}})", 400, "log"},
      {"number as name", "POST", "/register", R"({"name":5,"command":"true"})", 400, "name must be a string"},
      {"update of a config program", "POST", "/update", R"({"name":"web","command":"true"})", 409, ""},
      {"unregister of a config program", "POST", "/unregister?name=web", "", 409, ""},
      {"name with .. in the query", "GET", "/status?name=..", "", 400, "invalid name"},
      {"name with / in the query", "GET", "/status?name=a%2Fb", "", 400, "invalid name"},
      {"name with NUL in the query", "GET", "/status?name=a%00b", "", 400, "invalid name"},
      {"10 KB name in the query", "GET", "/status?name=" + name10k, "", 0, ""},
      {"7 KB name in the query", "GET", "/status?name=" + std::string(7000, 'b'), "", 400, "invalid name"},
      {"name with .. in the path", "GET", "/processes/..%2F..%2Fetc/logs", "", 0, ""},
      {"NUL in the path", "GET", "/processes/a%00b/spec", "", 0, ""},
      {"selector missing", "POST", "/start", "", 400, "exactly one of name, base or wildcard"},
      {"selectors doubled", "POST", "/start?name=web-1&name=web-2", "", 400, "more than once"},
      {"two kinds of selector", "POST", "/stop?name=web-1&base=web", "", 400, "exactly one"},
      {"unknown query parameter", "GET", "/status?nmae=web-1", "", 400, "unknown query parameter"},
      {"bad wait", "POST", "/stop?name=web-1&wait=soon", "", 400, "wait"},
      {"negative instances", "POST", "/scale?name=web&instances=-1", "", 400, ""},
      {"huge instances", "POST", "/scale?name=web&instances=99999999999999999999", "", 400, ""},
      {"wildcard with /", "GET", "/status?wildcard=%2F*", "", 400, ""},
      {"unknown group", "POST", "/group/stop?group=nosuch", "", 404, ""},
      {"GET on a POST route", "GET", "/stop?name=web-1", "", 405, "use POST"},
      {"POST on a GET route", "POST", "/status?name=web-1", "", 405, "use GET"},
      {"DELETE", "DELETE", "/register", "", 405, ""},
      {"PUT", "PUT", "/start?name=web-1", "", 405, ""},
      {"unknown method", "BREW", "/status", "", 0, ""},
      {"unknown route", "GET", "/nosuch", "", 404, "no route"},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.method << " " << c.path.substr(0, 100));
    RawConn conn(t.port);
    REQUIRE(conn.connected());
    REQUIRE(conn.send(rawRequest(c.method, c.path, c.body)));
    const std::string resp = conn.read(10s);
    const int code = statusOf(resp);
    INFO(resp.substr(0, 400));
    if (c.want == 0) {
      CHECK(code >= 400);
      CHECK(code < 500);
    } else {
      CHECK(code == c.want);
    }
    if (!c.says.empty()) CHECK(resp.find(c.says) != std::string::npos);
  }

  // A POST with no Content-Length at all (`curl -X POST URL`): a 400 that says what is missing.
  {
    RawConn conn(t.port);
    conn.send("POST /api/start?name=web-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer " +
              std::string(kToken) + "\r\n\r\n");
    const std::string resp = conn.read(10s);
    INFO(resp);
    CHECK(statusOf(resp) == 400);
    CHECK(resp.find("needs a Content-Length header") != std::string::npos);
  }
  // A body over the 1 MiB cap: 413, not read into memory first.
  {
    RawConn conn(t.port);
    std::string big(2u << 20, 'x');
    conn.send(rawRequest("POST", "/register", big));
    const std::string resp = conn.read(10s);
    CHECK(statusOf(resp) == 413);
  }
  // A Content-Length claiming 100 GB with a few bytes behind it: 413 or a bounded close.
  {
    RawConn conn(t.port);
    conn.send("POST /api/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kToken) +
              "\r\nContent-Length: 107374182400\r\n\r\n{}");
    const auto start = std::chrono::steady_clock::now();
    const std::string resp = conn.read(15s);
    const int code = statusOf(resp);
    CHECK((code == 413 || (code == 0 && conn.peerClosed())));
    CHECK(std::chrono::steady_clock::now() - start < 12s);
  }

  // Nothing registered, nothing changed, still serving.
  CHECK(t.get("/status?name=u1")->status == 400);
  CHECK(t.pid("web-1") == web1);
  CHECK(t.pid("web-2") == web2);
  CHECK(t.state("web-1") == "running");
  CHECK(t.state("web-2") == "running");
  CHECK(body(t.get("/status?wildcard=*")).size() == 2);
  (void)dir;
}

TEST_CASE("half requests are dropped after a bounded wait while others are served", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  INFO(t.log());
  // 40 clients send half a request and then nothing (slowloris).
  std::vector<std::unique_ptr<RawConn>> slow;
  for (int i = 0; i < 40; ++i) {
    slow.push_back(std::make_unique<RawConn>(t.port));
    slow.back()->send("GET /api/status?name=web-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
  }
  // Meanwhile the API answers at once.
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) CHECK(t.get("/status?name=web-1")->status == 200);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  // Each half request is closed by the server within its read timeout (5 s) plus slack.
  const auto waitStart = std::chrono::steady_clock::now();
  for (auto& c : slow) {
    c->read(15s);
    CHECK(c->peerClosed());
  }
  CHECK(std::chrono::steady_clock::now() - waitStart < 15s);
  CHECK(t.get("/status?name=web-1")->status == 200);
}

TEST_CASE("200 concurrent connections are all answered", "[api]") {
  Trio t(TrioOptions{.extra = twoWebSleepers()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web-1", "running"));
  INFO(t.log());
  const auto web1 = t.pid("web-1");
  constexpr int kClients = 200;
  std::vector<std::unique_ptr<RawConn>> conns;
  for (int i = 0; i < kClients; ++i) {
    conns.push_back(std::make_unique<RawConn>(t.port));
    REQUIRE(conns.back()->connected());
  }
  // Every connection is open before any sends; then all send at once.
  for (auto& c : conns) {
    c->send("GET /api/status?name=web-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer " +
            std::string(kToken) + "\r\n\r\n");
  }
  std::atomic<int> ok{0};
  std::mutex mu;
  std::map<std::string, int> outcomes;  // first bytes of each answer
  std::vector<std::thread> readers;
  for (int k = 0; k < 8; ++k) {
    readers.emplace_back([&, k] {
      for (int i = k; i < kClients; i += 8) {
        const std::string resp = conns[static_cast<std::size_t>(i)]->read(30s, "\r\n\r\n");
        if (statusOf(resp) == 200) ++ok;
        std::lock_guard<std::mutex> lock(mu);
        ++outcomes[resp.substr(0, 12)];
      }
    });
  }
  for (auto& th : readers) th.join();
  for (const auto& [o, n] : outcomes) UNSCOPED_INFO("'" << o << "' x " << n);
  CHECK(ok == kClients);
  CHECK(t.pid("web-1") == web1);
  CHECK(t.get("/status?name=web-1")->status == 200);
}

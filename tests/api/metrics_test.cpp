// Prometheus against the real trio: the exposition parses (and passes promtool when installed),
// the counters of starts, exits by code/signal and log bytes per stream follow what the children
// did, and the endpoint needs a token like every other route.
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>

#include "tests/api/trio.hpp"
#include "tests/support/exposition.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

namespace {

std::string scrape(const Trio& t, std::optional<std::string> token = std::string(kToken), int* status = nullptr) {
  httplib::Client c("127.0.0.1", t.metrics_port);
  c.set_read_timeout(10s);
  httplib::Headers h;
  if (token) h.emplace("Authorization", "Bearer " + *token);
  auto r = c.Get("/metrics", h);
  if (status) *status = r ? r->status : 0;
  return r && r->status == 200 ? r->body : std::string();
}

}  // namespace

TEST_CASE("metrics: starts, exits by code and signal, log bytes per stream", "[api]") {
  std::ostringstream extra;
  // `flaky` exits 3 after 300 ms and is restarted; `talker` writes 50 lines of 100 bytes to each
  // stream, then sleeps; `killed` is stopped with SIGKILL as its stop signal.
  extra << "[[processes]]\ntype = \"process\"\nspec.name = \"flaky\"\nspec.auto_restart = true\n"
        << "spec.restart_interval = \"100ms\"\nspec.args = [\"" << helper("crasher") << "\", \"3\", \"300\"]\n"
        << "[[processes]]\ntype = \"process\"\nspec.name = \"talker\"\n"
        << "spec.command = \"sh -c '" << helper("chatty") << " 50 both 100; exec " << helper("sleeper") << "'\"\n"
        << "[[processes]]\ntype = \"process\"\nspec.name = \"killed\"\nspec.stop_signal = \"KILL\"\n"
        << "spec.args = [\"" << helper("sleeper") << "\"]\n";
  Trio t(TrioOptions{.extra = extra.str()});
  REQUIRE(t.ready());
  INFO(t.log());

  // flaky has exited with 3 at least twice and was started at least three times.
  std::map<std::string, double> m;
  REQUIRE(waitFor(
      [&] {
        const std::string text = scrape(t);
        if (text.empty()) return false;
        m = parseExposition(text);
        return m["provisr_process_exits_total{name=\"flaky\",program=\"flaky\",code=\"3\"}"] >= 2 &&
               m["provisr_log_bytes_total{name=\"talker\",program=\"talker\",stream=\"stdout\"}"] >= 5000 &&
               m["provisr_log_bytes_total{name=\"talker\",program=\"talker\",stream=\"stderr\"}"] >= 5000;
      },
      20s));
  CHECK(m["provisr_process_starts_total{name=\"flaky\",program=\"flaky\"}"] >= 2);
  CHECK(m["provisr_process_starts_total{name=\"talker\",program=\"talker\"}"] == 1);
  CHECK(m["provisr_log_bytes_total{name=\"talker\",program=\"talker\",stream=\"stdout\"}"] == 5000);
  CHECK(m["provisr_log_bytes_total{name=\"talker\",program=\"talker\",stream=\"stderr\"}"] == 5000);
  CHECK(m["provisr_log_bytes_total{name=\"flaky\",program=\"flaky\",stream=\"stdout\"}"] == 0);
  CHECK(m["provisr_process_restarts_total{name=\"flaky\",program=\"flaky\"}"] >= 1);

  // A stop by SIGKILL counts as an exit by that signal; a start counts once more.
  REQUIRE(t.post("/stop?name=killed&wait=5s")->status == 200);
  REQUIRE(t.post("/start?name=killed&wait=5s")->status == 200);
  REQUIRE(waitFor(
      [&] {
        m = parseExposition(scrape(t));
        return m["provisr_process_exits_total{name=\"killed\",program=\"killed\",code=\"SIGKILL\"}"] == 1;
      },
      10s));
  CHECK(m["provisr_process_starts_total{name=\"killed\",program=\"killed\"}"] == 2);

  // A restarted talker writes its lines again: the bytes add up across generations.
  REQUIRE(t.post("/restart?name=talker&wait=5s")->status == 200);
  CHECK(waitFor(
      [&] {
        m = parseExposition(scrape(t));
        return m["provisr_log_bytes_total{name=\"talker\",program=\"talker\",stream=\"stdout\"}"] == 10000;
      },
      10s));
  CHECK(m["provisr_process_starts_total{name=\"talker\",program=\"talker\"}"] == 2);

  // The same counters in the status object the master returns.
  auto st = body(t.get("/status?name=talker"));
  REQUIRE(st.is_object());
  CHECK(st["running"] == true);
}

TEST_CASE("metrics: the exposition passes promtool", "[api]") {
  if (::access("/usr/bin/promtool", X_OK) != 0) {
    WARN("promtool not installed (Debian package prometheus): skipped");
    return;
  }
  std::ostringstream extra;
  extra << "[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.instances = 2\n"
        << "spec.args = [\"" << helper("sleeper") << "\"]\n"
        << "[[processes]]\ntype = \"process\"\nspec.name = \"once\"\nspec.args = [\"" << helper("crasher")
        << "\", \"4\"]\n";
  Trio t(TrioOptions{.extra = extra.str()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("once", "exited"));
  const std::string text = scrape(t);
  REQUIRE(!text.empty());
  CHECK(text.find("provisr_process_exits_total{name=\"once\",program=\"once\",code=\"4\"} 1") != std::string::npos);
  const std::string file = t.dir.write("metrics.txt", text);
  auto r = run({"/bin/sh", "-c", "promtool check metrics < " + file});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

TEST_CASE("metrics: the endpoint needs the read-only or the full token", "[api]") {
  Trio t;
  REQUIRE(t.ready());
  int status = 0;
  scrape(t, std::nullopt, &status);
  CHECK(status == 401);
  scrape(t, std::string("wrong"), &status);
  CHECK(status == 401);
  scrape(t, std::string(kReadToken), &status);
  CHECK(status == 200);
  scrape(t, std::string(kToken), &status);
  CHECK(status == 200);
}

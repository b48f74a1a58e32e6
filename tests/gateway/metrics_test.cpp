// Prometheus endpoint: the exposition parsed line by line (HELP/TYPE for every family, labels,
// values), sampled status at scrape time, components.json, promtool when installed.
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>

#include "gateway/metrics.hpp"
#include "tests/gateway/fixture.hpp"
#include "tests/support/exposition.hpp"

using namespace provisr;
using namespace provisr::test;
using namespace provisr::test::gw;

TEST_CASE("metrics rendering escapes labels", "[gateway]") {
  CHECK(gateway::escapeLabel("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  auto text = gateway::renderMetrics(std::nullopt, std::nullopt);
  auto m = parseExposition(text);
  CHECK(m["provisr_master_up"] == 0);
}

TEST_CASE("GET /metrics on [metrics] listen", "[gateway]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  dir.write("run/components.json",
            R"({"keeper":{"pid":1,"started_at_ms":1795791845123,"restarts":0,"state":"running"},)"
            R"("master":{"pid":2,"started_at_ms":1795791845123,"restarts":3,"state":"running"}})");
  httplib::Client mc("127.0.0.1", gw.metrics_port);
  auto r = mc.Get("/metrics");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  CHECK_THAT(r->get_header_value("Content-Type"), Catch::StartsWith("text/plain; version=0.0.4"));
  auto m = parseExposition(r->body);
  CHECK(m["provisr_master_up"] == 1);
  CHECK(m["provisr_process_state{name=\"web-1\",program=\"web\",state=\"running\"}"] == 1);
  CHECK(m["provisr_process_state{name=\"web-1\",program=\"web\",state=\"stopped\"}"] == 0);
  CHECK(m["provisr_process_state{name=\"db\",program=\"db\",state=\"stopped\"}"] == 1);
  CHECK(m["provisr_process_up_seconds{name=\"web-1\",program=\"web\"}"] == Approx(12.5));
  CHECK(m["provisr_process_rss_bytes{name=\"web-1\",program=\"web\"}"] == 1048576);
  CHECK(m["provisr_process_cpu_seconds_total{name=\"web-1\",program=\"web\"}"] == Approx(1.5));
  CHECK(m.count("provisr_process_restarts_total{name=\"web-2\",program=\"web\"}") == 1);
  CHECK(m["provisr_component_restarts_total{component=\"master\"}"] == 3);
  CHECK(m["provisr_component_up{component=\"keeper\"}"] == 1);
  auto st = master.last<proto::StatusRequest>();
  REQUIRE(st);
  CHECK(st->sample);  // CPU/RSS read at scrape time
  CHECK(st->selector.kind == proto::SelectorKind::kAll);

  if (::access("/usr/bin/promtool", X_OK) == 0) {
    const auto file = dir.write("metrics.txt", r->body);
    auto check = run({"/bin/sh", "-c", "/usr/bin/promtool check metrics < " + file}, "", {}, 20s);
    INFO(check.out << check.err);
    CHECK(check.exit_code == 0);
  }

  master.silent = true;
  r = mc.Get("/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);  // a scrape never fails because the master is down
  CHECK(parseExposition(r->body)["provisr_master_up"] == 0);
  CHECK(gw.stop() == 0);
}

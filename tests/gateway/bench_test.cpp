// Hidden benchmark (run with `tests_gateway "[bench]"`): wrk against GET /status?name=web-1 on
// the real gateway with the fake master; prints wrk's report. Not part of the normal run.
#include <catch2/catch.hpp>

#include <iostream>

#include "tests/gateway/fixture.hpp"

using namespace provisr::test;
using namespace provisr::test::gw;

TEST_CASE("wrk: GET /status?name=web-1", "[.][bench]") {
  if (::access("/usr/bin/wrk", X_OK) != 0) {
    WARN("wrk is not installed (apt-get install wrk)");
    return;
  }
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  const std::string url = "http://127.0.0.1:" + std::to_string(gw.port) + "/api/status?name=web-1";
  std::cout << "wrk -t2 -c32 -d10s --latency " << url << "\n";
  auto r = run({"/usr/bin/wrk", "-t2", "-c32", "-d10s", "--latency", url}, "", {}, 60s);
  std::cout << r.out << r.err << std::endl;
  CHECK(r.exit_code == 0);
}

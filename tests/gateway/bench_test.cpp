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

namespace {
// Voluntary + involuntary context switches of every thread of `pid`.
long switches(pid_t pid) {
  long total = 0;
  for (const auto& t : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream in(t.path() / "status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("ctxt_switches:") != std::string::npos) total += std::stol(line.substr(line.find(':') + 1));
    }
  }
  return total;
}
}  // namespace

// Hidden (a fixed measuring window): `tests_gateway "[idle]"`.
TEST_CASE("an idle gateway with a connected master does not wake", "[.][idle]") {
  TempDir dir;
  FakeMaster master(dir.str() + "/run");
  Gateway gw(dir);
  // One request so the pooled DEALER exists and is connected, then the client goes away.
  { REQUIRE(gw.client().Get("/api/status?name=web-1")->status == 200); }
  std::this_thread::sleep_for(6s);  // let the keep-alive connection time out (5 s)
  const long before = switches(gw.pid);
  std::this_thread::sleep_for(3s);
  const long after = switches(gw.pid);
  std::cout << "context switches of the idle gateway in 3 s: " << (after - before) << std::endl;
  CHECK(after - before < 10);
}

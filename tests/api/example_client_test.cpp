// examples/zmq_client against the real trio: status, stop, start and an event subscription, as
// its README shows them.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "tests/api/trio.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

TEST_CASE("the example ZeroMQ client: status, stop, start, subscribe", "[api]") {
  const std::string client = binPath("provisr-zmq-client");
  REQUIRE(::access(client.c_str(), X_OK) == 0);  // built with the default target (examples/zmq_client)
  std::ostringstream extra;
  extra << "[[processes]]\ntype = \"process\"\nspec.name = \"web\"\nspec.args = [\"" << helper("sleeper") << "\"]\n";
  Trio t(TrioOptions{.extra = extra.str()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web", "running"));
  INFO(t.log());
  const std::string ep = "tcp://127.0.0.1:" + std::to_string(t.zmq_port);
  const std::string events = "tcp://127.0.0.1:" + std::to_string(t.events_port);

  auto st = run({client, "--endpoint", ep, "--token", kToken, "status", "web"});
  INFO(st.out << st.err);
  CHECK(st.exit_code == 0);
  CHECK(st.out.find("\"name\":\"web\"") != std::string::npos);
  CHECK(st.out.find("\"state\":\"running\"") != std::string::npos);

  // Without the token: an error reply, exit 1, the code on stderr.
  auto anon = run({client, "--endpoint", ep, "status", "web"});
  CHECK(anon.exit_code == 1);
  CHECK(anon.err.find("unauthorized") != std::string::npos);

  // Subscribe in the background, then stop and start until the subscriber saw two events (the
  // subscription reaches the master asynchronously).
  RunResult sub;
  std::atomic<bool> done{false};
  std::thread subscriber([&] {
    sub = run({client, "--events", events, "--count", "2", "--timeout-ms", "15000", "subscribe", "state.web"}, "", {},
              30s);
    done = true;
  });
  bool stopped = false;
  for (int i = 0; i < 20 && !done; ++i) {
    auto r = run({client, "--endpoint", ep, "--token", kToken, stopped ? "start" : "stop", "web", "--wait-ms", "5000"});
    CHECK(r.exit_code == 0);
    stopped = !stopped;
    waitFor([&] { return done.load(); }, 500ms);
  }
  subscriber.join();
  INFO(sub.out << sub.err);
  CHECK(sub.exit_code == 0);
  CHECK(sub.out.find("state.web {") != std::string::npos);
  CHECK(sub.out.find("\"instance\":\"web\"") != std::string::npos);
  // Leave it running.
  run({client, "--endpoint", ep, "--token", kToken, "start", "web", "--wait-ms", "5000"});
  CHECK(t.waitState("web", "running"));
}

// Server-Sent Events against the real trio: state events on start/stop, live log lines, and the
// stream cap — a closed client frees its slot within a bounded time, without a write.
#include <catch2/catch.hpp>

#include <list>

#include "tests/api/trio.hpp"

using namespace provisr::test;
using namespace provisr::test::api;

namespace {

std::string sleeperProgram(const std::string& name) {
  return "[[processes]]\ntype = \"process\"\nspec.name = \"" + name + "\"\nspec.args = [\"" + helper("sleeper") +
         "\"]\n";
}

}  // namespace

TEST_CASE("SSE /events: state changes arrive on stop and start", "[api]") {
  Trio t(TrioOptions{.extra = sleeperProgram("web")});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("web", "running"));
  INFO(t.log());

  SseStream events(t.port, "/api/events");
  REQUIRE(events.open() == 200);
  REQUIRE(events.waitFor(": subscribed state.", 5s));
  // The gateway's subscription at the master follows the stream asynchronously: stop and start
  // until the first state event comes through, then every change arrives.
  bool seen = false;
  for (int i = 0; i < 10 && !seen; ++i) {
    REQUIRE(t.post("/stop?name=web&wait=5s")->status == 200);
    REQUIRE(t.post("/start?name=web&wait=5s")->status == 200);
    seen = events.waitFor("event: state.web\ndata: ", 1s);
  }
  REQUIRE(seen);
  REQUIRE(t.post("/stop?name=web&wait=5s")->status == 200);
  CHECK(events.waitFor("\"to\":\"stopped\"", 5s));
  REQUIRE(t.post("/start?name=web&wait=5s")->status == 200);
  CHECK(events.waitFor("\"to\":\"running\"", 5s));

  // The read-only token may follow events; no token may not.
  SseStream ro(t.port, "/api/events", std::string(kReadToken));
  CHECK(ro.open() == 200);
  SseStream anon(t.port, "/api/events", std::nullopt);
  CHECK(anon.open() == 401);
}

TEST_CASE("SSE logs?follow=1: new lines of an instance arrive as events", "[api]") {
  std::ostringstream extra;
  extra << "[[processes]]\ntype = \"process\"\nspec.name = \"tick\"\nspec.args = [\"" << helper("ticker")
        << "\", \"50\"]\n";
  Trio t(TrioOptions{.extra = extra.str()});
  REQUIRE(t.ready());
  REQUIRE(t.waitState("tick", "running"));
  INFO(t.log());
  SseStream follow(t.port, "/api/processes/tick/logs?follow=1");
  REQUIRE(follow.open() == 200);
  CHECK(follow.waitFor("event: log.tick\n", 10s));
  CHECK(follow.waitFor("\"text\":\"tick ", 5s));
  // An unknown or unsafe name is refused before a stream opens.
  SseStream bad(t.port, "/api/processes/..%2Fetc/logs?follow=1");
  const int code = bad.open();
  CHECK((code == 400 || code == 404));
}

TEST_CASE("SSE stream cap: 503 past the cap — a closed client frees its slot quickly", "[api]") {
  Trio t;
  REQUIRE(t.ready());
  INFO(t.log());
  constexpr int kCap = 32;  // the gateway's default --max-streams
  std::list<SseStream> open;
  for (int i = 0; i < kCap; ++i) {
    open.emplace_back(t.port, "/api/events");
    REQUIRE(open.back().open() == 200);
  }
  SseStream extra(t.port, "/api/events");
  CHECK(extra.open() == 503);
  CHECK(extra.waitFor("too many open event streams", 5s));
  // Ordinary requests are still served while every stream slot is taken.
  CHECK(t.get("/status?wildcard=*")->status == 200);

  // One client goes away without a word; its slot is free again within a few seconds (the idle
  // stream notices the closed socket between its liveness checks).
  open.front().close();
  open.pop_front();
  const auto closedAt = std::chrono::steady_clock::now();
  std::unique_ptr<SseStream> again;
  REQUIRE(waitFor(
      [&] {
        again = std::make_unique<SseStream>(t.port, "/api/events");
        return again->open() == 200;
      },
      5s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - closedAt);
  CHECK(took < 3s);
  WARN("slot freed after " << took.count() << " ms");
}

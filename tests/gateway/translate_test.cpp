// Unit tests of the pure translation layer: arguments, selectors, JSON shapes, error statuses.
#include <catch2/catch.hpp>

#include "gateway/translate.hpp"

using namespace provisr;
using namespace provisr::gateway;

TEST_CASE("selectors: exactly one of name, base, wildcard", "[gateway]") {
  auto none = argSelector(Json{{"other", "x"}});
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto one = argSelector(Json{{"base", "web"}});
  REQUIRE(one);
  CHECK((*one)->kind == proto::SelectorKind::kBase);
  CHECK((*one)->value == "web");
  auto two = argSelector(Json{{"name", "a"}, {"wildcard", "*"}});
  REQUIRE_FALSE(two);
  CHECK(two.error().code == ErrorCode::kInvalidArgument);
  CHECK_FALSE(argSelector(Json{{"name", "../etc"}}));
  CHECK_FALSE(argSelector(Json{{"name", "a b"}}));
  CHECK_FALSE(argSelector(Json{{"name", ""}}));
  CHECK(argSelector(Json{{"wildcard", "web-?*"}}));
  CHECK_FALSE(argSelector(Json{{"wildcard", "we/b"}}));
}

TEST_CASE("names and patterns", "[gateway]") {
  CHECK(isSafeName("api-server_2.x"));
  CHECK_FALSE(isSafeName("a..b"));
  CHECK_FALSE(isSafeName("a/b"));
  CHECK_FALSE(isSafeName(std::string(200, 'a')));
  CHECK(isSafePattern("*"));
  CHECK_FALSE(isSafePattern("$(x)"));
  CHECK(argName(Json{{"group", "g1"}}, "group"));
  CHECK(argName(Json::object(), "group").error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("flags, integers and waits", "[gateway]") {
  CHECK(*argFlag(Json{{"dry_run", "1"}}, "dry_run"));
  CHECK(*argFlag(Json{{"dry_run", ""}}, "dry_run"));
  CHECK_FALSE(*argFlag(Json{{"dry_run", "false"}}, "dry_run"));
  CHECK(*argFlag(Json{{"dry_run", true}}, "dry_run"));
  CHECK_FALSE(*argFlag(Json::object(), "dry_run"));
  CHECK_FALSE(argFlag(Json{{"dry_run", "maybe"}}, "dry_run"));
  CHECK(argUint(Json{{"n", "12"}}, "n")->value() == 12);
  CHECK(argUint(Json{{"n", 7}}, "n")->value() == 7);
  CHECK_FALSE(argUint(Json{{"n", "-1"}}, "n"));
  CHECK_FALSE(argUint(Json{{"n", -1}}, "n"));
  CHECK(argWaitMs(Json{{"wait", "5s"}})->value() == 5000);
  CHECK(argWaitMs(Json{{"wait", "250ms"}})->value() == 250);
  CHECK(argWaitMs(Json{{"wait_ms", 42}})->value() == 42);
  CHECK_FALSE(argWaitMs(Json::object())->has_value());
  auto bad = argWaitMs(Json{{"wait", "soon"}});
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("JSON bodies: parse errors name line and column", "[gateway]") {
  CHECK(parseJsonBody(R"({"name": "x"})"));
  auto bad = parseJsonBody("{\n  \"name\": \"x\",\n  oops\n}");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == ErrorCode::kInvalidArgument);
  CHECK_THAT(bad.error().message, Catch::Contains("line 3, column 3"));
}

TEST_CASE("times are RFC 3339 UTC with milliseconds or null", "[gateway]") {
  CHECK(rfc3339Ms(0) == "1970-01-01T00:00:00.000Z");
  CHECK(rfc3339Ms(1795791845123) == "2026-11-27T15:04:05.123Z");
  CHECK(rfc3339Ms(-1) == "1969-12-31T23:59:59.999Z");
  CHECK(timeOrNull(std::nullopt).is_null());
}

namespace {
proto::InstanceStatus sample(std::string name, proto::InstanceState st) {
  proto::InstanceStatus s;
  s.name = std::move(name);
  s.program = "web";
  s.state = st;
  s.running = st == proto::InstanceState::kRunning;
  if (s.running) s.pid = 42;
  s.started_at = 1795791845123;
  return s;
}
}  // namespace

TEST_CASE("status object carries every SPEC 2.2 field", "[gateway]") {
  auto j = renderStatus(sample("web-1", proto::InstanceState::kRunning));
  for (const char* k : {"name", "running", "pid", "started_at", "stopped_at", "restarts", "state", "provisioned",
                        "exit_error", "program", "instance", "priority", "groups", "exit_code", "exit_signal",
                        "uptime_ms", "last_start_error", "log", "log_dropped_bytes", "adopted", "rss_bytes",
                        "cpu_seconds"}) {
    INFO(k);
    CHECK(j.contains(k));
  }
  CHECK(j["started_at"] == "2026-11-27T15:04:05.123Z");
  CHECK(j["stopped_at"].is_null());
  CHECK(j["exit_error"].is_null());
  CHECK(j["state"] == "running");
  CHECK(j["log"].contains("stdout"));
  auto list = renderStatusList({sample("web-2", proto::InstanceState::kStopped), sample("web-1", proto::InstanceState::kRunning)});
  CHECK(list[0]["name"] == "web-1");
}

TEST_CASE("groups in the Go shape", "[gateway]") {
  proto::GroupsReply g{{{"zeta", {"web"}}, {"alpha", {"web", "db"}}}};
  auto db = sample("db", proto::InstanceState::kStopped);
  db.program = "db";
  auto j = renderGroups(g, {sample("web-1", proto::InstanceState::kRunning), sample("web-2", proto::InstanceState::kStopped), db});
  REQUIRE(j.size() == 2);
  CHECK(j[0]["name"] == "alpha");
  CHECK(j[0]["state"] == "degraded");
  CHECK(j[0]["running"] == 1);
  CHECK(j[0]["total"] == 3);
  CHECK(j[0]["members"][0] == Json{{"name", "web"}, {"instances", 2}});
}

TEST_CASE("logs: one instance in the Go shape, a program tagged with a next map", "[gateway]") {
  proto::LogsReply one{{{5, proto::LogStream::kStdout, "hello", "web-1"}}, {{"web-1", 6}}};
  auto j = renderLogs("web-1", one);
  CHECK(j["next"] == 6);
  CHECK(j["lines"][0] == Json{{"offset", 5}, {"stream", "stdout"}, {"text", "hello"}});
  proto::LogsReply many{{{1, proto::LogStream::kStderr, "a", "web-1"}, {3, proto::LogStream::kStdout, "b", "web-2"}},
                        {{"web-1", 2}, {"web-2", 4}}};
  auto k = renderLogs("web", many);
  CHECK(k["next"] == Json{{"web-1", 2}, {"web-2", 4}});
  CHECK(k["lines"][1]["instance"] == "web-2");
}

TEST_CASE("debug processes: internal state and health check", "[gateway]") {
  auto running = sample("a", proto::InstanceState::kRunning);
  auto starting = sample("b", proto::InstanceState::kStarting);
  auto stopped = sample("c", proto::InstanceState::kStopped);
  auto j = renderDebugProcesses({stopped, running, starting});
  CHECK(j[0]["health_check"] == "healthy");
  CHECK(j[1]["health_check"] == "transitioning");
  CHECK(j[2]["health_check"] == "not_running");
  CHECK(j[2]["internal_state"] == "stopped");
}

TEST_CASE("error codes map to HTTP statuses in one place", "[gateway]") {
  CHECK(httpStatusFor(ErrorCode::kNotFound, "status") == 400);
  CHECK(httpStatusFor(ErrorCode::kNotFound, "start") == 400);
  CHECK(httpStatusFor(ErrorCode::kNotFound, "group_status") == 404);
  CHECK(httpStatusFor(ErrorCode::kNotFound, "restart") == 404);
  CHECK(httpStatusFor(ErrorCode::kConflict, "update") == 409);
  CHECK(httpStatusFor(ErrorCode::kUnavailable, "status") == 503);
  CHECK(httpStatusFor(ErrorCode::kUnauthorized, "status") == 401);
  CHECK(httpStatusFor(ErrorCode::kForbidden, "register") == 403);
  CHECK(httpStatusFor(ErrorCode::kConfigInvalid, "reload") == 400);
  CHECK(httpStatusFor(ErrorCode::kTimeout, "stop") == 504);
  auto body = errorBody(Error{ErrorCode::kConflict, "config-managed"});
  CHECK(body == Json{{"error", "config-managed"}, {"code", "conflict"}});
}

TEST_CASE("events render as the PUB/SSE maps", "[gateway]") {
  proto::StateChanged ev{"web-1", proto::InstanceState::kStarting, proto::InstanceState::kRunning, 1795791845123,
                         sample("web-1", proto::InstanceState::kRunning)};
  auto j = renderStateChanged(ev);
  CHECK(j["from"] == "starting");
  CHECK(j["to"] == "running");
  CHECK(j["at"] == "2026-11-27T15:04:05.123Z");
  CHECK(j["status"]["name"] == "web-1");
  proto::LogLines ll{"web-1", {{9, proto::LogStream::kStdout, "x", "web-1"}}, 2};
  auto k = renderLogLines(ll);
  CHECK(k["instance"] == "web-1");
  CHECK(k["dropped"] == 2);
  CHECK(k["lines"][0]["offset"] == 9);
}

TEST_CASE("bytes the JSON library rejects become 400s, never exceptions (fuzz findings)", "[gateway]") {
  // A query value with invalid UTF-8, shown in the error message.
  const std::string bad = std::string("x\xB8\xFF", 3);
  auto flag = argFlag(Json{{"follow", bad}}, "follow");
  REQUIRE_FALSE(flag);
  CHECK(flag.error().code == ErrorCode::kInvalidArgument);
  auto n = argUint(Json{{"lines", bad}}, "lines");
  REQUIRE_FALSE(n);
  CHECK(n.error().message.find("lines must be a non-negative integer") != std::string::npos);
  // A number beyond a double in a request body.
  auto body = parseJsonBody(R"({"name": "web", "retry_count": 3e3333})");
  REQUIRE_FALSE(body);
  CHECK(body.error().code == ErrorCode::kInvalidArgument);
  CHECK(body.error().message.find("request body cannot be read") != std::string::npos);
}

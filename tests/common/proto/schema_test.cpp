// Round trip of every message type of the schema through the codec, field by field.
#include <catch2/catch.hpp>

#include <set>

#include "common/proto/codec.hpp"
#include "common/proto/schema.hpp"

using namespace provisr;
using namespace provisr::proto;

namespace {

// A sample of every message with every field away from its default, so a field the codec
// forgot would not survive the trip.
InstanceStatus sampleStatus(std::string name) {
  InstanceStatus s;
  s.name = std::move(name);
  s.running = true;
  s.pid = 4242;
  s.started_at = 1'800'000'000'123;
  s.stopped_at = std::nullopt;
  s.restarts = 3;
  s.state = InstanceState::kRunning;
  s.provisioned = true;
  s.exit_error = "exit status 1";
  s.program = "api-server";
  s.instance = 2;
  s.priority = -5;
  s.groups = {"web", "backend"};
  s.exit_code = 1;
  s.exit_signal = std::nullopt;
  s.uptime_ms = 65'000;
  s.last_start_error = "exec /nope: No such file or directory";
  s.log = {"/var/log/provisr/api-server-2.stdout.log", "/var/log/provisr/api-server-2.stderr.log"};
  s.log_dropped_bytes = 17;
  s.adopted = true;
  s.rss_bytes = 1u << 24;
  s.cpu_seconds = 1.25;
  s.starts = 9;
  s.exits = {{"0", 2}, {"SIGKILL", 1}};
  s.log_stdout_bytes = 1234;
  s.log_stderr_bytes = 56;
  return s;
}

LogLine sampleLine(std::uint64_t off) {
  return LogLine{off, LogStream::kStderr, "héllo \x01 wörld", "api-server-2"};
}

PlanStep sampleStep() { return PlanStep{PlanAction::kRestart, "api-server", {"api-server-1", "api-server-2"}, 10, "changed: command"}; }

ChildSpec sampleChild() {
  ChildSpec c;
  c.key = "api-server-2";
  c.generation = 7;
  c.argv = {"/usr/bin/python3", "-m", "http.server", ""};
  c.env = {"PATH=/usr/bin:/bin", "PROVISR_INSTANCE=2", "EMPTY="};
  c.cwd = "/srv/api";
  c.user = "www-data";
  c.group = std::nullopt;
  c.umask = 027;
  c.log = LogSinks{"/var/log/a.out", "/var/log/a.err", 5u << 20, 9, 30, true, true};
  c.memory_max_bytes = 512u << 20;
  c.pids_max = std::nullopt;
  return c;
}

template <class T> T sample();
template <> ErrorReply sample() { return {ErrorCode::kNotFound, "no such program: web"}; }
template <> OkReply sample() { return {}; }
template <> Hello sample() { return {"s3cr3t\0x", 1234}; }
template <> HelloReply sample() { return {5, 99, 1000}; }
template <> Spawn sample() { return {5, {sampleChild(), ChildSpec{}}}; }
template <> SpawnReply sample() {
  return {{{"api-server-2", 7, true, false, 4321, ErrorCode::kOk, ""},
           {"bad", 1, false, false, std::nullopt, ErrorCode::kInvalidArgument, "argv is empty"}}};
}
template <> SignalChild sample() { return {5, "api-server-2", 10}; }
template <> StopChild sample() { return {5, "api-server-2", 2, 2500}; }
template <> Snapshot sample() { return {6}; }
template <> SnapshotReply sample() {
  return {{{"a", 1, 100, 123456, 1'800'000'000'000, ChildState::kRunning, std::nullopt, std::nullopt, false},
           {"b", 2, 101, 99, 1'800'000'000'001, ChildState::kExited, std::nullopt, 9, true}},
          77};
}
template <> Ack sample() { return {5, 77}; }
template <> ChildStarted sample() { return {78, "a", 3, 555, 8888, 1'800'000'000'002, true}; }
template <> ChildExited sample() { return {79, "a", 3, 555, 3, std::nullopt, true, 1'800'000'000'003}; }
template <> SpawnFailed sample() { return {80, "a", 4, 2, "exec", "exec /nope: No such file or directory"}; }
template <> LogStats sample() { return {81, "a", 1000, 2000, 30, 2}; }
template <> LogTail sample() { return {5, "a", 42, 1000}; }
template <> LogTailReply sample() { return {{sampleLine(42), sampleLine(43)}, 44}; }
template <> LogFollow sample() { return {5, "a", false}; }
template <> LogLines sample() { return {"a", {sampleLine(44)}, 3}; }
template <> ReopenLogs sample() { return {5}; }
template <> StatusRequest sample() { return {{SelectorKind::kWildcard, "api-*"}, true}; }
template <> StatusReply sample() { return {{sampleStatus("api-server-1"), InstanceStatus{}}, true}; }
template <> Start sample() { return {{SelectorKind::kName, "web"}, 5000, true}; }
template <> Stop sample() { return {{SelectorKind::kBase, "web"}, 100, true}; }
template <> Restart sample() { return {{SelectorKind::kGroup, "backend"}, std::nullopt, true}; }
template <> ActionReply sample() { return {{sampleStatus("x")}, {sampleStep()}, true}; }
template <> Scale sample() { return {"worker", 12}; }
template <> Register sample() { return {R"({"name":"w","command":"sleep 1"})"}; }
template <> Unregister sample() { return {{SelectorKind::kName, "w"}}; }
template <> Update sample() { return {R"({"name":"w","command":"sleep 2"})", 3000}; }
template <> Groups sample() { return {}; }
template <> GroupsReply sample() { return {{{"web", {"nginx", "api"}}, {"empty", {}}}}; }
template <> GroupStatus sample() { return {"web"}; }
template <> GroupStatusReply sample() { return {{{"nginx", {sampleStatus("nginx")}}, {"api", {}}}}; }
template <> GroupStart sample() { return {"web", 1000}; }
template <> GroupStop sample() { return {"web", std::nullopt}; }
template <> Reload sample() { return {true}; }
template <> ReloadReply sample() { return {true, {sampleStep(), PlanStep{}}, {"server.listen"}, {"unknown ${X}"}}; }
template <> Logs sample() { return {"api-server", 10, 50, LogStreams::kStderr}; }
template <> LogsReply sample() { return {{sampleLine(1)}, {{"api-server-1", 2}, {"api-server-2", 9}}}; }
template <> Spec sample() { return {"web"}; }
template <> SpecReply sample() { return {R"({"name":"web"})", "file", "/etc/provisr/programs/web.toml"}; }
template <> Settings sample() { return {}; }
template <> SettingsReply sample() { return {R"({"run_dir":"/run/provisr"})"}; }
template <> Shutdown sample() { return {}; }
template <> Subscribe sample() { return {{"state.", "log.web-1"}}; }
template <> StateChanged sample() {
  return {"web", InstanceState::kStarting, InstanceState::kRunning, 1'800'000'000'004, sampleStatus("web")};
}
template <> Deposit sample() { return {"a", 3, {FdKind::kStdoutPipe, FdKind::kStderrPipe}, 0}; }
template <> Release sample() { return {"a", 3}; }
template <> Withdraw sample() { return {}; }
template <> WithdrawChunk sample() { return {{{"a", 3, {FdKind::kPidfd}, 555}, {"b", 1, {}, 0}}, true}; }
template <> Exited sample() { return {"a", 3, 555, 0x0900, 1'800'000'000'005}; }

}  // namespace

TEST_CASE("every message type survives a round trip", "[common]") {
  std::set<std::uint16_t> seen;
  std::uint64_t id = 1;
  forEachMessageType([&]<class T>() {
    INFO(msgTypeName(T::kType));
    const T original = sample<T>();
    const std::string bytes = encode(original, id);
    auto env = decodeEnvelope(bytes.data(), bytes.size());
    REQUIRE(env.ok());
    CHECK(env->v == 1);
    CHECK(env->id == id);
    CHECK(env->type == T::kType);
    auto back = decodeBody<T>(*env);
    REQUIRE(back.ok());
    CHECK(*back == original);
    // A default-constructed message survives too (empty strings, unset optionals).
    auto dflt = decode<T>(encode(T{}, 0).data(), encode(T{}, 0).size());
    REQUIRE(dflt.ok());
    CHECK(*dflt == T{});
    CHECK(seen.insert(static_cast<std::uint16_t>(T::kType)).second);  // no two structs share a type
    ++id;
  });
  // forEachMessageType lists every type the enum (and msgTypeName) knows, and no other.
  std::size_t known = 0;
  for (unsigned raw = 0; raw <= 0xffff; ++raw) {
    if (isKnownMsgType(static_cast<std::uint16_t>(raw))) {
      ++known;
      CHECK(seen.count(static_cast<std::uint16_t>(raw)) == 1);
    }
  }
  CHECK(known == seen.size());
}

TEST_CASE("wire enums travel by name", "[common]") {
  CHECK(wireName(InstanceState::kBackoff) == "backoff");
  CHECK(parseWireName<InstanceState>("fatal") == InstanceState::kFatal);
  CHECK_FALSE(parseWireName<InstanceState>("zombie").has_value());
  CHECK(wireName(SelectorKind::kWildcard) == "wildcard");
  CHECK(wireName(FdKind::kPidfd) == "pidfd");
}

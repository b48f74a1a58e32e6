// The status replies written as JSON text and decoded in one pass must be exactly what the json
// tree (nlohmann) and msgpack's define_map give: same bytes, same values, same errors.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <iostream>
#include <limits>
#include <random>

#include "gateway/json_text.hpp"
#include "gateway/reply_decode.hpp"
#include "gateway/translate.hpp"

using namespace provisr;
using namespace provisr::gateway;

namespace {

std::string dumped(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string textOf(std::string_view s) {
  std::string out;
  json::appendString(out, s);
  return out;
}

// Byte strings that exercise every branch of the escaper: ASCII, escapes, controls, DEL, valid
// UTF-8 of each length, overlong and surrogate forms, stray continuation bytes, bytes no UTF-8
// has, and sequences cut short (also at the end).
const std::vector<std::string>& trickyStrings() {
  static const std::vector<std::string> kStrings = {
      "",
      "web-1",
      "quote\"back\\slash/solidus",
      std::string("nul\0byte", 8),
      "\b\t\n\f\r\x01\x1f\x7f",
      "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
      "\xC3",               // cut at the end
      "\xE2\x82",           // cut at the end
      "\xF0\x9F\x98",       // cut at the end
      "\xC3x",              // cut by ASCII
      "\xE2\x82x\xE2",      // cut twice
      "\x80",               // stray continuation
      "\xBF\xBF",
      "\xC0\xAF",           // overlong '/'
      "\xC1\xBF",
      "\xE0\x80\xAF",       // overlong
      "\xE0\x9F\xBF",
      "\xE0\xA0\x80",       // smallest valid 3-byte
      "\xED\x9F\xBF",       // last before the surrogates
      "\xED\xA0\x80",       // a surrogate
      "\xED\xBF\xBF",
      "\xEF\xBF\xBF",
      "\xF0\x8F\xBF\xBF",   // overlong 4-byte
      "\xF0\x90\x80\x80",   // smallest valid 4-byte
      "\xF4\x8F\xBF\xBF",   // U+10FFFF
      "\xF4\x90\x80\x80",   // beyond U+10FFFF
      "\xF5\x80\x80\x80",
      "\xFE\xFF",
      "a\xC3\x28z",         // invalid second byte, then ASCII read again
      "\xE2\x28\xA1",
      "\xF0\x28\x8C\xBC",
      "\xF0\x90\x28\xBC",
      "\xF0\x90\x8C\x28",
      "\xC3\xC3\xA9",       // a lead cut by another lead
      "\"\\\"\\",
  };
  return kStrings;
}

proto::InstanceStatus richStatus(std::mt19937& rng) {
  const auto& strs = trickyStrings();
  auto pick = [&] { return strs[rng() % strs.size()]; };
  auto coin = [&] { return (rng() & 1u) != 0; };
  proto::InstanceStatus s;
  s.name = "web-" + std::to_string(rng() % 100000) + (coin() ? pick() : std::string());
  s.running = coin();
  if (coin()) s.pid = static_cast<std::int32_t>(rng());
  if (coin()) s.started_at = static_cast<std::int64_t>(rng()) * 1000 - 3'000'000'000LL;
  if (coin()) s.stopped_at = 1795791845123LL + static_cast<std::int64_t>(rng() % 100000);
  s.restarts = static_cast<std::uint32_t>(rng());
  s.state = static_cast<proto::InstanceState>(rng() % 7);
  s.provisioned = coin();
  if (coin()) s.exit_error = pick();
  s.program = coin() ? std::string("web") : pick();
  s.instance = static_cast<std::uint32_t>(rng());
  s.priority = static_cast<std::int32_t>(rng());
  for (unsigned i = rng() % 3; i > 0; --i) s.groups.push_back(pick());
  if (coin()) s.exit_code = static_cast<std::int32_t>(rng() % 256) - 1;
  if (coin()) s.exit_signal = static_cast<std::int32_t>(rng() % 64);
  s.uptime_ms = (static_cast<std::uint64_t>(rng()) << 32) | rng();
  if (coin()) s.last_start_error = pick();
  s.log.stdout_path = "/var/log/" + pick();
  s.log.stderr_path = pick();
  s.log_dropped_bytes = rng();
  s.adopted = coin();
  if (coin()) s.rss_bytes = (static_cast<std::uint64_t>(rng()) << 20);
  if (coin()) s.cpu_seconds = static_cast<double>(rng() % 100000) / 1000.0;
  s.starts = rng() % 10;
  if (coin()) s.exits["0"] = rng() % 5;
  if (coin()) s.exits["SIGKILL"] = 1;
  s.log_stdout_bytes = rng();
  s.log_stderr_bytes = rng();
  return s;
}

}  // namespace

TEST_CASE("JSON strings are escaped exactly as nlohmann does", "[gateway]") {
  for (const auto& s : trickyStrings()) {
    INFO("bytes: " << dumped(Json(s)));
    CHECK(textOf(s) == dumped(Json(s)));
  }
  // Random byte strings drawn mostly from the bytes that matter to UTF-8.
  std::mt19937 rng(20261128);
  static constexpr unsigned char kBytes[] = {'a',  '"',  '\\', 0x00, 0x1F, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                             0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0,
                                             0xF1, 0xF4, 0xF5, 0xFF, '\n', 0x28};
  for (int i = 0; i < 20000; ++i) {
    std::string s(rng() % 10, '\0');
    for (auto& c : s) c = static_cast<char>(kBytes[rng() % sizeof kBytes]);
    const std::string want = dumped(Json(s));
    const std::string got = textOf(s);
    if (got != want) {
      FAIL_CHECK("input " << dumped(Json::binary(std::vector<std::uint8_t>(s.begin(), s.end())))
                          << ": got " << got << ", nlohmann " << want);
      break;
    }
  }
}

TEST_CASE("JSON numbers are written as nlohmann writes them", "[gateway]") {
  for (double d : {0.0, -0.0, 1.0, 0.1, 1.5, 123456789.125, 1e21, 1e-7, 3.0e300, -2.5e-300,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min(),
                   std::numeric_limits<double>::infinity(), std::nan("")}) {
    std::string out;
    json::appendDouble(out, d);
    CHECK(out == dumped(Json(d)));
  }
  for (std::int64_t v : {std::int64_t{0}, std::int64_t{-1}, std::numeric_limits<std::int64_t>::min(),
                         std::numeric_limits<std::int64_t>::max()}) {
    std::string out;
    json::appendInt(out, v);
    CHECK(out == dumped(Json(v)));
  }
  std::string out;
  json::appendUint(out, std::numeric_limits<std::uint64_t>::max());
  CHECK(out == dumped(Json(std::numeric_limits<std::uint64_t>::max())));
}

TEST_CASE("status text equals the json tree's dump, for every shape of status", "[gateway]") {
  std::mt19937 rng(8);
  std::vector<proto::InstanceStatus> list;
  for (int i = 0; i < 400; ++i) {
    auto s = richStatus(rng);
    INFO(dumped(renderStatus(s)));
    REQUIRE(renderStatusText(s) == dumped(renderStatus(s)));
    list.push_back(std::move(s));
  }
  CHECK(renderStatusListText(list) == dumped(renderStatusList(list)));
  CHECK(renderStatusListText({}) == "[]");
  CHECK(renderDebugProcessesText(list) == dumped(renderDebugProcesses(list)));

  proto::ActionReply action;
  action.instances.assign(list.begin(), list.begin() + 20);
  action.plan.push_back(proto::PlanStep{proto::PlanAction::kStart, "web", {"web-1", "web-\xC3"}, -3, "added"});
  action.plan.push_back(proto::PlanStep{proto::PlanAction::kKeep, "db\n", {}, 7, "changed: \"command\""});
  action.timed_out = true;
  CHECK(renderActionText(action) == dumped(renderAction(action)));
  CHECK(renderActionText(proto::ActionReply{}) == dumped(renderAction(proto::ActionReply{})));

  proto::GroupStatusReply group;
  group.members["web"].assign(list.begin(), list.begin() + 3);
  group.members["db\xFF"] = {};
  group.members["a\"b"].assign(list.begin() + 3, list.begin() + 5);
  CHECK(renderGroupStatusText(group) == dumped(renderGroupStatus(group)));
  CHECK(renderGroupStatusText(proto::GroupStatusReply{}) == dumped(renderGroupStatus(proto::GroupStatusReply{})));
}

namespace {

template <class T>
proto::Envelope envelopeOf(const T& msg) {
  const std::string bytes = proto::encode(msg, 7);
  auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
  REQUIRE(env);
  return std::move(*env);
}

// An envelope of `type` whose body is whatever `packBody` packs.
template <class F>
proto::Envelope envelopeWith(proto::MsgType type, F packBody) {
  std::string bytes;
  proto::detail::StringSink sink{&bytes};
  msgpack::packer<proto::detail::StringSink> pk(sink);
  proto::detail::packEnvelopeHead(pk, 7, type);
  packBody(pk);
  auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
  REQUIRE(env);
  return std::move(*env);
}

void packStr(msgpack::packer<proto::detail::StringSink>& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

}  // namespace

TEST_CASE("one-pass decoding gives what msgpack's define_map gives", "[gateway]") {
  std::mt19937 rng(1128);
  proto::StatusReply status;
  for (int i = 0; i < 200; ++i) status.instances.push_back(richStatus(rng));
  status.single = true;
  auto env = envelopeOf(status);
  auto fast = decodeStatusReply(env);
  REQUIRE(fast);
  CHECK(*fast == status);
  CHECK(*fast == *proto::decodeReply<proto::StatusReply>(env));

  proto::ActionReply action;
  action.instances.assign(status.instances.begin(), status.instances.begin() + 5);
  action.plan.push_back(proto::PlanStep{proto::PlanAction::kRestart, "web", {"web-1"}, 2, "changed: command"});
  action.timed_out = true;
  auto fastAction = decodeActionReply(envelopeOf(action));
  REQUIRE(fastAction);
  CHECK(*fastAction == action);

  proto::GroupStatusReply group;
  group.members["web"].assign(status.instances.begin(), status.instances.begin() + 4);
  group.members["db"] = {};
  auto fastGroup = decodeGroupStatusReply(envelopeOf(group));
  REQUIRE(fastGroup);
  CHECK(*fastGroup == group);

  // Missing keys keep their defaults, unknown keys are skipped, a repeated key counts once (the
  // first), keys in any order.
  auto odd = envelopeWith(proto::MsgType::kStatusReply, [](auto& pk) {
    pk.pack_map(2);
    packStr(pk, "instances");
    pk.pack_array(1);
    pk.pack_map(6);
    packStr(pk, "state");
    packStr(pk, "running");
    packStr(pk, "future_field");
    pk.pack_array(2);
    pk.pack(1);
    pk.pack(2);
    packStr(pk, "name");
    packStr(pk, "web-1");
    packStr(pk, "name");
    packStr(pk, "web-2");
    packStr(pk, "log");
    pk.pack_map(1);
    packStr(pk, "stderr");
    packStr(pk, "/e");
    packStr(pk, "pid");
    pk.pack_nil();
    packStr(pk, "single");
    pk.pack(true);
  });
  auto a = decodeStatusReply(odd);
  auto b = proto::decodeReply<proto::StatusReply>(odd);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);
  CHECK(a->instances.at(0).name == "web-1");
  CHECK(a->instances.at(0).state == proto::InstanceState::kRunning);
  CHECK(a->instances.at(0).log.stderr_path == "/e");
  CHECK_FALSE(a->instances.at(0).pid.has_value());

  // Wrong types and unknown enum names are malformed bodies, as with define_map.
  auto packBad = [](auto badValue) {
    return [badValue](auto& pk) {
      pk.pack_map(1);
      packStr(pk, "instances");
      pk.pack_array(1);
      pk.pack_map(1);
      badValue(pk);
    };
  };
  for (auto env2 : {envelopeWith(proto::MsgType::kStatusReply, packBad([](auto& pk) {
                      packStr(pk, "state");
                      packStr(pk, "dancing");
                    })),
                    envelopeWith(proto::MsgType::kStatusReply, packBad([](auto& pk) {
                      packStr(pk, "pid");
                      packStr(pk, "42");
                    })),
                    envelopeWith(proto::MsgType::kStatusReply, packBad([](auto& pk) {
                      pk.pack(3);
                      pk.pack(4);
                    })),
                    envelopeWith(proto::MsgType::kStatusReply, [](auto& pk) {
                      pk.pack_map(1);
                      packStr(pk, "instances");
                      pk.pack_map(0);
                    })}) {
    auto bad = decodeStatusReply(env2);
    auto ref = proto::decodeReply<proto::StatusReply>(env2);
    REQUIRE_FALSE(bad);
    REQUIRE_FALSE(ref);
    CHECK(bad.error().code == ErrorCode::kMalformed);
    CHECK(bad.error().message == ref.error().message);
  }

  // An ErrorReply is its error; another reply type is malformed.
  const std::string err = proto::encodeError(7, ErrorCode::kNotFound, "no instance named 'x'");
  auto errEnv = proto::decodeEnvelope(err.data(), err.size());
  REQUIRE(errEnv);
  auto notFound = decodeStatusReply(*errEnv);
  REQUIRE_FALSE(notFound);
  CHECK(notFound.error().code == ErrorCode::kNotFound);
  CHECK(notFound.error().message == "no instance named 'x'");
  auto wrongType = decodeActionReply(env);
  REQUIRE_FALSE(wrongType);
  CHECK(wrongType.error().code == ErrorCode::kMalformed);
}

// Hidden (run with `tests_gateway "[bench]"`): decode and render a status-all of 5000 instances,
// the old way (define_map, json tree) and the new one.
TEST_CASE("status-all of 5000: decode and render time", "[.][bench]") {
  proto::StatusReply reply;
  for (int i = 0; i < 5000; ++i) {
    proto::InstanceStatus s;
    s.name = "bench-" + std::to_string(i);
    s.program = "bench";
    s.instance = static_cast<std::uint32_t>(i);
    s.running = true;
    s.state = proto::InstanceState::kRunning;
    s.pid = 10000 + i;
    s.started_at = 1795791845123;
    s.uptime_ms = 123456;
    s.log.stdout_path = "/tmp/provisr-bench/run/logs/bench-" + std::to_string(i) + ".out.log";
    s.log.stderr_path = "/tmp/provisr-bench/run/logs/bench-" + std::to_string(i) + ".err.log";
    s.starts = 1;
    reply.instances.push_back(std::move(s));
  }
  const std::string bytes = proto::encode(reply, 1);
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  for (int round = 0; round < 3; ++round) {
    const auto t0 = Clock::now();
    auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
    REQUIRE(env);
    const auto t1 = Clock::now();
    auto oldReply = proto::decodeReply<proto::StatusReply>(*env);
    const auto t2 = Clock::now();
    const std::string oldText = dumped(renderStatusList(oldReply->instances));
    const auto t3 = Clock::now();
    auto newReply = decodeStatusReply(*env);
    const auto t4 = Clock::now();
    const std::string newText = renderStatusListText(newReply->instances);
    const auto t5 = Clock::now();
    CHECK(oldText == newText);
    std::cout << "msg " << bytes.size() << " B, json " << newText.size() << " B: envelope " << ms(t1 - t0)
              << " ms; old decode " << ms(t2 - t1) << " render " << ms(t3 - t2) << " ms; new decode " << ms(t4 - t3)
              << " render " << ms(t5 - t4) << " ms\n";
  }
}

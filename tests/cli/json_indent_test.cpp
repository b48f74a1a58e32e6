// indentJson (cli/json_indent.hpp): the CLI's JSON output without a parse must be byte for byte
// what nlohmann's parse + dump(2) writes, and must give up on anything a parse would not accept
// or would write differently.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <cmath>
#include <random>
#include <string>

// tests_integration links no CLI library: the indenter is compiled into this test directly.
#include "cli/json_indent.hpp"

using nlohmann::json;
using provisr::cli::indentJson;

namespace {

// What the CLI printed before: parse, then dump with a 2-space indent. nullopt when the parse fails.
std::optional<std::string> reference(const std::string& text) {
  auto parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  try {
    return parsed.dump(2);
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

// A random JSON value: every type, nesting, strings with escapes, control characters and
// multi-byte UTF-8, integers at the edges, doubles of every magnitude.
json randomValue(std::mt19937_64& rng, int depth) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
  static const std::vector<std::string> pieces = {"a", "b", "web", "s-1", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f",
                                                  "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", " ", "{", "]", ":", ","};
  auto str = [&] {
    std::string s;
    for (int i = pick(6); i > 0; --i) s += pieces[static_cast<std::size_t>(pick(static_cast<int>(pieces.size())))];
    return s;
  };
  // Keys without escapes: the indenter leaves a key with one to the parse (see below).
  auto key = [&] {
    static const std::vector<std::string> safe = {"a", "b", "web", "s-1", "/", "\x7f", "\xc3\xa9", "\xf0\x9f\x98\x80", " ", "{", ":"};
    std::string s;
    for (int i = pick(4); i > 0; --i) s += safe[static_cast<std::size_t>(pick(static_cast<int>(safe.size())))];
    return s;
  };
  int kind = depth > 4 ? pick(7) : pick(9);
  switch (kind) {
    case 0: return nullptr;
    case 1: return pick(2) == 0;
    case 2: return static_cast<std::int64_t>(rng()) >> pick(64);
    case 3: return rng() >> pick(64);
    case 4: {
      static const double special[] = {0.0, -0.0, 0.1, 1e-7, 1e21, 123456.789, -2.5e-300, 1.7976931348623157e308, 5e-324};
      if (pick(3) == 0) return special[pick(9)];
      return std::ldexp(static_cast<double>(rng() >> 11) / 9007199254740992.0, pick(200) - 100) * (pick(2) ? 1 : -1);
    }
    case 5:
    case 6: return str();
    case 7: {
      json a = json::array();
      for (int i = pick(5); i > 0; --i) a.push_back(randomValue(rng, depth + 1));
      return a;
    }
    default: {
      json o = json::object();
      for (int i = pick(6); i > 0; --i) o[key()] = randomValue(rng, depth + 1);
      return o;
    }
  }
}

}  // namespace

TEST_CASE("indentJson: a status reply comes out as parse + dump(2) wrote it", "[cli][json]") {
  const std::string reply =
      R"([{"adopted":false,"cpu_seconds":null,"exit_code":null,"groups":["web"],"instance":1,)"
      R"("log":{"stderr":"/l/s-1.err","stdout":"/l/s-1.out"},"name":"s-1","pid":25424,"restarts":0,)"
      R"("started_at":"2026-11-28T00:30:44.717Z","state":"running","uptime_ms":4926},{"groups":[],"log":{},"name":"s-2"}])"
      "\n";
  auto out = indentJson(reply);
  REQUIRE(out);
  CHECK(*out == json::parse(reply).dump(2));
  CHECK(indentJson("{\"ok\":true}\n") == std::string("{\n  \"ok\": true\n}"));
  CHECK(indentJson("[]") == std::string("[]"));
  CHECK(indentJson(" { } ") == std::string("{}"));
  CHECK(indentJson("\"x\"") == std::string("\"x\""));
  // Keys sort by their characters, not by their quoted text ('"' sorts after ' ').
  CHECK(indentJson(R"({"":1," ":2})") == reference(R"({"":1," ":2})"));
  CHECK(indentJson(R"({"a":1,"a b":2})") == reference(R"({"a":1,"a b":2})"));
  CHECK_FALSE(indentJson(R"({"a b":1,"a":2})"));
}

TEST_CASE("indentJson: random values, compact and with whitespace, equal parse + dump(2)", "[cli][json]") {
  std::mt19937_64 rng(20261128);
  for (int i = 0; i < 3000; ++i) {
    json v = randomValue(rng, 0);
    for (const std::string& text : {v.dump(), v.dump(1, '\t'), v.dump(3) + "\r\n"}) {
      auto want = reference(text);
      auto got = indentJson(text);
      INFO(text);
      REQUIRE(want);
      REQUIRE(got);
      CHECK(*got == *want);
    }
  }
}

TEST_CASE("indentJson: numbers become what nlohmann would write for them", "[cli][json]") {
  for (const char* text : {"-0", "0", "-0.0", "1.0E5", "1e-7", "2.50", "100e-2", "18446744073709551615", "18446744073709551616",
                           "-9223372036854775808", "-9223372036854775809", "123456789012345678901234567890", "[1.5e+20,-0,7]",
                           "0.30000000000000004", "4.9406564584124654e-324"}) {
    INFO(text);
    auto want = reference(text);
    REQUIRE(want);
    auto got = indentJson(text);
    REQUIRE(got);
    CHECK(*got == *want);
  }
}

TEST_CASE("indentJson: gives up on what a parse would refuse or write differently", "[cli][json]") {
  for (const char* text : {"", " ", "{", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "nul", "tru", "01", "-", "1.", "1e", ".5",
                           "+1", "\"open", "\"a\" \"b\"", "{\"b\":1,\"a\":2}", "{\"a\":1,\"a\":2}", "\"\\/\"", "\"\\u00e9\"",
                           "\"\\u001F\"", "\"\\u000a\"", "\"\\x\"", "\"\\u12\"", "\"\x01\"", "\"\xff\"", "\"\xc3\"",
                           "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "1e400", "{\"a\\u0062\":1}", "{\"a\\n\":1}", "[1] x"}) {
    INFO(text);
    CHECK_FALSE(indentJson(text));
  }
  // Deeper than the indenter goes: the parse path takes it.
  CHECK_FALSE(indentJson(std::string(300, '[') + std::string(300, ']')));
  CHECK(indentJson(std::string(200, '[') + std::string(200, ']')) == reference(std::string(200, '[') + std::string(200, ']')));
}

TEST_CASE("indentJson: on mangled input it either gives up or agrees with parse + dump(2)", "[cli][json]") {
  std::mt19937_64 rng(8);
  static const char alphabet[] = "{}[]:,\"\\ 0123456789-+.eEtrufalsn\x01\x7f\xc3\xa9\xff";
  int agreed = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string text = randomValue(rng, 0).dump();
    for (int edits = 1 + static_cast<int>(rng() % 3); edits > 0 && !text.empty(); --edits) {
      std::size_t at = rng() % text.size();
      char c = alphabet[rng() % (sizeof alphabet - 1)];
      switch (rng() % 3) {
        case 0: text[at] = c; break;
        case 1: text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c); break;
        default: text.erase(at, 1); break;
      }
    }
    auto got = indentJson(text);
    if (!got) continue;
    INFO(text);
    auto want = reference(text);
    REQUIRE(want);
    CHECK(*got == *want);
    ++agreed;
  }
  CHECK(agreed > 100);  // the property was exercised, not only the give-ups
}

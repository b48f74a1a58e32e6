// Hostile config input: what the fuzz targets (fuzz/) and their property checks turned up, each
// kept as a test. The loader must answer every one with a diagnostic, quickly, without crashing.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "common/config/loader.hpp"
#include "common/config/toml_guard.hpp"
#include "tests/common/config/config_test_util.hpp"

namespace provisr::config::test {
namespace {

LoadResult loadText(const TempDir& dir, const std::string& name, const std::string& text) {
  return loadConfig(dir.write(name, text), testOptions());
}

bool hasError(const LoadResult& r, const std::string& fragment) {
  for (const auto& d : r.errors())
    if (d.message.find(fragment) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("a NUL inside a config string is an error in every format", "[common][fuzz]") {
  TempDir dir;
  // An argv word, an env entry and a path with an embedded NUL: exec would cut them silently.
  auto t = loadText(dir, "a.toml",
                    "[[processes]]\ntype = \"process\"\n[processes.spec]\nname = \"w\"\ncommand = \"/bin/echo a\\u0000b\"\n");
  CHECK_FALSE(t.ok());
  CHECK(hasError(t, "NUL"));
  auto j = loadText(dir, "b.json",
                    R"({"processes": [{"type": "process", "spec": {"name": "w", "args": ["/bin/echo", "x\u0000y"]}}]})");
  CHECK_FALSE(j.ok());
  CHECK(hasError(j, "NUL"));
  auto y = loadText(dir, "c.yaml",
                    "processes:\n  - type: process\n    spec:\n      name: w\n      command: /bin/true\n      env: [\"A=1\\0B\"]\n");
  CHECK_FALSE(y.ok());
  CHECK(hasError(y, "NUL"));
  auto w = loadText(dir, "d.toml", "programs_directory = \"/tmp\\u0000/etc\"\n");
  CHECK_FALSE(w.ok());
  CHECK(hasError(w, "NUL"));
}

TEST_CASE("deeply nested JSON is refused before the recursive conversion", "[common][fuzz]") {
  TempDir dir;
  const std::string deep = "{\"env\": " + std::string(200000, '[') + std::string(200000, ']') + "}";
  auto r = loadText(dir, "deep.json", deep);
  CHECK_FALSE(r.ok());
  CHECK(hasError(r, "nested deeper than"));
  // A string full of brackets is not nesting.
  auto s = loadText(dir, "str.json", "{\"env\": [\"A=" + std::string(1000, '[') + "\"]}");
  CHECK(s.ok());
}

TEST_CASE("a YAML alias bomb is refused by the value budget", "[common][fuzz]") {
  TempDir dir;
  // Ten levels of ten aliases each: 10^10 values once expanded, from ~1 KB of text.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    std::string p = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p;
    for (int k = 0; k < 9; ++k) text += ", " + p;
    text += "]\n";
  }
  const auto start = std::chrono::steady_clock::now();
  auto r = loadText(dir, "bomb.yaml", text);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK_FALSE(r.ok());
  CHECK(hasError(r, "values"));
}

TEST_CASE("deep YAML and TOML nesting is an error, not a stack overflow", "[common][fuzz]") {
  TempDir dir;
  auto y = loadText(dir, "deep.yaml", "env: " + std::string(1000, '[') + std::string(1000, ']') + "\n");
  CHECK_FALSE(y.ok());
  auto t = loadText(dir, "deep.toml", "env = " + std::string(1000, '[') + std::string(1000, ']') + "\n");
  CHECK_FALSE(t.ok());
}

TEST_CASE("env_files must be regular files of bounded size", "[common][fuzz]") {
  TempDir dir;
  // A FIFO would block the load forever (nobody writes it); /dev/zero would never end.
  const std::string fifo = dir.path() + "/pipe.env";
  REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  auto r = loadText(dir, "a.toml", "env_files = [\"pipe.env\", \"/dev/zero\"]\n");
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
  CHECK_FALSE(r.ok());
  CHECK(findDiag(r.diagnostics, "env_files[0]", "not a regular file") != nullptr);
  CHECK(findDiag(r.diagnostics, "env_files[1]", "not a regular file") != nullptr);
  // The main config itself: a directory is not a config.
  auto d = loadConfig(dir.path() + "/sub.toml/", testOptions());
  CHECK_FALSE(d.ok());
}

TEST_CASE("a dotenv line with a NUL is an error", "[common][fuzz]") {
  auto r = parseDotenv(std::string_view("A=1\nB=x\0y\n", 10));
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("line 2") == 0);
}

TEST_CASE("durations near 2^63 ns are exact or too large, never negative", "[common][fuzz]") {
  // Through a double, 9223372036854775807 rounded up to 2^63 and llround overflowed to INT64_MIN.
  auto max = parseDuration("9223372036854775807ns");
  REQUIRE(max);
  CHECK(max->count() == std::numeric_limits<std::int64_t>::max());
  auto back = parseDuration(formatDuration(*max));
  REQUIRE(back);
  CHECK(*back == *max);
  auto edge = parseDuration("2562047h47m16.854775807s");
  REQUIRE(edge);
  CHECK(edge->count() > 0);
  CHECK_FALSE(parseDuration("9223372036854775808ns"));
  CHECK_FALSE(parseDuration("2562048h"));
}

// toml++ 3.3 reaches __builtin_unreachable() when it asks whether a non-ASCII character outside a
// string is whitespace (found by the config_toml fuzz target under UBSan). The loader answers such
// text itself, with the place, before toml++ sees it.
TEST_CASE("a non-ASCII character outside a TOML string is refused before toml++ parses it", "[common][fuzz]") {
  using detail::findTomlStray;
  TempDir dir;
  struct Bad {
    const char* text;
    int line;
    int column;
  };
  const Bad bad[] = {
      {"a = 1 \xC3\xA9\n", 1, 7},                         // é after a value
      {"x = 1\n\xEF\xB7\x90 = 1\n", 2, 1},                // U+FDD0 where a key starts
      {"a = [1,\xE3\x80\x81 2]\n", 1, 8},                 // U+3001 inside an array
      {"[t\xC3\xA9]\n", 1, 3},                            // a non-ASCII bare table name
      {"a = \"\"\"x \\\n  \xC3\xA9\"\"\"\n", 2, 3},       // first character after a line-ending backslash
      {"a = 'ok' \xC3\xA9\n", 1, 10},                     // after a literal string
      {"a = \"\\\"\" \xC3\xA9\n", 1, 10},                 // after a basic string with an escaped quote
      {"a = \"\"\"q\"\"\"\"\" \xC3\xA9\n", 1, 15},        // after a multi-line string closed by five quotes
  };
  for (const auto& b : bad) {
    INFO(b.text);
    const auto stray = findTomlStray(b.text);
    REQUIRE(stray);
    CHECK(stray->line == b.line);
    CHECK(stray->column == b.column);
    const auto r = loadText(dir, "bad.toml", b.text);
    CHECK_FALSE(r.ok());
    REQUIRE_FALSE(r.errors().empty());
    CHECK(r.errors().front().line == b.line);
    CHECK(hasError(r, "column " + std::to_string(b.column)));
  }
  CHECK(hasError(loadText(dir, "e.toml", "a = 1 \xC3\xA9\n"), "U+00E9"));
  // Where TOML allows non-ASCII (strings of every kind, comments, a leading byte-order mark) the
  // scan finds nothing.
  const char* good[] = {
      "\xEF\xBB\xBF# caf\xC3\xA9\nname = \"caf\xC3\xA9\"\n",
      "a = 'caf\xC3\xA9'\nb = '''\n\xEF\xB7\x90\n'''\n",
      "a = \"\"\"\n\xC3\xA9 \\\n  x \xC3\xA9\"\"\"\n",
      "a = \"x\" # \xC3\xA9\n",
  };
  for (const char* g : good) {
    INFO(g);
    CHECK_FALSE(findTomlStray(g));
  }
  CHECK(loadText(dir, "good.toml",
                 "# caf\xC3\xA9\n[[processes]]\ntype = \"process\"\n[processes.spec]\nname = \"w\"\n"
                 "command = \"/bin/echo caf\xC3\xA9\"\n")
            .ok());
}

}  // namespace provisr::config::test

// commandToArgv, durations, dotenv, `${NAME}` expansion and names (SPEC §1.4, §1.5).
#include <catch2/catch.hpp>

#include "common/config/loader.hpp"

using namespace provisr::config;
using Argv = std::vector<std::string>;

TEST_CASE("commandToArgv splits plain commands on whitespace", "[common]") {
  CHECK(commandToArgv("sleep 300").value() == Argv{"sleep", "300"});
  CHECK(commandToArgv("  /usr/bin/env   python3  -u app.py ").value() == Argv{"/usr/bin/env", "python3", "-u", "app.py"});
  CHECK(commandToArgv("a\tb").value() == Argv{"a", "b"});
  CHECK(commandToArgv("x=1").value() == Argv{"/bin/sh", "-c", "x=1"});
}

TEST_CASE("commandToArgv keeps sh -c SCRIPT as that argv", "[common]") {
  CHECK(commandToArgv("sh -c 'echo a; sleep 1'").value() == Argv{"sh", "-c", "echo a; sleep 1"});
  CHECK(commandToArgv("/bin/sh -c 'echo $1' zero one").value() == Argv{"/bin/sh", "-c", "echo $1", "zero", "one"});
  CHECK(commandToArgv("bash -c 'while true; do sleep 5; done'").value() ==
        Argv{"bash", "-c", "while true; do sleep 5; done"});
  CHECK(commandToArgv("/bin/bash -c 'echo a' 'b'").value() == Argv{"/bin/bash", "-c", "echo a", "b"});
  // A pipe outside the quotes belongs to an outer shell.
  CHECK(commandToArgv("sh -c 'echo a' | cat").value() == Argv{"/bin/sh", "-c", "sh -c 'echo a' | cat"});
  // Not a shell: quotes make it a /bin/sh command.
  CHECK(commandToArgv("echo 'a b'").value() == Argv{"/bin/sh", "-c", "echo 'a b'"});
}

TEST_CASE("commandToArgv sends shell metacharacters to /bin/sh -c", "[common]") {
  for (const char* c : {"a | b", "a && b", "a; b", "a < f", "a > f", "ls *.txt", "ls ?", "echo $HOME", "echo `id`",
                        "echo \\x", "echo \"x\"", "(a)", "{ a; }", "ls [ab]", "cd ~", "a # c", "!a", "a\nb",
                        "FOO=bar cmd"}) {
    INFO(c);
    auto r = commandToArgv(c);
    REQUIRE(r.ok());
    CHECK(r.value() == Argv{"/bin/sh", "-c", c});
  }
}

TEST_CASE("commandToArgv rejects empty commands and unbalanced quotes", "[common]") {
  CHECK_FALSE(commandToArgv("").ok());
  CHECK_FALSE(commandToArgv("   ").ok());
  CHECK(commandToArgv("echo 'a").error().message.find("unbalanced single quote") != std::string::npos);
  CHECK(commandToArgv("echo \"a").error().message.find("unbalanced double quote") != std::string::npos);
  CHECK_FALSE(commandToArgv("echo a\\").ok());
}

TEST_CASE("durations parse Go-style strings and format back", "[common]") {
  using namespace std::chrono_literals;
  CHECK(parseDuration("500ms").value() == 500ms);
  CHECK(parseDuration("2s").value() == 2s);
  CHECK(parseDuration("1.5s").value() == 1500ms);
  CHECK(parseDuration("1m30s").value() == 90s);
  CHECK(parseDuration("1h").value() == 1h);
  CHECK(parseDuration("10us").value() == 10us);
  CHECK(parseDuration("7ns").value() == 7ns);
  CHECK(parseDuration("0").value() == 0s);
  CHECK(parseDuration("0.5s").value() == 500ms);
  for (const char* bad : {"", "5", "s", "5x", "-1s", "1..5s", "abc", "1s2"}) {
    INFO(bad);
    CHECK_FALSE(parseDuration(bad).ok());
  }
  CHECK(formatDuration(0s) == "0s");
  CHECK(formatDuration(500ms) == "500ms");
  CHECK(formatDuration(90s) == "1m30s");
  CHECK(formatDuration(1500ms) == "1.5s");
  CHECK(formatDuration(2h + 3s) == "2h3s");
  CHECK(formatDuration(7ns) == "7ns");
  for (auto d : {provisr::Duration(1), provisr::Duration(123456789), provisr::Duration(3'723'500'000'000)})
    CHECK(parseDuration(formatDuration(d)).value() == d);
}

TEST_CASE("dotenv: comments, quotes, export, errors with their line", "[common]") {
  auto r = parseDotenv("# comment\n\nA=1\nexport B = two words \nC=\"quoted # not comment\"\nD='single $X'\n"
                       "E=\"esc\\\"aped\\n\"\nF=val # trailing comment\nG=\n");
  REQUIRE(r.ok());
  std::vector<std::pair<std::string, std::string>> want{{"A", "1"},
                                                         {"B", "two words"},
                                                         {"C", "quoted # not comment"},
                                                         {"D", "single $X"},
                                                         {"E", "esc\"aped\n"},
                                                         {"F", "val"},
                                                         {"G", ""}};
  CHECK(r.value() == want);
  auto bad = parseDotenv("A=1\nnot a pair\n");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.rfind("line 2:", 0) == 0);
  auto bad_name = parseDotenv("A=1\n\n1X=2\n");
  REQUIRE_FALSE(bad_name.ok());
  CHECK(bad_name.error().message.rfind("line 3:", 0) == 0);
  auto unterminated = parseDotenv("A=\"open\n");
  REQUIRE_FALSE(unterminated.ok());
  CHECK(unterminated.error().message.find("unterminated") != std::string::npos);
}

TEST_CASE("expandVars: ${NAME}, $$ and unknown names", "[common]") {
  std::map<std::string, std::string> vars{{"PATH", "/bin"}, {"GLOBAL_NAME", "provisr"}};
  CHECK(expandVars("${PATH}:/opt/bin", vars) == "/bin:/opt/bin");
  CHECK(expandVars("${GLOBAL_NAME}-x", vars) == "provisr-x");
  CHECK(expandVars("cost $$5 and $HOME", vars) == "cost $5 and $HOME");
  std::vector<std::string> unknown;
  CHECK(expandVars("a${NOPE}b${ALSO}", vars, &unknown) == "ab");
  CHECK(unknown == std::vector<std::string>{"NOPE", "ALSO"});
  CHECK(expandVars("${open", vars) == "${open");
}

TEST_CASE("isValidName", "[common]") {
  CHECK(isValidName("api-server"));
  CHECK(isValidName("a.b_c-1"));
  CHECK(isValidName(std::string(64, 'a')));
  CHECK_FALSE(isValidName(std::string(65, 'a')));
  CHECK_FALSE(isValidName(""));
  CHECK_FALSE(isValidName("a..b"));
  CHECK_FALSE(isValidName("a/b"));
  CHECK_FALSE(isValidName("a b"));
}

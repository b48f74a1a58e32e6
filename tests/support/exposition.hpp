// Test support: parses a Prometheus text exposition, checking every sample line's syntax and that
// its family was declared with HELP and TYPE before it.
#pragma once

#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace provisr::test {

// sample (name + labels) → value.
inline std::map<std::string, double> parseExposition(const std::string& text) {
  std::map<std::string, double> out;
  std::set<std::string> help, type;
  std::istringstream in(text);
  std::string line;
  const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$)");
  while (std::getline(in, line)) {
    if (line.rfind("# HELP ", 0) == 0) {
      help.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      type.insert(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    std::smatch m;
    INFO(line);
    REQUIRE(std::regex_match(line, m, sample));
    CHECK(help.count(m[1].str()) == 1);
    CHECK(type.count(m[1].str()) == 1);
    out[m[1].str() + m[2].str()] = std::stod(m[3].str());
  }
  return out;
}

}  // namespace provisr::test

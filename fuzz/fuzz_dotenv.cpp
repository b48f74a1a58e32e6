// Fuzz target: the dotenv parser (env_files). Every parsed pair has a valid name, and a value
// written back in double quotes parses to the same pair.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/config/loader.hpp"
#include "fuzz/fuzz_support.hpp"

namespace {

bool envName(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// KEY="value" with the escapes the parser reads back (\\, \", \n, \t).
std::string quoted(const std::string& k, const std::string& v) {
  std::string out = k + "=\"";
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else out += c;
  }
  return out + "\"\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto vars = provisr::config::parseDotenv(text);
  if (!vars) {
    if (vars.error().message.rfind("line ", 0) != 0) provisr::fuzz::fail("a dotenv error without its line");
    return 0;
  }
  std::string again;
  for (const auto& [k, v] : *vars) {
    if (!envName(k)) provisr::fuzz::fail("a dotenv name is not a variable name", k);
    if (v.find('\0') != std::string::npos) provisr::fuzz::fail("a dotenv value holds a NUL", k);
    again += quoted(k, v);
  }
  auto back = provisr::config::parseDotenv(again);
  if (!back) provisr::fuzz::fail("quoted pairs do not parse back", back.error().message);
  if (*back != *vars) provisr::fuzz::fail("quoted pairs parse back different", again);
  return 0;
}

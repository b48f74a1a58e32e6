// Fuzz target: `${NAME}` expansion. The input is `vars\0value`: vars as dotenv-ish `K=V` lines.
// Expansion is one pass: a value with neither `$$` nor `${` is unchanged, and a variable's
// value is inserted as it is (never expanded again).
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/loader.hpp"
#include "fuzz/fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> vars;
  std::string_view value = in;
  if (auto sep = in.find('\0'); sep != std::string_view::npos) {
    std::string_view defs = in.substr(0, sep);
    value = in.substr(sep + 1);
    while (!defs.empty()) {
      auto nl = defs.find('\n');
      std::string_view line = defs.substr(0, nl);
      defs = nl == std::string_view::npos ? std::string_view{} : defs.substr(nl + 1);
      auto eq = line.find('=');
      if (eq != std::string_view::npos) vars[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
  }
  std::vector<std::string> unknown;
  std::string out = provisr::config::expandVars(value, vars, &unknown);
  for (const auto& u : unknown)
    if (vars.count(u)) provisr::fuzz::fail("a known variable reported unknown", u);
  if (value.find('$') == std::string_view::npos && out != value) provisr::fuzz::fail("text without `$` changed");
  std::size_t budget = value.size();
  for (const auto& [k, v] : vars) budget += v.size() * value.size();
  if (out.size() > budget) provisr::fuzz::fail("expansion grew beyond one pass");
  // Without the unknown list, the same result.
  if (provisr::config::expandVars(value, vars) != out) provisr::fuzz::fail("expansion depends on the unknown list");
  return 0;
}

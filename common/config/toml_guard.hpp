// A pre-scan of TOML text for characters that toml++ 3.3 cannot classify safely.
//
// toml++ 3.3.0 (Debian 12) asks "is this non-ASCII character whitespace?" through a generated
// table whose switch reaches __builtin_unreachable() for most code points (é, U+3001, U+FDD0, …):
// undefined behaviour whenever such a character stands where whitespace, a key or a value could
// start. TOML 1.0 allows non-ASCII only inside strings and comments, so the scan rejects it
// everywhere else, with its line and column, before toml++ sees the text.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace provisr::config::detail {

struct TomlStray {
  int line = 0;
  int column = 0;  // 1-based, in bytes
  std::string message;
};

std::optional<TomlStray> findTomlStray(std::string_view text);

}  // namespace provisr::config::detail

#include "common/config/toml_guard.hpp"

#include <cstdio>

namespace provisr::config::detail {
namespace {

// The character starting at text[i], for messages: its UTF-8 bytes and U+XXXX when decodable.
std::string describe(std::string_view text, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  std::size_t len = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC0 ? 2 : 1;
  if (i + len > text.size()) len = 1;
  char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) {
      len = 1;  // not UTF-8: name the byte
      break;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  char code[16];
  if (len == 1) {
    std::snprintf(code, sizeof code, "byte 0x%02X", b0);
    return code;
  }
  std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(cp));
  return "'" + std::string(text.substr(i, len)) + "' (" + code + ")";
}

}  // namespace

std::optional<TomlStray> findTomlStray(std::string_view text) {
  enum class In { kCode, kComment, kBasic, kLiteral, kMlBasic, kMlLiteral };
  In in = In::kCode;
  int line = 1;
  std::size_t lineStart = 0;
  std::size_t i = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // a byte-order mark is allowed and skipped
  auto stray = [&](std::size_t at, std::string why) {
    return TomlStray{line, static_cast<int>(at - lineStart) + 1, describe(text, at) + " " + std::move(why)};
  };
  auto startsWith = [&](std::size_t at, std::string_view s) { return text.substr(at, s.size()) == s; };
  // After a closing """ or ''', up to two more quote characters still belong to the string.
  auto skipExtraQuotes = [&](char q) {
    for (int k = 0; k < 2 && i < text.size() && text[i] == q; ++k) ++i;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      lineStart = i + 1;
      if (in == In::kComment || in == In::kBasic || in == In::kLiteral) in = In::kCode;
      ++i;
      continue;
    }
    switch (in) {
      case In::kCode:
        if (static_cast<unsigned char>(c) >= 0x80)
          return stray(i, "outside a string or comment (TOML allows non-ASCII characters only in quoted strings and comments)");
        if (c == '#') in = In::kComment;
        else if (startsWith(i, "\"\"\"")) { in = In::kMlBasic; i += 3; continue; }
        else if (startsWith(i, "'''")) { in = In::kMlLiteral; i += 3; continue; }
        else if (c == '"') in = In::kBasic;
        else if (c == '\'') in = In::kLiteral;
        ++i;
        break;
      case In::kComment:
        ++i;
        break;
      case In::kBasic:
        if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') i += 2;
        else { if (c == '"') in = In::kCode; ++i; }
        break;
      case In::kLiteral:
        if (c == '\'') in = In::kCode;
        ++i;
        break;
      case In::kMlBasic:
        if (c == '\\') {
          // A line-ending backslash trims the whitespace that follows, newlines included; toml++
          // classifies the first character after it, so that one must be ASCII.
          std::size_t j = i + 1;
          while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r')) ++j;
          if (j < text.size() && text[j] == '\n') {
            while (j < text.size() && (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' || text[j] == '\n')) {
              if (text[j] == '\n') { ++line; lineStart = j + 1; }
              ++j;
            }
            if (j < text.size() && static_cast<unsigned char>(text[j]) >= 0x80)
              return stray(j, "right after a line-ending backslash (escape it as \\uXXXX or keep it on the backslash's line)");
            i = j;
          } else {
            i += 2;
          }
        } else if (startsWith(i, "\"\"\"")) {
          in = In::kCode;
          i += 3;
          skipExtraQuotes('"');
        } else {
          ++i;
        }
        break;
      case In::kMlLiteral:
        if (startsWith(i, "'''")) {
          in = In::kCode;
          i += 3;
          skipExtraQuotes('\'');
        } else {
          ++i;
        }
        break;
    }
  }
  return std::nullopt;
}

}  // namespace provisr::config::detail

// JSON text written straight into a std::string, byte for byte what nlohmann::json::dump(-1, ' ',
// false, error_handler_t::replace) writes for the same value: the large replies (a status list of
// thousands of instances) are rendered without building a json tree (tests compare the two).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace provisr::gateway::json {

// `s` as a JSON string with its quotes: `"` `\` and control characters escaped (\b \t \n \f \r,
// the others as \u00xx), other bytes as they are; a byte sequence that is not UTF-8 becomes
// U+FFFD, one per maximal invalid prefix, as nlohmann's `replace` handler does.
void appendString(std::string& out, std::string_view s);
void appendInt(std::string& out, std::int64_t v);
void appendUint(std::string& out, std::uint64_t v);
// Shortest round-trip form with a `.0` when it would read as an integer; NaN and infinities are null.
void appendDouble(std::string& out, double v);
inline void appendBool(std::string& out, bool v) { out.append(v ? "true" : "false"); }
inline void appendNull(std::string& out) { out.append("null"); }

// `"key":` — keys are literals of safe characters, written as they are.
inline void appendKey(std::string& out, std::string_view key) {
  out.push_back('"');
  out.append(key);
  out.append("\":");
}

template <class T, class F>
void appendOptional(std::string& out, const std::optional<T>& v, F write) {
  if (v) {
    write(out, *v);
  } else {
    appendNull(out);
  }
}

}  // namespace provisr::gateway::json

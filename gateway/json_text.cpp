// JSON scalars appended to a string, matching nlohmann's serializer byte for byte.
#include "gateway/json_text.hpp"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace provisr::gateway::json {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Bytes that are copied as they are: printable ASCII but `"` and `\`.
constexpr bool plain(unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; }

void appendControl(std::string& out, unsigned char c) {
  switch (c) {
    case '\b': out.append("\\b"); return;
    case '\t': out.append("\\t"); return;
    case '\n': out.append("\\n"); return;
    case '\f': out.append("\\f"); return;
    case '\r': out.append("\\r"); return;
    default: break;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
  out.append(esc, sizeof esc);
}

// The length of the UTF-8 sequence `lead` starts and the range its second byte must be in
// (the rest must be 80..BF); 0 when `lead` cannot start a sequence. Excludes overlong forms,
// surrogates and code points above U+10FFFF, as RFC 3629 does.
struct Lead {
  int len;
  unsigned char lo, hi;
};
constexpr Lead leadOf(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if ((b >= 0xE1 && b <= 0xEC) || b == 0xEE || b == 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

}  // namespace

void appendString(std::string& out, std::string_view s) {
  out.push_back('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    std::size_t run = i;
    while (run < n && plain(p[run])) ++run;
    if (run > i) {
      out.append(s.data() + i, run - i);
      i = run;
      if (i == n) break;
    }
    const unsigned char c = p[i];
    if (c < 0x80) {  // a control character, `"` or `\`
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else {
        appendControl(out, c);
      }
      ++i;
      continue;
    }
    const Lead lead = leadOf(c);
    if (lead.len == 0) {  // a byte no sequence starts with: replaced, and consumed
      out.append(kReplacement);
      ++i;
      continue;
    }
    int k = 1;
    for (; k < lead.len; ++k) {
      if (i + static_cast<std::size_t>(k) >= n) break;
      const unsigned char b = p[i + static_cast<std::size_t>(k)];
      const bool ok = k == 1 ? (b >= lead.lo && b <= lead.hi) : (b >= 0x80 && b <= 0xBF);
      if (!ok) break;
    }
    if (k == lead.len) {
      out.append(s.data() + i, static_cast<std::size_t>(lead.len));
      i += static_cast<std::size_t>(lead.len);
    } else {
      // A truncated sequence: one replacement for its prefix; the byte that broke it is read
      // again on its own (at the end of the string there is none).
      out.append(kReplacement);
      i += static_cast<std::size_t>(k);
    }
  }
  out.push_back('"');
}

void appendInt(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendUint(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

void appendDouble(std::string& out, double v) {
  if (!std::isfinite(v)) {
    appendNull(out);
    return;
  }
  // nlohmann's own formatter (Grisu2, shortest round trip, ".0" for integral values): the same
  // digits as Json(v).dump().
  char buf[64];
  char* end = nlohmann::detail::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

}  // namespace provisr::gateway::json

// indentJson: a recursive-descent pass over JSON text that writes it as nlohmann's dump(2) does,
// copying strings and integers as they are. Anything that a parse and dump would change (other
// escapes, unsorted or duplicate keys, non-canonical numbers it cannot re-render) or that a parse
// would refuse makes it give up, so the caller's fallback is the only other path.
#include "cli/json_indent.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

namespace provisr::cli {

namespace {

constexpr int kMaxDepth = 256;

// Bytes a string copies without a second look: printable ASCII except '"' and '\\'.
constexpr auto kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<std::size_t>(c)] = c != '"' && c != '\\';
  return t;
}();

// Whether any of the eight bytes in `w` is not plain: below 0x20, '"', '\\' or 0x80 and above
// (the classic "has a zero byte" test applied to w, w ^ '"' and w ^ '\\').
constexpr bool needsLook(std::uint64_t w) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  auto zeroByte = [](std::uint64_t x) { return (x - kOnes) & ~x & kHigh; };
  const std::uint64_t below20 = (w - kOnes * 0x20) & ~w & kHigh;
  return ((w & kHigh) | below20 | zeroByte(w ^ (kOnes * '"')) | zeroByte(w ^ (kOnes * '\\'))) != 0;
}

// An append-only byte buffer: std::string's append checks and bookkeeping cost more than the
// copies themselves at these sizes.
class Out {
 public:
  explicit Out(std::size_t guess) : buf_(guess, '\0') {}
  void put(std::string_view s) {
    room(s.size());
    std::memcpy(buf_.data() + len_, s.data(), s.size());
    len_ += s.size();
  }
  void put(char c) {
    room(1);
    buf_[len_++] = c;
  }
  std::string take() {
    buf_.resize(len_);
    return std::move(buf_);
  }

 private:
  void room(std::size_t n) {
    if (buf_.size() - len_ < n) buf_.resize(std::max(buf_.size() * 2, len_ + n));
  }
  std::string buf_;
  std::size_t len_ = 0;
};

// A newline and the indentation of every depth up to kMaxDepth + 1.
const std::string& newlines() {
  static const std::string text = "\n" + std::string(2 * (kMaxDepth + 1), ' ');
  return text;
}

// The input is copied in spans: every byte from `copied_` up to the scan position goes out as
// it is, and the scan interrupts a span only to add the indentation (after '{', '[', ',' and ':',
// before '}' and ']'), to drop whitespace, or to rewrite a number.
class Indenter {
 public:
  explicit Indenter(std::string_view in) : in_(in), out_(in.size() + in.size() / 2 + 64) {}

  std::optional<std::string> run() {
    skipSpace();
    if (!value(0)) return std::nullopt;
    skipSpace();
    if (pos_ != in_.size()) return std::nullopt;
    copyTo(pos_);
    return out_.take();
  }

 private:
  bool atEnd() const { return pos_ >= in_.size(); }
  char peek() const { return in_[pos_]; }

  void copyTo(std::size_t end) {
    if (end > copied_) out_.put(in_.substr(copied_, end - copied_));
    copied_ = end;
  }

  void newline(int depth) { out_.put(std::string_view(newlines_, 1 + 2 * static_cast<std::size_t>(depth))); }

  static bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

  // Whitespace is dropped from the copy (the gateway's compact replies have none).
  void skipSpace() {
    if (pos_ < in_.size() && isSpace(in_[pos_])) dropSpace();
  }

  [[gnu::noinline]] void dropSpace() {
    copyTo(pos_);
    while (pos_ < in_.size() && isSpace(in_[pos_])) ++pos_;
    copied_ = pos_;
  }

  bool literal(std::string_view word) {
    if (in_.size() - pos_ < word.size() || in_.compare(pos_, word.size(), word) != 0) return false;
    pos_ += word.size();
    return true;
  }

  bool value(int depth) {
    if (atEnd() || depth > kMaxDepth) return false;
    switch (peek()) {
      case '{': return object(depth);
      case '[': return array(depth);
      case '"': {
        std::string_view s;
        return string(&s);
      }
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }

  bool object(int depth) {
    ++pos_;  // '{'
    skipSpace();
    if (!atEnd() && peek() == '}') {
      ++pos_;  // "{}" as it is (whitespace between was dropped)
      return true;
    }
    copyTo(pos_);
    newline(depth + 1);
    std::string_view previous;
    bool first = true;
    for (;;) {
      if (atEnd() || peek() != '"') return false;
      std::string_view key;
      if (!string(&key)) return false;
      // nlohmann keeps keys in a std::map: sorted bytewise, one of each. A key with an escape
      // would compare by its decoded bytes; leave that to the parse.
      if (key.find('\\') != std::string_view::npos) return false;
      // (Compared without the quotes: a closing '"' must not sort against a key's characters.)
      const std::string_view name = key.substr(1, key.size() - 2);
      if (!first && !(previous < name)) return false;
      previous = name;
      first = false;
      skipSpace();
      if (atEnd() || peek() != ':') return false;
      ++pos_;
      copyTo(pos_);
      out_.put(' ');
      skipSpace();
      if (!value(depth + 1)) return false;
      const int next = separator(depth, '}');
      if (next < 0) return false;
      if (next == 0) return true;
    }
  }

  // After a member or an element: a ',' (another follows, on a line of its own) or the closing
  // bracket (on a line of its own at `depth`). 1: another follows, 0: closed, -1: malformed.
  int separator(int depth, char close) {
    skipSpace();
    if (atEnd()) return -1;
    if (peek() == ',') {
      ++pos_;
      copyTo(pos_);
      newline(depth + 1);
      skipSpace();
      return 1;
    }
    if (peek() != close) return -1;
    copyTo(pos_);
    newline(depth);
    ++pos_;  // the bracket goes out with the next span
    return 0;
  }

  bool array(int depth) {
    ++pos_;  // '['
    skipSpace();
    if (!atEnd() && peek() == ']') {
      ++pos_;
      return true;
    }
    copyTo(pos_);
    newline(depth + 1);
    for (;;) {
      if (!value(depth + 1)) return false;
      const int next = separator(depth, ']');
      if (next < 0) return false;
      if (next == 0) return true;
    }
  }

  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;  // upper case is not how nlohmann writes it
  }

  // A string token with its quotes, when its escapes are the ones nlohmann writes and its bytes
  // are UTF-8.
  bool string(std::string_view* token) {
    const std::size_t start = pos_++;
    const char* data = in_.data();
    const std::size_t size = in_.size();
    while (pos_ < size) {
      // Plain printable ASCII is most of every reply: skip it eight bytes at a time, then a
      // table lookup a byte.
      while (pos_ + 8 <= size) {
        std::uint64_t w = 0;
        std::memcpy(&w, data + pos_, 8);
        if (needsLook(w)) break;
        pos_ += 8;
      }
      while (pos_ < size && kPlain[static_cast<unsigned char>(data[pos_])]) ++pos_;
      if (pos_ >= size) break;
      auto c = static_cast<unsigned char>(data[pos_]);
      if (c == '"') {
        ++pos_;
        *token = in_.substr(start, pos_ - start);
        return true;
      }
      if (c < 0x20) return false;  // a raw control character: not JSON
      if (c == '\\') {
        if (pos_ + 1 >= size) return false;
        char e = data[pos_ + 1];
        if (e == '"' || e == '\\' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
          pos_ += 2;
          continue;
        }
        if (e != 'u' || pos_ + 6 > size) return false;  // "\/" and others: not nlohmann's
        int v = 0;
        for (std::size_t i = pos_ + 2; i < pos_ + 6; ++i) {
          int h = hex(data[i]);
          if (h < 0) return false;
          v = v * 16 + h;
        }
        // nlohmann escapes exactly the control characters that have no short form.
        if (v > 0x1f || v == 0x08 || v == 0x09 || v == 0x0a || v == 0x0c || v == 0x0d) return false;
        pos_ += 6;
        continue;
      }
      if (!utf8(c)) return false;
    }
    return false;
  }

  // One multi-byte UTF-8 sequence starting with `lead` at pos_ (RFC 3629: no overlong forms, no
  // surrogates, nothing above U+10FFFF).
  bool utf8(unsigned char lead) {
    auto at = [&](std::size_t i) { return static_cast<unsigned char>(in_[i]); };
    std::size_t n = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      n = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      n = 2;
      if (lead == 0xe0) lo = 0xa0;
      if (lead == 0xed) hi = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      n = 3;
      if (lead == 0xf0) lo = 0x90;
      if (lead == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (pos_ + n >= in_.size()) return false;
    if (at(pos_ + 1) < lo || at(pos_ + 1) > hi) return false;
    for (std::size_t i = 2; i <= n; ++i)
      if (at(pos_ + i) < 0x80 || at(pos_ + i) > 0xbf) return false;
    pos_ += n + 1;
    return true;
  }

  bool digits() {
    const std::size_t start = pos_;
    while (pos_ < in_.size() && in_[pos_] >= '0' && in_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  // An integer that fits nlohmann's int64/uint64 is written as it is ("-0" as "0"); any other
  // number as nlohmann writes the double it parses to.
  bool number() {
    const std::size_t start = pos_;
    if (in_[pos_] == '-') ++pos_;
    if (atEnd()) return false;
    if (in_[pos_] == '0') {
      ++pos_;
    } else if (!digits()) {
      return false;
    }
    bool integer = true;
    if (!atEnd() && in_[pos_] == '.') {
      ++pos_;
      if (!digits()) return false;
      integer = false;
    }
    if (!atEnd() && (in_[pos_] == 'e' || in_[pos_] == 'E')) {
      ++pos_;
      if (!atEnd() && (in_[pos_] == '+' || in_[pos_] == '-')) ++pos_;
      if (!digits()) return false;
      integer = false;
    }
    std::string_view token = in_.substr(start, pos_ - start);
    const char* first = token.data();
    const char* last = token.data() + token.size();
    if (integer) {
      bool fits = false;
      if (token.front() == '-') {
        std::int64_t v = 0;
        fits = std::from_chars(first, last, v).ec == std::errc{};
      } else {
        std::uint64_t v = 0;
        fits = std::from_chars(first, last, v).ec == std::errc{};
      }
      if (fits && token != "-0") return true;  // copied as it is
    }
    // As nlohmann reads it: strtod (the CLI never leaves the "C" locale), an overflow refused.
    const std::string digits_copy(token);
    char* end = nullptr;
    const double d = std::strtod(digits_copy.c_str(), &end);
    if (end != digits_copy.c_str() + digits_copy.size() || !std::isfinite(d)) return false;
    copyTo(start);
    out_.put(token == "-0" ? std::string("0") : nlohmann::json(d).dump());
    copied_ = pos_;
    return true;
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::size_t copied_ = 0;  // input before this is in out_ (or dropped)
  const char* newlines_ = newlines().data();
  Out out_;
};

}  // namespace

std::optional<std::string> indentJson(std::string_view text) { return Indenter(text).run(); }

}  // namespace provisr::cli

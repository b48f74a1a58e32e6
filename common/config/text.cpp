// The small text grammars of the config: commands (SPEC §1.5), durations, dotenv files, `${NAME}`
// expansion and names.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/config/loader.hpp"

namespace provisr::config {

namespace {

struct Tokens {
  std::vector<std::string> words;
  bool unquoted_meta = false;  // a shell metacharacter outside quotes
};

bool isMeta(char c) {
  return std::string_view("|&;<>*?$`\\\"'(){}[]~#!\n").find(c) != std::string_view::npos;
}

// POSIX quoting: '…' literal, "…" with \ escaping $ ` " \ and newline, \x outside quotes.
Result<Tokens> tokenize(std::string_view s) {
  Tokens t;
  std::string cur;
  bool in_word = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == ' ' || c == '\t') {
      if (in_word) t.words.push_back(std::move(cur)), cur.clear(), in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'') {
      auto end = s.find('\'', i + 1);
      if (end == std::string_view::npos)
        return makeError(ErrorCode::kInvalidArgument, "unbalanced single quote in command");
      cur.append(s.substr(i + 1, end - i - 1));
      i = end;
    } else if (c == '"') {
      std::size_t j = i + 1;
      for (; j < s.size() && s[j] != '"'; ++j) {
        if (s[j] == '\\' && j + 1 < s.size() &&
            std::string_view("$`\"\\\n").find(s[j + 1]) != std::string_view::npos) {
          ++j;
        } else if (s[j] == '$' || s[j] == '`') {
          t.unquoted_meta = true;  // expanded by a shell even inside double quotes
        }
        cur += s[j];
      }
      if (j >= s.size()) return makeError(ErrorCode::kInvalidArgument, "unbalanced double quote in command");
      i = j;
    } else if (c == '\\') {
      t.unquoted_meta = true;
      if (i + 1 >= s.size()) return makeError(ErrorCode::kInvalidArgument, "command ends with a lone backslash");
      cur += s[++i];
    } else {
      if (isMeta(c)) t.unquoted_meta = true;
      cur += c;
    }
  }
  if (in_word) t.words.push_back(std::move(cur));
  return t;
}

bool isShell(const std::string& w) { return w == "sh" || w == "/bin/sh" || w == "bash" || w == "/bin/bash"; }

bool isEnvName(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

}  // namespace

Result<std::vector<std::string>> commandToArgv(std::string_view command) {
  auto tok = tokenize(command);
  if (!tok) return tok.error();
  auto& words = tok->words;
  if (words.empty()) return makeError(ErrorCode::kInvalidArgument, "command is empty");
  // `sh -c SCRIPT [$0 args…]`: the script is one word, and nothing outside quotes needs a shell.
  if (words.size() >= 3 && isShell(words[0]) && words[1] == "-c" && !tok->unquoted_meta) return words;
  bool meta = command.find_first_of("|&;<>*?$`\\\"'(){}[]~#!\n") != std::string_view::npos;
  auto eq = words[0].find('=');
  bool leading_assignment = eq != std::string::npos && isEnvName(std::string_view(words[0]).substr(0, eq));
  if (meta || leading_assignment) return std::vector<std::string>{"/bin/sh", "-c", std::string(command)};
  return words;
}

Result<Duration> parseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return makeError(ErrorCode::kInvalidArgument,
                     "invalid duration `" + std::string(text) + "`: " + why +
                         " (use e.g. \"500ms\", \"2s\", \"1m30s\"; units ns, us, ms, s, m, h)");
  };
  if (text.empty()) return bad("empty");
  if (text == "0") return Duration::zero();
  long double total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
    if (i == start) return bad(text[i] == '-' ? "negative" : "expected a number");
    std::string num(text.substr(start, i - start));
    if (num == "." || std::count(num.begin(), num.end(), '.') > 1) return bad("bad number");
    std::size_t ustart = i;
    while (i < text.size() && !std::isdigit(static_cast<unsigned char>(text[i])) && text[i] != '.') ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    long double scale = 0;
    if (unit == "ns") scale = 1;
    else if (unit == "us" || unit == "\u00b5s") scale = 1e3L;
    else if (unit == "ms") scale = 1e6L;
    else if (unit == "s") scale = 1e9L;
    else if (unit == "m") scale = 60e9L;
    else if (unit == "h") scale = 3600e9L;
    else if (unit.empty()) return bad("missing unit");
    else return bad("unknown unit `" + std::string(unit) + "`");
    total += std::strtold(num.c_str(), nullptr) * scale;
  }
  // 2^63 ns is exact in a long double and every smaller total rounds to at most 2^63 - 1 (the
  // spacing there is 1); through a double, 2^63 - 1 itself would round up and overflow.
  if (!(total < 0x1p63L)) return bad("too large");
  return Duration(static_cast<std::int64_t>(std::llroundl(total)));
}

std::string formatDuration(Duration d) {
  std::int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string out;
  if (ns < 0) out = "-", ns = -ns;
  if (ns < 1'000'000'000) {
    if (ns % 1'000'000 == 0) return out + std::to_string(ns / 1'000'000) + "ms";
    if (ns % 1'000 == 0) return out + std::to_string(ns / 1'000) + "us";
    return out + std::to_string(ns) + "ns";
  }
  std::int64_t h = ns / 3'600'000'000'000;
  ns %= 3'600'000'000'000;
  std::int64_t m = ns / 60'000'000'000;
  ns %= 60'000'000'000;
  if (h) out += std::to_string(h) + "h";
  if (m) out += std::to_string(m) + "m";
  if (ns) {
    std::string frac = std::to_string(ns % 1'000'000'000);
    frac.insert(0, 9 - frac.size(), '0');
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    out += std::to_string(ns / 1'000'000'000) + (frac.empty() ? "" : "." + frac) + "s";
  }
  return out;
}

Result<std::vector<std::pair<std::string, std::string>>> parseDotenv(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  int lineno = 0;
  std::size_t pos = 0;
  auto trim = [](std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  };
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view raw = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++lineno;
    auto fail = [&](const std::string& why) {
      return makeError(ErrorCode::kInvalidArgument, "line " + std::to_string(lineno) + ": " + why);
    };
    // The values become environment strings, where a NUL would cut them.
    if (raw.find('\0') != std::string_view::npos) return fail("contains a NUL character");
    std::string_view line = trim(raw);
    if (line.empty() || line[0] == '#') continue;
    if (line.substr(0, 7) == "export ") line = trim(line.substr(7));
    auto eq = line.find('=');
    if (eq == std::string_view::npos) return fail("expected KEY=VALUE");
    std::string_view key = trim(line.substr(0, eq));
    if (!isEnvName(key)) return fail("invalid variable name `" + std::string(key) + "`");
    std::string_view rest = trim(line.substr(eq + 1));
    std::string value;
    if (!rest.empty() && (rest[0] == '"' || rest[0] == '\'')) {
      char q = rest[0];
      std::size_t i = 1;
      bool closed = false;
      for (; i < rest.size(); ++i) {
        char c = rest[i];
        if (c == q) { closed = true; break; }
        if (q == '"' && c == '\\' && i + 1 < rest.size()) {
          char n = rest[++i];
          value += n == 'n' ? '\n' : n == 't' ? '\t' : n;
        } else {
          value += c;
        }
      }
      if (!closed) return fail(std::string("unterminated ") + (q == '"' ? "double" : "single") + " quote");
      std::string_view tail = trim(rest.substr(i + 1));
      if (!tail.empty() && tail[0] != '#') return fail("unexpected text after the closing quote");
    } else {
      // An unquoted value ends at ` #` (an inline comment).
      auto hash = rest.find(" #");
      value = std::string(trim(rest.substr(0, hash)));
    }
    out.emplace_back(std::string(key), std::move(value));
  }
  return out;
}

std::string expandVars(std::string_view value, const std::map<std::string, std::string>& vars,
                       std::vector<std::string>* unknown) {
  std::string out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    char c = value[i];
    if (c == '$' && i + 1 < value.size() && value[i + 1] == '$') {
      out += '$';
      ++i;
    } else if (c == '$' && i + 1 < value.size() && value[i + 1] == '{') {
      auto end = value.find('}', i + 2);
      if (end == std::string_view::npos) {  // `${` never closed: kept as written
        out += value.substr(i);
        break;
      }
      std::string name(value.substr(i + 2, end - i - 2));
      if (auto it = vars.find(name); it != vars.end()) out += it->second;
      else if (unknown) unknown->push_back(name);
      i = end;
    } else {
      out += c;
    }
  }
  return out;
}

bool isValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (name.find("..") != std::string_view::npos) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

}  // namespace provisr::config

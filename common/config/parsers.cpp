// The three thin parsers: TOML (toml++), YAML (yaml-cpp) and JSON (nlohmann) text → one Node tree.
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <toml++/toml.h>

#include "common/config/toml_guard.hpp"
#include "common/config/tree.hpp"

namespace provisr::config::detail {

const char* kindName(Node::Kind kind) {
  switch (kind) {
    case Node::Kind::kNull: return "null";
    case Node::Kind::kBool: return "a boolean";
    case Node::Kind::kInt: return "an integer";
    case Node::Kind::kFloat: return "a number";
    case Node::Kind::kString: return "a string";
    case Node::Kind::kArray: return "a list";
    case Node::Kind::kTable: return "a table";
  }
  return "?";
}

std::string formatForPath(std::string_view path) {
  auto dot = path.rfind('.');
  if (dot == std::string_view::npos) return {};
  std::string ext(path.substr(dot + 1));
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == "toml") return "toml";
  if (ext == "yaml" || ext == "yml") return "yaml";
  if (ext == "json") return "json";
  return {};
}

namespace {

// Every parser's output is converted recursively, so nesting is capped; and YAML aliases let a
// small text stand for an exponentially large tree, so the number of converted values is capped
// too. Real configs nest a handful of levels and hold a few hundred values.
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxValues = 100000;

struct TooLarge {
  std::string message;
  int line = 0;
};

// Counts the values of one conversion; throws TooLarge past a limit.
class Budget {
 public:
  void enter(int depth, int line) {
    if (depth > kMaxDepth)
      throw TooLarge{"values nested deeper than " + std::to_string(kMaxDepth) + " levels", line};
    if (++values_ > kMaxValues)
      throw TooLarge{"more than " + std::to_string(kMaxValues) + " values (YAML aliases count once per use)", line};
  }

 private:
  std::size_t values_ = 0;
};

// ---- TOML -------------------------------------------------------------------------------------

int tomlLine(const toml::node& n) { return static_cast<int>(n.source().begin.line); }

Node fromToml(const toml::node& n, Budget& budget, int depth) {
  Node out;
  out.line = tomlLine(n);
  budget.enter(depth, out.line);
  if (const auto* t = n.as_table()) {
    out.kind = Node::Kind::kTable;
    for (auto&& [k, v] : *t) {
      Node child = fromToml(v, budget, depth + 1);
      // A table opened by a header or dotted key has no better line than its key's.
      if (child.line == 0) child.line = static_cast<int>(k.source().begin.line);
      out.fields.emplace_back(std::string(k.str()), std::move(child));
    }
  } else if (const auto* a = n.as_array()) {
    out.kind = Node::Kind::kArray;
    for (const auto& v : *a) out.items.push_back(fromToml(v, budget, depth + 1));
  } else if (const auto* s = n.as_string()) {
    out.kind = Node::Kind::kString;
    out.text = s->get();
  } else if (const auto* i = n.as_integer()) {
    out.kind = Node::Kind::kInt;
    out.integer = i->get();
  } else if (const auto* f = n.as_floating_point()) {
    out.kind = Node::Kind::kFloat;
    out.floating = f->get();
  } else if (const auto* b = n.as_boolean()) {
    out.kind = Node::Kind::kBool;
    out.boolean = b->get();
  } else {
    // Dates and times: no provisr key takes one, so they travel as their TOML text.
    std::ostringstream os;
    n.visit([&os](const auto& v) { os << v; });
    out.kind = Node::Kind::kString;
    out.text = os.str();
  }
  return out;
}

ParseOutcome parseToml(std::string_view text) {
  ParseOutcome r;
  if (auto stray = findTomlStray(text)) {
    r.failure.message = "column " + std::to_string(stray->column) + ": " + stray->message;
    r.failure.line = stray->line;
    return r;
  }
  try {
    toml::table t = toml::parse(text);
    Budget budget;
    r.root = fromToml(t, budget, 0);
    r.root->line = 1;
  } catch (const toml::parse_error& e) {
    r.failure.message = std::string(e.description());
    r.failure.line = static_cast<int>(e.source().begin.line);
  } catch (const TooLarge& e) {
    r.root.reset();
    r.failure = {e.message, e.line};
  }
  return r;
}

// ---- YAML -------------------------------------------------------------------------------------

bool isYamlNull(const std::string& s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

std::optional<bool> yamlBool(const std::string& s) {
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::optional<std::int64_t> yamlInt(const std::string& s) {
  if (s.empty()) return std::nullopt;
  std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i >= s.size()) return std::nullopt;
  int base = 10;
  std::string digits = s.substr(i);
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits = digits.substr(2);
  }
  for (char c : digits)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || (base == 10 && !std::isdigit(static_cast<unsigned char>(c))))
      return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return s[0] == '-' ? -v : v;
}

std::optional<double> yamlFloat(const std::string& s) {
  if (s == ".inf" || s == "+.inf") return HUGE_VAL;
  if (s == "-.inf") return -HUGE_VAL;
  bool digit = false;
  for (char c : s) {
    if (std::isdigit(static_cast<unsigned char>(c))) digit = true;
    else if (c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E') return std::nullopt;
  }
  if (!digit) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end != '\0') return std::nullopt;
  return v;
}

Node fromYaml(const YAML::Node& n, Budget& budget, int depth) {
  Node out;
  out.line = n.Mark().line >= 0 ? n.Mark().line + 1 : 0;
  budget.enter(depth, out.line);
  switch (n.Type()) {
    case YAML::NodeType::Map:
      out.kind = Node::Kind::kTable;
      for (auto it = n.begin(); it != n.end(); ++it) {
        Node child = fromYaml(it->second, budget, depth + 1);
        int key_line = it->first.Mark().line + 1;
        // A nested map or list starts on the line after its key; the key's line is what users see.
        if (child.kind == Node::Kind::kTable || child.kind == Node::Kind::kArray ||
            child.kind == Node::Kind::kNull || child.line == 0)
          child.line = key_line;
        out.fields.emplace_back(it->first.Scalar(), std::move(child));
      }
      break;
    case YAML::NodeType::Sequence:
      out.kind = Node::Kind::kArray;
      for (const auto& v : n) out.items.push_back(fromYaml(v, budget, depth + 1));
      break;
    case YAML::NodeType::Scalar: {
      const std::string& s = n.Scalar();
      // Quoted scalars carry the tag "!": they are strings whatever they look like.
      if (n.Tag() == "!") {
        out.kind = Node::Kind::kString;
        out.text = s;
      } else if (isYamlNull(s)) {
        out.kind = Node::Kind::kNull;
      } else if (auto b = yamlBool(s)) {
        out.kind = Node::Kind::kBool;
        out.boolean = *b;
      } else if (auto i = yamlInt(s)) {
        out.kind = Node::Kind::kInt;
        out.integer = *i;
        out.text = s;
      } else if (auto f = yamlFloat(s)) {
        out.kind = Node::Kind::kFloat;
        out.floating = *f;
      } else {
        out.kind = Node::Kind::kString;
        out.text = s;
      }
      break;
    }
    default:
      out.kind = Node::Kind::kNull;
  }
  return out;
}

ParseOutcome parseYaml(std::string_view text) {
  ParseOutcome r;
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    if (!doc.IsMap()) {
      if (doc.IsNull()) {  // an empty file is an empty table
        r.root = Node{};
        r.root->kind = Node::Kind::kTable;
        r.root->line = 1;
        return r;
      }
      r.failure = {"the document must be a mapping (key: value)", doc.Mark().line + 1};
      return r;
    }
    Budget budget;
    r.root = fromYaml(doc, budget, 0);
    r.root->line = 1;
  } catch (const YAML::Exception& e) {
    r.failure.message = e.msg;
    r.failure.line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
  } catch (const TooLarge& e) {
    r.root.reset();
    r.failure = {e.message, e.line};
  }
  return r;
}

// ---- JSON -------------------------------------------------------------------------------------
// nlohmann gives no positions, so a light structural scan of the (already validated) text records
// the line where each value starts; the converted tree looks its lines up in that mirror.

struct LineField;

struct LineTree {
  int line = 0;
  std::vector<LineTree> items;
  std::vector<LineField> fields;
};

// A named pair for the reason given at detail::Field (tree.hpp).
struct LineField {
  LineField(std::string k, LineTree v) : key(std::move(k)), value(std::move(v)) {}
  std::string key;
  LineTree value;
};

class LineScanner {
 public:
  explicit LineScanner(std::string_view t) : t_(t) {}
  LineTree value() {
    skipWs();
    LineTree out;
    out.line = line_;
    if (pos_ >= t_.size()) return out;
    char c = t_[pos_];
    if (c == '{') {
      ++pos_;
      for (;;) {
        skipWs();
        if (pos_ >= t_.size() || t_[pos_] == '}') { ++pos_; break; }
        if (t_[pos_] == ',') { ++pos_; continue; }
        int key_line = line_;
        std::string key = string();
        skipWs();
        if (pos_ < t_.size() && t_[pos_] == ':') ++pos_;
        LineTree v = value();
        // A member's line is its key's line (where an editor shows the problem).
        v.line = key_line;
        out.fields.emplace_back(std::move(key), std::move(v));
      }
    } else if (c == '[') {
      ++pos_;
      for (;;) {
        skipWs();
        if (pos_ >= t_.size() || t_[pos_] == ']') { ++pos_; break; }
        if (t_[pos_] == ',') { ++pos_; continue; }
        out.items.push_back(value());
      }
    } else if (c == '"') {
      string();
    } else {
      while (pos_ < t_.size() && std::string_view(",]} \t\r\n").find(t_[pos_]) == std::string_view::npos) ++pos_;
    }
    return out;
  }

 private:
  void skipWs() {
    while (pos_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[pos_]))) {
      if (t_[pos_] == '\n') ++line_;
      ++pos_;
    }
  }
  // The raw key text (escapes kept): keys with escapes then simply fall back to the parent line.
  std::string string() {
    std::string out;
    if (pos_ < t_.size() && t_[pos_] == '"') ++pos_;
    while (pos_ < t_.size() && t_[pos_] != '"') {
      if (t_[pos_] == '\\' && pos_ + 1 < t_.size()) out += t_[pos_++];
      out += t_[pos_++];
    }
    ++pos_;
    return out;
  }
  std::string_view t_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

Node fromJson(const nlohmann::ordered_json& j, const LineTree* lines, int fallback, Budget& budget, int depth) {
  Node out;
  out.line = lines ? lines->line : fallback;
  budget.enter(depth, out.line);
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::object:
      out.kind = Node::Kind::kTable;
      for (auto it = j.begin(); it != j.end(); ++it) {
        const LineTree* sub = nullptr;
        if (lines)
          for (const auto& f : lines->fields)
            if (f.key == it.key()) sub = &f.value;  // the last duplicate wins, as in nlohmann
        out.fields.emplace_back(it.key(), fromJson(it.value(), sub, out.line, budget, depth + 1));
      }
      break;
    case nlohmann::ordered_json::value_t::array: {
      out.kind = Node::Kind::kArray;
      std::size_t i = 0;
      for (const auto& v : j) {
        const LineTree* sub = lines && i < lines->items.size() ? &lines->items[i] : nullptr;
        out.items.push_back(fromJson(v, sub, out.line, budget, depth + 1));
        ++i;
      }
      break;
    }
    case nlohmann::ordered_json::value_t::string:
      out.kind = Node::Kind::kString;
      out.text = j.get<std::string>();
      break;
    case nlohmann::ordered_json::value_t::boolean:
      out.kind = Node::Kind::kBool;
      out.boolean = j.get<bool>();
      break;
    case nlohmann::ordered_json::value_t::number_integer:
      out.kind = Node::Kind::kInt;
      out.integer = j.get<std::int64_t>();
      break;
    case nlohmann::ordered_json::value_t::number_unsigned: {
      auto u = j.get<std::uint64_t>();
      if (u > static_cast<std::uint64_t>(INT64_MAX)) {
        out.kind = Node::Kind::kFloat;
        out.floating = static_cast<double>(u);
      } else {
        out.kind = Node::Kind::kInt;
        out.integer = static_cast<std::int64_t>(u);
      }
      break;
    }
    case nlohmann::ordered_json::value_t::number_float:
      out.kind = Node::Kind::kFloat;
      out.floating = j.get<double>();
      break;
    default:
      out.kind = Node::Kind::kNull;
  }
  return out;
}

int lineAtByte(std::string_view text, std::size_t byte) {
  int line = 1;
  for (std::size_t i = 0; i < byte && i < text.size(); ++i)
    if (text[i] == '\n') ++line;
  return line;
}

// The deepest nesting of [ and { outside strings, checked before parsing: the line scan and the
// conversion recurse once per level.
std::optional<TooLarge> jsonTooDeep(std::string_view text) {
  int depth = 0;
  int line = 1;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth)
        return TooLarge{"values nested deeper than " + std::to_string(kMaxDepth) + " levels", line};
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return std::nullopt;
}

ParseOutcome parseJson(std::string_view text) {
  ParseOutcome r;
  if (auto deep = jsonTooDeep(text)) {
    r.failure = {deep->message, deep->line};
    return r;
  }
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::ordered_json::parse_error& e) {
    std::string msg = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 5: ..." → the tail.
    if (auto p = msg.find(": "); p != std::string::npos) msg = msg.substr(p + 2);
    r.failure = {msg, lineAtByte(text, e.byte > 0 ? e.byte - 1 : 0)};
    return r;
  }
  if (!j.is_object()) {
    r.failure = {"the document must be a JSON object", 1};
    return r;
  }
  LineScanner scanner(text);
  LineTree lines = scanner.value();
  try {
    Budget budget;
    r.root = fromJson(j, &lines, 1, budget, 0);
  } catch (const TooLarge& e) {
    r.root.reset();
    r.failure = {e.message, e.line};
  }
  return r;
}

}  // namespace

ParseOutcome parseDocument(std::string_view text, std::string_view format) {
  if (format == "toml") return parseToml(text);
  if (format == "yaml") return parseYaml(text);
  if (format == "json") return parseJson(text);
  ParseOutcome r;
  r.failure = {"unknown format `" + std::string(format) + "` (expected toml, yaml or json)", 0};
  return r;
}

}  // namespace provisr::config::detail

// The decoder's building blocks: key paths, unknown-key reports and typed readers over the Node tree.
#include "common/config/decode.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>

#include "common/config/loader.hpp"

namespace provisr::config::detail {

std::string joinKey(const std::string& prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
}

std::string indexKey(const std::string& prefix, std::size_t index) {
  return prefix + "[" + std::to_string(index) + "]";
}

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

namespace {
// `workDir`, `work-dir` and `WORK_DIR` all fold to `workdir`.
std::string fold(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}
}  // namespace

std::string didYouMean(std::string_view key, const std::vector<std::string>& known) {
  std::string best;
  std::size_t best_d = std::numeric_limits<std::size_t>::max();
  for (const auto& k : known) {
    std::size_t d = fold(k) == fold(key) ? 0 : editDistance(key, k);
    if (d < best_d) best_d = d, best = k;
  }
  std::size_t limit = std::max<std::size_t>(2, key.size() / 3);
  if (best.empty() || best_d > limit || best_d >= key.size()) return {};
  return " (did you mean `" + best + "`?)";
}

const Node* TableReader::unsupported(std::string_view key) {
  const Node* n = get(key);
  if (n)
    sink_.warn(n->line, joinKey(prefix_, key),
               "`" + std::string(key) + "` is not supported yet by provisr and is ignored");
  return n;
}

void TableReader::finish() {
  for (const auto& [k, v] : node_.fields) {
    if (std::find(known_.begin(), known_.end(), k) != known_.end()) continue;
    sink_.error(v.line, joinKey(prefix_, k), "unknown key" + didYouMean(k, known_));
  }
}

namespace {
void typeError(Sink& s, const Node& n, const std::string& key, const char* want) {
  s.error(n.line, key, std::string("must be ") + want + ", not " + kindName(n.kind));
}
// Every string of a config ends up in a C string (a path, argv, the environment, a user name),
// where a NUL would silently cut it.
void nulError(Sink& s, const Node& n, const std::string& key) {
  s.error(n.line, key, "must not contain a NUL character (\\u0000)");
}
}  // namespace

std::optional<std::string> readString(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind != Node::Kind::kString) {
    typeError(s, *n, key, "a string");
    return std::nullopt;
  }
  if (n->text.find('\0') != std::string::npos) {
    nulError(s, *n, key);
    return std::nullopt;
  }
  return n->text;
}

std::optional<bool> readBool(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind != Node::Kind::kBool) {
    typeError(s, *n, key, "true or false");
    return std::nullopt;
  }
  return n->boolean;
}

std::optional<std::int64_t> readInt(Sink& s, const Node* n, const std::string& key, std::int64_t min,
                                    std::int64_t max) {
  if (!n) return std::nullopt;
  if (n->kind != Node::Kind::kInt) {
    typeError(s, *n, key, "an integer");
    return std::nullopt;
  }
  if (n->integer < min || n->integer > max) {
    std::string range = max == std::numeric_limits<std::int64_t>::max()
                            ? "at least " + std::to_string(min)
                            : "between " + std::to_string(min) + " and " + std::to_string(max);
    s.error(n->line, key, "must be " + range + ", not " + std::to_string(n->integer));
    return std::nullopt;
  }
  return n->integer;
}

std::optional<int> readInt32(Sink& s, const Node* n, const std::string& key, int min, int max) {
  auto v = readInt(s, n, key, min, max);
  if (!v) return std::nullopt;
  return static_cast<int>(*v);
}

std::optional<double> readNumber(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind == Node::Kind::kFloat) return n->floating;
  if (n->kind == Node::Kind::kInt) return static_cast<double>(n->integer);
  typeError(s, *n, key, "a number");
  return std::nullopt;
}

std::optional<Duration> readDuration(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind == Node::Kind::kInt) {
    // The Go API sent durations as integer nanoseconds.
    if (n->integer < 0) {
      s.error(n->line, key, "a duration cannot be negative");
      return std::nullopt;
    }
    if (n->integer > 0 && n->integer < 1000)
      s.warn(n->line, key,
             "integer durations are nanoseconds: " + std::to_string(n->integer) + " is " +
                 std::to_string(n->integer) + "ns; write \"" + std::to_string(n->integer) +
                 "s\" if you meant seconds");
    return Duration(n->integer);
  }
  if (n->kind != Node::Kind::kString) {
    typeError(s, *n, key, "a duration string like \"2s\" or integer nanoseconds");
    return std::nullopt;
  }
  auto d = parseDuration(n->text);
  if (!d) {
    s.error(n->line, key, d.error().message);
    return std::nullopt;
  }
  return *d;
}

std::optional<std::vector<std::string>> readStringList(Sink& s, const Node* n, const std::string& key) {
  if (!n) return std::nullopt;
  if (n->kind != Node::Kind::kArray) {
    typeError(s, *n, key, "a list of strings");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (std::size_t i = 0; i < n->items.size(); ++i) {
    const Node& item = n->items[i];
    if (item.kind != Node::Kind::kString) {
      typeError(s, item, indexKey(key, i), "a string");
      ok = false;
    } else if (item.text.find('\0') != std::string::npos) {
      nulError(s, item, indexKey(key, i));
      ok = false;
    } else {
      out.push_back(item.text);
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::string resolvePath(const std::string& base_dir, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(base_dir) / p;
  std::string out = p.lexically_normal().string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::optional<std::string> readPath(Sink& s, const Node* n, const std::string& key, const std::string& base_dir) {
  auto v = readString(s, n, key);
  if (!v) return std::nullopt;
  if (v->empty()) {
    s.error(n->line, key, "must not be empty");
    return std::nullopt;
  }
  return resolvePath(base_dir, *v);
}

bool expectTable(Sink& s, const Node* n, const std::string& key) {
  if (!n) return false;
  if (!n->isTable()) {
    typeError(s, *n, key, "a table");
    return false;
  }
  return true;
}

}  // namespace provisr::config::detail

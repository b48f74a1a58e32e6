// The generic document tree the three parsers produce and the one decoder reads (internal to
// provisr_config): it keeps a source line on every node so every format reports the same locations.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace provisr::config::detail {

struct Field;

struct Node {
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kArray, kTable };
  Kind kind = Kind::kNull;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0.0;
  // kString: the value. kInt from YAML: the scalar as written, so `umask: 022` stays octal.
  std::string text;
  std::vector<Node> items;                             // kArray
  std::vector<Field> fields;                           // kTable, in document order
  int line = 0;                                        // 1-based; 0 = unknown

  bool isTable() const { return kind == Kind::kTable; }
  const Node* find(std::string_view key) const;
};

// One key of a table. A named type rather than std::pair<std::string, Node>: clang with libstdc++
// cannot instantiate that pair while Node is still incomplete (its default-constructor check
// needs Node's destructor, which needs the pair).
struct Field {
  Field(std::string k, Node v) : key(std::move(k)), value(std::move(v)) {}
  std::string key;
  Node value;
};

inline const Node* Node::find(std::string_view k) const {
  for (const auto& f : fields)
    if (f.key == k) return &f.value;
  return nullptr;
}

const char* kindName(Node::Kind kind);

// A parse failure: the parser's message and the line it points at (0 when unknown).
struct ParseFailure {
  std::string message;
  int line = 0;
};

struct ParseOutcome {
  std::optional<Node> root;
  ParseFailure failure;
};

// format: "toml" | "yaml" | "json". The root of a valid document is always a table.
ParseOutcome parseDocument(std::string_view text, std::string_view format);

// "toml" for `.toml`, "yaml" for `.yaml`/`.yml`, "json" for `.json`, empty otherwise.
std::string formatForPath(std::string_view path);

}  // namespace provisr::config::detail

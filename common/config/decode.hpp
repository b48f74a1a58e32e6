// The decoder's building blocks (internal to provisr_config): a diagnostic sink, a table reader that
// reports unknown keys with a "did you mean", and typed value readers shared by every section.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/config/model.hpp"
#include "common/config/tree.hpp"

namespace provisr::config::detail {

// Collects diagnostics for one file.
class Sink {
 public:
  Sink(std::vector<Diagnostic>& out, std::string file) : out_(out), file_(std::move(file)) {}
  void error(int line, std::string key, std::string message) {
    out_.push_back({Diagnostic::Severity::kError, file_, line, std::move(key), std::move(message)});
    ++errors_;
  }
  void warn(int line, std::string key, std::string message) {
    out_.push_back({Diagnostic::Severity::kWarning, file_, line, std::move(key), std::move(message)});
  }
  const std::string& file() const { return file_; }
  int errors() const { return errors_; }
  // For a problem located in another file (a dotenv file) that still counts against this one.
  std::vector<Diagnostic>* out() { return &out_; }
  void countError() { ++errors_; }

 private:
  std::vector<Diagnostic>& out_;
  std::string file_;
  int errors_ = 0;
};

std::string joinKey(const std::string& prefix, std::string_view key);
std::string indexKey(const std::string& prefix, std::size_t index);
std::size_t editDistance(std::string_view a, std::string_view b);
// " (did you mean `x`?)" for a near miss among `known`, else empty.
std::string didYouMean(std::string_view key, const std::vector<std::string>& known);

// Reads one table: every key asked for is "known"; finish() reports the rest as unknown.
class TableReader {
 public:
  TableReader(Sink& sink, const Node& node, std::string prefix) : sink_(sink), node_(node), prefix_(std::move(prefix)) {}
  const Node* get(std::string_view key) {
    known_.emplace_back(key);
    return node_.find(key);
  }
  // A key the Go provisr had and provisr does not implement yet: loads with a warning.
  const Node* unsupported(std::string_view key);
  void finish();
  std::string key(std::string_view k) const { return joinKey(prefix_, k); }
  const std::string& prefix() const { return prefix_; }
  const Node& node() const { return node_; }
  Sink& sink() { return sink_; }

 private:
  Sink& sink_;
  const Node& node_;
  std::string prefix_;
  std::vector<std::string> known_;
};

// Typed readers: nullopt when absent (n == nullptr) or wrong (then an error is recorded).
std::optional<std::string> readString(Sink& s, const Node* n, const std::string& key);
std::optional<bool> readBool(Sink& s, const Node* n, const std::string& key);
std::optional<std::int64_t> readInt(Sink& s, const Node* n, const std::string& key, std::int64_t min,
                                    std::int64_t max);
std::optional<int> readInt32(Sink& s, const Node* n, const std::string& key, int min, int max);
std::optional<double> readNumber(Sink& s, const Node* n, const std::string& key);
std::optional<Duration> readDuration(Sink& s, const Node* n, const std::string& key);
std::optional<std::vector<std::string>> readStringList(Sink& s, const Node* n, const std::string& key);
// A path: relative ones resolve against `base_dir`.
std::optional<std::string> readPath(Sink& s, const Node* n, const std::string& key, const std::string& base_dir);
// True when `n` is a table; records a type error otherwise.
bool expectTable(Sink& s, const Node* n, const std::string& key);

std::string resolvePath(const std::string& base_dir, const std::string& path);

}  // namespace provisr::config::detail

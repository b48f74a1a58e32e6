// Helpers for the config tests: a per-test temp dir removed even on failure, file writing, and
// diagnostic lookups.
#pragma once

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/config/loader.hpp"

namespace provisr::config::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "provisr-config-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `text` to `rel` (creating parent dirs) and returns the absolute path.
  std::string write(const std::string& rel, const std::string& text) const {
    std::filesystem::path p = std::filesystem::path(path_) / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  std::string path_;
};

// Options that make a test independent of the machine: fixed env, non-root, no account lookups.
inline LoadOptions testOptions() {
  LoadOptions o;
  o.os_env = std::map<std::string, std::string>{
      {"PATH", "/usr/bin:/bin"}, {"HOME", "/home/tester"}, {"USER", "tester"}, {"XDG_RUNTIME_DIR", "/run/user/1000"}};
  o.euid = 1000;
  o.check_accounts = false;
  return o;
}

inline std::string dump(const std::vector<Diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) out += d.str() + "\n";
  return out;
}

inline const Diagnostic* findDiag(const std::vector<Diagnostic>& ds, const std::string& key,
                                  const std::string& fragment) {
  for (const auto& d : ds)
    if (d.key == key && d.message.find(fragment) != std::string::npos) return &d;
  return nullptr;
}

}  // namespace provisr::config::test

// master.state: its line format with a checksummed trailer, and the atomic, batched writes.
#include "master/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/util/fd.hpp"

namespace provisr::master {

namespace {

constexpr std::string_view kHeader = "provisr-master-state 1";
constexpr std::size_t kMaxName = 128;
constexpr std::size_t kMaxFileBytes = 64u << 20;  // far above any real state; refuses garbage

bool validName(std::string_view s) {
  if (s.empty() || s.size() > kMaxName) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::vector<std::string_view> splitWords(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t j = line.find(' ', i);
    out.push_back(line.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) break;
    i = j + 1;
  }
  return out;
}

template <class T>
std::optional<T> parseNumber(std::string_view s, int base = 10) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

Error corrupt(std::size_t line, const std::string& why) {
  return makeError(ErrorCode::kMalformed, "line " + std::to_string(line) + ": " + why);
}

Error sysError(const std::string& what, const std::string& path) {
  return makeError(ErrorCode::kInternal, what + " " + path + ": " + std::strerror(errno));
}

Status refuseName(std::string_view kind, const std::string& name) {
  return makeError(ErrorCode::kInvalidArgument, std::string(kind) + " name not storable: '" + name + "'");
}

}  // namespace

std::string encodeState(const PersistedState& s) {
  std::string out;
  out += kHeader;
  out += '\n';
  std::size_t records = 0;
  for (const auto& [name, intent] : s.intents) {
    out += "intent " + name +
           (intent == Intent::kStopped ? " stopped\n" : intent == Intent::kRestarting ? " restarting\n" : " started\n");
    ++records;
  }
  for (const auto& [name, n] : s.scale) {
    out += "scale " + name + " " + std::to_string(n) + "\n";
    ++records;
  }
  for (const auto& [name, n] : s.restarts) {
    out += "restarts " + name + " " + std::to_string(n) + "\n";
    ++records;
  }
  if (s.generationFloor > 0) {
    out += "generations " + std::to_string(s.generationFloor) + "\n";
    ++records;
  }
  const std::uint64_t sum = fnv1a64(out);
  out += "end " + std::to_string(records) + " " + hex16(sum) + "\n";
  return out;
}

Result<PersistedState> decodeState(std::string_view text) {
  PersistedState s;
  std::size_t pos = 0;
  std::size_t lineno = 0;
  std::size_t records = 0;
  bool header = false;
  while (pos < text.size()) {
    const std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return corrupt(lineno + 1, "truncated (no newline at the end)");
    const std::string_view line = text.substr(pos, nl - pos);
    const std::size_t line_start = pos;
    pos = nl + 1;
    ++lineno;
    if (!header) {
      if (line != kHeader) return corrupt(lineno, "not a provisr master state file (or another version)");
      header = true;
      continue;
    }
    const auto w = splitWords(line);
    if (w.empty()) return corrupt(lineno, "empty line");
    if (w[0] == "end") {
      if (w.size() != 3) return corrupt(lineno, "malformed trailer");
      const auto n = parseNumber<std::size_t>(w[1]);
      const auto sum = parseNumber<std::uint64_t>(w[2], 16);
      if (!n || *n != records) return corrupt(lineno, "record count does not match");
      if (!sum || w[2].size() != 16 || *sum != fnv1a64(text.substr(0, line_start)))
        return corrupt(lineno, "checksum does not match");
      if (pos != text.size()) return corrupt(lineno + 1, "data after the trailer");
      return s;
    }
    if (w[0] == "generations" && w.size() == 2) {
      const auto n = parseNumber<std::uint64_t>(w[1]);
      if (!n) return corrupt(lineno, "bad generation floor");
      s.generationFloor = *n;
      ++records;
      continue;
    }
    if (w.size() != 3 || !validName(w[1])) return corrupt(lineno, "malformed record");
    const std::string name(w[1]);
    if (w[0] == "intent") {
      if (w[2] == "stopped") s.intents[name] = Intent::kStopped;
      else if (w[2] == "started") s.intents[name] = Intent::kStarted;
      else if (w[2] == "restarting") s.intents[name] = Intent::kRestarting;
      else return corrupt(lineno, "unknown intent '" + std::string(w[2]) + "'");
    } else if (w[0] == "scale") {
      const auto n = parseNumber<int>(w[2]);
      if (!n || *n < 0) return corrupt(lineno, "bad instance count");
      s.scale[name] = *n;
    } else if (w[0] == "restarts") {
      const auto n = parseNumber<std::uint64_t>(w[2]);
      if (!n) return corrupt(lineno, "bad restart count");
      s.restarts[name] = *n;
    } else {
      return corrupt(lineno, "unknown record '" + std::string(w[0]) + "'");
    }
    ++records;
  }
  return corrupt(lineno, header ? "truncated (no trailer)" : "empty file");
}

StateStore::Loaded StateStore::load() {
  Loaded out;
  state_ = {};
  dirty_ = false;
  UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno != ENOENT) out.problem = sysError("cannot open", path_);
    return out;
  }
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      out.problem = sysError("cannot read", path_);
      return out;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxFileBytes) {
      out.problem = makeError(ErrorCode::kMalformed, path_ + ": larger than any state file could be");
      return out;
    }
  }
  auto decoded = decodeState(text);
  if (!decoded) {
    out.problem = makeError(decoded.error().code, path_ + ": " + decoded.error().message +
                                                      "; starting from the config");
    return out;
  }
  state_ = std::move(decoded).value();
  out.state = state_;
  return out;
}

void StateStore::raiseGenerationFloor(std::uint64_t floor) {
  if (floor <= state_.generationFloor) return;
  state_.generationFloor = floor;
  dirty_ = true;
}

Status StateStore::setIntent(const std::string& instance, Intent intent) {
  if (!validName(instance)) return refuseName("instance", instance);
  auto [it, inserted] = state_.intents.try_emplace(instance, intent);
  if (inserted || it->second != intent) {
    it->second = intent;
    dirty_ = true;
  }
  return {};
}

Status StateStore::setScale(const std::string& program, int instances) {
  if (!validName(program)) return refuseName("program", program);
  if (instances < 0) return makeError(ErrorCode::kInvalidArgument, "negative instance count");
  auto [it, inserted] = state_.scale.try_emplace(program, instances);
  if (inserted || it->second != instances) {
    it->second = instances;
    dirty_ = true;
  }
  return {};
}

Status StateStore::setRestarts(const std::string& instance, std::uint64_t restarts) {
  if (!validName(instance)) return refuseName("instance", instance);
  auto [it, inserted] = state_.restarts.try_emplace(instance, restarts);
  if (inserted || it->second != restarts) {
    it->second = restarts;
    countersDirty_ = true;
  }
  return {};
}

void StateStore::clearIntent(const std::string& instance) {
  if (state_.intents.erase(instance) > 0) dirty_ = true;
}

void StateStore::clearScale(const std::string& program) {
  if (state_.scale.erase(program) > 0) dirty_ = true;
}

void StateStore::forgetInstance(const std::string& instance) {
  if (state_.intents.erase(instance) + state_.restarts.erase(instance) > 0) dirty_ = true;
}

std::optional<Intent> StateStore::intent(const std::string& instance) const {
  auto it = state_.intents.find(instance);
  if (it == state_.intents.end()) return std::nullopt;
  return it->second;
}

Status StateStore::flush() {
  if (!dirty_) return {};
  if (auto st = writeFileAtomically(path_, encodeState(state_)); !st) return st;
  dirty_ = false;
  countersDirty_ = false;
  ++writes_;
  return {};
}

Status StateStore::flushCounters() {
  if (countersDirty_) dirty_ = true;
  return flush();
}

Status writeFileAtomically(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) return sysError("cannot create", tmp);
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        Error e = sysError("cannot write", tmp);
        ::unlink(tmp.c_str());
        return e;
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      Error e = sysError("cannot fsync", tmp);
      ::unlink(tmp.c_str());
      return e;
    }
    if (::close(fd.release()) != 0) {
      Error e = sysError("cannot close", tmp);
      ::unlink(tmp.c_str());
      return e;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = sysError("cannot rename onto", path);
    ::unlink(tmp.c_str());
    return e;
  }
  // The rename is durable only once the directory entry is.
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return sysError("cannot open directory", dir);
  if (::fsync(dfd.get()) != 0) return sysError("cannot fsync directory", dir);
  return {};
}

}  // namespace provisr::master

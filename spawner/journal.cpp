// Journal: one text line per child, replaced atomically as a whole.
#include "spawner/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/util/fd.hpp"

namespace provisr::spawner {
namespace {

constexpr std::size_t kMaxJournalBytes = 64u * 1024 * 1024;

std::string escapePath(const std::string& p) {
  if (p.empty()) return "-";
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : p) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == '%' || u >= 0x7f) {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool unescapePath(const std::string& s, std::string& out) {
  out.clear();
  if (s == "-") return true;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) return false;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = hex(s[i + 1]);
    int lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

Error sysError(const std::string& what, int err) {
  return makeError(ErrorCode::kInternal, what + ": " + std::strerror(err));
}

}  // namespace

std::string formatJournalLine(const JournalEntry& e) {
  std::ostringstream o;
  o << e.key << ' ' << e.generation << ' ' << e.pid << ' ' << e.startTicks << ' ' << e.startedAtMs << ' '
    << escapePath(e.log.stdout_path) << ' ' << escapePath(e.log.stderr_path) << ' ' << e.log.max_size_bytes << ' '
    << e.log.max_backups << ' ' << e.log.max_age_days << ' ' << (e.log.compress ? 1 : 0) << ' '
    << (e.log.timestamps ? 1 : 0);
  return o.str();
}

Result<JournalEntry> parseJournalLine(const std::string& line) {
  std::istringstream in(line);
  JournalEntry e;
  long long pid = 0;
  if (!(in >> e.key >> e.generation >> pid >> e.startTicks >> e.startedAtMs) || pid <= 0 || pid > INT32_MAX) {
    return makeError(ErrorCode::kMalformed, "journal line does not start with key generation pid ticks ms");
  }
  e.pid = static_cast<pid_t>(pid);
  std::string out;
  std::string err;
  int compress = 0;
  int timestamps = 0;
  if (in >> out) {
    if (!(in >> err >> e.log.max_size_bytes >> e.log.max_backups >> e.log.max_age_days >> compress >> timestamps) ||
        !unescapePath(out, e.log.stdout_path) || !unescapePath(err, e.log.stderr_path)) {
      return makeError(ErrorCode::kMalformed, "journal line has a broken log part");
    }
    e.log.compress = compress != 0;
    e.log.timestamps = timestamps != 0;
    e.hasLog = true;
  }
  return e;
}

Result<JournalContents> loadJournal(const std::string& path) {
  JournalContents out;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return out;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return makeError(ErrorCode::kInternal, "stat " + path + ": " + ec.message());
  if (size > kMaxJournalBytes) return makeError(ErrorCode::kMalformed, path + " is larger than 64 MiB");
  std::ifstream in(path);
  if (!in) return makeError(ErrorCode::kInternal, "cannot read " + path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto e = parseJournalLine(line);
    if (!e) {
      ++out.badLines;
      continue;
    }
    out.entries.push_back(std::move(*e));
  }
  return out;
}

Status writeJournal(const std::string& path, const std::vector<JournalEntry>& entries) {
  std::string text;
  for (const auto& e : entries) {
    text += formatJournalLine(e);
    text += '\n';
  }
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return sysError("open " + tmp, errno);
  std::size_t done = 0;
  while (done < text.size()) {
    ssize_t w = ::write(fd.get(), text.data() + done, text.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      return sysError("write " + tmp, errno);
    }
    done += static_cast<std::size_t>(w);
  }
  // No fsync: the journal only has to survive the death of processes (DESIGN §4 item 5), and the
  // page cache outlives them; a machine crash takes the children with it. rename() is atomic for
  // every reader, so a reader sees the old list or the new one, never a mix or a torn file.
  if (::close(fd.release()) != 0) return sysError("close " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return sysError("rename " + tmp, errno);
  return {};
}

}  // namespace provisr::spawner

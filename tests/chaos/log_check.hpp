// Chaos suite: reads the seqlogger lines of every instance's stdout log, incrementally and across
// rotations, and reports every gap, reordering, doubled or torn line, and every process whose
// closing "end" line never arrived.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace provisr::chaos {

class LogChecker {
 public:
  // `dir` holds <instance>.stdout.log and its rotated siblings <instance>.stdout-<UTC time>.log.
  // Rotated files are deleted once read completely (a long run would fill the disk otherwise).
  explicit LogChecker(std::string dir, bool deleteRotated = true) : dir_(std::move(dir)), deleteRotated_(deleteRotated) {}

  struct PidState {
    std::string instance;
    long next = 0;       // the sequence number expected next
    bool ended = false;  // the "end" line arrived
    long endCount = -1;
  };

  // Reads what was appended since the last call. Problems go to violations (each reported once).
  void scan(const std::vector<std::string>& instances) {
    for (const auto& inst : instances) scanInstance(inst);
  }

  const std::map<long, PidState>& pids() const { return pids_; }
  std::vector<std::string> takeViolations() {
    std::vector<std::string> out;
    out.swap(violations_);
    return out;
  }
  std::uint64_t lines() const { return lines_; }
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t rotatedFiles() const { return rotatedSeen_.size(); }

  // The max sequence number seen per pid of an instance (for recovery probes).
  long lastSeq(long pid) const {
    auto it = pids_.find(pid);
    return it == pids_.end() ? -1 : it->second.next - 1;
  }

 private:
  struct FileState {
    std::uint64_t offset = 0;
  };

  void scanInstance(const std::string& inst) {
    namespace fs = std::filesystem;
    // The current file is opened first and read last: a rotation in between leaves its inode as a
    // rotated file, read completely before the fd, so lines stay in the order they were written.
    UniqueFile current(::open((dir_ + "/" + inst + ".stdout.log").c_str(), O_RDONLY | O_CLOEXEC));
    const std::string rotatedPrefix = inst + ".stdout-";
    std::vector<std::string> rotated;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind(rotatedPrefix, 0) == 0 && n.size() > 4 && n.substr(n.size() - 4) == ".log") rotated.push_back(n);
    }
    std::sort(rotated.begin(), rotated.end());  // the UTC time stamp sorts as text
    std::set<std::uint64_t> done;
    for (const auto& r : rotated) {
      const std::string path = dir_ + "/" + r;
      UniqueFile f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (f.fd < 0) continue;
      done.insert(readFd(inst, path, f.fd, true));
      rotatedSeen_.insert(r);
      if (deleteRotated_) fs::remove(path, ec);
    }
    if (current.fd >= 0) {
      struct stat st {};
      if (::fstat(current.fd, &st) == 0 && done.count(static_cast<std::uint64_t>(st.st_ino)) == 0) {
        readFd(inst, dir_ + "/" + inst + ".stdout.log", current.fd, false);
      }
    }
  }

  struct UniqueFile {
    int fd;
    explicit UniqueFile(int f) : fd(f) {}
    UniqueFile(const UniqueFile&) = delete;
    UniqueFile& operator=(const UniqueFile&) = delete;
    ~UniqueFile() {
      if (fd >= 0) ::close(fd);
    }
  };

  // Reads `fd` from the offset kept for its inode to its last newline; returns the inode.
  std::uint64_t readFd(const std::string& inst, const std::string& path, int fd, bool complete) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return 0;
    const std::uint64_t key = static_cast<std::uint64_t>(st.st_ino);
    FileState& fsx = files_[key];
    const std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size < fsx.offset) {
      violations_.push_back(path + ": shrank from " + std::to_string(fsx.offset) + " to " + std::to_string(size) + " bytes");
      fsx.offset = 0;
    }
    std::string buf(size - fsx.offset, '\0');
    std::size_t got = 0;
    while (got < buf.size()) {
      const ssize_t n = ::pread(fd, buf.data() + got, buf.size() - got, static_cast<off_t>(fsx.offset + got));
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    buf.resize(got);
    std::size_t used = 0;
    for (;;) {
      const std::size_t nl = buf.find('\n', used);
      if (nl == std::string::npos) break;
      parseLine(inst, path, std::string_view(buf.data() + used, nl - used));
      used = nl + 1;
    }
    if (complete && used != buf.size()) {
      violation(path, "rotated file ends in a partial line: \"" + buf.substr(used, 80) + "\"");
      used = buf.size();
    }
    fsx.offset += used;
    bytes_ += used;
    if (complete) files_.erase(key);
    return key;
  }

  void parseLine(const std::string& inst, const std::string& path, std::string_view line) {
    ++lines_;
    // "seq <name> <pid> <n> <padding>" or "end <name> <pid> <count>"
    auto fields = split(line, 5);
    const bool isSeq = fields.size() >= 4 && fields[0] == "seq";
    const bool isEnd = fields.size() == 4 && fields[0] == "end";
    if ((!isSeq && !isEnd) || fields[1] != inst) {
      violation(path, "torn or foreign line \"" + std::string(line.substr(0, 100)) + "\"");
      return;
    }
    char* endp = nullptr;
    const long pid = std::strtol(std::string(fields[2]).c_str(), &endp, 10);
    const long n = std::strtol(std::string(fields[3]).c_str(), &endp, 10);
    if (isSeq && fields.size() == 5 && !paddingOk(line, fields[4])) {
      violation(path, "corrupt padding in \"" + std::string(line.substr(0, 100)) + "\"");
    }
    PidState& ps = pids_[pid];
    ps.instance = inst;
    if (ps.ended) {
      violation(path, "pid " + std::to_string(pid) + " wrote after its end line: \"" + std::string(line.substr(0, 100)) +
                          "\"");
      return;
    }
    if (isEnd) {
      ps.ended = true;
      ps.endCount = n;
      if (n != ps.next) {
        violation(path, "pid " + std::to_string(pid) + " ended after " + std::to_string(n) + " lines but the file has " +
                            std::to_string(ps.next) + (n > ps.next ? " (lost tail)" : ""));
      }
      return;
    }
    if (n != ps.next) {
      violation(path, "pid " + std::to_string(pid) + ": line " + std::to_string(n) + " where " + std::to_string(ps.next) +
                          " was expected (" + (n > ps.next ? "gap of " + std::to_string(n - ps.next) : "out of order/doubled") +
                          ")");
    }
    ps.next = std::max(ps.next, n + 1);
  }

  // seqlogger pads "seq name pid n " with 'a' + (position % 26); the text after n must match.
  static bool paddingOk(std::string_view line, std::string_view pad) {
    const std::size_t start = static_cast<std::size_t>(pad.data() - line.data());
    for (std::size_t k = 0; k < pad.size(); ++k) {
      if (pad[k] != static_cast<char>('a' + ((start + k) % 26))) return false;
    }
    return true;
  }

  static std::vector<std::string_view> split(std::string_view s, std::size_t maxFields) {
    std::vector<std::string_view> out;
    std::size_t at = 0;
    while (at < s.size() && out.size() + 1 < maxFields) {
      const std::size_t sp = s.find(' ', at);
      if (sp == std::string_view::npos) break;
      out.push_back(s.substr(at, sp - at));
      at = sp + 1;
    }
    out.push_back(s.substr(at));
    return out;
  }

  void violation(const std::string& path, const std::string& what) {
    violations_.push_back(path.substr(path.rfind('/') + 1) + ": " + what);
  }

  std::string dir_;
  bool deleteRotated_;
  std::map<std::uint64_t, FileState> files_;  // by inode: a rotated file keeps its read offset
  std::map<long, PidState> pids_;
  std::set<std::string> rotatedSeen_;
  std::vector<std::string> violations_;
  std::uint64_t lines_ = 0;
  std::uint64_t bytes_ = 0;
};

}  // namespace provisr::chaos

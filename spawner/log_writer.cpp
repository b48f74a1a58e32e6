// Log writer: splice to move, tee to peek only where the bytes must be seen before they are
// written, pwrite only when timestamps force a copy.
#include "spawner/log_writer.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>

namespace provisr::spawner {
namespace {

constexpr std::size_t kMaxCarry = 64 * 1024;  // timestamps: longest partial line held in memory
constexpr std::size_t kTimestampLen = 19;     // yyyymmddThhmmss.mmm
constexpr mode_t kFileMode = 0640;
constexpr mode_t kDirMode = 0750;

Error sysError(const std::string& what, int err) {
  return makeError(ErrorCode::kInternal, what + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")");
}

struct SplitName {
  std::string dir;   // with trailing '/', or empty
  std::string stem;  // "api.out"
  std::string ext;   // ".log" or empty
};

SplitName splitName(const std::string& path) {
  SplitName s;
  auto slash = path.rfind('/');
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  s.dir = slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
  auto dot = base.rfind('.');
  if (dot == std::string::npos || dot == 0) {
    s.stem = base;
  } else {
    s.stem = base.substr(0, dot);
    s.ext = base.substr(dot);
  }
  return s;
}

std::string formatCompact(WallTime t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 32> buf{};
  std::size_t n = std::strftime(buf.data(), buf.size(), "%Y%m%dT%H%M%S", &tm);
  std::snprintf(buf.data() + n, buf.size() - n, ".%03d", static_cast<int>(ms % 1000));
  return buf.data();
}

std::string formatRfc3339(WallTime t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 40> buf{};
  std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf.data() + n, buf.size() - n, ".%03dZ ", static_cast<int>(ms % 1000));
  return buf.data();
}

// yyyymmddThhmmss.mmm → time; false when it is not one.
bool parseCompact(const std::string& s, WallTime& out) {
  if (s.size() != kTimestampLen || s[8] != 'T' || s[15] != '.') return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i != 8 && i != 15 && (s[i] < '0' || s[i] > '9')) return false;
  }
  std::tm tm{};
  tm.tm_year = std::stoi(s.substr(0, 4)) - 1900;
  tm.tm_mon = std::stoi(s.substr(4, 2)) - 1;
  tm.tm_mday = std::stoi(s.substr(6, 2));
  tm.tm_hour = std::stoi(s.substr(9, 2));
  tm.tm_min = std::stoi(s.substr(11, 2));
  tm.tm_sec = std::stoi(s.substr(13, 2));
  std::time_t secs = ::timegm(&tm);
  out = WallTime(std::chrono::seconds(secs)) + std::chrono::milliseconds(std::stoi(s.substr(16, 3)));
  return true;
}

// Backups of `path` by timestamp: the files (plain and/or .gz) of each.
std::map<std::string, std::vector<std::string>> listBackups(const std::string& path) {
  std::map<std::string, std::vector<std::string>> out;
  SplitName n = splitName(path);
  DIR* d = ::opendir(n.dir.empty() ? "." : n.dir.c_str());
  if (d == nullptr) return out;
  std::string prefix = n.stem + "-";
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() < prefix.size() + kTimestampLen || name.compare(0, prefix.size(), prefix) != 0) continue;
    std::string ts = name.substr(prefix.size(), kTimestampLen);
    std::string rest = name.substr(prefix.size() + kTimestampLen);
    WallTime t;
    if (!parseCompact(ts, t)) continue;
    if (rest != n.ext && rest != n.ext + ".gz") continue;
    out[ts].push_back(n.dir + name);
  }
  ::closedir(d);
  return out;
}

Status makeDirs(const std::string& dir) {
  if (dir.empty()) return {};
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), kDirMode) != 0 && errno != EEXIST) return sysError("mkdir " + cur, errno);
  }
  return {};
}

}  // namespace

std::string backupName(const std::string& path, WallTime t) {
  SplitName n = splitName(path);
  return n.dir + n.stem + "-" + formatCompact(t) + n.ext;
}

std::size_t pruneBackups(const std::string& path, const RotationPolicy& policy, WallTime now) {
  auto backups = listBackups(path);
  std::size_t removed = 0;
  std::size_t kept = 0;
  // Newest first: the map is ordered by timestamp, which the fixed-width format sorts correctly.
  for (auto it = backups.rbegin(); it != backups.rend(); ++it) {
    WallTime t;
    parseCompact(it->first, t);
    bool tooMany = policy.maxBackups > 0 && kept >= policy.maxBackups;
    bool tooOld = policy.maxAgeDays > 0 && now - t > std::chrono::hours(24) * policy.maxAgeDays;
    if (!tooMany && !tooOld) {
      ++kept;
      continue;
    }
    for (const auto& f : it->second) {
      if (::unlink(f.c_str()) == 0) ++removed;
    }
  }
  return removed;
}

Status gzipFile(const std::string& src) {
  UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return sysError("open " + src, errno);
  std::string tmp = src + ".gz.tmp";
  int outFd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, kFileMode);
  if (outFd < 0) return sysError("open " + tmp, errno);
  gzFile gz = ::gzdopen(outFd, "wb6");
  if (gz == nullptr) {
    ::close(outFd);
    ::unlink(tmp.c_str());
    return makeError(ErrorCode::kInternal, "gzdopen " + tmp + " failed");
  }
  std::vector<char> buf(256 * 1024);
  bool ok = true;
  for (;;) {
    ssize_t n = ::read(in.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ok = false;
      break;
    }
    if (n == 0) break;
    if (::gzwrite(gz, buf.data(), static_cast<unsigned>(n)) != static_cast<int>(n)) {
      ok = false;
      break;
    }
  }
  if (::gzclose(gz) != Z_OK) ok = false;  // closes outFd too
  if (!ok || ::rename(tmp.c_str(), (src + ".gz").c_str()) != 0) {
    ::unlink(tmp.c_str());
    return makeError(ErrorCode::kInternal, "gzip of " + src + " failed");
  }
  ::unlink(src.c_str());
  return {};
}

// ---- Compressor -----------------------------------------------------------------------------

Compressor::Compressor() : worker_([this](std::stop_token stop) { run(stop); }) {}

Compressor::~Compressor() {
  worker_.request_stop();
  cv_.notify_all();
}

void Compressor::submit(std::string backup, std::string path, RotationPolicy policy, WallTime now) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back(Job{std::move(backup), std::move(path), policy, now});
  }
  cv_.notify_one();
}

void Compressor::waitIdle() {
  std::unique_lock lock(mu_);
  idleCv_.wait(lock, [&] { return jobs_.empty() && !busy_; });
}

std::uint64_t Compressor::compressed() const {
  std::lock_guard lock(mu_);
  return compressed_;
}

std::uint64_t Compressor::failures() const {
  std::lock_guard lock(mu_);
  return failures_;
}

void Compressor::run(std::stop_token stop) {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      if (!cv_.wait(lock, stop, [&] { return !jobs_.empty(); })) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      busy_ = true;
    }
    bool ok = true;
    bool did = false;
    struct stat st {};
    // A backup pruned by an earlier job (it fell past max_backups while queued) is skipped.
    if (!job.backup.empty() && ::lstat(job.backup.c_str(), &st) == 0) {
      did = true;
      ok = gzipFile(job.backup).ok();
    }
    pruneBackups(job.path, job.policy, job.now);
    {
      std::lock_guard lock(mu_);
      busy_ = false;
      if (did && ok) ++compressed_;
      if (did && !ok) ++failures_;
      if (jobs_.empty()) idleCv_.notify_all();
    }
  }
}

// ---- LogFile --------------------------------------------------------------------------------

Result<std::shared_ptr<LogFile>> LogFile::open(std::string path, RotationPolicy policy, const Clock& clock,
                                               Compressor* compressor) {
  std::shared_ptr<LogFile> f(new LogFile(std::move(path), policy, clock, compressor));
  SplitName n = splitName(f->path_);
  if (Status st = makeDirs(n.dir); !st.ok()) return st.error();
  if (Status st = f->openFd(); !st.ok()) return st.error();
  if (policy.compress && compressor != nullptr) {
    // Backups a previous spawner rotated but did not get to compress.
    for (const auto& [ts, files] : listBackups(f->path_)) {
      if (files.size() == 1 && files[0].size() > 3 && files[0].compare(files[0].size() - 3, 3, ".gz") != 0) {
        compressor->submit(files[0], f->path_, policy, clock.wallNow());
      }
    }
  }
  return f;
}

Status LogFile::openFd() {
  // Read access too, so the ring can read back what was spliced; write-only where that is refused.
  bool readable = true;
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
  if (fd < 0 && (errno == EACCES || errno == EPERM || errno == EISDIR)) {
    readable = false;
    fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, kFileMode);
  }
  if (fd < 0) {
    fd_.reset();
    readable_ = false;
    return sysError("open " + path_, errno);
  }
  fd_ = std::make_shared<UniqueFd>(fd);
  struct stat st {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  offset_ = regular ? static_cast<std::uint64_t>(st.st_size) : 0;
  readable_ = readable && regular;
  return {};
}

Status LogFile::reopen() { return openFd(); }

Status LogFile::rotate() {
  // Names must grow with each rotation (pruning keeps the newest by name), even when the clock
  // stands still or steps back, and never collide.
  WallTime t = std::max(clock_.wallNow(), lastBackup_ + std::chrono::milliseconds(1));
  std::string backup = backupName(path_, t);
  // Two rotations within one millisecond: the next free millisecond keeps names unique and ordered.
  struct stat st {};
  while (::lstat(backup.c_str(), &st) == 0 || ::lstat((backup + ".gz").c_str(), &st) == 0) {
    t += std::chrono::milliseconds(1);
    backup = backupName(path_, t);
  }
  if (::rename(path_.c_str(), backup.c_str()) != 0 && errno != ENOENT) {
    return sysError("rename " + path_ + " to " + backup, errno);
  }
  lastBackup_ = t;
  ++rotations_;
  Status st2 = openFd();
  afterRotate(backup);
  return st2;
}

void LogFile::afterRotate(const std::string& backup) {
  if (compressor_ != nullptr) {
    compressor_->submit(policy_.compress ? backup : std::string(), path_, policy_, clock_.wallNow());
  } else {
    pruneBackups(path_, policy_, clock_.wallNow());
  }
}

std::size_t LogFile::nextChunk(const char* data, std::size_t n) {
  if (!fd_) (void)openFd();  // e.g. the disk or directory came back; failure shows at the write
  if (policy_.maxSize == 0) return n;
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::uint64_t room64 = offset_ >= policy_.maxSize ? 0 : policy_.maxSize - offset_;
    std::size_t room = static_cast<std::size_t>(std::min<std::uint64_t>(room64, n));
    if (n <= room64) return n;
    if (data != nullptr && room > 0) {
      if (const void* nl = ::memrchr(data, '\n', room)) {
        return static_cast<std::size_t>(static_cast<const char*>(nl) - data) + 1;
      }
    }
    if (offset_ == 0) return room;  // a fresh file and a line longer than max_size: split it
    if (!rotate().ok()) return n;   // cannot rotate: keep writing rather than lose bytes
  }
  return n;
}

// ---- LogFileSet -----------------------------------------------------------------------------

Result<std::shared_ptr<LogFile>> LogFileSet::get(const std::string& path, const RotationPolicy& policy) {
  std::string key = std::filesystem::path(path).lexically_normal().string();
  auto it = files_.find(key);
  if (it != files_.end()) {
    if (auto live = it->second.lock()) return live;
  }
  auto f = LogFile::open(key, policy, clock_, compressor_);
  if (!f.ok()) return f.error();
  files_[key] = *f;
  return f;
}

Status LogFileSet::reopenAll() {
  Status first;
  for (auto it = files_.begin(); it != files_.end();) {
    auto live = it->second.lock();
    if (!live) {
      it = files_.erase(it);
      continue;
    }
    Status st = live->reopen();
    if (!st.ok() && first.ok()) first = st;
    ++it;
  }
  return first;
}

// ---- LogScratch -----------------------------------------------------------------------------

Result<std::unique_ptr<LogScratch>> LogScratch::create() {
  std::unique_ptr<LogScratch> s(new LogScratch());
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) return sysError("pipe2", errno);
  s->read_.reset(fds[0]);
  s->write_.reset(fds[1]);
  s->devNull_.reset(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!s->devNull_) return sysError("open /dev/null", errno);
  int cap = ::fcntl(s->write_.get(), F_GETPIPE_SZ);
  s->capacity_ = cap > 0 ? static_cast<std::size_t>(cap) : 65536;
  s->buffer_.resize(s->capacity_);
  return s;
}

void LogScratch::ensureCapacity(std::size_t bytes) {
  if (bytes <= capacity_) return;
  int cap = ::fcntl(write_.get(), F_SETPIPE_SZ, static_cast<int>(bytes));
  if (cap > 0) capacity_ = static_cast<std::size_t>(cap);
  buffer_.resize(capacity_);
}

// ---- LogStream ------------------------------------------------------------------------------

LogStream::LogStream(UniqueFd pipe, std::shared_ptr<LogFile> file, LogScratch& scratch, const Clock& clock,
                     LogStreamKind kind, bool timestamps, std::shared_ptr<LogRing> ring, PipePair hold)
    : pipe_(std::move(pipe)),
      file_(std::move(file)),
      scratch_(scratch),
      clock_(clock),
      kind_(kind),
      timestamps_(timestamps),
      ring_(std::move(ring)),
      hold_(std::move(hold)) {
  file_->addWriter();
  int fl = ::fcntl(pipe_.get(), F_GETFL);
  if (fl >= 0) ::fcntl(pipe_.get(), F_SETFL, fl | O_NONBLOCK);
  int cap = ::fcntl(pipe_.get(), F_GETPIPE_SZ);
  scratch_.ensureCapacity(cap > 0 ? static_cast<std::size_t>(cap) : 65536);
  if (hold_.read.valid() && hold_.write.valid()) {
    int n = 0;  // adopted from the keeper: it may hold a partial line from the last spawner
    if (::ioctl(hold_.read.get(), FIONREAD, &n) == 0) holdBytes_ = static_cast<std::size_t>(n);
  }
}

LogStream::~LogStream() {
  if (!eof_) file_->removeWriter();
}

PumpResult LogStream::pump(bool flushPartial, std::size_t budget) {
  PumpResult r = timestamps_ ? pumpCopy(flushPartial, budget) : pumpSplice(flushPartial, budget);
  if (r == PumpResult::kEof && !eof_) {
    // A stream at EOF writes no more: the file's other writers need not keep whole lines for it.
    eof_ = true;
    file_->removeWriter();
    if (ring_) ring_->flushPartial(kind_);
  }
  return r;
}

std::size_t LogStream::spliceDirect() {
  if (file_->shared()) return 0;
  std::shared_ptr<const UniqueFd> readBack;
  if (ring_) {
    readBack = file_->readHandle();
    if (!readBack) return 0;  // the ring could not read these bytes back: it gets a tee'd copy
  }
  int avail = 0;
  if (::ioctl(pipe_.get(), FIONREAD, &avail) != 0 || avail <= 0) return 0;  // empty, or EOF: tee tells
  const auto n = static_cast<std::size_t>(avail);
  flushHold();  // bytes an earlier shared phase or spawner held come first
  // A rotation first (its cut needs the bytes), or a file to reopen: the tee path.
  if (!file_->fits(n) || file_->fd() < 0 || (ring_ && file_->readHandle() != readBack)) return 0;
  const std::uint64_t pos = file_->offset();
  const std::size_t written = spliceToFile(pipe_.get(), n, nullptr);
  counters_.bytes += written;
  if (ring_ && written > 0) ring_->appendFile(kind_, std::move(readBack), pos, written);
  return n;
}

PumpResult LogStream::pumpSplice(bool flushPartial, std::size_t budget) {
  std::size_t spent = 0;
  for (;;) {
    if (spent >= budget) return PumpResult::kMore;
    if (const std::size_t moved = spliceDirect(); moved > 0) {
      spent += moved;
      continue;
    }
    // Peek: tee duplicates the pipe's buffers into the scratch pipe without consuming them.
    ssize_t t = ::tee(pipe_.get(), scratch_.writeFd(), scratch_.capacity(), SPLICE_F_NONBLOCK);
    if (t < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) counters_.lastErrno = errno;
      if (errno == EAGAIN) {
        if (flushPartial || (holdBytes_ > 0 && !file_->shared())) flushHold();
        return holdBytes_ > 0 ? PumpResult::kHeld : PumpResult::kDrained;
      }
    }
    if (t <= 0) {
      flushHold();  // EOF: the last partial line is written as it is
      return PumpResult::kEof;
    }
    std::vector<char>& buf = scratch_.buffer();
    std::size_t n = static_cast<std::size_t>(t);
    std::size_t got = 0;
    while (got < n) {
      ssize_t r = ::read(scratch_.readFd(), buf.data() + got, n - got);
      if (r > 0) {
        got += static_cast<std::size_t>(r);
      } else if (r < 0 && errno == EINTR) {
        continue;
      } else {
        break;
      }
    }
    n = got;
    const std::size_t newlines = countNewlines(buf.data(), n);
    if (ring_) ring_->append(kind_, std::string_view(buf.data(), n), newlines);  // best effort copy
    std::size_t want = n;
    if (file_->shared()) {
      const void* nl = newlines == 0 ? nullptr : ::memrchr(buf.data(), '\n', n);
      want = nl == nullptr ? 0 : static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data()) + 1;
    }
    if (want > 0) {
      flushHold();  // the held bytes start the first line this data completes
      counters_.bytes += spliceToFile(pipe_.get(), want, buf.data());
    }
    if (want < n) toHold(n - want);
    spent += n;
  }
}

// Made on the first partial line to hold (only a shared file holds any): a stream alone on its
// file never needs one, and two fewer descriptors per stream is what lets a spawner with a
// default RLIMIT_NOFILE hold thousands of children.
void LogStream::ensureHold() {
  if (hold_.read.valid() && hold_.write.valid()) return;
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK) != 0) return;  // toHold() then writes as it is
  hold_.read.reset(fds[0]);
  hold_.write.reset(fds[1]);
  ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(kHoldPipeSize));
}

void LogStream::toHold(std::size_t n) {
  ensureHold();
  std::size_t left = n;
  while (left > 0) {
    ssize_t r = hold_.write ? ::splice(pipe_.get(), nullptr, hold_.write.get(), nullptr, left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK) : -1;
    if (r > 0) {
      holdBytes_ += static_cast<std::size_t>(r);
      left -= static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    // The hold pipe is full: a line longer than it is split here.
    if (holdBytes_ > 0) {
      flushHold();
      continue;
    }
    counters_.bytes += spliceToFile(pipe_.get(), left, nullptr);  // no hold pipe at all: write as it is
    break;
  }
}

void LogStream::flushHold() {
  if (holdBytes_ == 0) return;
  std::size_t n = holdBytes_;
  holdBytes_ = 0;
  counters_.bytes += spliceToFile(hold_.read.get(), n, nullptr);  // a partial line: no newline to count
}

std::size_t LogStream::spliceToFile(int src, std::size_t want, const char* data) {
  std::size_t left = want;
  std::size_t written = 0;
  while (left > 0) {
    std::size_t chunk = file_->nextChunk(data != nullptr ? data + written : nullptr, left);
    if (file_->fd() < 0) {
      ++counters_.writeErrors;
      counters_.lastErrno = EBADF;
      break;
    }
    loff_t off = static_cast<loff_t>(file_->offset());
    ssize_t r = ::splice(src, nullptr, file_->fd(), &off, chunk, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (r > 0) {
      file_->advance(static_cast<std::size_t>(r));
      left -= static_cast<std::size_t>(r);
      written += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    // Disk full, I/O error, a file that refuses splice: drop rather than block the child forever.
    ++counters_.writeErrors;
    counters_.lastErrno = r < 0 ? errno : EIO;
    break;
  }
  if (left > 0) counters_.droppedBytes += dropFrom(src, left);
  return written;
}

std::size_t LogStream::dropFrom(int src, std::size_t n) {
  std::size_t dropped = 0;
  while (dropped < n) {
    ssize_t r = ::splice(src, nullptr, scratch_.devNull(), nullptr, n - dropped, SPLICE_F_NONBLOCK);
    if (r > 0) {
      dropped += static_cast<std::size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    // Fall back to reading into a throwaway buffer.
    std::array<char, 4096> sink{};
    ssize_t rd = ::read(src, sink.data(), std::min(sink.size(), n - dropped));
    if (rd <= 0) break;
    dropped += static_cast<std::size_t>(rd);
  }
  return dropped;
}

PumpResult LogStream::pumpCopy(bool flushPartial, std::size_t budget) {
  std::size_t spent = 0;
  for (;;) {
    if (spent >= budget) return PumpResult::kMore;
    std::vector<char>& buf = scratch_.buffer();
    ssize_t r = ::read(pipe_.get(), buf.data(), buf.size());
    bool eof = r == 0;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        counters_.lastErrno = errno;
        eof = true;
      }
    }
    std::size_t n = r > 0 ? static_cast<std::size_t>(r) : 0;
    std::string_view data(buf.data(), n);
    if (ring_ && n > 0) ring_->append(kind_, data);

    std::string stamp = formatRfc3339(clock_.wallNow());
    std::string all = std::move(carry_);
    all.append(data);
    carry_.clear();
    std::string out;
    out.reserve(all.size() + 64);
    std::size_t pos = 0;
    for (std::size_t nl; (nl = all.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      if (atLineStart_) out += stamp;
      out.append(all, pos, nl + 1 - pos);
      atLineStart_ = true;
    }
    carry_ = all.substr(pos);
    if (!carry_.empty() && (carry_.size() >= kMaxCarry || flushPartial || eof)) {
      if (atLineStart_) out += stamp;
      out += carry_;
      atLineStart_ = false;
      carry_.clear();
    }
    // Raw bytes count once they are written: the carry's bytes wait for their line.
    std::size_t rawOut = all.size() - carry_.size();
    if (!out.empty()) writeCopied(out, rawOut);
    spent += n;
    if (eof) return PumpResult::kEof;
    if (r < 0) return carry_.empty() ? PumpResult::kDrained : PumpResult::kHeld;
  }
}

void LogStream::writeCopied(const std::string& out, std::size_t rawBytes) {
  std::size_t done = 0;
  while (done < out.size()) {
    std::size_t chunk = file_->nextChunk(out.data() + done, out.size() - done);
    if (file_->fd() < 0) break;
    ssize_t w = ::pwrite(file_->fd(), out.data() + done, chunk, static_cast<off_t>(file_->offset()));
    if (w > 0) {
      file_->advance(static_cast<std::size_t>(w));
      done += static_cast<std::size_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    ++counters_.writeErrors;
    counters_.lastErrno = w < 0 ? errno : EIO;
    break;
  }
  if (done == out.size()) {
    counters_.bytes += rawBytes;
  } else {
    counters_.droppedBytes += rawBytes;
  }
}

}  // namespace provisr::spawner

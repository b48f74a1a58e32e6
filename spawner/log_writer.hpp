// Log writer: child pipes into log files with splice, rotation, gzip off the hot path (SPEC §1.6,
// DESIGN.md §4 item 3). The spawner never holds a byte that has left a pipe, except with timestamps.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/util/clock.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"
#include "spawner/launcher.hpp"  // PipePair
#include "spawner/log_ring.hpp"

namespace provisr::spawner {

struct RotationPolicy {
  std::uint64_t maxSize = 0;  // bytes; 0 = never rotate
  unsigned maxBackups = 0;    // 0 = keep every backup
  unsigned maxAgeDays = 0;    // 0 = no age limit
  bool compress = false;      // gzip rotated files (off the hot path)
};

// `api.out.log` + time → `api.out-20261127T150000.123.log` (UTC, milliseconds).
std::string backupName(const std::string& path, WallTime t);

// Deletes backups of `path` beyond `maxBackups` (newest kept) and older than `maxAgeDays`; a
// backup and its .gz count once. Returns how many files it removed.
std::size_t pruneBackups(const std::string& path, const RotationPolicy& policy, WallTime now);

// One worker thread that gzips rotated files and prunes backups, so a child is never blocked
// behind compression: the event loop only renames and queues. A thread rather than a forked
// gzip because the spawner reaps by pid and keeps its child list to managed children and
// orphans; a gzip process would be a third kind to track, and would need an external binary.
class Compressor {
 public:
  Compressor();
  ~Compressor();  // finishes the file in progress; queued ones stay uncompressed and are found
                  // again by the next LogFile::open with compress on
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Compress `backup` (may be empty: prune only), then prune the backups of `path`.
  void submit(std::string backup, std::string path, RotationPolicy policy, WallTime now);
  void waitIdle();  // tests and shutdown
  std::uint64_t compressed() const;
  std::uint64_t failures() const;

 private:
  struct Job {
    std::string backup;
    std::string path;
    RotationPolicy policy;
    WallTime now;
  };
  void run(std::stop_token stop);

  mutable std::mutex mu_;
  std::condition_variable_any cv_;
  std::condition_variable idleCv_;
  std::deque<Job> jobs_;
  bool busy_ = false;
  std::uint64_t compressed_ = 0;
  std::uint64_t failures_ = 0;
  std::jthread worker_;  // last: starts after the state it uses exists
};

// gzip `src` into `src.gz` (through a temp file and rename), then remove `src`.
Status gzipFile(const std::string& src);

// One log file, possibly shared by several streams. Tracks the write offset itself: the file is
// opened without O_APPEND (splice refuses it), and rotation is decided by arithmetic, not stat.
class LogFile {
 public:
  static Result<std::shared_ptr<LogFile>> open(std::string path, RotationPolicy policy, const Clock& clock,
                                               Compressor* compressor);
  ~LogFile() = default;
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_ ? fd_->get() : -1; }
  // The open file, for reading back what was written (LogRing::appendFile); null when it is not a
  // regular file opened for reading too. It stays open for its holders after a rotation.
  std::shared_ptr<const UniqueFd> readHandle() const { return readable_ ? fd_ : nullptr; }
  // Whether n more bytes fit without a rotation.
  bool fits(std::size_t n) const { return policy_.maxSize == 0 || offset_ + n <= policy_.maxSize; }
  std::uint64_t offset() const { return offset_; }
  const RotationPolicy& policy() const { return policy_; }
  // Whole-line mode: more than one stream writes here, so no stream may leave half a line.
  bool shared() const { return writers_ > 1; }
  std::uint64_t rotations() const { return rotations_; }

  // Reopen the path (after an outside logrotate moved the file away); offset from its size.
  Status reopen();
  // Rename to a backup now, open a fresh file, queue compression/pruning.
  Status rotate();
  // How many of the next n bytes to write now, rotating first when needed, so no file passes
  // maxSize: a cut falls after the last newline that fits when `data` (those bytes) is known, and
  // only a line longer than maxSize is split. Reopens a file lost to an earlier error.
  std::size_t nextChunk(const char* data, std::size_t n);
  void advance(std::size_t n) { offset_ += n; }

  void addWriter() { ++writers_; }
  void removeWriter() { --writers_; }

 private:
  LogFile(std::string path, RotationPolicy policy, const Clock& clock, Compressor* compressor)
      : path_(std::move(path)), policy_(policy), clock_(clock), compressor_(compressor) {}
  Status openFd();
  void afterRotate(const std::string& backup);

  std::string path_;
  RotationPolicy policy_;
  const Clock& clock_;
  Compressor* compressor_;
  std::shared_ptr<UniqueFd> fd_;  // a new one per open: a ring may still read the previous file
  bool readable_ = false;
  std::uint64_t offset_ = 0;
  std::uint64_t rotations_ = 0;
  WallTime lastBackup_{};
  int writers_ = 0;
};

// Log files by path, so streams naming the same file share one LogFile (one offset, whole lines).
class LogFileSet {
 public:
  LogFileSet(const Clock& clock, Compressor* compressor) : clock_(clock), compressor_(compressor) {}
  // The first opener's policy wins for a shared file (SPEC §1.6).
  Result<std::shared_ptr<LogFile>> get(const std::string& path, const RotationPolicy& policy);
  Status reopenAll();  // `provisr reopen-logs`; reports the first failure, tries every file

 private:
  const Clock& clock_;
  Compressor* compressor_;
  std::unordered_map<std::string, std::weak_ptr<LogFile>> files_;
};

// Shared by every stream of one thread: the scratch pipe `tee` peeks into (always drained after a
// peek, so one is enough), /dev/null to drop into, and the peek buffer.
class LogScratch {
 public:
  static Result<std::unique_ptr<LogScratch>> create();
  void ensureCapacity(std::size_t bytes);
  std::size_t capacity() const { return capacity_; }
  int readFd() const { return read_.get(); }
  int writeFd() const { return write_.get(); }
  int devNull() const { return devNull_.get(); }
  std::vector<char>& buffer() { return buffer_; }

 private:
  LogScratch() = default;
  UniqueFd read_;
  UniqueFd write_;
  UniqueFd devNull_;
  std::size_t capacity_ = 0;
  std::vector<char> buffer_;
};

struct LogCounters {
  std::uint64_t bytes = 0;         // child bytes that reached the file
  std::uint64_t droppedBytes = 0;  // consumed but not written (disk full, I/O error)
  std::uint64_t writeErrors = 0;
  int lastErrno = 0;
};

enum class PumpResult {
  kDrained,  // the pipe is empty: wait until it is readable again
  kHeld,     // the pipe is empty but a partial line waits in the hold pipe (shared file): wait
             // for more data, or call pump(true) from a flush timer to write it as it is
  kMore,     // the byte budget ran out with data left: call again after other work
  kEof,      // every writer is gone and the pipe is empty
};

// Moves one child pipe (stdout or stderr) into its LogFile, counting and feeding the ring.
//
// A stream alone on a regular file (the usual case) only splices: the bytes go from the pipe to the
// page cache in one copy, the counters come from splice's results, and the ring is told where the
// bytes are (LogRing::appendFile) and reads them back from the page cache when it needs them. The
// bytes pass through a `tee`'d copy only where they must be seen before they are written: a shared
// file (whole lines), a write that needs a rotation first (the cut goes after a newline), and a
// stream whose file cannot be read back (a ring fed from /dev/null).
//
// For a shared file only whole lines may land, so a trailing partial line has to wait for its
// newline. It waits in a per-stream *hold pipe*, not in the child's pipe: a writer blocked on a
// full pipe that was not empty when it started waiting wakes no reader (Linux pipe_write wakes
// readers before sleeping only if the pipe was empty), so a partial line left at the head of the
// child's pipe would deadlock a large writer under edge-triggered epoll. Moving it with splice
// keeps the bytes in the kernel; the hold pipe's fds are what the keeper must also hold for the
// "no byte lost" guarantee (holdRead()/holdWrite(), adopted back through the constructor).
class LogStream {
 public:
  static constexpr std::size_t kDefaultBudget = 4 * 1024 * 1024;
  static constexpr std::size_t kHoldPipeSize = 256 * 1024;

  LogStream(UniqueFd pipe, std::shared_ptr<LogFile> file, LogScratch& scratch, const Clock& clock,
            LogStreamKind kind, bool timestamps, std::shared_ptr<LogRing> ring, PipePair hold = {});
  ~LogStream();
  LogStream(const LogStream&) = delete;
  LogStream& operator=(const LogStream&) = delete;

  // Moves what the pipe holds. flushPartial: also write a held partial line (a flush timer, or
  // shutdown). Never blocks on the pipe.
  PumpResult pump(bool flushPartial = false, std::size_t budget = kDefaultBudget);

  int fd() const { return pipe_.get(); }
  int holdRead() const { return hold_.read.get(); }
  int holdWrite() const { return hold_.write.get(); }
  std::size_t heldBytes() const { return holdBytes_; }
  const LogCounters& counters() const { return counters_; }
  const std::shared_ptr<LogFile>& file() const { return file_; }
  LogStreamKind kind() const { return kind_; }

 private:
  PumpResult pumpSplice(bool flushPartial, std::size_t budget);
  // Splices what the pipe holds straight into the file when nothing needs to see it first; the
  // bytes moved (0: take the tee path).
  std::size_t spliceDirect();
  PumpResult pumpCopy(bool flushPartial, std::size_t budget);
  std::size_t spliceToFile(int src, std::size_t want, const char* data);
  std::size_t dropFrom(int src, std::size_t n);
  void flushHold();
  void ensureHold();
  void toHold(std::size_t n);
  void writeCopied(const std::string& out, std::size_t rawBytes);

  UniqueFd pipe_;
  std::shared_ptr<LogFile> file_;
  LogScratch& scratch_;
  const Clock& clock_;
  LogStreamKind kind_;
  bool timestamps_;
  std::shared_ptr<LogRing> ring_;
  PipePair hold_;
  std::size_t holdBytes_ = 0;
  LogCounters counters_;
  std::string carry_;  // timestamps only: a partial line read but not yet written
  bool atLineStart_ = true;
  bool eof_ = false;
};

}  // namespace provisr::spawner

// LogRing: an instance's last lines in memory, with line offsets that only grow (SPEC §1.6).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/fd.hpp"

namespace provisr::spawner {

enum class LogStreamKind : std::uint8_t { kStdout = 0, kStderr = 1 };

struct RingLine {
  std::uint64_t offset = 0;  // this line's number; the next line has offset + 1
  LogStreamKind stream = LogStreamKind::kStdout;
  std::string text;          // without the newline; cut at kMaxLineBytes
};

struct TailResult {
  std::vector<RingLine> lines;
  std::uint64_t next = 0;  // pass as `since` to get what follows
  bool gap = false;        // lines between `since` and the first returned one fell out of the ring
};

// Newlines in [p, p + n), 16 bytes at a time where the CPU allows it.
std::size_t countNewlines(const char* p, std::size_t n);

// Holds the last `capacity` complete lines of an instance, stdout and stderr interleaved in the
// order they completed. Each stream keeps its own partial line, so a half line of stdout is never
// glued to stderr output. Offsets continue across restarts through `startOffset`.
// The text of the lines lives in a few large blocks (no allocation per line), and lines of a chunk
// that the end of the same chunk pushes out again are counted, not stored.
//
// Bytes a stream spliced into a regular log file need not pass through user space at once: the
// stream names them by file and position (appendFile) and the ring reads them from a read-only
// mapping of the file's page cache (no copy) when it is next asked anything, when another stream or
// range comes, or when kMaxDeferred bytes wait. Offsets and order are then exactly what append()
// of the same bytes would give.
class LogRing {
 public:
  static constexpr std::size_t kDefaultCapacity = 1000;
  static constexpr std::size_t kMaxLineBytes = 16 * 1024;  // a longer line is cut into pieces
  static constexpr std::size_t kMaxDeferred = 8 * 1024 * 1024;

  explicit LogRing(std::size_t capacity = kDefaultCapacity, std::uint64_t startOffset = 0);

  // Feeds bytes of one stream; complete lines enter the ring.
  void append(LogStreamKind stream, std::string_view bytes) {
    append(stream, bytes, countNewlines(bytes.data(), bytes.size()));
  }
  // The same when the caller already counted the newlines in `bytes`.
  void append(LogStreamKind stream, std::string_view bytes, std::size_t newlines);
  // `len` bytes of one stream that are in the regular file `file` at `pos` (just spliced there):
  // read later through a mapping. `file` stays open (shared) until then, even after a rotation.
  void appendFile(LogStreamKind stream, std::shared_ptr<const UniqueFd> file, std::uint64_t pos, std::size_t len);
  // The stream ended (EOF): its partial line, if any, becomes a line.
  void flushPartial(LogStreamKind stream);
  // Reads what appendFile deferred. Every query does this first; bytes the file no longer holds
  // (truncated behind the ring's back) are left out.
  void settle();
  std::size_t deferredBytes() const { return deferred_.len; }

  // Lines with offset >= since, at most `limit`, oldest first. since = 0 (or older than the ring)
  // starts at the oldest line held; `gap` then tells whether lines were lost to the caller.
  TailResult tail(std::uint64_t since, std::size_t limit);
  // The last `n` lines, for `provisr logs NAME` without since.
  TailResult last(std::size_t n);

  std::uint64_t nextOffset() {
    settle();
    return next_;
  }
  std::uint64_t firstOffset() {
    settle();
    return next_ - lines_.size();
  }
  std::size_t size() {
    settle();
    return lines_.size();
  }
  // Bytes of line text held, including what evicted lines leave in a block still in use.
  std::size_t heldBytes() const;

 private:
  static constexpr std::size_t kBlockBytes = 64 * 1024;
  struct Block {
    std::string bytes;  // lines back to back, reserved once, only appended to
  };
  struct Entry {
    std::uint64_t offset = 0;
    std::uint64_t block = 0;  // absolute block number (firstBlock_ is blocks_.front())
    std::uint32_t pos = 0;
    std::uint32_t len = 0;
    LogStreamKind stream = LogStreamKind::kStdout;
  };
  // One line made of a + b; `store` false only counts it (it would be evicted within the chunk).
  void push(LogStreamKind stream, std::string_view a, std::string_view b, bool store);
  void appendNow(LogStreamKind stream, std::string_view bytes, std::size_t newlines);
  // Counts the first `skip` newline-terminated lines of `bytes` without storing them and drops
  // them from `bytes`, when none is long enough to be cut; false (nothing done) otherwise.
  bool skipLines(std::string& part, std::string_view& bytes, std::size_t newlines, std::size_t skip);
  RingLine line(const Entry& e) const;

  struct Deferred {
    std::shared_ptr<const UniqueFd> file;
    std::uint64_t pos = 0;
    std::size_t len = 0;
    LogStreamKind stream = LogStreamKind::kStdout;
  };
  Deferred deferred_;

  std::size_t capacity_;
  std::uint64_t next_;
  std::deque<Entry> lines_;
  std::deque<Block> blocks_;
  std::uint64_t firstBlock_ = 0;
  std::size_t nextBlock_ = 256;  // doubled for each new block, up to kBlockBytes
  std::array<std::string, 2> partial_;
};

}  // namespace provisr::spawner

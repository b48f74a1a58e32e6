// LogRing: an instance's last lines in memory, with line offsets that only grow (SPEC §1.6).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

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

// Holds the last `capacity` complete lines of an instance, stdout and stderr interleaved in the
// order they completed. Each stream keeps its own partial line, so a half line of stdout is never
// glued to stderr output. Offsets continue across restarts through `startOffset`.
class LogRing {
 public:
  static constexpr std::size_t kDefaultCapacity = 1000;
  static constexpr std::size_t kMaxLineBytes = 16 * 1024;  // a longer line is cut into pieces

  explicit LogRing(std::size_t capacity = kDefaultCapacity, std::uint64_t startOffset = 0);

  // Feeds bytes of one stream; complete lines enter the ring.
  void append(LogStreamKind stream, std::string_view bytes);
  // The stream ended (EOF): its partial line, if any, becomes a line.
  void flushPartial(LogStreamKind stream);

  // Lines with offset >= since, at most `limit`, oldest first. since = 0 (or older than the ring)
  // starts at the oldest line held; `gap` then tells whether lines were lost to the caller.
  TailResult tail(std::uint64_t since, std::size_t limit) const;
  // The last `n` lines, for `provisr logs NAME` without since.
  TailResult last(std::size_t n) const;

  std::uint64_t nextOffset() const { return next_; }
  std::uint64_t firstOffset() const { return next_ - lines_.size(); }
  std::size_t size() const { return lines_.size(); }

 private:
  void push(LogStreamKind stream, std::string text);

  std::size_t capacity_;
  std::uint64_t next_;
  std::deque<RingLine> lines_;
  std::array<std::string, 2> partial_;
};

}  // namespace provisr::spawner

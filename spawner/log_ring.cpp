// LogRing: split bytes into lines per stream and keep the newest `capacity` of them.
#include "spawner/log_ring.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__) && defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace provisr::spawner {

std::size_t countNewlines(const char* p, std::size_t n) {
  std::size_t count = 0;
  std::size_t i = 0;
#if defined(__SSE2__) && defined(__x86_64__)
  const __m128i nl = _mm_set1_epi8('\n');
  const __m128i zero = _mm_setzero_si128();
  while (n - i >= 16) {
    // Per-byte counters (a match is -1: subtract it) for up to 255 steps, then summed.
    __m128i acc = zero;
    const std::size_t steps = std::min<std::size_t>((n - i) / 16, 255);
    for (std::size_t k = 0; k < steps; ++k, i += 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(v, nl));
    }
    const __m128i sums = _mm_sad_epu8(acc, zero);
    count += static_cast<std::size_t>(_mm_cvtsi128_si64(sums)) + static_cast<std::size_t>(_mm_extract_epi16(sums, 4));
  }
#endif
  for (; i < n; ++i) count += p[i] == '\n' ? 1u : 0u;
  return count;
}

LogRing::LogRing(std::size_t capacity, std::uint64_t startOffset)
    : capacity_(capacity == 0 ? 1 : capacity), next_(startOffset) {}

void LogRing::push(LogStreamKind stream, std::string_view a, std::string_view b, bool store) {
  const std::uint64_t offset = next_++;
  if (!store) return;
  const std::size_t len = a.size() + b.size();
  if (blocks_.empty() || blocks_.back().bytes.capacity() - blocks_.back().bytes.size() < len) {
    // Blocks grow from small (an instance that logs a line or two holds little) to kBlockBytes.
    nextBlock_ = std::min(kBlockBytes, nextBlock_ * 2);
    blocks_.emplace_back();
    blocks_.back().bytes.reserve(std::max(nextBlock_, len));
  }
  std::string& block = blocks_.back().bytes;
  const auto pos = static_cast<std::uint32_t>(block.size());
  block.append(a);
  block.append(b);
  lines_.push_back(Entry{offset, firstBlock_ + blocks_.size() - 1, pos, static_cast<std::uint32_t>(len), stream});
  if (lines_.size() > capacity_) {
    lines_.pop_front();
    // A block no line points into any more is freed (the newest one stays, to be filled).
    while (blocks_.size() > 1 && firstBlock_ < lines_.front().block) {
      blocks_.pop_front();
      ++firstBlock_;
    }
  }
}

void LogRing::append(LogStreamKind stream, std::string_view bytes, std::size_t newlines) {
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  // Only the last `capacity` lines of a large chunk can stay: the ones before are counted (their
  // offsets stay taken) but not stored.
  std::size_t skip = newlines > capacity_ ? newlines - capacity_ : 0;
  while (!bytes.empty()) {
    const void* found = std::memchr(bytes.data(), '\n', bytes.size());
    const std::size_t nl = found == nullptr ? std::string_view::npos
                                            : static_cast<std::size_t>(static_cast<const char*>(found) - bytes.data());
    std::string_view piece = bytes.substr(0, nl);
    // Cut overlong lines so one runaway line cannot hold the ring's memory hostage.
    const std::size_t room = kMaxLineBytes - part.size();
    if (piece.size() >= room) {
      push(stream, part, piece.substr(0, room), skip == 0);
      part.clear();
      bytes.remove_prefix(room);
      continue;
    }
    if (nl == std::string_view::npos) {
      part.append(piece);
      return;
    }
    push(stream, part, piece, skip == 0);
    if (skip > 0) --skip;
    part.clear();
    bytes.remove_prefix(nl + 1);
  }
}

void LogRing::flushPartial(LogStreamKind stream) {
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  if (part.empty()) return;
  push(stream, part, {}, true);
  part.clear();
}

RingLine LogRing::line(const Entry& e) const {
  const std::string& block = blocks_[static_cast<std::size_t>(e.block - firstBlock_)].bytes;
  return RingLine{e.offset, e.stream, block.substr(e.pos, e.len)};
}

TailResult LogRing::tail(std::uint64_t since, std::size_t limit) const {
  TailResult r;
  std::uint64_t first = firstOffset();
  std::uint64_t from = std::max(since, first);
  r.gap = since < first && since != 0;
  std::size_t idx = static_cast<std::size_t>(std::min<std::uint64_t>(from - first, lines_.size()));
  std::size_t end = std::min(lines_.size(), idx + limit);
  r.lines.reserve(end - idx);
  for (std::size_t k = idx; k < end; ++k) r.lines.push_back(line(lines_[k]));
  r.next = end == idx ? from : r.lines.back().offset + 1;
  if (from > next_) r.next = next_;  // a `since` from the future (an older ring): resync
  return r;
}

TailResult LogRing::last(std::size_t n) const {
  std::uint64_t since = next_ - std::min<std::uint64_t>(n, lines_.size());
  return tail(since, n);
}

std::size_t LogRing::heldBytes() const {
  std::size_t n = 0;
  for (const auto& b : blocks_) n += b.bytes.size();
  return n;
}

}  // namespace provisr::spawner

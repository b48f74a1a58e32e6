// LogRing: split bytes into lines per stream and keep the newest `capacity` of them.
#include "spawner/log_ring.hpp"

#include <algorithm>

namespace provisr::spawner {

LogRing::LogRing(std::size_t capacity, std::uint64_t startOffset)
    : capacity_(capacity == 0 ? 1 : capacity), next_(startOffset) {}

void LogRing::push(LogStreamKind stream, std::string text) {
  if (lines_.size() == capacity_) lines_.pop_front();
  lines_.push_back(RingLine{next_++, stream, std::move(text)});
}

void LogRing::append(LogStreamKind stream, std::string_view bytes) {
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);
    // Cut overlong lines so one runaway line cannot hold the ring's memory hostage.
    std::size_t room = kMaxLineBytes - part.size();
    if (piece.size() >= room) {
      part.append(piece.substr(0, room));
      push(stream, std::move(part));
      part.clear();
      bytes.remove_prefix(room);
      continue;
    }
    part.append(piece);
    if (nl == std::string_view::npos) return;
    push(stream, std::move(part));
    part.clear();
    bytes.remove_prefix(nl + 1);
  }
}

void LogRing::flushPartial(LogStreamKind stream) {
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  if (part.empty()) return;
  push(stream, std::move(part));
  part.clear();
}

TailResult LogRing::tail(std::uint64_t since, std::size_t limit) const {
  TailResult r;
  std::uint64_t first = firstOffset();
  std::uint64_t from = std::max(since, first);
  r.gap = since < first && since != 0;
  std::size_t idx = static_cast<std::size_t>(std::min<std::uint64_t>(from - first, lines_.size()));
  std::size_t end = std::min(lines_.size(), idx + limit);
  r.lines.assign(lines_.begin() + static_cast<std::ptrdiff_t>(idx), lines_.begin() + static_cast<std::ptrdiff_t>(end));
  r.next = end == idx ? from : r.lines.back().offset + 1;
  if (from > next_) r.next = next_;  // a `since` from the future (an older ring): resync
  return r;
}

TailResult LogRing::last(std::size_t n) const {
  std::uint64_t since = next_ - std::min<std::uint64_t>(n, lines_.size());
  return tail(since, n);
}

}  // namespace provisr::spawner

// LogRing: split bytes into lines per stream and keep the newest `capacity` of them.
#include "spawner/log_ring.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <mutex>

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

namespace {

// A file mapped for reading can lose pages under the reader when someone truncates the file (an
// outside `logrotate copytruncate`); touching them raises SIGBUS. While the ring reads a mapping,
// a SIGBUS inside it puts a page of zeros there instead (the bytes are gone anyway), and any other
// SIGBUS goes to the handler that was installed before.
std::atomic<std::uintptr_t> gMapBegin{0};
std::atomic<std::uintptr_t> gMapEnd{0};
long gPageSize = 4096;
struct sigaction gPrevSigbus {};

void onSigbus(int sig, siginfo_t* si, void* ctx) {
  const auto addr = reinterpret_cast<std::uintptr_t>(si->si_addr);
  if (addr >= gMapBegin.load() && addr < gMapEnd.load()) {
    const std::uintptr_t page = addr & ~static_cast<std::uintptr_t>(gPageSize - 1);
    void* p = ::mmap(reinterpret_cast<void*>(page), static_cast<std::size_t>(gPageSize), PROT_READ,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    if (p != MAP_FAILED) return;  // the access is retried and reads zeros
  }
  if ((gPrevSigbus.sa_flags & SA_SIGINFO) != 0 && gPrevSigbus.sa_sigaction != nullptr) {
    gPrevSigbus.sa_sigaction(sig, si, ctx);
    return;
  }
  // No handler before: the default action, by faulting again without ours.
  ::sigaction(SIGBUS, &gPrevSigbus, nullptr);
}

void installSigbusGuard() {
  static std::once_flag once;
  std::call_once(once, [] {
    const long ps = ::sysconf(_SC_PAGESIZE);
    if (ps > 0) gPageSize = ps;
    struct sigaction sa {};
    sa.sa_sigaction = onSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    ::sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, &gPrevSigbus);
    if ((gPrevSigbus.sa_flags & SA_SIGINFO) == 0 &&
        (gPrevSigbus.sa_handler != SIG_DFL && gPrevSigbus.sa_handler != SIG_IGN)) {
      // A plain handler cannot be chained with its siginfo: fall back to the default action.
      gPrevSigbus = {};
      gPrevSigbus.sa_handler = SIG_DFL;
    }
  });
}

// Calls f with the bytes [pos, pos + len) of `fd` (a regular file), clamped to its size: mapped
// when it can be, else read in pieces.
template <class F>
void withFileBytes(int fd, std::uint64_t pos, std::size_t len, F&& f) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (pos >= size) return;
  const std::uint64_t end = std::min<std::uint64_t>(pos + len, size);
  installSigbusGuard();
  const std::uint64_t base = pos & ~static_cast<std::uint64_t>(gPageSize - 1);
  const auto mapLen = static_cast<std::size_t>(end - base);
  void* m = ::mmap(nullptr, mapLen, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, static_cast<off_t>(base));
  if (m != MAP_FAILED) {
    const auto begin = reinterpret_cast<std::uintptr_t>(m);
    gMapBegin.store(begin);
    gMapEnd.store(begin + mapLen);
    f(std::string_view(static_cast<const char*>(m) + (pos - base), static_cast<std::size_t>(end - pos)));
    gMapEnd.store(0);
    gMapBegin.store(0);
    ::munmap(m, mapLen);
    return;
  }
  std::array<char, 64 * 1024> buf{};
  for (std::uint64_t at = pos; at < end;) {
    const ssize_t n = ::pread(fd, buf.data(), static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end - at)),
                              static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    f(std::string_view(buf.data(), static_cast<std::size_t>(n)));
    at += static_cast<std::uint64_t>(n);
  }
}

}  // namespace

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
  settle();
  appendNow(stream, bytes, newlines);
}

void LogRing::appendFile(LogStreamKind stream, std::shared_ptr<const UniqueFd> file, std::uint64_t pos,
                         std::size_t len) {
  if (len == 0 || !file || !file->valid()) return;
  if (deferred_.len > 0 &&
      (deferred_.stream != stream || deferred_.file != file || deferred_.pos + deferred_.len != pos)) {
    settle();
  }
  if (deferred_.len == 0) {
    deferred_.file = std::move(file);
    deferred_.pos = pos;
    deferred_.stream = stream;
  }
  deferred_.len += len;
  if (deferred_.len >= kMaxDeferred) settle();
}

void LogRing::settle() {
  if (deferred_.len == 0) return;
  Deferred d = std::move(deferred_);
  deferred_ = Deferred{};
  withFileBytes(d.file->get(), d.pos, d.len,
                [&](std::string_view v) { appendNow(d.stream, v, countNewlines(v.data(), v.size())); });
}

bool LogRing::skipLines(std::string& part, std::string_view& bytes, std::size_t newlines, std::size_t skip) {
  const char* p = bytes.data();
  const void* f = std::memchr(p, '\n', bytes.size());
  if (f == nullptr) return false;
  const auto nl0 = static_cast<std::size_t>(static_cast<const char*>(f) - p);
  if (part.size() + nl0 >= kMaxLineBytes) return false;  // the first line would be cut: the slow way
  // The skip-th newline is the (newlines - skip + 1)-th from the end.
  std::size_t at = bytes.size();
  for (std::size_t k = 0; k <= newlines - skip; ++k) {
    const void* r = ::memrchr(p, '\n', at);
    if (r == nullptr) return false;
    at = static_cast<std::size_t>(static_cast<const char*>(r) - p);
  }
  const std::size_t cut = at + 1;
  // A line of kMaxLineBytes or more would be cut into several entries. It would hold a whole
  // half-kMaxLineBytes block without a newline; every block having one proves there is none.
  constexpr std::size_t kProbe = kMaxLineBytes / 2;
  for (std::size_t b = nl0 + 1; b + kProbe <= cut; b += kProbe) {
    if (std::memchr(p + b, '\n', kProbe) == nullptr) return false;
  }
  next_ += skip;
  part.clear();
  bytes.remove_prefix(cut);
  return true;
}

void LogRing::appendNow(LogStreamKind stream, std::string_view bytes, std::size_t newlines) {
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  // Only the last `capacity` lines of a large chunk can stay: the ones before are counted (their
  // offsets stay taken) but not stored; when none of them is long enough to be cut, they are
  // jumped over without looking at each.
  std::size_t skip = newlines > capacity_ ? newlines - capacity_ : 0;
  if (skip > 0 && skipLines(part, bytes, newlines, skip)) skip = 0;
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
  settle();
  std::string& part = partial_[static_cast<std::size_t>(stream)];
  if (part.empty()) return;
  push(stream, part, {}, true);
  part.clear();
}

RingLine LogRing::line(const Entry& e) const {
  const std::string& block = blocks_[static_cast<std::size_t>(e.block - firstBlock_)].bytes;
  return RingLine{e.offset, e.stream, block.substr(e.pos, e.len)};
}

TailResult LogRing::tail(std::uint64_t since, std::size_t limit) {
  settle();
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

TailResult LogRing::last(std::size_t n) {
  settle();
  std::uint64_t since = next_ - std::min<std::uint64_t>(n, lines_.size());
  return tail(since, n);
}

std::size_t LogRing::heldBytes() const {
  std::size_t n = 0;
  for (const auto& b : blocks_) n += b.bytes.size();
  return n;
}

}  // namespace provisr::spawner

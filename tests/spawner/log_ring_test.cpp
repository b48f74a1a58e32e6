// Tests of the per-instance ring: line splitting, partial lines per stream, offsets and tails.
#include "spawner/log_ring.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <deque>
#include <random>

namespace provisr::spawner {
namespace {

std::vector<std::string> texts(const TailResult& r) {
  std::vector<std::string> out;
  for (const auto& l : r.lines) out.push_back(l.text);
  return out;
}

TEST_CASE("ring splits lines and keeps partial lines per stream", "[spawner]") {
  LogRing ring(10);
  ring.append(LogStreamKind::kStdout, "a1\na");
  ring.append(LogStreamKind::kStderr, "e1\ne");
  CHECK(ring.size() == 2);
  ring.append(LogStreamKind::kStdout, "2\n");
  ring.append(LogStreamKind::kStderr, "2\n");
  auto t = ring.tail(0, 100);
  CHECK(texts(t) == std::vector<std::string>{"a1", "e1", "a2", "e2"});
  CHECK(t.lines[2].stream == LogStreamKind::kStdout);
  CHECK(t.lines[3].stream == LogStreamKind::kStderr);
  CHECK(t.next == 4);
  ring.append(LogStreamKind::kStdout, "no newline");
  CHECK(ring.nextOffset() == 4);
  ring.flushPartial(LogStreamKind::kStdout);
  CHECK(ring.tail(4, 10).lines.at(0).text == "no newline");
  ring.append(LogStreamKind::kStdout, "\n");  // an empty line is a line
  CHECK(ring.nextOffset() == 6);
}

TEST_CASE("ring keeps the last N lines with growing offsets", "[spawner]") {
  LogRing ring(1000, 5000);  // continues from a previous spawner's offsets
  for (int i = 0; i < 2500; ++i) ring.append(LogStreamKind::kStdout, "line " + std::to_string(i) + "\n");
  CHECK(ring.size() == 1000);
  CHECK(ring.firstOffset() == 5000 + 1500);
  CHECK(ring.nextOffset() == 7500);

  auto t = ring.tail(7000, 10);
  REQUIRE(t.lines.size() == 10);
  CHECK(t.lines.front().offset == 7000);
  CHECK(t.lines.front().text == "line 2000");
  CHECK(t.next == 7010);
  CHECK_FALSE(t.gap);

  auto old = ring.tail(5100, 3);  // fell out of the ring
  CHECK(old.gap);
  CHECK(old.lines.front().offset == 6500);

  auto none = ring.tail(7500, 10);  // caught up
  CHECK(none.lines.empty());
  CHECK(none.next == 7500);
  auto future = ring.tail(9999, 10);
  CHECK(future.lines.empty());
  CHECK(future.next == 7500);

  auto last = ring.last(3);
  CHECK(texts(last) == std::vector<std::string>{"line 2497", "line 2498", "line 2499"});
}

TEST_CASE("ring cuts an overlong line", "[spawner]") {
  LogRing ring(10);
  std::string big(LogRing::kMaxLineBytes * 2 + 5, 'x');
  ring.append(LogStreamKind::kStdout, big + "\n");
  auto t = ring.tail(0, 10);
  REQUIRE(t.lines.size() == 3);
  CHECK(t.lines[0].text.size() == LogRing::kMaxLineBytes);
  CHECK(t.lines[2].text.size() == 5);
}


// The ring as first written: one string per line, every line pushed. The block ring must match it.
class RefRing {
 public:
  explicit RefRing(std::size_t cap, std::uint64_t start) : cap_(cap), next_(start) {}
  void append(LogStreamKind s, std::string_view bytes) {
    std::string& part = partial_[static_cast<std::size_t>(s)];
    while (!bytes.empty()) {
      auto nl = bytes.find('\n');
      std::string_view piece = bytes.substr(0, nl);
      std::size_t room = LogRing::kMaxLineBytes - part.size();
      if (piece.size() >= room) {
        part.append(piece.substr(0, room));
        push(s, std::move(part));
        part.clear();
        bytes.remove_prefix(room);
        continue;
      }
      part.append(piece);
      if (nl == std::string_view::npos) return;
      push(s, std::move(part));
      part.clear();
      bytes.remove_prefix(nl + 1);
    }
  }
  void flush(LogStreamKind s) {
    std::string& part = partial_[static_cast<std::size_t>(s)];
    if (part.empty()) return;
    push(s, std::move(part));
    part.clear();
  }
  std::deque<RingLine> lines;
  std::uint64_t next() const { return next_; }

 private:
  void push(LogStreamKind s, std::string t) {
    if (lines.size() == cap_) lines.pop_front();
    lines.push_back(RingLine{next_++, s, std::move(t)});
  }
  std::size_t cap_;
  std::uint64_t next_;
  std::array<std::string, 2> partial_;
};

// A chunk of lines of random lengths, maybe ending mid-line: one time in `manyOneIn` up to `most`
// lines, else up to 5; one line in `longOneIn` near or over the ring's line cap.
template <class Pick>
std::string randomChunk(Pick& pick, std::size_t manyOneIn, std::size_t most, std::size_t longOneIn) {
  std::string chunk;
  const std::size_t lines = pick(manyOneIn) == 0 ? pick(most) : pick(6);
  for (std::size_t l = 0; l < lines; ++l) {
    const std::size_t len = pick(longOneIn) == 0
                                ? LogRing::kMaxLineBytes - 2 + pick(5) + (pick(2) ? LogRing::kMaxLineBytes : 0)
                                : pick(120);
    chunk.append(len, static_cast<char>('a' + pick(26)));
    chunk += '\n';
  }
  chunk.append(pick(3) == 0 ? pick(50) : 0, 'p');
  return chunk;
}

// The ring's tail of up to `count` lines is the reference ring's, line for line.
void sameTail(LogRing& ring, const RefRing& ref, std::size_t count) {
  const auto t = ring.tail(0, count);
  REQUIRE(t.lines.size() == ref.lines.size());
  for (std::size_t k = 0; k < t.lines.size(); ++k) {
    REQUIRE(t.lines[k].offset == ref.lines[k].offset);
    REQUIRE(t.lines[k].stream == ref.lines[k].stream);
    REQUIRE(t.lines[k].text == ref.lines[k].text);
  }
}

TEST_CASE("ring matches the one-string-per-line ring on random chunks", "[spawner]") {
  for (unsigned seed = 1; seed <= 60; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    const std::size_t cap = 1 + pick(40);
    LogRing ring(cap, 77);
    RefRing ref(cap, 77);
    for (int step = 0; step < 80; ++step) {
      const std::string chunk = randomChunk(pick, 4, 200, 30);
      const auto stream = pick(3) == 0 ? LogStreamKind::kStderr : LogStreamKind::kStdout;
      if (pick(20) == 0) {
        ring.flushPartial(stream);
        ref.flush(stream);
      }
      ring.append(stream, chunk);
      ref.append(stream, chunk);
      REQUIRE(ring.nextOffset() == ref.next());
      REQUIRE(ring.size() == ref.lines.size());
      sameTail(ring, ref, cap + 5);
    }
  }
}

// An unnamed file in /tmp, gone with its last descriptor.
std::shared_ptr<const UniqueFd> tempFile() {
  auto fd = std::make_shared<UniqueFd>(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  REQUIRE(fd->valid());
  return fd;
}

void putAt(const UniqueFd& fd, std::uint64_t pos, std::string_view bytes) {
  REQUIRE(::pwrite(fd.get(), bytes.data(), bytes.size(), static_cast<off_t>(pos)) == static_cast<ssize_t>(bytes.size()));
}

TEST_CASE("ring fed from a file (appendFile) matches the one-string-per-line ring", "[spawner]") {
  for (unsigned seed = 1; seed <= 40; ++seed) {
    CAPTURE(seed);
    std::mt19937 rng(seed);
    auto pick = [&rng](std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng); };
    const std::size_t cap = pick(2) ? 1 + pick(40) : 1000;
    LogRing ring(cap, 3);
    RefRing ref(cap, 3);
    // Two files per stream, as a rotation leaves them; each stream writes at the end of its own.
    std::array<std::shared_ptr<const UniqueFd>, 2> files{tempFile(), tempFile()};
    std::array<std::uint64_t, 2> ends{0, 0};
    for (int step = 0; step < 60; ++step) {
      const std::string chunk = randomChunk(pick, 3, 5000, 400);
      const auto stream = pick(3) == 0 ? LogStreamKind::kStderr : LogStreamKind::kStdout;
      const auto si = static_cast<std::size_t>(stream);
      if (pick(15) == 0) {  // a rotation: a fresh file
        files[si] = tempFile();
        ends[si] = 0;
      }
      // Written in a few splices, each told to the ring as it lands.
      std::size_t done = 0;
      while (done < chunk.size()) {
        const std::size_t n = std::min(chunk.size() - done, 1 + pick(chunk.size()));
        putAt(*files[si], ends[si], std::string_view(chunk).substr(done, n));
        ring.appendFile(stream, files[si], ends[si], n);
        ends[si] += n;
        done += n;
      }
      ref.append(stream, chunk);
      if (pick(4) != 0) continue;  // queries come now and then: the ring catches up then
      if (pick(10) == 0) {
        ring.flushPartial(stream);
        ref.flush(stream);
      }
      REQUIRE(ring.nextOffset() == ref.next());
      sameTail(ring, ref, cap + 5);
    }
  }
}

TEST_CASE("ring reads deferred bytes once and bounds what waits", "[spawner]") {
  LogRing ring(1000);
  auto f = tempFile();
  std::string chunk;
  for (int i = 0; i < 1000; ++i) chunk += "line " + std::to_string(i) + "\n";
  putAt(*f, 0, chunk);
  ring.appendFile(LogStreamKind::kStdout, f, 0, chunk.size());
  CHECK(ring.deferredBytes() == chunk.size());
  CHECK(ring.nextOffset() == 1000);  // a query reads them
  CHECK(ring.deferredBytes() == 0);
  CHECK(ring.nextOffset() == 1000);  // and only once
  CHECK(ring.last(1).lines.at(0).text == "line 999");

  // Never more than kMaxDeferred waits.
  const std::string big(LogRing::kMaxDeferred / 4, 'x');
  std::uint64_t at = chunk.size();
  for (int i = 0; i < 6; ++i) {
    putAt(*f, at, big);
    ring.appendFile(LogStreamKind::kStdout, f, at, big.size());
    at += big.size();
    CHECK(ring.deferredBytes() < LogRing::kMaxDeferred);
  }
}

TEST_CASE("ring skips bytes a truncated file no longer holds", "[spawner]") {
  LogRing ring(10);
  auto f = tempFile();
  putAt(*f, 0, "one\ntwo\nthree\n");
  ring.appendFile(LogStreamKind::kStdout, f, 0, 14);
  REQUIRE(::ftruncate(f->get(), 8) == 0);  // an outside copytruncate, before the ring read it
  auto t = ring.tail(0, 10);
  REQUIRE(t.lines.size() == 2);
  CHECK(t.lines[0].text == "one");
  CHECK(t.lines[1].text == "two");
  ring.appendFile(LogStreamKind::kStdout, f, 100, 5);  // entirely beyond the end now
  CHECK(ring.nextOffset() == 2);
}

TEST_CASE("ring memory follows what it holds", "[spawner]") {
  LogRing one(1000);
  one.append(LogStreamKind::kStdout, "hello\n");
  CHECK(one.heldBytes() < 1024);  // an instance that logged one line holds about that line

  LogRing busy(1000);
  const std::string line(99, 'x');
  std::string chunk;
  for (int i = 0; i < 2600; ++i) chunk += line + "\n";  // one 256 KiB pipe's worth
  for (int i = 0; i < 50; ++i) busy.append(LogStreamKind::kStdout, chunk);
  CHECK(busy.size() == 1000);
  CHECK(busy.nextOffset() == 50u * 2600u);
  CHECK(busy.last(1).lines.at(0).text == line);
  CHECK(busy.heldBytes() <= 3 * 1000 * 99);  // the last 1000 lines, plus what part-used blocks keep
}

TEST_CASE("countNewlines counts every newline at any length and alignment", "[spawner]") {
  std::mt19937 rng(5);
  std::vector<char> buf(70000);
  for (auto& c : buf) c = (rng() % 7 == 0) ? '\n' : static_cast<char>('a' + rng() % 26);
  for (std::size_t start : {0u, 1u, 3u, 15u, 16u, 17u}) {
    for (std::size_t len : {0u, 1u, 15u, 16u, 17u, 255u * 16u, 255u * 16u + 9u, 65536u, 69000u}) {
      CAPTURE(start, len);
      CHECK(countNewlines(buf.data() + start, len) ==
            static_cast<std::size_t>(std::count(buf.begin() + static_cast<long>(start),
                                                buf.begin() + static_cast<long>(start + len), '\n')));
    }
  }
  std::string all(5000, '\n');
  CHECK(countNewlines(all.data(), all.size()) == 5000);
}

}  // namespace
}  // namespace provisr::spawner

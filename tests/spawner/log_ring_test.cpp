// Tests of the per-instance ring: line splitting, partial lines per stream, offsets and tails.
#include "spawner/log_ring.hpp"

#include <catch2/catch.hpp>

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

}  // namespace
}  // namespace provisr::spawner

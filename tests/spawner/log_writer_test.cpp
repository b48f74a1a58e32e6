// Tests of the log writer with real children: order and completeness, shared files, rotation with
// gzip and pruning, timestamps, disk full, reopen, held partial lines.
#include "spawner/log_writer.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <sstream>

#include "tests/spawner/test_support.hpp"

namespace provisr::spawner {
namespace {

using test::helper;
using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string gunzip(const std::string& path) {
  gzFile gz = ::gzopen(path.c_str(), "rb");
  REQUIRE(gz != nullptr);
  std::string out;
  std::array<char, 65536> buf{};
  int n;
  while ((n = ::gzread(gz, buf.data(), static_cast<unsigned>(buf.size()))) > 0) out.append(buf.data(), static_cast<std::size_t>(n));
  ::gzclose(gz);
  return out;
}

std::vector<std::string> splitLines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (std::size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) out.push_back(text.substr(pos, nl - pos));
  if (pos < text.size()) out.push_back(text.substr(pos) + "<partial>");
  return out;
}

// What chatty writes as line `seq` of `tag` with length `len` (newline included).
std::string chattyLine(const std::string& tag, long seq, std::size_t len) {
  std::string line = tag + " " + std::to_string(seq) + " ";
  while (line.size() + 1 < len) line.push_back(static_cast<char>('a' + (line.size() % 26)));
  return line;
}

// The event loop stand-in: edge-triggered epoll, as LogStream's kHeld asks.
class Pumper {
 public:
  Pumper() : ep_(::epoll_create1(EPOLL_CLOEXEC)) {}
  void add(LogStream& s) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = streams_.size();
    streams_.push_back(&s);
    done_.push_back(false);
    REQUIRE(::epoll_ctl(ep_.get(), EPOLL_CTL_ADD, s.fd(), &ev) == 0);
  }
  // Pumps until every stream reached EOF; false on timeout.
  bool runToEof(std::chrono::milliseconds deadline = 20s) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (std::count(done_.begin(), done_.end(), false) > 0) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::array<epoll_event, 16> evs{};
      int n = ::epoll_wait(ep_.get(), evs.data(), static_cast<int>(evs.size()), 100);
      for (int i = 0; i < n; ++i) pumpOne(evs[static_cast<std::size_t>(i)].data.u64);
    }
    return true;
  }

 private:
  void pumpOne(std::uint64_t idx) {
    PumpResult r;
    do {
      r = streams_[idx]->pump(false, 256 * 1024);
    } while (r == PumpResult::kMore);
    if (r == PumpResult::kEof) done_[idx] = true;
  }
  UniqueFd ep_;
  std::vector<LogStream*> streams_;
  std::vector<bool> done_;
};

struct Fixture {
  test::TempDir dir;
  test::ProcessGuard guard;
  FakeClock clock;
  Compressor compressor;
  LogFileSet files{clock, &compressor};
  std::unique_ptr<LogScratch> scratch = std::move(LogScratch::create().value());

  // Launches argv; returns the child and its stdout/stderr read ends.
  // (ManagedChild stays where it was made: it is held by pointer.)
  std::pair<std::unique_ptr<ManagedChild>, Launched> start(std::vector<std::string> argv) {
    LaunchRequest req;
    req.argv = std::move(argv);
    req.env = test::baseEnv();
    auto r = launch(req);
    REQUIRE(r.ok());
    guard.add(r->pid);
    auto c = std::make_unique<ManagedChild>(r->pid, std::move(r->pidfd), r->startTicks);
    return {std::move(c), std::move(*r)};
  }
  std::shared_ptr<LogFile> file(const std::string& name, RotationPolicy p = {}) {
    auto f = files.get(dir.str(name), p);
    REQUIRE(f.ok());
    return *f;
  }
  void finish(std::unique_ptr<ManagedChild>& p) {
    ManagedChild& c = *p;
    auto ex = test::waitExit(c);
    REQUIRE(ex);
    CHECK(ex->exited);
    CHECK(ex->code == 0);
    REQUIRE(c.release().ok());
  }
};

TEST_CASE("a chatty child's numbered lines all arrive, in order and complete", "[spawner]") {
  Fixture fx;
  constexpr long kLines = 20000;
  auto [child, l] = fx.start({helper("chatty"), std::to_string(kLines), "both", "64", "c"});
  auto ring = std::make_shared<LogRing>();
  LogStream out(std::move(l.stdoutRead), fx.file("logs/c.stdout.log"), *fx.scratch, fx.clock, LogStreamKind::kStdout, false, ring);
  LogStream err(std::move(l.stderrRead), fx.file("logs/c.stderr.log"), *fx.scratch, fx.clock, LogStreamKind::kStderr, false, ring);
  Pumper p;
  p.add(out);
  p.add(err);
  REQUIRE(p.runToEof());
  fx.finish(child);

  for (const char* name : {"logs/c.stdout.log", "logs/c.stderr.log"}) {
    auto lines = splitLines(slurp(fx.dir.str(name)));
    REQUIRE(lines.size() == kLines);
    bool all = true;
    for (long i = 0; i < kLines && all; ++i) all = lines[static_cast<std::size_t>(i)] == chattyLine("c", i, 64);
    CHECK(all);
  }
  CHECK(out.counters().bytes == kLines * 64);
  CHECK(out.counters().droppedBytes == 0);
  CHECK(err.counters().bytes == kLines * 64);
  // File modes: 0640 files in a 0750 directory.
  struct stat st {};
  REQUIRE(::stat(fx.dir.str("logs/c.stdout.log").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);
  REQUIRE(::stat(fx.dir.str("logs").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0750);
  // The ring holds the newest 1000 of the 40000 lines.
  CHECK(ring->nextOffset() == 2 * kLines);
  CHECK(ring->size() == 1000);
  auto last = ring->last(1);
  REQUIRE(last.lines.size() == 1);
  CHECK(last.lines[0].text == chattyLine("c", kLines - 1, 64));
}

TEST_CASE("instances sharing one file produce only whole lines", "[spawner]") {
  Fixture fx;
  constexpr long kLines = 4000;
  constexpr std::size_t kLen = 300;
  auto shared = fx.file("shared.log");
  std::vector<std::pair<std::unique_ptr<ManagedChild>, Launched>> kids;
  std::vector<std::unique_ptr<LogStream>> streams;
  Pumper p;
  for (const char* tag : {"A", "B", "C"}) {
    // "split": every line is written in two halves, so half lines sit in the pipes all the time.
    kids.push_back(fx.start({helper("chatty"), std::to_string(kLines), "both", std::to_string(kLen), tag, "split"}));
    auto& l = kids.back().second;
    streams.push_back(std::make_unique<LogStream>(std::move(l.stdoutRead), shared, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr));
    streams.push_back(std::make_unique<LogStream>(std::move(l.stderrRead), shared, *fx.scratch, fx.clock, LogStreamKind::kStderr, false, nullptr));
  }
  CHECK(shared->shared());
  for (auto& s : streams) p.add(*s);
  REQUIRE(p.runToEof());
  for (auto& k : kids) fx.finish(k.first);

  auto lines = splitLines(slurp(fx.dir.str("shared.log")));
  CHECK(lines.size() == 3 * 2 * kLines);
  std::map<std::string, std::vector<long>> seen;  // tag -> sequence numbers in file order
  std::size_t bad = 0;
  for (const auto& line : lines) {
    std::istringstream in(line);
    std::string tag;
    long seq = -1;
    in >> tag >> seq;
    if (line != chattyLine(tag, seq, kLen)) {
      ++bad;
      continue;
    }
    seen[tag].push_back(seq);
  }
  CHECK(bad == 0);
  for (const char* tag : {"A", "B", "C"}) {
    // stdout and stderr copies interleave, but each number appears twice and in order per stream.
    auto& v = seen[tag];
    CHECK(v.size() == 2 * kLines);
    std::map<long, int> count;
    for (long s : v) ++count[s];
    CHECK(count.size() == kLines);
  }
}

TEST_CASE("rotation renames by UTC time, gzips off the hot path and prunes backups", "[spawner]") {
  Fixture fx;
  RotationPolicy policy;
  policy.maxSize = 64 * 1024;
  policy.maxBackups = 3;
  policy.compress = true;
  constexpr long kLines = 20000;
  constexpr std::size_t kLen = 100;
  auto f = fx.file("api.out.log", policy);
  auto [child, l] = fx.start({helper("chatty"), std::to_string(kLines), "out", std::to_string(kLen), "r"});
  LogStream out(std::move(l.stdoutRead), f, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr);
  l.stderrRead.reset();
  Pumper p;
  p.add(out);
  // Time moves so backups get distinct names without relying on the collision bump alone.
  REQUIRE(p.runToEof());
  fx.finish(child);
  fx.compressor.waitIdle();

  CHECK(f->rotations() >= 2'000'000 / policy.maxSize);
  CHECK(fx.compressor.failures() == 0);
  std::vector<std::string> backups;
  for (const auto& e : std::filesystem::directory_iterator(fx.dir.path())) {
    std::string name = e.path().filename().string();
    if (name == "api.out.log") continue;
    CHECK(std::regex_match(name, std::regex(R"(api\.out-\d{8}T\d{6}\.\d{3}\.log\.gz)")));
    backups.push_back(e.path().string());
  }
  std::sort(backups.begin(), backups.end());
  CHECK(backups.size() == 3);
  // The kept backups plus the live file are the newest lines, whole and contiguous to the end.
  std::string text;
  for (const auto& b : backups) {
    std::string part = gunzip(b);
    CHECK(part.size() <= policy.maxSize);
    CHECK(part.back() == '\n');
    text += part;
  }
  std::string live = slurp(fx.dir.str("api.out.log"));
  CHECK(live.size() <= policy.maxSize);
  text += live;
  auto lines = splitLines(text);
  REQUIRE_FALSE(lines.empty());
  long first = kLines - static_cast<long>(lines.size());
  bool contiguous = true;
  for (std::size_t i = 0; i < lines.size() && contiguous; ++i) contiguous = lines[i] == chattyLine("r", first + static_cast<long>(i), kLen);
  CHECK(contiguous);
  CHECK(out.counters().bytes == kLines * kLen);
}

TEST_CASE("backup names and age/count pruning", "[spawner]") {
  test::TempDir dir;
  FakeClock clock;  // 2027-01-15T08:00:00Z
  std::string path = dir.str("api.out.log");
  CHECK(backupName(path, clock.wallNow()) == dir.str("api.out-20270115T080000.000.log"));
  CHECK(backupName(dir.str("noext"), clock.wallNow() + 12ms) == dir.str("noext-20270115T080000.012"));
  auto touch = [&](const std::string& name) { std::ofstream(dir.str(name)) << "x\n"; };
  touch("api.out-20270110T080000.000.log.gz");  // 5 days old
  touch("api.out-20270114T080000.000.log");     // 1 day old, plain and gz (mid-compression)
  touch("api.out-20270114T080000.000.log.gz");
  touch("api.out-20270115T070000.000.log.gz");
  touch("api.out-20270115T075959.999.log.gz");
  touch("api.out.log");
  touch("other-20270101T000000.000.log");  // not ours
  RotationPolicy byAge;
  byAge.maxAgeDays = 3;
  CHECK(pruneBackups(path, byAge, clock.wallNow()) == 1);
  CHECK_FALSE(std::filesystem::exists(dir.str("api.out-20270110T080000.000.log.gz")));
  RotationPolicy byCount;
  byCount.maxBackups = 2;
  CHECK(pruneBackups(path, byCount, clock.wallNow()) == 2);  // both files of the 14th
  CHECK(std::filesystem::exists(dir.str("api.out-20270115T070000.000.log.gz")));
  CHECK(std::filesystem::exists(dir.str("api.out-20270115T075959.999.log.gz")));
  CHECK(std::filesystem::exists(dir.str("api.out.log")));
  CHECK(std::filesystem::exists(dir.str("other-20270101T000000.000.log")));
}

TEST_CASE("timestamps prefix every line with RFC 3339 UTC time", "[spawner]") {
  Fixture fx;
  auto [child, l] = fx.start({helper("chatty"), "500", "out", "30", "t", "split"});
  auto ring = std::make_shared<LogRing>();
  LogStream out(std::move(l.stdoutRead), fx.file("t.log"), *fx.scratch, fx.clock, LogStreamKind::kStdout, true, ring);
  Pumper p;
  p.add(out);
  REQUIRE(p.runToEof());
  fx.finish(child);
  auto lines = splitLines(slurp(fx.dir.str("t.log")));
  REQUIRE(lines.size() == 500);
  for (long i = 0; i < 500; ++i) {
    REQUIRE(lines[static_cast<std::size_t>(i)] == "2027-01-15T08:00:00.000Z " + chattyLine("t", i, 30));
  }
  CHECK(out.counters().bytes == 500 * 30);
  CHECK(ring->nextOffset() == 500);
  CHECK(ring->size() == 500);  // the ring holds the child's text, without the stamp
  CHECK(ring->last(1).lines.at(0).text == chattyLine("t", 499, 30));
}

TEST_CASE("a full disk drops and counts bytes instead of blocking the child", "[spawner]") {
  Fixture fx;
  auto full = LogFile::open("/dev/full", RotationPolicy{}, fx.clock, nullptr);
  REQUIRE(full.ok());
  auto [child, l] = fx.start({helper("chatty"), "50000", "out", "100", "d"});
  LogStream out(std::move(l.stdoutRead), *full, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr);
  Pumper p;
  p.add(out);
  REQUIRE(p.runToEof());
  fx.finish(child);  // it could write everything: nothing blocked it
  CHECK(out.counters().droppedBytes == 50000 * 100);
  CHECK(out.counters().bytes == 0);
  CHECK(out.counters().writeErrors > 0);
}

// Pipes driven by hand, for exact control over partial lines.
struct HandPipe {
  UniqueFd read;
  UniqueFd write;
  HandPipe() {
    auto p = makeOutputPipe();
    REQUIRE(p.ok());
    read = std::move(p->read);
    write = std::move(p->write);
  }
  void put(std::string_view s) { REQUIRE(::write(write.get(), s.data(), s.size()) == static_cast<ssize_t>(s.size())); }
};

std::size_t inPipe(int fd) {
  int n = 0;
  ::ioctl(fd, FIONREAD, &n);
  return static_cast<std::size_t>(n);
}

TEST_CASE("a shared file keeps a partial line in the hold pipe until its newline comes", "[spawner]") {
  Fixture fx;
  HandPipe a;
  HandPipe b;
  int aRead = a.read.get();
  auto f = fx.file("s.log");
  LogStream sa(std::move(a.read), f, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr);
  LogStream sb(std::move(b.read), f, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr);
  a.put("first line\nhello wor");
  b.put("other line\n");
  CHECK(sa.pump() == PumpResult::kHeld);
  CHECK(sb.pump() == PumpResult::kDrained);
  CHECK(slurp(fx.dir.str("s.log")) == "first line\nother line\n");
  // "hello wor" is still the kernel's, not ours: in the hold pipe, out of the child's way.
  CHECK(inPipe(aRead) == 0);
  CHECK(sa.heldBytes() == 9);
  CHECK(inPipe(sa.holdRead()) == 9);
  a.put("ld\ntail");
  CHECK(sa.pump() == PumpResult::kHeld);
  CHECK(slurp(fx.dir.str("s.log")) == "first line\nother line\nhello world\n");
  a.write.reset();  // the writer is gone: the last partial line is written
  CHECK(sa.pump() == PumpResult::kEof);
  CHECK(slurp(fx.dir.str("s.log")) == "first line\nother line\nhello world\ntail");
  CHECK(sa.counters().bytes == std::string("first line\nhello world\ntail").size());
  b.put("forced");
  CHECK(sb.pump() == PumpResult::kDrained);  // a single writer: no holding
  CHECK(slurp(fx.dir.str("s.log")).size() == std::string("first line\nother line\nhello world\ntailforced").size());
}

TEST_CASE("large writers sharing a file never stall and write whole lines", "[spawner]") {
  // cat writes 128 KiB at a time into a 64 KiB pipe: it blocks mid-write, and a reader that left a
  // partial line in that pipe would never be woken again (the regression this guards).
  Fixture fx;
  constexpr long kLines = 100000;
  constexpr std::size_t kLen = 100;
  std::string input = fx.dir.str("input");
  {
    std::ofstream in(input);
    for (long i = 0; i < kLines; ++i) in << chattyLine("L", i, kLen) << '\n';
  }
  auto shared = fx.file("big.log");
  std::vector<std::pair<std::unique_ptr<ManagedChild>, Launched>> kids;
  std::vector<std::unique_ptr<LogStream>> streams;
  Pumper p;
  for (int i = 0; i < 2; ++i) {
    kids.push_back(fx.start({"cat", input}));
    streams.push_back(std::make_unique<LogStream>(std::move(kids.back().second.stdoutRead), shared, *fx.scratch, fx.clock,
                                                  LogStreamKind::kStdout, false, nullptr));
    p.add(*streams.back());
  }
  REQUIRE(p.runToEof());
  for (auto& k : kids) fx.finish(k.first);
  auto lines = splitLines(slurp(fx.dir.str("big.log")));
  CHECK(lines.size() == 2 * kLines);
  std::size_t bad = 0;
  for (const auto& line : lines) {
    std::istringstream in(line);
    std::string tag;
    long seq = -1;
    in >> tag >> seq;
    if (line != chattyLine("L", seq, kLen)) ++bad;
  }
  CHECK(bad == 0);
  CHECK(streams[0]->counters().bytes + streams[1]->counters().bytes == 2 * kLines * kLen);
}

TEST_CASE("reopen follows an outside logrotate", "[spawner]") {
  Fixture fx;
  HandPipe a;
  auto f = fx.file("r.log");
  LogStream s(std::move(a.read), f, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, nullptr);
  a.put("before\n");
  CHECK(s.pump() == PumpResult::kDrained);
  std::filesystem::rename(fx.dir.str("r.log"), fx.dir.str("r.log.1"));
  a.put("still old\n");
  CHECK(s.pump() == PumpResult::kDrained);
  REQUIRE(fx.files.reopenAll().ok());
  CHECK(f->offset() == 0);
  a.put("after\n");
  CHECK(s.pump() == PumpResult::kDrained);
  CHECK(slurp(fx.dir.str("r.log.1")) == "before\nstill old\n");
  CHECK(slurp(fx.dir.str("r.log")) == "after\n");
}

TEST_CASE("the ring of a spliced stream reads its lines back across rotations and pruning", "[spawner]") {
  Fixture fx;
  RotationPolicy policy;
  policy.maxSize = 64 * 1024;
  policy.maxBackups = 1;  // backups vanish soon after their rotation: the ring must not need them
  policy.compress = true;
  constexpr long kLines = 20000;
  constexpr std::size_t kLen = 100;
  auto f = fx.file("rot.log", policy);
  auto ring = std::make_shared<LogRing>();
  auto [child, l] = fx.start({helper("chatty"), std::to_string(kLines), "out", std::to_string(kLen), "q"});
  LogStream out(std::move(l.stdoutRead), f, *fx.scratch, fx.clock, LogStreamKind::kStdout, false, ring);
  l.stderrRead.reset();
  Pumper p;
  p.add(out);
  REQUIRE(p.runToEof());
  fx.finish(child);
  fx.compressor.waitIdle();
  CHECK(f->rotations() >= 2'000'000 / policy.maxSize);
  CHECK(out.counters().bytes == kLines * kLen);
  CHECK(out.counters().droppedBytes == 0);
  CHECK(ring->nextOffset() == kLines);
  auto t = ring->tail(0, 2000);
  REQUIRE(t.lines.size() == LogRing::kDefaultCapacity);
  bool exact = true;
  for (std::size_t i = 0; i < t.lines.size() && exact; ++i) {
    const long seq = kLines - static_cast<long>(LogRing::kDefaultCapacity) + static_cast<long>(i);
    exact = t.lines[i].offset == static_cast<std::uint64_t>(seq) && t.lines[i].text == chattyLine("q", seq, kLen);
  }
  CHECK(exact);
  // Every rotated file still ends with a newline: the cut still looks at the bytes.
  for (const auto& e : std::filesystem::directory_iterator(fx.dir.path())) {
    if (e.path().filename() == "rot.log") continue;
    const std::string part = gunzip(e.path().string());
    CHECK(part.back() == '\n');
  }
}

TEST_CASE("a reader that asks mid-stream gets every line once, without a gap", "[spawner]") {
  Fixture fx;
  HandPipe a;
  HandPipe b;
  auto ring = std::make_shared<LogRing>();
  LogStream out(std::move(a.read), fx.file("m.out.log"), *fx.scratch, fx.clock, LogStreamKind::kStdout, false, ring);
  LogStream err(std::move(b.read), fx.file("m.err.log"), *fx.scratch, fx.clock, LogStreamKind::kStderr, false, ring);
  std::vector<std::string> seen;
  std::uint64_t next = 0;
  auto poll = [&] {
    auto t = ring->tail(next, 10'000);
    for (std::size_t i = 0; i < t.lines.size(); ++i) {
      CHECK(t.lines[i].offset == next + i);
      seen.push_back((t.lines[i].stream == LogStreamKind::kStderr ? "E:" : "O:") + t.lines[i].text);
    }
    next = t.next;
  };
  std::vector<std::string> want;
  for (int round = 0; round < 50; ++round) {
    const std::string o = "out " + std::to_string(round);
    const std::string e = "err " + std::to_string(round);
    a.put(o + "\n" + o + " b");  // ends mid-line
    CHECK(out.pump() == PumpResult::kDrained);
    b.put(e + "\n");
    CHECK(err.pump() == PumpResult::kDrained);
    a.put("\n");
    CHECK(out.pump() == PumpResult::kDrained);
    want.insert(want.end(), {"O:" + o, "E:" + e, "O:" + o + " b"});
    if (round % 7 == 3) poll();
  }
  poll();
  CHECK(seen == want);
  CHECK(next == want.size());
  CHECK(out.counters().bytes == slurp(fx.dir.str("m.out.log")).size());
  CHECK(err.counters().bytes == slurp(fx.dir.str("m.err.log")).size());
}

}  // namespace
}  // namespace provisr::spawner

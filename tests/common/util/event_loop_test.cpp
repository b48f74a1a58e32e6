// EventLoop: timers in order and cancellable, fd readiness, signals through the signalfd,
// edge-triggered sources re-checked every turn, and no wakeup at all while idle. The ZeroMQ
// DEALER/ROUTER exchange through the loop is in tests/common/proto/zmq_util_test.cpp: the loop
// itself links no ZeroMQ (the keeper uses it and links none, DESIGN §1).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <csignal>
#include <deque>
#include <thread>

#include "common/util/clock.hpp"
#include "common/util/event_loop.hpp"
#include "common/util/fd.hpp"

using namespace provisr;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<EventLoop> makeLoop(Clock& clock) {
  auto loop = EventLoop::create(clock);
  REQUIRE(loop.ok());
  return std::move(loop).value();
}

// Runs turns until `done` holds, at most `limit` of real time (a guard timer stops the loop).
template <class Pred>
bool runUntil(EventLoop& loop, Pred done, Duration limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= Duration::zero()) return false;
    loop.runOnce(std::min<Duration>(left, 100ms));
  }
  return true;
}

}  // namespace

TEST_CASE("timers fire in deadline order, ties in the order added, and cancel works", "[common]") {
  FakeClock clock;
  auto loop = makeLoop(clock);
  std::vector<std::string> fired;
  loop->addTimer(30ms, [&] { fired.push_back("30"); });
  loop->addTimer(10ms, [&] { fired.push_back("10a"); });
  const auto cancelled = loop->addTimer(20ms, [&] { fired.push_back("20-cancelled"); });
  loop->addTimer(10ms, [&] { fired.push_back("10b"); });
  loop->addTimer(20ms, [&] { fired.push_back("20"); });
  CHECK(loop->cancelTimer(cancelled));
  CHECK_FALSE(loop->cancelTimer(cancelled));
  CHECK(loop->pendingTimers() == 4);
  CHECK(loop->nextDeadline() == clock.now() + 10ms);

  CHECK(loop->runOnce() == 0);
  CHECK(fired.empty());
  clock.advance(15ms);
  CHECK(loop->runOnce() == 2);
  CHECK(fired == std::vector<std::string>{"10a", "10b"});
  clock.advance(100ms);
  CHECK(loop->runOnce() == 2);
  CHECK(fired == std::vector<std::string>{"10a", "10b", "20", "30"});
  CHECK(loop->pendingTimers() == 0);
  CHECK_FALSE(loop->nextDeadline().has_value());
}

TEST_CASE("a timer added by a timer fires on a later turn — a callback may cancel another", "[common]") {
  FakeClock clock;
  auto loop = makeLoop(clock);
  int chained = 0;
  EventLoop::TimerId victim = 0;
  loop->addTimer(1ms, [&] {
    loop->addTimer(0ms, [&] { ++chained; });
    loop->cancelTimer(victim);
  });
  victim = loop->addTimer(1ms, [&] { FAIL("cancelled timer fired"); });
  clock.advance(1ms);
  CHECK(loop->runOnce() == 1);
  CHECK(chained == 0);
  CHECK(loop->runOnce() == 1);
  CHECK(chained == 1);
}

TEST_CASE("many cancelled timers do not pile up", "[common]") {
  FakeClock clock;
  auto loop = makeLoop(clock);
  std::vector<EventLoop::TimerId> ids;
  for (int i = 0; i < 1000; ++i) ids.push_back(loop->addTimer(std::chrono::milliseconds(i + 1), [] {}));
  int last = 0;
  loop->addTimer(2s, [&] { last = 1; });
  for (auto id : ids) CHECK(loop->cancelTimer(id));
  CHECK(loop->pendingTimers() == 1);
  CHECK(loop->nextDeadline() == clock.now() + 2s);
  clock.advance(2s);
  CHECK(loop->runOnce() == 1);
  CHECK(last == 1);
}

TEST_CASE("fd readiness: readable, writable, hang-up, removal from a callback", "[common]") {
  SystemClock clock;
  auto loop = makeLoop(clock);
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  UniqueFd r(fds[0]), w(fds[1]);

  std::string got;
  std::uint32_t lastBits = 0;
  REQUIRE(loop->addFd(r.get(), EventLoop::kReadable, [&](std::uint32_t bits) {
                lastBits = bits;
                char buf[64];
                const ssize_t n = ::read(r.get(), buf, sizeof buf);
                if (n > 0) got.append(buf, static_cast<std::size_t>(n));
              }).ok());
  CHECK_FALSE(loop->addFd(r.get(), EventLoop::kReadable, [](std::uint32_t) {}).ok());  // twice: refused

  CHECK(loop->runOnce() == 0);  // nothing written yet
  REQUIRE(::write(w.get(), "ping", 4) == 4);
  REQUIRE(runUntil(*loop, [&] { return got == "ping"; }));
  CHECK((lastBits & EventLoop::kReadable) != 0);

  int writable = 0;
  REQUIRE(loop->addFd(w.get(), EventLoop::kWritable, [&](std::uint32_t bits) {
                CHECK((bits & EventLoop::kWritable) != 0);
                ++writable;
                loop->removeFd(w.get());  // removing itself from its own callback
              }).ok());
  REQUIRE(runUntil(*loop, [&] { return writable == 1; }));
  CHECK(loop->runOnce() == 0);
  CHECK(writable == 1);

  w.reset();  // hang-up: the reader is told
  REQUIRE(runUntil(*loop, [&] { return (lastBits & EventLoop::kError) != 0; }));
  loop->removeFd(r.get());
  CHECK(loop->runOnce() == 0);
}

TEST_CASE("a signal arrives through the signalfd", "[common]") {
  SystemClock clock;
  auto loop = makeLoop(clock);
  int seen = 0;
  std::uint32_t from = 0;
  REQUIRE(loop->onSignal(SIGUSR1, [&](const signalfd_siginfo& info) {
                ++seen;
                from = info.ssi_pid;
                CHECK(info.ssi_signo == static_cast<std::uint32_t>(SIGUSR1));
              }).ok());
  REQUIRE(loop->onSignal(SIGUSR2, [&](const signalfd_siginfo&) { seen += 100; }).ok());
  REQUIRE(::kill(::getpid(), SIGUSR1) == 0);  // blocked, so it waits in the signalfd
  REQUIRE(runUntil(*loop, [&] { return seen == 1; }));
  CHECK(from == static_cast<std::uint32_t>(::getpid()));

  loop->ignoreSignal(SIGUSR2);
  REQUIRE(::kill(::getpid(), SIGUSR1) == 0);
  REQUIRE(runUntil(*loop, [&] { return seen == 2; }));
}

TEST_CASE("edge sources are re-checked every turn, even when the edge was consumed", "[common]") {
  // An emulated ZeroMQ socket: the fd signals once, the queue says what is really pending.
  SystemClock clock;
  auto loop = makeLoop(clock);
  UniqueFd signalFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  REQUIRE(signalFd.valid());
  std::deque<int> queue;
  auto pending = [&]() -> std::uint32_t {
    std::uint64_t drain = 0;
    (void)!::read(signalFd.get(), &drain, sizeof drain);  // like ZMQ_EVENTS resetting ZMQ_FD
    return queue.empty() ? 0 : EventLoop::kReadable;
  };
  std::vector<int> received;
  REQUIRE(loop->addEdgeSource(signalFd.get(), EventLoop::kReadable, pending, [&](std::uint32_t bits) {
                CHECK(bits == EventLoop::kReadable);
                received.push_back(queue.front());  // one per call: the loop must come back
                queue.pop_front();
              }).ok());

  // Three messages behind one edge.
  queue = {1, 2, 3};
  const std::uint64_t one = 1;
  REQUIRE(::write(signalFd.get(), &one, sizeof one) == 8);
  REQUIRE(runUntil(*loop, [&] { return received.size() == 3; }, 2s));

  // A message that arrives with no edge at all (another callback's send consumed it).
  loop->addTimer(1ms, [&] { queue.push_back(4); });
  REQUIRE(runUntil(*loop, [&] { return received.size() == 4; }, 2s));
  CHECK(received == std::vector<int>{1, 2, 3, 4});
  const auto before = loop->stats();
  CHECK(loop->runOnce() == 0);  // nothing pending: no callback
  CHECK(loop->stats().callbacks == before.callbacks);
  loop->removeFd(signalFd.get());
}

TEST_CASE("an idle loop does not wake before its next deadline", "[common]") {
  SystemClock clock;
  auto loop = makeLoop(clock);
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  UniqueFd r(fds[0]), w(fds[1]);
  int fdCalls = 0;
  REQUIRE(loop->addFd(r.get(), EventLoop::kReadable, [&](std::uint32_t) { ++fdCalls; }).ok());
  int fired = 0;
  const auto start = std::chrono::steady_clock::now();
  loop->addTimer(300ms, [&] {
    ++fired;
    loop->stop();
  });
  loop->run();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(fired == 1);
  CHECK(fdCalls == 0);
  CHECK(elapsed >= 300ms);
  // One sleep until the deadline (a second, if the kernel woke a hair early), then the timer.
  CHECK(loop->stats().wakeups <= 2);
  CHECK(loop->stats().turns <= 3);
  CHECK(loop->stats().callbacks == 1);
  loop->removeFd(r.get());
}

TEST_CASE("stop() from another thread ends run() with nothing scheduled", "[common]") {
  SystemClock clock;
  auto loop = makeLoop(clock);
  std::thread t([&] { loop->stop(); });
  loop->run();  // returns whether stop() came before or during the sleep
  t.join();
  CHECK_FALSE(loop->stopped());
}

// The HTTP worker pool: starts small, grows with concurrent tasks up to its cap, queues beyond
// it, shrinks back when idle, and runs every queued task before shutdown returns.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "gateway/worker_pool.hpp"
#include "tests/support/wait.hpp"

using namespace std::chrono_literals;
using provisr::gateway::WorkerPool;
using provisr::test::waitFor;

namespace {

// Tasks that block until released, like httplib's keep-alive connections.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> running{0};
  std::atomic<int> done{0};

  std::function<void()> task() {
    return [this] {
      ++running;
      std::unique_lock lock(mu);
      cv.wait_for(lock, 10s, [this] { return open; });  // bounded: a broken test does not hang
      --running;
      ++done;
    };
  }
  void release() {
    {
      std::lock_guard lock(mu);
      open = true;
    }
    cv.notify_all();
  }
};

}  // namespace

TEST_CASE("worker pool: grows on demand up to its cap and shrinks when idle", "[gateway]") {
  WorkerPool pool(2, 5, 200ms);
  CHECK(pool.stats().threads == 2);
  Gate gate;
  for (int i = 0; i < 7; ++i) pool.enqueue(gate.task());
  // Five run at once (the cap), two wait for a free worker.
  REQUIRE(waitFor([&] { return gate.running == 5; }, 5s));
  CHECK(pool.stats().threads == 5);
  CHECK(pool.stats().queued == 2);
  gate.release();
  REQUIRE(waitFor([&] { return gate.done == 7; }, 5s));
  // Idle workers beyond the minimum leave.
  REQUIRE(waitFor([&] { return pool.stats().threads == 2; }, 5s));
  CHECK(pool.stats().idle == 2);
  // And the pool grows again.
  Gate again;
  for (int i = 0; i < 3; ++i) pool.enqueue(again.task());
  REQUIRE(waitFor([&] { return again.running == 3; }, 5s));
  CHECK(pool.stats().threads == 3);
  again.release();
  REQUIRE(waitFor([&] { return again.done == 3; }, 5s));
}

TEST_CASE("worker pool: an idle worker takes the next task, no new thread", "[gateway]") {
  WorkerPool pool(1, 8, 10s);
  std::atomic<int> ran{0};
  for (int i = 0; i < 50; ++i) {
    // (A task that arrives while the only worker is still finishing the last one starts a
    // second worker: wait until it is back waiting.)
    REQUIRE(waitFor([&] { return pool.stats().idle == 1; }, 5s));
    pool.enqueue([&] { ++ran; });
    REQUIRE(waitFor([&] { return ran == i + 1; }, 5s));
  }
  CHECK(pool.stats().started == 1);
}

TEST_CASE("worker pool: shutdown runs what is queued, then joins", "[gateway]") {
  std::atomic<int> ran{0};
  {
    WorkerPool pool(1, 1, 10s);
    Gate gate;
    pool.enqueue(gate.task());
    for (int i = 0; i < 10; ++i) pool.enqueue([&] { ++ran; });
    REQUIRE(waitFor([&] { return gate.running == 1; }, 5s));
    CHECK(pool.stats().queued == 10);
    gate.release();
    pool.shutdown();
    CHECK(ran == 10);
    CHECK(pool.stats().threads == 0);
  }
  CHECK(ran == 10);
}

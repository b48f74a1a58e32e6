// The HTTP server's workers: a pool that grows with demand and shrinks when idle. httplib runs
// each connection (its whole keep-alive life, or an SSE stream) as one task, so the pool's cap is
// the number of connections served at once; its fixed ThreadPool started every one of those
// threads up front (64 threads, each with its stack and, after traffic, its own malloc arena).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <httplib.h>

namespace provisr::gateway {

class WorkerPool final : public httplib::TaskQueue {
 public:
  // Starts `min_threads` workers; a task that finds no idle worker starts another, up to
  // `max_threads` (beyond that, tasks wait in order). A worker idle for `idle_exit` exits while
  // more than `min_threads` are running.
  WorkerPool(std::size_t min_threads, std::size_t max_threads, std::chrono::milliseconds idle_exit);
  ~WorkerPool() override;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void enqueue(std::function<void()> fn) override;
  // Runs the queued tasks, then joins every worker. Idempotent.
  void shutdown() override;

  struct Stats {
    std::size_t threads = 0;  // running workers
    std::size_t idle = 0;     // of which waiting for a task
    std::size_t queued = 0;   // tasks no worker has taken yet
    std::size_t started = 0;  // workers started since construction
  };
  Stats stats();

 private:
  void startWorkerLocked();
  void work();
  std::vector<std::thread> takeFinishedLocked();

  const std::size_t min_;
  const std::size_t max_;
  const std::chrono::milliseconds idleExit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread> finished_;  // workers that left on their own, joined by the next caller
  std::size_t idle_ = 0;
  std::size_t started_ = 0;
  bool shutdown_ = false;
};

}  // namespace provisr::gateway

// A growing and shrinking task queue for httplib.
#include "gateway/worker_pool.hpp"

#include <malloc.h>

#include <algorithm>

namespace provisr::gateway {

WorkerPool::WorkerPool(std::size_t min_threads, std::size_t max_threads, std::chrono::milliseconds idle_exit)
    : min_(std::min(min_threads, std::max<std::size_t>(max_threads, 1))),
      max_(std::max<std::size_t>(max_threads, 1)),
      idleExit_(idle_exit) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < min_; ++i) startWorkerLocked();
}

WorkerPool::~WorkerPool() { shutdown(); }

void WorkerPool::startWorkerLocked() {
  // The worker's first step takes mu_, held here: it finds itself in threads_.
  std::thread t([this] { work(); });
  const auto id = t.get_id();
  threads_.emplace(id, std::move(t));
  ++started_;
}

std::vector<std::thread> WorkerPool::takeFinishedLocked() {
  std::vector<std::thread> out;
  out.swap(finished_);
  return out;
}

void WorkerPool::enqueue(std::function<void()> fn) {
  std::vector<std::thread> finished;
  {
    std::lock_guard lock(mu_);
    finished = takeFinishedLocked();
    jobs_.push_back(std::move(fn));
    // Each idle worker takes one task: start one more for every task beyond them.
    if (!shutdown_ && jobs_.size() > idle_ && threads_.size() < max_) startWorkerLocked();
  }
  cv_.notify_one();
  for (auto& t : finished) t.join();  // they have left work(): a join returns at once
}

void WorkerPool::work() {
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_;
    const bool woken = cv_.wait_for(lock, idleExit_, [this] { return shutdown_ || !jobs_.empty(); });
    --idle_;
    if (!jobs_.empty()) {
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      fn();
      fn = nullptr;  // the connection's state goes now, not when the next task comes
      lock.lock();
      continue;
    }
    if (shutdown_) return;  // shutdown() joins this thread from threads_
    if (!woken && threads_.size() > min_) {
      auto self = threads_.find(std::this_thread::get_id());
      finished_.push_back(std::move(self->second));
      threads_.erase(self);
      lock.unlock();
      // A burst is over: hand the heap its connections freed back to the kernel.
      ::malloc_trim(0);
      return;
    }
  }
}

void WorkerPool::shutdown() {
  std::vector<std::thread> all;
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    all = takeFinishedLocked();
    for (auto& [id, t] : threads_) all.push_back(std::move(t));
  }
  cv_.notify_all();
  for (auto& t : all) {
    if (t.joinable()) t.join();
  }
  std::lock_guard lock(mu_);
  threads_.clear();
}

WorkerPool::Stats WorkerPool::stats() {
  std::lock_guard lock(mu_);
  return Stats{threads_.size(), idle_, jobs_.size(), started_};
}

}  // namespace provisr::gateway

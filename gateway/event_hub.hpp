// Fan-out of pushed events (state changes, log lines) to the open SSE streams: a bounded number
// of streams, each with a bounded queue; thread-safe (HTTP workers read, the loop publishes).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace provisr::gateway {

struct Event {
  std::string topic;  // state.<instance> | log.<instance>
  std::string json;   // the event map as JSON
};

// True when `topic` belongs to a stream following `prefix`: "state." takes every state change;
// "log.web" takes log.web and log.web-<n> (a program's instances), not log.webapp.
bool topicMatches(const std::string& prefix, const std::string& topic);

class EventHub {
 public:
  class Stream {
   public:
    explicit Stream(std::string prefix) : prefix_(std::move(prefix)) {}
    const std::string& prefix() const { return prefix_; }
    std::uint64_t dropped() const { return dropped_; }

   private:
    friend class EventHub;
    std::string prefix_;
    std::deque<Event> queue_;
    std::uint64_t dropped_ = 0;
  };

  // `on_topics_changed` runs (outside the lock) when the set of followed prefixes changes.
  EventHub(std::size_t max_streams, std::size_t max_queue, std::function<void()> on_topics_changed);

  // nullptr when max_streams are open (the caller answers 503).
  std::shared_ptr<Stream> open(const std::string& prefix);
  void close(const std::shared_ptr<Stream>& s);
  void publish(const Event& ev);
  // Waits until `s` has events, the hub shuts down or `timeout` passes; returns what is queued.
  std::vector<Event> wait(Stream& s, std::chrono::milliseconds timeout);
  void shutdown();
  bool isShutdown() const;

  std::set<std::string> topics() const;
  std::size_t openStreams() const;

 private:
  const std::size_t maxStreams_;
  const std::size_t maxQueue_;
  std::function<void()> onTopicsChanged_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Stream>> streams_;
  bool shutdown_ = false;
};

}  // namespace provisr::gateway

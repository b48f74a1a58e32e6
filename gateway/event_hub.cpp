// SSE fan-out: streams, their queues and the union of followed topics.
#include "gateway/event_hub.hpp"

#include <algorithm>

namespace provisr::gateway {

bool topicMatches(const std::string& prefix, const std::string& topic) {
  if (topic.compare(0, prefix.size(), prefix) != 0) return false;
  if (topic.size() == prefix.size() || prefix.empty() || prefix.back() == '.') return true;
  return topic[prefix.size()] == '-';
}

EventHub::EventHub(std::size_t max_streams, std::size_t max_queue, std::function<void()> on_topics_changed)
    : maxStreams_(max_streams), maxQueue_(max_queue), onTopicsChanged_(std::move(on_topics_changed)) {}

std::shared_ptr<EventHub::Stream> EventHub::open(const std::string& prefix) {
  bool changed = false;
  std::shared_ptr<Stream> s;
  {
    std::lock_guard lock(mu_);
    if (shutdown_ || streams_.size() >= maxStreams_) return nullptr;
    changed = std::none_of(streams_.begin(), streams_.end(), [&](const auto& o) { return o->prefix_ == prefix; });
    s = std::make_shared<Stream>(prefix);
    streams_.push_back(s);
  }
  if (changed && onTopicsChanged_) onTopicsChanged_();
  return s;
}

void EventHub::close(const std::shared_ptr<Stream>& s) {
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    auto it = std::find(streams_.begin(), streams_.end(), s);
    if (it == streams_.end()) return;
    streams_.erase(it);
    changed = std::none_of(streams_.begin(), streams_.end(), [&](const auto& o) { return o->prefix_ == s->prefix_; });
  }
  if (changed && onTopicsChanged_) onTopicsChanged_();
}

void EventHub::publish(const Event& ev) {
  {
    std::lock_guard lock(mu_);
    for (auto& s : streams_) {
      if (!topicMatches(s->prefix_, ev.topic)) continue;
      if (s->queue_.size() >= maxQueue_) {
        s->queue_.pop_front();
        ++s->dropped_;
      }
      s->queue_.push_back(ev);
    }
  }
  cv_.notify_all();
}

std::vector<Event> EventHub::wait(Stream& s, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return shutdown_ || !s.queue_.empty(); });
  std::vector<Event> out(std::make_move_iterator(s.queue_.begin()), std::make_move_iterator(s.queue_.end()));
  s.queue_.clear();
  return out;
}

void EventHub::shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
  }
  cv_.notify_all();
}

bool EventHub::isShutdown() const {
  std::lock_guard lock(mu_);
  return shutdown_;
}

std::set<std::string> EventHub::topics() const {
  std::lock_guard lock(mu_);
  std::set<std::string> out;
  for (const auto& s : streams_) out.insert(s->prefix_);
  return out;
}

std::size_t EventHub::openStreams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

}  // namespace provisr::gateway

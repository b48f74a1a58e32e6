// The master's DEALER to the spawner: opens it, sends encoded messages, hands received ones to the core.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <zmq.hpp>

#include "common/proto/zmq_util.hpp"
#include "common/util/event_loop.hpp"
#include "master/master_core.hpp"

namespace provisr::master {

class SpawnerLink {
 public:
  SpawnerLink(zmq::context_t& ctx, std::string endpoint) : ctx_(ctx), endpoint_(std::move(endpoint)) {}

  Status open();
  // Queued by ZeroMQ while the spawner is away; a full queue drops (the core re-syncs on reconnect).
  void send(const std::string& bytes);
  // Every received message goes through `handle`; the effects of one batch go to `dispatch`.
  void watch(EventLoop& loop, std::function<CoreEffects(std::string_view)> handle,
             std::function<void(CoreEffects)> dispatch);
  // `onReconnect` runs when the DEALER connects again after losing the spawner (a new spawner,
  // or the same one after a hiccup): the core then says Hello and takes a Snapshot again.
  void watchReconnects(EventLoop& loop, std::function<void()> onReconnect);
  void close(EventLoop& loop);

 private:
  zmq::context_t& ctx_;
  std::string endpoint_;
  std::optional<zmq::socket_t> sock_;
  std::optional<zmq::socket_t> monitor_;
  bool connectedOnce_ = false;
};

}  // namespace provisr::master

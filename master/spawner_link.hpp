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
  // `onConnection(up)` runs when the DEALER connects to the spawner or loses it; the core says
  // Hello again on a reconnect and re-sends an unanswered Hello only while connected.
  void watchConnection(EventLoop& loop, std::function<void(bool up)> onConnection);
  void close(EventLoop& loop);

 private:
  zmq::context_t& ctx_;
  std::string endpoint_;
  std::optional<zmq::socket_t> sock_;
  std::optional<zmq::socket_t> monitor_;
};

}  // namespace provisr::master

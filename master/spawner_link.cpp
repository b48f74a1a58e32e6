// The master's DEALER to the spawner.
#include "master/spawner_link.hpp"

#include <cstring>

namespace provisr::master {

Status SpawnerLink::open() {
  auto s = proto::openSocket(ctx_, zmq::socket_type::dealer);
  if (!s) return s.error();
  sock_.emplace(std::move(*s));
  // The monitor exists before the first connect, so the first CONNECTED event is that connect.
  const std::string monitorEndpoint = "inproc://provisr-master-spawner-monitor";
  if (::zmq_socket_monitor(static_cast<void*>(*sock_), monitorEndpoint.c_str(), ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED) == 0) {
    monitor_.emplace(ctx_, zmq::socket_type::pair);
    monitor_->connect(monitorEndpoint);
  }
  return proto::connectSocket(*sock_, endpoint_);
}

void SpawnerLink::send(const std::string& bytes) {
  if (sock_) (void)proto::sendMessage(*sock_, bytes);
}

void SpawnerLink::watch(EventLoop& loop, std::function<CoreEffects(std::string_view)> handle,
                        std::function<void(CoreEffects)> dispatch) {
  (void)proto::watchSocket(loop, *sock_, EventLoop::kReadable,
                           [this, handle = std::move(handle), dispatch = std::move(dispatch)](std::uint32_t) {
                             CoreEffects all;
                             for (int i = 0; i < 1000; ++i) {
                               auto m = proto::recvMessage(*sock_);
                               if (!m) {
                                 if (m.error().code == ErrorCode::kUnavailable) break;
                                 continue;
                               }
                               if (!m->has_value()) break;
                               all.merge(handle((*m)->data()));
                             }
                             dispatch(std::move(all));
                           });
}

void SpawnerLink::watchConnection(EventLoop& loop, std::function<void(bool up)> onConnection) {
  if (!monitor_) return;
  (void)proto::watchSocket(loop, *monitor_, EventLoop::kReadable, [this, cb = std::move(onConnection)](std::uint32_t) {
    for (int i = 0; i < 100; ++i) {
      auto m = proto::recvMessage(*monitor_);
      if (!m || !m->has_value()) break;
      // Frame 1: uint16 event + uint32 value (host order); frame 2: the endpoint.
      const auto& route = (*m)->route;
      if (route.empty() || route[0].size() < 2) continue;
      std::uint16_t event = 0;
      std::memcpy(&event, route[0].data(), sizeof event);
      if (event == ZMQ_EVENT_CONNECTED) cb(true);
      if (event == ZMQ_EVENT_DISCONNECTED) cb(false);
    }
  });
}

void SpawnerLink::close(EventLoop& loop) {
  if (monitor_) {
    proto::unwatchSocket(loop, *monitor_);
    monitor_.reset();
  }
  if (!sock_) return;
  proto::unwatchSocket(loop, *sock_);
  sock_.reset();
}

}  // namespace provisr::master

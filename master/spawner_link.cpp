// The master's DEALER to the spawner.
#include "master/spawner_link.hpp"

namespace provisr::master {

Status SpawnerLink::open() {
  auto s = proto::openSocket(ctx_, zmq::socket_type::dealer);
  if (!s) return s.error();
  sock_.emplace(std::move(*s));
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

void SpawnerLink::close(EventLoop& loop) {
  if (!sock_) return;
  proto::unwatchSocket(loop, *sock_);
  sock_.reset();
}

}  // namespace provisr::master

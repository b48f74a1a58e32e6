// ZeroMQ sockets with the project's limits, message send/recv as Results, loop integration.
#include "common/proto/zmq_util.hpp"

#include <cerrno>

namespace provisr::proto {
namespace {

Error zmqError(const char* what, int err) {
  const ErrorCode code = (err == ETERM || err == ENOTSOCK || err == EHOSTUNREACH || err == EAGAIN)
                             ? ErrorCode::kUnavailable
                             : ErrorCode::kInternal;
  return Error{code, std::string(what) + ": " + zmq_strerror(err)};
}

Status setInt(zmq::socket_t& s, int opt, int value, const char* name) {
  if (zmq_setsockopt(s.handle(), opt, &value, sizeof value) != 0) return zmqError(name, zmq_errno());
  return {};
}

}  // namespace

Result<zmq::socket_t> openSocket(zmq::context_t& ctx, zmq::socket_type type, const SocketOptions& opts) {
  try {
    zmq::socket_t s(ctx, type);
    const auto maxSize = static_cast<std::int64_t>(opts.max_message_size);
    if (zmq_setsockopt(s.handle(), ZMQ_MAXMSGSIZE, &maxSize, sizeof maxSize) != 0) {
      return zmqError("ZMQ_MAXMSGSIZE", zmq_errno());
    }
    if (auto st = setInt(s, ZMQ_LINGER, 0, "ZMQ_LINGER"); !st) return st.error();
    if (auto st = setInt(s, ZMQ_SNDHWM, opts.send_hwm, "ZMQ_SNDHWM"); !st) return st.error();
    if (auto st = setInt(s, ZMQ_RCVHWM, opts.recv_hwm, "ZMQ_RCVHWM"); !st) return st.error();
    if (type == zmq::socket_type::router) {
      if (auto st = setInt(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY"); !st) return st.error();
      if (auto st = setInt(s, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER"); !st) return st.error();
    }
    if (opts.routing_id) {
      if (zmq_setsockopt(s.handle(), ZMQ_ROUTING_ID, opts.routing_id->data(), opts.routing_id->size()) != 0) {
        return zmqError("ZMQ_ROUTING_ID", zmq_errno());
      }
    }
    return s;
  } catch (const zmq::error_t& e) {
    return zmqError("zmq_socket", e.num());
  }
}

Status bindSocket(zmq::socket_t& s, const std::string& endpoint) {
  if (zmq_bind(s.handle(), endpoint.c_str()) != 0) {
    return Error{ErrorCode::kUnavailable, "bind " + endpoint + ": " + zmq_strerror(zmq_errno())};
  }
  return {};
}

Status connectSocket(zmq::socket_t& s, const std::string& endpoint) {
  if (zmq_connect(s.handle(), endpoint.c_str()) != 0) {
    return Error{ErrorCode::kInvalidArgument, "connect " + endpoint + ": " + zmq_strerror(zmq_errno())};
  }
  return {};
}

Result<std::string> lastEndpoint(zmq::socket_t& s) {
  char buf[1024];
  std::size_t len = sizeof buf;
  if (zmq_getsockopt(s.handle(), ZMQ_LAST_ENDPOINT, buf, &len) != 0) return zmqError("ZMQ_LAST_ENDPOINT", zmq_errno());
  return std::string(buf, len > 0 ? len - 1 : 0);  // len counts the terminating NUL
}

Result<std::optional<ZmqMessage>> recvMessage(zmq::socket_t& s) {
  std::vector<zmq::message_t> frames;
  bool overflow = false;
  for (;;) {
    zmq::message_t frame;
    // The first frame may be absent (EAGAIN); later frames of a multipart are already here.
    const int flags = frames.empty() ? ZMQ_DONTWAIT : 0;
    if (zmq_msg_recv(frame.handle(), s.handle(), flags) < 0) {
      const int err = zmq_errno();
      if (err == EAGAIN && frames.empty()) return std::optional<ZmqMessage>();
      if (err == EINTR && frames.empty()) return std::optional<ZmqMessage>();
      return zmqError("zmq_msg_recv", err);
    }
    const bool more = frame.more();
    if (frames.size() < kMaxRouteFrames + 1) {
      frames.push_back(std::move(frame));
    } else {
      overflow = true;  // drained and dropped: the socket stays in step with message boundaries
    }
    if (!more) break;
  }
  if (overflow) {
    return Error{ErrorCode::kMalformed, "message with more than " + std::to_string(kMaxRouteFrames) + " frames dropped"};
  }
  ZmqMessage msg;
  msg.payload = std::move(frames.back());
  frames.pop_back();
  msg.route.reserve(frames.size());
  for (auto& f : frames) msg.route.emplace_back(static_cast<const char*>(f.data()), f.size());
  return std::optional<ZmqMessage>(std::move(msg));
}

Status sendMessage(zmq::socket_t& s, const std::vector<std::string>& route, std::string_view payload) {
  // The first frame is sent with DONTWAIT: once it is queued the rest of a multipart is too.
  int flags = ZMQ_DONTWAIT;
  for (const auto& frame : route) {
    if (zmq_send(s.handle(), frame.data(), frame.size(), flags | ZMQ_SNDMORE) < 0) {
      return zmqError("zmq_send", zmq_errno());
    }
    flags = 0;
  }
  if (zmq_send(s.handle(), payload.data(), payload.size(), flags) < 0) return zmqError("zmq_send", zmq_errno());
  return {};
}

namespace {
std::uint32_t pendingEventsOf(void* handle) {
  int events = 0;
  std::size_t len = sizeof events;
  if (zmq_getsockopt(handle, ZMQ_EVENTS, &events, &len) != 0) return 0;  // closed or terminated
  std::uint32_t bits = 0;
  if (events & ZMQ_POLLIN) bits |= EventLoop::kReadable;
  if (events & ZMQ_POLLOUT) bits |= EventLoop::kWritable;
  return bits;
}
}  // namespace

std::uint32_t pendingEvents(zmq::socket_t& s) { return pendingEventsOf(s.handle()); }

Status watchSocket(EventLoop& loop, zmq::socket_t& s, std::uint32_t interest, EventLoop::FdCallback cb) {
  int fd = -1;
  std::size_t len = sizeof fd;
  if (zmq_getsockopt(s.handle(), ZMQ_FD, &fd, &len) != 0) return zmqError("ZMQ_FD", zmq_errno());
  // The libzmq handle, not the socket_t: a socket_t may be moved while watched, its handle not.
  void* handle = s.handle();
  return loop.addEdgeSource(fd, interest, [handle] { return pendingEventsOf(handle); }, std::move(cb));
}

void unwatchSocket(EventLoop& loop, zmq::socket_t& s) {
  int fd = -1;
  std::size_t len = sizeof fd;
  if (zmq_getsockopt(s.handle(), ZMQ_FD, &fd, &len) == 0) loop.removeFd(fd);
}

}  // namespace provisr::proto

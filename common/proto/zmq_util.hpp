// ZeroMQ plumbing shared by the components: sockets opened with the project's limits, sending
// and receiving one message (with its ROUTER routing frames) as Results, and watching a socket
// from the EventLoop through ZMQ_FD + ZMQ_EVENTS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/util/event_loop.hpp"
#include "common/util/result.hpp"

namespace provisr::proto {

struct SocketOptions {
  // ZMQ_MAXMSGSIZE: a peer sending a larger frame is disconnected before anything is allocated.
  std::size_t max_message_size = kMaxMessageSize;
  // ZMQ_ROUTING_ID for a DEALER: with a stable id, a reconnecting peer takes over its old
  // route at the ROUTER (ROUTER sockets are opened with ZMQ_ROUTER_HANDOVER).
  std::optional<std::string> routing_id;
  int send_hwm = 10000;
  int recv_hwm = 10000;
};

// Opens a socket with ZMQ_MAXMSGSIZE and ZMQ_LINGER 0 (close never hangs on unsent messages);
// a ROUTER also gets ZMQ_ROUTER_MANDATORY (a reply to a vanished peer is an error, not a silent
// drop) and ZMQ_ROUTER_HANDOVER.
Result<zmq::socket_t> openSocket(zmq::context_t& ctx, zmq::socket_type type, const SocketOptions& opts = {});
Status bindSocket(zmq::socket_t& s, const std::string& endpoint);
Status connectSocket(zmq::socket_t& s, const std::string& endpoint);
// The endpoint actually bound (tcp://127.0.0.1:* resolved to its port).
Result<std::string> lastEndpoint(zmq::socket_t& s);

// One received message: the frames before the last (`route`: a ROUTER's peer identity and, from
// a REQ peer, the empty delimiter; a SUB's topic) and the last frame (`payload`). Reply by
// sending the same route back.
struct ZmqMessage {
  std::vector<std::string> route;
  zmq::message_t payload;
  std::string_view data() const { return {static_cast<const char*>(payload.data()), payload.size()}; }
};

// More leading frames than this is not a message any provisr peer sends: it is dropped whole.
inline constexpr std::size_t kMaxRouteFrames = 8;

// Never blocks: nullopt when nothing is waiting. kMalformed for a message with too many frames
// (already drained), kUnavailable when the socket is closed or its context terminated.
Result<std::optional<ZmqMessage>> recvMessage(zmq::socket_t& s);

// Never blocks: sends `route` frames then `payload`. kUnavailable when the peer is gone
// (EHOSTUNREACH) or its queue is full (EAGAIN): the caller decides whether to retry.
Status sendMessage(zmq::socket_t& s, const std::vector<std::string>& route, std::string_view payload);
inline Status sendMessage(zmq::socket_t& s, std::string_view payload) { return sendMessage(s, {}, payload); }

// ZMQ_EVENTS as EventLoop bits (kReadable: a message can be received; kWritable: one can be sent).
// Reading it also resets the socket's ZMQ_FD, so it is what the loop calls on every turn.
std::uint32_t pendingEvents(zmq::socket_t& s);

// Watches `s` from the loop as an edge source: `cb` runs while ZMQ_EVENTS has a bit of
// `interest`, re-checked after every wake and on every turn before the loop sleeps. The socket
// may be moved but must stay open while watched: unwatch before closing it. Watch kWritable only
// while output waits (a DEALER is almost always writable: the callback would run every turn).
Status watchSocket(EventLoop& loop, zmq::socket_t& s, std::uint32_t interest, EventLoop::FdCallback cb);
void unwatchSocket(EventLoop& loop, zmq::socket_t& s);

}  // namespace provisr::proto

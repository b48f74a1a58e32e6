// The DEALER pool that carries gateway requests to the master, with bounded waits.
#include "gateway/master_link.hpp"

#include <algorithm>
#include <cerrno>

#include "common/proto/zmq_util.hpp"

namespace provisr::gateway {
namespace {

using Clock = std::chrono::steady_clock;

long msLeft(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<long>(left);
}

}  // namespace

MasterClient::MasterClient(zmq::context_t& ctx, std::string endpoint, std::chrono::milliseconds wait)
    : ctx_(ctx), endpoint_(std::move(endpoint)), wait_(wait) {}

MasterClient::~MasterClient() {
  std::lock_guard lock(mu_);
  idle_.clear();
}

Result<zmq::socket_t> MasterClient::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto s = std::move(idle_.back());
      idle_.pop_back();
      return s;
    }
  }
  auto s = proto::openSocket(ctx_, zmq::socket_type::dealer);
  if (!s) return s.error();
  const int one = 1;
  zmq_setsockopt(s->handle(), ZMQ_IMMEDIATE, &one, sizeof one);
  const int ivl = 100, ivlMax = 1000;
  zmq_setsockopt(s->handle(), ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
  zmq_setsockopt(s->handle(), ZMQ_RECONNECT_IVL_MAX, &ivlMax, sizeof ivlMax);
  if (auto st = proto::connectSocket(*s, endpoint_); !st) return st.error();
  return s;
}

void MasterClient::release(zmq::socket_t s) {
  std::lock_guard lock(mu_);
  idle_.push_back(std::move(s));
}

namespace {

// One blocking receive of a whole message, bounded by `timeoutMs` (ZMQ_RCVTIMEO): no poll loop,
// so a wait costs one wake-up of this thread when the reply is there. nullopt on timeout.
Result<std::optional<zmq::message_t>> recvWithin(zmq::socket_t& s, long timeoutMs) {
  const int ms = static_cast<int>(std::min<long>(timeoutMs, 1L << 30));
  zmq_setsockopt(s.handle(), ZMQ_RCVTIMEO, &ms, sizeof ms);
  zmq::message_t payload;
  for (bool first = true;; first = false) {
    zmq::message_t frame;
    if (zmq_msg_recv(frame.handle(), s.handle(), 0) < 0) {
      const int err = zmq_errno();
      if (first && (err == EAGAIN || err == EINTR)) return std::optional<zmq::message_t>();
      return Error{ErrorCode::kUnavailable, std::string("zmq_msg_recv: ") + zmq_strerror(err)};
    }
    const bool more = frame.more();
    payload = std::move(frame);  // a reply is one frame; of a multipart, the last is the payload
    if (!more) return std::optional<zmq::message_t>(std::move(payload));
  }
}

}  // namespace

Result<proto::Envelope> MasterClient::roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds extra) {
  auto sock = acquire();
  if (!sock) return Error{ErrorCode::kUnavailable, "master unavailable: " + sock.error().message};
  zmq::socket_t s = std::move(*sock);

  // Send: wait (bounded, ZMQ_SNDTIMEO) until a connection to the master exists (ZMQ_IMMEDIATE).
  const auto sendDeadline = Clock::now() + wait_;
  for (;;) {
    const int ms = static_cast<int>(msLeft(sendDeadline));
    zmq_setsockopt(s.handle(), ZMQ_SNDTIMEO, &ms, sizeof ms);
    if (zmq_send(s.handle(), bytes.data(), bytes.size(), 0) >= 0) break;
    const int err = zmq_errno();
    if (err == EINTR && ms > 0) continue;
    if (err != EAGAIN && err != EINTR) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, std::string("master unavailable: send: ") + zmq_strerror(err)};
    }
    release(std::move(s));
    return Error{ErrorCode::kUnavailable, "master unavailable: no connection to " + endpoint_ + " within " +
                                              std::to_string(wait_.count()) +
                                              " ms (the master is down or restarting; retry)"};
  }

  // Receive: the reply carrying our id; older replies (to requests that timed out) are dropped.
  const auto replyDeadline = Clock::now() + wait_ + extra;
  for (;;) {
    const long left = msLeft(replyDeadline);
    auto msg = recvWithin(s, left);
    if (!msg) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, "master unavailable: " + msg.error().message};
    }
    if (*msg) {
      const auto& m = **msg;
      auto env = proto::decodeEnvelope(static_cast<const char*>(m.data()), m.size());
      if (env && env->id == id) {
        release(std::move(s));
        return std::move(*env);
      }
      if (!env && proto::peekId(static_cast<const char*>(m.data()), m.size()) == id) {
        release(std::move(s));
        return env.error();
      }
      continue;  // a stale reply
    }
    if (msLeft(replyDeadline) == 0) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, "master unavailable: no reply from " + endpoint_ + " within " +
                                                std::to_string((wait_ + extra).count()) + " ms (retry)"};
    }
  }
}

}  // namespace provisr::gateway

// The DEALER pool that carries gateway requests to the master, with bounded waits.
#include "gateway/master_link.hpp"

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

Result<proto::Envelope> MasterClient::roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds extra) {
  auto sock = acquire();
  if (!sock) return Error{ErrorCode::kUnavailable, "master unavailable: " + sock.error().message};
  zmq::socket_t s = std::move(*sock);

  // Send: wait (bounded) until a connection to the master exists.
  const auto sendDeadline = Clock::now() + wait_;
  for (;;) {
    if (zmq_send(s.handle(), bytes.data(), bytes.size(), ZMQ_DONTWAIT) >= 0) break;
    const int err = zmq_errno();
    if (err != EAGAIN && err != EINTR) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, std::string("master unavailable: send: ") + zmq_strerror(err)};
    }
    const long left = msLeft(sendDeadline);
    if (left == 0) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, "master unavailable: no connection to " + endpoint_ + " within " +
                                                std::to_string(wait_.count()) +
                                                " ms (the master is down or restarting; retry)"};
    }
    zmq_pollitem_t item{s.handle(), 0, ZMQ_POLLOUT, 0};
    zmq_poll(&item, 1, left);
  }

  // Receive: the reply carrying our id; older replies (to requests that timed out) are dropped.
  const auto replyDeadline = Clock::now() + wait_ + extra;
  for (;;) {
    auto msg = proto::recvMessage(s);
    if (!msg) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, "master unavailable: " + msg.error().message};
    }
    if (*msg) {
      auto env = proto::decodeEnvelope((*msg)->payload.data(), (*msg)->payload.size());
      if (env && env->id == id) {
        release(std::move(s));
        return std::move(*env);
      }
      if (!env && proto::peekId((*msg)->payload.data(), (*msg)->payload.size()) == id) {
        release(std::move(s));
        return env.error();
      }
      continue;  // a stale reply
    }
    const long left = msLeft(replyDeadline);
    if (left == 0) {
      release(std::move(s));
      return Error{ErrorCode::kUnavailable, "master unavailable: no reply from " + endpoint_ + " within " +
                                                std::to_string((wait_ + extra).count()) + " ms (retry)"};
    }
    zmq_pollitem_t item{s.handle(), 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, left);
  }
}

}  // namespace provisr::gateway

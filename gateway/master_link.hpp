// The gateway's request channel to the master: one request, one reply, within a bounded time.
// MasterLink is the interface the routes use (tests give a fake); MasterClient is ZeroMQ.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/util/result.hpp"

namespace provisr::gateway {

class MasterLink {
 public:
  virtual ~MasterLink() = default;

  // Sends `msg` and waits for its reply (at most the connect wait plus `extra`, the request's own
  // wait); kUnavailable when the master does not answer in time.
  template <class Reply, class Request>
  Result<Reply> call(const Request& msg, std::chrono::milliseconds extra = std::chrono::milliseconds(0)) {
    auto env = request(msg, extra);
    if (!env) return env.error();
    return proto::decodeReply<Reply>(*env);
  }

  // The same round trip, the reply's envelope undecoded (for a caller with its own decoder).
  template <class Request>
  Result<proto::Envelope> request(const Request& msg, std::chrono::milliseconds extra = std::chrono::milliseconds(0)) {
    const std::uint64_t id = nextId_.fetch_add(1, std::memory_order_relaxed);
    return roundTrip(id, proto::encode(msg, id), extra);
  }

  // One encoded request out, the envelope with the same id back.
  virtual Result<proto::Envelope> roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds extra) = 0;

 private:
  std::atomic<std::uint64_t> nextId_{1};
};

// ZeroMQ implementation. ZeroMQ sockets are not thread-safe, and HTTP workers call concurrently:
// each call checks a DEALER out of a pool (creating one when none is idle) and puts it back
// afterwards, so a socket is only ever used by one thread at a time, calls never queue behind
// each other, and the number of sockets is bounded by the peak concurrency. ZMQ_IMMEDIATE keeps
// a request from being queued while no master is connected (it would run late, after the client
// got its 503); a late reply to a timed-out request is recognised by its id and dropped.
class MasterClient final : public MasterLink {
 public:
  MasterClient(zmq::context_t& ctx, std::string endpoint, std::chrono::milliseconds wait);
  ~MasterClient() override;

  Result<proto::Envelope> roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds extra) override;
  const std::string& endpoint() const { return endpoint_; }

 private:
  Result<zmq::socket_t> acquire();
  void release(zmq::socket_t s);

  zmq::context_t& ctx_;
  const std::string endpoint_;
  const std::chrono::milliseconds wait_;
  std::mutex mu_;
  std::vector<zmq::socket_t> idle_;
};

}  // namespace provisr::gateway

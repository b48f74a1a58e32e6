// The gateway's ZeroMQ side, run by the main EventLoop: the public API ROUTER (requests handed to
// a few worker threads that run the same route handlers as HTTP), the events XPUB, and the
// DEALER that subscribes to the master's pushed events and fans them out to PUB and SSE.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "common/proto/codec.hpp"
#include "common/util/event_loop.hpp"
#include "common/util/fd.hpp"
#include "gateway/access.hpp"
#include "gateway/event_hub.hpp"
#include "gateway/routes.hpp"

namespace provisr::gateway {

// `[server.zmq_curve]` loaded: the server's secret key and the allowed client public keys (all
// Z85, 40 characters). With it, the API and events sockets are CURVE servers and a ZAP handler
// admits only the listed clients.
struct CurveKeys {
  std::string server_secret;
  std::string server_public;
  std::set<std::string> clients;
};

// Reads the key files (done before the drop: they may be readable by root alone). nullopt when
// `server_key_file` is unset. A file holds the key on a line of its own, or as ZeroMQ's zcert
// format writes it (`secret-key = "..."` / `public-key = "..."`); `#` lines are comments. In
// `client_keys_dir`, every regular file not starting with `.` holds one client public key.
Result<std::optional<CurveKeys>> loadCurveKeys(const config::ZmqCurveConfig& cfg);

// True for a tcp:// endpoint whose host is not loopback (where CURVE is required).
bool needsCurve(const std::string& endpoint);

struct ZmqEdgeOptions {
  std::string master_endpoint;             // ipc://<run_dir>/master/master.sock
  std::optional<std::string> api_listen;   // [server] zmq_listen
  std::optional<std::string> events_listen;  // [server] zmq_events
  std::size_t workers = 4;
  std::optional<CurveKeys> curve;
};

// The host of a ZeroMQ endpoint for the protected-mode rule ("tcp://0.0.0.0:5555" → "0.0.0.0");
// ipc:// and inproc:// count as local ("localhost").
std::string zmqEndpointHost(const std::string& endpoint);

// A public API request as a route call: op, JSON args, token. Pure: tests drive it directly.
struct ApiCall {
  std::uint64_t id = 0;
  std::string op;
  Args args = Args::object();
  std::optional<std::string> token;
};
// Decodes a request frame; the Error carries the id to answer when the envelope was readable.
Result<ApiCall> decodeApiCall(const void* data, std::size_t size);
// Runs one call through access rules and the route table; returns the encoded reply frame.
std::string answerApiCall(const ApiCall& call, Context& ctx, const AccessPolicy& policy, bool loopback_peer);

class ZmqEdge {
 public:
  ZmqEdge(zmq::context_t& zctx, EventLoop& loop, ZmqEdgeOptions options, Context& ctx, const AccessPolicy& policy,
          EventHub& hub);
  ~ZmqEdge();
  ZmqEdge(const ZmqEdge&) = delete;
  ZmqEdge& operator=(const ZmqEdge&) = delete;

  // Binds and connects everything and registers it with the loop.
  Status start();
  // Thread-safe: the SSE streams changed what they follow; the loop re-subscribes.
  void topicsChanged();
  // Unregisters from the loop, stops the workers, closes the sockets.
  void stop();

  std::optional<std::string> apiEndpoint() const { return apiEndpoint_; }
  std::optional<std::string> eventsEndpoint() const { return eventsEndpoint_; }

 private:
  struct Task {
    std::vector<std::string> route;
    std::string payload;
    bool loopback = true;
  };
  struct Done {
    std::vector<std::string> route;
    std::string reply;
  };

  void wake();  // thread-safe: the loop runs onWake
  void onWake();
  void onApi();
  void onEvents();
  void onMonitor();
  void onXpub();
  void onZap();
  Status secure(zmq::socket_t& s);
  void subscribe();
  void publish(const std::string& topic, const Json& body);
  void worker();

  zmq::context_t& zctx_;
  EventLoop& loop_;
  ZmqEdgeOptions options_;
  Context& ctx_;
  const AccessPolicy& policy_;
  EventHub& hub_;

  UniqueFd wake_;  // eventfd: workers finished a task / topics changed
  std::optional<zmq::socket_t> api_;
  std::optional<zmq::socket_t> xpub_;
  std::optional<zmq::socket_t> events_;
  std::optional<zmq::socket_t> monitor_;
  std::optional<zmq::socket_t> zap_;
  std::optional<std::string> apiEndpoint_;
  std::optional<std::string> eventsEndpoint_;
  std::set<std::string> xpubTopics_;
  std::set<std::string> subscribed_;
  bool subscribedOnce_ = false;
  std::uint64_t nextId_ = 1;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task> tasks_;
  std::deque<Done> done_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
  bool started_ = false;
};

}  // namespace provisr::gateway

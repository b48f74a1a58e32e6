// The ZeroMQ side of the gateway: public API ROUTER + workers, events XPUB, master subscription.
#include "gateway/zmq_edge.hpp"

#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/proto/zmq_util.hpp"
#include "gateway/log.hpp"
#include "gateway/translate.hpp"

namespace provisr::gateway {
namespace {

constexpr const char* kMonitorEndpoint = "inproc://provisr-gateway-master-monitor";
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";  // where libzmq asks (RFC 27)
constexpr const char* kZapDomain = "provisr";
constexpr std::size_t kZ85KeyLength = 40;
constexpr std::size_t kMaxKeyFileBytes = 4096;
constexpr std::size_t kMaxClientKeys = 10000;

bool isZ85Key(std::string_view k) {
  constexpr std::string_view kAlphabet =
      "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
  return k.size() == kZ85KeyLength && k.find_first_not_of(kAlphabet) == std::string_view::npos;
}

// The key named `want` ("secret-key" / "public-key") of a zcert file, or the file's only bare key.
Result<std::string> readKeyFile(const std::string& path, std::string_view want) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{ErrorCode::kInvalidArgument, "cannot read " + path};
  std::string text(kMaxKeyFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxKeyFileBytes) return Error{ErrorCode::kInvalidArgument, path + " is over 4 KiB: not a key file"};
  std::istringstream lines(text);
  std::optional<std::string> bare;
  for (std::string line; std::getline(lines, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    line.erase(0, start);
    const auto eq = line.find('=');
    if (line.size() == kZ85KeyLength && isZ85Key(line)) {
      if (!bare) bare = line;
      continue;
    }
    if (eq == std::string::npos) continue;
    std::string name = line.substr(0, eq);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
    std::string value = line.substr(eq + 1);
    value.erase(0, std::min(value.find_first_not_of(" \t"), value.size()));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (name == want && isZ85Key(value)) return value;
  }
  if (bare) return *bare;
  return Error{ErrorCode::kInvalidArgument, path + ": no " + std::string(want) + " (40 Z85 characters) in it"};
}

}  // namespace

bool needsCurve(const std::string& endpoint) {
  return endpoint.rfind("tcp://", 0) == 0 && !isLoopbackAddress(zmqEndpointHost(endpoint));
}

Result<std::optional<CurveKeys>> loadCurveKeys(const config::ZmqCurveConfig& cfg) {
  if (!cfg.server_key_file) return std::optional<CurveKeys>();
  if (!cfg.client_keys_dir)
    return Error{ErrorCode::kInvalidArgument, "server.zmq_curve: client_keys_dir is required with server_key_file"};
  CurveKeys keys;
  auto secret = readKeyFile(*cfg.server_key_file, "secret-key");
  if (!secret) return Error{ErrorCode::kInvalidArgument, "server.zmq_curve.server_key_file: " + secret.error().message};
  keys.server_secret = std::move(*secret);
  char pub[kZ85KeyLength + 1] = {};
  if (zmq_curve_public(pub, keys.server_secret.c_str()) != 0)
    return Error{ErrorCode::kInvalidArgument, "server.zmq_curve.server_key_file: not a CURVE secret key"};
  keys.server_public = pub;
  DIR* d = ::opendir(cfg.client_keys_dir->c_str());
  if (d == nullptr)
    return Error{ErrorCode::kInvalidArgument, "server.zmq_curve.client_keys_dir: cannot open " + *cfg.client_keys_dir};
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    names.emplace_back(e->d_name);
    if (names.size() > kMaxClientKeys) break;
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    const std::string path = *cfg.client_keys_dir + "/" + n;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    auto pubKey = readKeyFile(path, "public-key");
    if (!pubKey) return Error{ErrorCode::kInvalidArgument, "server.zmq_curve.client_keys_dir: " + pubKey.error().message};
    keys.clients.insert(std::move(*pubKey));
  }
  return std::optional<CurveKeys>(std::move(keys));
}

std::string zmqEndpointHost(const std::string& endpoint) {
  constexpr std::string_view kTcp = "tcp://";
  if (endpoint.compare(0, kTcp.size(), kTcp) != 0) return "localhost";
  std::string host = listenHost(endpoint.substr(kTcp.size()));
  return host == "*" ? "0.0.0.0" : host;
}

Result<ApiCall> decodeApiCall(const void* data, std::size_t size) {
  auto req = proto::decodeApiRequest(data, size);
  if (!req) return req.error();
  ApiCall call;
  call.id = req->id;
  call.op = req->op;
  call.token = req->token;
  try {
    msgpack::sbuffer buf;
    msgpack::pack(buf, req->args);
    call.args = Json::from_msgpack(std::string_view(buf.data(), buf.size()));
  } catch (const std::exception& e) {
    return Error{ErrorCode::kInvalidArgument, std::string("args do not convert to JSON: ") + e.what()};
  }
  if (call.args.is_null()) call.args = Json::object();
  return call;
}

std::string answerApiCall(const ApiCall& call, Context& ctx, const AccessPolicy& policy, bool loopback_peer) {
  const Route* route = findOp(call.op);
  if (!route) {
    std::string known;
    for (const auto& r : routeTable()) {
      if (r.op.empty()) continue;
      if (!known.empty()) known += ", ";
      known += r.op;
    }
    return proto::encodeApiError(call.id, ErrorCode::kUnknownMessage, "unknown op '" + call.op + "'; known: " + known);
  }
  if (auto denied = checkAccess(policy, route->access, call.token, loopback_peer, false)) {
    return proto::encodeApiError(call.id, denied->code, denied->message);
  }
  if (!call.args.is_object()) return proto::encodeApiError(call.id, ErrorCode::kInvalidArgument, "args must be a map");
  Call c{Transport::kZmq, call.args};
  c.args.erase("body");  // only HTTP carries a body
  auto result = runRoute(*route, c, ctx);
  if (!result) return proto::encodeApiError(call.id, result.error().code, result.error().message);
  const Json reply{{"v", proto::kProtocolVersion}, {"id", call.id}, {"ok", true}, {"result", std::move(*result)}};
  const auto bytes = Json::to_msgpack(reply);
  return std::string(bytes.begin(), bytes.end());
}

ZmqEdge::ZmqEdge(zmq::context_t& zctx, EventLoop& loop, ZmqEdgeOptions options, Context& ctx,
                 const AccessPolicy& policy, EventHub& hub)
    : zctx_(zctx), loop_(loop), options_(std::move(options)), ctx_(ctx), policy_(policy), hub_(hub) {}

ZmqEdge::~ZmqEdge() { stop(); }

Status ZmqEdge::start() {
  wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return Error{ErrorCode::kInternal, "eventfd failed"};
  if (auto st = loop_.addFd(wake_.get(), EventLoop::kReadable, [this](std::uint32_t) { onWake(); }); !st) return st;

  // Subscription to the master's pushed events, with a monitor to re-subscribe on every
  // (re)connection: a restarted master has forgotten our topics.
  auto ev = proto::openSocket(zctx_, zmq::socket_type::dealer);
  if (!ev) return ev.error();
  events_.emplace(std::move(*ev));
  if (zmq_socket_monitor(events_->handle(), kMonitorEndpoint, ZMQ_EVENT_CONNECTED) != 0) {
    return Error{ErrorCode::kInternal, std::string("zmq_socket_monitor: ") + zmq_strerror(zmq_errno())};
  }
  auto mon = proto::openSocket(zctx_, zmq::socket_type::pair);
  if (!mon) return mon.error();
  monitor_.emplace(std::move(*mon));
  if (auto st = proto::connectSocket(*monitor_, kMonitorEndpoint); !st) return st;
  if (auto st = proto::connectSocket(*events_, options_.master_endpoint); !st) return st;
  if (auto st = proto::watchSocket(loop_, *events_, EventLoop::kReadable, [this](std::uint32_t) { onEvents(); }); !st) {
    return st;
  }
  if (auto st = proto::watchSocket(loop_, *monitor_, EventLoop::kReadable, [this](std::uint32_t) { onMonitor(); });
      !st) {
    return st;
  }

  for (const auto* ep : {&options_.api_listen, &options_.events_listen}) {
    if (*ep && needsCurve(**ep) && !options_.curve) {
      return Error{ErrorCode::kInvalidArgument, **ep + " is not a loopback address: set [server.zmq_curve] "
                                                       "server_key_file and client_keys_dir (CURVE is required there)"};
    }
  }
  if (options_.curve) {
    // The ZAP handler first: a CURVE handshake that finds no handler would be let through.
    auto z = proto::openSocket(zctx_, zmq::socket_type::rep);
    if (!z) return z.error();
    zap_.emplace(std::move(*z));
    if (auto st = proto::bindSocket(*zap_, kZapEndpoint); !st) return st;
    if (auto st = proto::watchSocket(loop_, *zap_, EventLoop::kReadable, [this](std::uint32_t) { onZap(); }); !st) {
      return st;
    }
  }
  if (options_.events_listen) {
    auto x = proto::openSocket(zctx_, zmq::socket_type::xpub);
    if (!x) return x.error();
    xpub_.emplace(std::move(*x));
    if (auto st = secure(*xpub_); !st) return st;
    if (auto st = proto::bindSocket(*xpub_, *options_.events_listen); !st) return st;
    auto ep = proto::lastEndpoint(*xpub_);
    if (ep) eventsEndpoint_ = *ep;
    if (auto st = proto::watchSocket(loop_, *xpub_, EventLoop::kReadable, [this](std::uint32_t) { onXpub(); }); !st) {
      return st;
    }
  }
  if (options_.api_listen) {
    auto r = proto::openSocket(zctx_, zmq::socket_type::router);
    if (!r) return r.error();
    api_.emplace(std::move(*r));
    if (auto st = secure(*api_); !st) return st;
    if (auto st = proto::bindSocket(*api_, *options_.api_listen); !st) return st;
    auto ep = proto::lastEndpoint(*api_);
    if (ep) apiEndpoint_ = *ep;
    if (auto st = proto::watchSocket(loop_, *api_, EventLoop::kReadable, [this](std::uint32_t) { onApi(); }); !st) {
      return st;
    }
    for (std::size_t i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { worker(); });
  }
  started_ = true;
  return {};
}

void ZmqEdge::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  if (!started_) return;
  started_ = false;
  if (api_) proto::unwatchSocket(loop_, *api_);
  if (xpub_) proto::unwatchSocket(loop_, *xpub_);
  if (events_) proto::unwatchSocket(loop_, *events_);
  if (monitor_) proto::unwatchSocket(loop_, *monitor_);
  if (zap_) proto::unwatchSocket(loop_, *zap_);
  if (wake_) loop_.removeFd(wake_.get());
  if (events_) zmq_socket_monitor(events_->handle(), nullptr, 0);
  api_.reset();
  xpub_.reset();
  monitor_.reset();
  events_.reset();
  zap_.reset();
}

Status ZmqEdge::secure(zmq::socket_t& s) {
  if (!options_.curve) return {};
  const int one = 1;
  const auto& key = options_.curve->server_secret;
  if (zmq_setsockopt(s.handle(), ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
      zmq_setsockopt(s.handle(), ZMQ_CURVE_SECRETKEY, key.data(), key.size()) != 0 ||
      zmq_setsockopt(s.handle(), ZMQ_ZAP_DOMAIN, kZapDomain, std::char_traits<char>::length(kZapDomain)) != 0) {
    return Error{ErrorCode::kInternal, std::string("CURVE setup: ") + zmq_strerror(zmq_errno())};
  }
  return {};
}

void ZmqEdge::onZap() {
  for (int i = 0; i < 256; ++i) {
    auto msg = proto::recvMessage(*zap_);
    if (!msg || !*msg) return;
    // RFC 27: version, request id, domain, address, identity, mechanism, credentials...
    const auto& route = (*msg)->route;
    const std::string version = route.size() > 0 ? route[0] : "";
    const std::string requestId = route.size() > 1 ? route[1] : "";
    const std::string mechanism = route.size() > 5 ? route[5] : "";
    const auto cred = (*msg)->data();
    bool allowed = false;
    std::string who;
    if (version == "1.0" && mechanism == "CURVE" && route.size() == 6 && cred.size() == 32) {
      char z85[kZ85KeyLength + 1] = {};
      if (zmq_z85_encode(z85, reinterpret_cast<const std::uint8_t*>(cred.data()), cred.size()) != nullptr) {
        who = z85;
        allowed = options_.curve->clients.count(who) > 0;
      }
    }
    const std::string address = route.size() > 3 ? route[3] : "?";
    if (!allowed) logLine("zeromq: refused a CURVE client from " + address + (who.empty() ? "" : " (key " + who + ")"));
    (void)proto::sendMessage(*zap_, {"1.0", requestId, allowed ? "200" : "400", allowed ? "OK" : "key not allowed", who},
                             "");
  }
}

void ZmqEdge::topicsChanged() { wake(); }

void ZmqEdge::wake() {
  if (!wake_) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
}

void ZmqEdge::onWake() {
  std::uint64_t v = 0;
  [[maybe_unused]] auto n = ::read(wake_.get(), &v, sizeof v);
  subscribe();  // a no-op when the topics did not change
  std::deque<Done> done;
  {
    std::lock_guard lock(mu_);
    done.swap(done_);
  }
  for (auto& d : done) {
    if (api_) (void)proto::sendMessage(*api_, d.route, d.reply);  // a vanished client: dropped
  }
}

void ZmqEdge::onApi() {
  for (int i = 0; i < 64; ++i) {
    auto msg = proto::recvMessage(*api_);
    if (!msg || !*msg) return;
    auto& m = **msg;
    Task t;
    t.route = std::move(m.route);
    t.payload.assign(static_cast<const char*>(m.payload.data()), m.payload.size());
    const char* peer = zmq_msg_gets(m.payload.handle(), "Peer-Address");
    t.loopback = peer == nullptr || isLoopbackAddress(peer);
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(t));
    }
    cv_.notify_one();
  }
}

void ZmqEdge::worker() {
  for (;;) {
    Task t;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (stopping_) return;
      t = std::move(tasks_.front());
      tasks_.pop_front();
    }
    std::string reply;
    auto call = decodeApiCall(t.payload.data(), t.payload.size());
    if (!call) {
      const auto id = proto::peekId(t.payload.data(), t.payload.size());
      reply = proto::encodeApiError(id.value_or(0), call.error().code, call.error().message);
    } else {
      reply = answerApiCall(*call, ctx_, policy_, t.loopback);
    }
    {
      std::lock_guard lock(mu_);
      done_.push_back(Done{std::move(t.route), std::move(reply)});
    }
    wake();  // the loop sends it
  }
}

void ZmqEdge::subscribe() {
  if (!events_) return;
  std::set<std::string> topics = hub_.topics();
  for (const auto& t : xpubTopics_) {
    if (t.empty()) {
      topics.insert("state.");
      topics.insert("log.");
    } else {
      topics.insert(t);
    }
  }
  if (subscribedOnce_ && topics == subscribed_) return;
  subscribed_ = topics;
  subscribedOnce_ = true;
  proto::Subscribe msg{std::vector<std::string>(topics.begin(), topics.end())};
  (void)proto::sendMessage(*events_, proto::encode(msg, nextId_++));
}

void ZmqEdge::onMonitor() {
  for (;;) {
    auto msg = proto::recvMessage(*monitor_);
    if (!msg || !*msg) return;
    // A (re)connection to the master: it does not know our topics yet.
    if (!subscribed_.empty()) {
      subscribedOnce_ = false;
      subscribe();
    }
  }
}

void ZmqEdge::onEvents() {
  for (int i = 0; i < 256; ++i) {
    auto msg = proto::recvMessage(*events_);
    if (!msg || !*msg) return;
    auto env = proto::decodeEnvelope((*msg)->payload.data(), (*msg)->payload.size());
    if (!env) continue;
    if (env->type == proto::MsgType::kStateChanged) {
      auto ev = proto::decodeBody<proto::StateChanged>(*env);
      if (ev) publish("state." + ev->instance, renderStateChanged(*ev));
    } else if (env->type == proto::MsgType::kLogLines) {
      auto ev = proto::decodeBody<proto::LogLines>(*env);
      if (ev) publish("log." + ev->key, renderLogLines(*ev));
    }
    // OkReply / ErrorReply to Subscribe: nothing to do.
  }
}

void ZmqEdge::publish(const std::string& topic, const Json& body) {
  hub_.publish(Event{topic, body.dump()});
  if (xpub_) {
    const auto bytes = Json::to_msgpack(body);
    const std::string payload(bytes.begin(), bytes.end());
    (void)proto::sendMessage(*xpub_, {topic}, payload);  // a full queue drops (PUB semantics)
  }
}

void ZmqEdge::onXpub() {
  bool changed = false;
  for (int i = 0; i < 256; ++i) {
    auto msg = proto::recvMessage(*xpub_);
    if (!msg || !*msg) break;
    const auto data = (*msg)->data();
    if (data.empty()) continue;
    const std::string topic(data.substr(1));
    if (data[0] == 1) {
      changed |= xpubTopics_.insert(topic).second;
    } else if (data[0] == 0) {
      changed |= xpubTopics_.erase(topic) > 0;
    }
  }
  if (changed) subscribe();
}

}  // namespace provisr::gateway

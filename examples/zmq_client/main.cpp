// provisr-zmq-client: a small client of provisr's public ZeroMQ API (docs/zmq-api.md) —
// status, start, stop and an event subscription — with cppzmq and msgpack-c only.
//
//   provisr-zmq-client [--endpoint EP] [--token T] [--timeout-ms N] status [NAME]
//   provisr-zmq-client [--endpoint EP] [--token T] start|stop NAME [--wait-ms N]
//   provisr-zmq-client --events EP [--count N] [--timeout-ms N] subscribe [PREFIX]
//
// Requests go to [server] zmq_listen (default tcp://127.0.0.1:5555) as one MessagePack map
// {v, id, op, args, token}; the reply is {v, id, ok, result} or {v, id, ok: false, error: {code,
// message}}. Events come from [server] zmq_events as two frames: the topic, then a map.
// Output: the result (or each event) as one JSON-like line. Exit 0 on ok, 1 on an error reply,
// 2 on bad usage, 3 when no reply came in time.
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

namespace {

struct Options {
  std::string endpoint = "tcp://127.0.0.1:5555";
  std::optional<std::string> events;
  std::optional<std::string> token;
  int timeout_ms = 5000;
  long count = -1;  // events to print before exiting; -1 = until the timeout passes with none
  std::optional<long> wait_ms;
  std::vector<std::string> words;  // the command and its argument
};

int usage(const std::string& why) {
  std::cerr << "provisr-zmq-client: " << why << "\n"
            << "usage: provisr-zmq-client [--endpoint EP] [--token T] [--timeout-ms N] status [NAME]\n"
            << "       provisr-zmq-client [--endpoint EP] [--token T] start|stop NAME [--wait-ms N]\n"
            << "       provisr-zmq-client --events EP [--count N] [--timeout-ms N] subscribe [PREFIX]\n";
  return 2;
}

// Limits for decoding what the server sends: a reply is small, never gigabytes.
msgpack::unpack_limit limits() { return msgpack::unpack_limit(100000, 100000, 1u << 24, 1u << 24, 0, 32); }

std::string show(const msgpack::object& o) {
  std::ostringstream s;
  s << o;  // msgpack-c prints maps and arrays JSON-like
  return s.str();
}

// The value of `key` in map `m`, or nullptr.
const msgpack::object* field(const msgpack::object& m, const std::string& key) {
  if (m.type != msgpack::type::MAP) return nullptr;
  for (std::uint32_t i = 0; i < m.via.map.size; ++i) {
    const auto& kv = m.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && kv.key.as<std::string>() == key) return &kv.val;
  }
  return nullptr;
}

int request(const Options& o, const std::string& op, const std::optional<std::string>& name) {
  zmq::context_t ctx;
  zmq::socket_t sock(ctx, zmq::socket_type::dealer);
  sock.set(zmq::sockopt::linger, 0);
  sock.set(zmq::sockopt::rcvtimeo, o.timeout_ms);
  sock.connect(o.endpoint);

  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(o.token ? 5 : 4);
  pk.pack(std::string("v"));
  pk.pack(1);
  pk.pack(std::string("id"));
  pk.pack(1);
  pk.pack(std::string("op"));
  pk.pack(op);
  pk.pack(std::string("args"));
  pk.pack_map((name ? 1u : 0u) + (o.wait_ms ? 1u : 0u));
  if (name) {
    pk.pack(std::string("name"));
    pk.pack(*name);
  }
  if (o.wait_ms) {
    pk.pack(std::string("wait_ms"));
    pk.pack(*o.wait_ms);
  }
  if (o.token) {
    pk.pack(std::string("token"));
    pk.pack(*o.token);
  }
  sock.send(zmq::buffer(buf.data(), buf.size()), zmq::send_flags::none);

  zmq::message_t reply;
  if (!sock.recv(reply, zmq::recv_flags::none)) {
    std::cerr << "provisr-zmq-client: no reply from " << o.endpoint << " within " << o.timeout_ms
              << " ms (is zmq_listen set and provisr serve running?)\n";
    return 3;
  }
  msgpack::object_handle oh;
  try {
    oh = msgpack::unpack(static_cast<const char*>(reply.data()), reply.size(), nullptr, nullptr, limits());
  } catch (const std::exception& e) {
    std::cerr << "provisr-zmq-client: undecodable reply: " << e.what() << "\n";
    return 1;
  }
  const msgpack::object& r = oh.get();
  const msgpack::object* ok = field(r, "ok");
  if (ok != nullptr && ok->type == msgpack::type::BOOLEAN && ok->via.boolean) {
    const msgpack::object* result = field(r, "result");
    std::cout << (result ? show(*result) : std::string("null")) << "\n";
    return 0;
  }
  const msgpack::object* err = field(r, "error");
  std::cerr << "provisr-zmq-client: " << (err ? show(*err) : show(r)) << "\n";
  return 1;
}

int subscribe(const Options& o, const std::string& prefix) {
  zmq::context_t ctx;
  zmq::socket_t sub(ctx, zmq::socket_type::sub);
  sub.set(zmq::sockopt::linger, 0);
  sub.set(zmq::sockopt::rcvtimeo, o.timeout_ms);
  sub.set(zmq::sockopt::subscribe, prefix);
  sub.connect(*o.events);
  std::cerr << "subscribed to '" << prefix << "' on " << *o.events << "\n";
  for (long n = 0; o.count < 0 || n < o.count; ++n) {
    zmq::message_t topic, data;
    if (!sub.recv(topic, zmq::recv_flags::none)) return o.count < 0 ? 0 : 3;  // quiet for timeout_ms
    if (!topic.more() || !sub.recv(data, zmq::recv_flags::none)) continue;
    try {
      auto oh = msgpack::unpack(static_cast<const char*>(data.data()), data.size(), nullptr, nullptr, limits());
      std::cout << topic.to_string() << " " << show(oh.get()) << std::endl;
    } catch (const std::exception& e) {
      std::cerr << "provisr-zmq-client: undecodable event on " << topic.to_string() << ": " << e.what() << "\n";
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (a == "--endpoint" || a == "--events" || a == "--token" || a == "--timeout-ms" || a == "--count" ||
        a == "--wait-ms") {
      auto v = next();
      if (!v) return usage(a + " needs a value");
      if (a == "--endpoint") o.endpoint = *v;
      if (a == "--events") o.events = *v;
      if (a == "--token") o.token = *v;
      if (a == "--timeout-ms") o.timeout_ms = std::atoi(v->c_str());
      if (a == "--count") o.count = std::atol(v->c_str());
      if (a == "--wait-ms") o.wait_ms = std::atol(v->c_str());
    } else if (!a.empty() && a[0] == '-') {
      return usage("unknown flag " + a);
    } else {
      o.words.push_back(a);
    }
  }
  if (!o.token) {
    if (const char* t = std::getenv("PROVISR_TOKEN"); t && *t) o.token = t;
  }
  if (o.words.empty()) return usage("give a command");
  const std::string cmd = o.words[0];
  const std::optional<std::string> arg = o.words.size() > 1 ? std::optional<std::string>(o.words[1]) : std::nullopt;
  try {
    if (cmd == "status") return request(o, "status", arg);
    if (cmd == "start" || cmd == "stop") {
      if (!arg) return usage(cmd + " needs a NAME");
      return request(o, cmd, arg);
    }
    if (cmd == "subscribe") {
      if (!o.events) return usage("subscribe needs --events EP ([server] zmq_events)");
      return subscribe(o, arg.value_or("state."));
    }
  } catch (const zmq::error_t& e) {
    std::cerr << "provisr-zmq-client: " << e.what() << "\n";
    return 3;
  }
  return usage("unknown command " + cmd);
}

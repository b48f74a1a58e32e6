// ZeroMQ through the EventLoop: a DEALER/ROUTER pair over ipc:// in a per-test temp dir
// exchanging envelopes, bursts that need the per-turn ZMQ_EVENTS re-check, REQ delimiters, the
// frame cap and ZMQ_MAXMSGSIZE.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "common/proto/codec.hpp"
#include "common/proto/zmq_util.hpp"
#include "common/util/clock.hpp"
#include "common/util/event_loop.hpp"

using namespace provisr;
using namespace provisr::proto;
using namespace std::chrono_literals;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "provisr-zmq-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string ipc(const char* name) const { return "ipc://" + (path / name).string(); }
};

std::unique_ptr<EventLoop> makeLoop(Clock& clock) {
  auto loop = EventLoop::create(clock);
  REQUIRE(loop.ok());
  return std::move(loop).value();
}

zmq::socket_t open(zmq::context_t& ctx, zmq::socket_type type, SocketOptions opts = {}) {
  auto s = openSocket(ctx, type, opts);
  REQUIRE(s.ok());
  return std::move(s).value();
}

// Runs the loop until `done`, at most `limit`; a guard timer ends a stuck wait.
template <class Pred>
bool runUntil(EventLoop& loop, Pred done, Duration limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    loop.runOnce(100ms);
  }
  return true;
}

}  // namespace

TEST_CASE("DEALER and ROUTER exchange envelopes through the loop over ipc://", "[common]") {
  TempDir dir;
  SystemClock clock;
  auto loop = makeLoop(clock);
  zmq::context_t ctx;
  auto router = open(ctx, zmq::socket_type::router);
  SocketOptions dealerOpts;
  dealerOpts.routing_id = "master";
  auto dealer = open(ctx, zmq::socket_type::dealer, dealerOpts);
  const std::string ep = dir.ipc("spawner.sock");
  REQUIRE(bindSocket(router, ep).ok());
  REQUIRE(connectSocket(dealer, ep).ok());
  CHECK(lastEndpoint(router).value() == ep);

  // The "spawner": answers Hello with HelloReply, Ack with nothing, anything else with an error.
  std::vector<std::string> routes;
  std::uint64_t acked = 0;
  REQUIRE(watchSocket(*loop, router, EventLoop::kReadable, [&](std::uint32_t) {
                auto got = recvMessage(router);
                REQUIRE(got.ok());
                if (!got->has_value()) return;  // spurious: fine
                ZmqMessage& m = **got;
                routes.push_back(m.route.at(0));
                auto env = decodeEnvelope(m.payload.data(), m.payload.size());
                if (!env) {
                  REQUIRE(sendMessage(router, m.route, errorReplyFor(m.payload.data(), m.payload.size(), env.error())).ok());
                  return;
                }
                if (env->type == MsgType::kHello) {
                  auto hello = decodeBody<Hello>(*env);
                  REQUIRE(hello.ok());
                  const auto reply = hello->secret == "s3cret" ? encode(HelloReply{1, 42, 0}, env->id)
                                                               : encodeError(env->id, ErrorCode::kUnauthorized, "bad secret");
                  REQUIRE(sendMessage(router, m.route, reply).ok());
                } else if (env->type == MsgType::kAck) {
                  acked = decodeBody<Ack>(*env)->seq;
                }
              }).ok());

  // The "master": collects replies by id; drains everything in one callback.
  std::map<std::uint64_t, std::string> replies;
  REQUIRE(watchSocket(*loop, dealer, EventLoop::kReadable, [&](std::uint32_t) {
                for (;;) {
                  auto got = recvMessage(dealer);
                  REQUIRE(got.ok());
                  if (!got->has_value()) return;
                  CHECK((*got)->route.empty());
                  auto env = decodeEnvelope((*got)->payload.data(), (*got)->payload.size());
                  REQUIRE(env.ok());
                  replies[env->id] = std::string((*got)->data());
                }
              }).ok());

  REQUIRE(sendMessage(dealer, encode(Hello{"s3cret", 7}, 1)).ok());
  REQUIRE(runUntil(*loop, [&] { return replies.count(1) == 1; }));
  auto hr = decode<HelloReply>(replies[1].data(), replies[1].size());
  REQUIRE(hr.ok());
  CHECK(hr->epoch == 1);
  CHECK(routes.at(0) == "master");

  // Wrong secret: an ErrorReply, decodeReply turns it into the error.
  REQUIRE(sendMessage(dealer, encode(Hello{"nope", 7}, 2)).ok());
  REQUIRE(runUntil(*loop, [&] { return replies.count(2) == 1; }));
  auto env2 = decodeEnvelope(replies[2].data(), replies[2].size());
  REQUIRE(env2.ok());
  CHECK(decodeReply<HelloReply>(*env2).error().code == ErrorCode::kUnauthorized);

  // An unknown type gets kUnknownMessage back, addressed to its id.
  const std::string unknown("\x84\xa1v\x01\xa2id\x03\xa4type\xcd\x27\x10\xa4" "body\x80", 22);
  REQUIRE(sendMessage(dealer, unknown).ok());
  REQUIRE(runUntil(*loop, [&] { return replies.count(3) == 1; }));
  auto env3 = decodeEnvelope(replies[3].data(), replies[3].size());
  CHECK(decodeBody<ErrorReply>(*env3)->code == ErrorCode::kUnknownMessage);

  // A burst: the router reads one message per callback, so only the per-turn ZMQ_EVENTS
  // re-check (not the fd edge, long consumed) delivers the rest.
  for (std::uint64_t i = 100; i < 400; ++i) REQUIRE(sendMessage(dealer, encode(Hello{"s3cret", 7}, i)).ok());
  REQUIRE(sendMessage(dealer, encode(Ack{1, 99}, 400)).ok());
  REQUIRE(runUntil(*loop, [&] { return replies.size() == 3 + 300 && acked == 99; }));

  // Sending from a timer (outside any socket callback) is picked up too.
  loop->addTimer(1ms, [&] { REQUIRE(sendMessage(dealer, encode(Hello{"s3cret", 7}, 500)).ok()); });
  REQUIRE(runUntil(*loop, [&] { return replies.count(500) == 1; }));

  // Replying to a peer that never was: an error value, not a silent drop.
  auto gone = sendMessage(router, {"nobody"}, encode(OkReply{}, 1));
  REQUIRE_FALSE(gone.ok());
  CHECK(gone.error().code == ErrorCode::kUnavailable);

  unwatchSocket(*loop, router);
  unwatchSocket(*loop, dealer);
}

TEST_CASE("a REQ client's empty delimiter rides in the route and goes back", "[common]") {
  TempDir dir;
  SystemClock clock;
  auto loop = makeLoop(clock);
  zmq::context_t ctx;
  auto router = open(ctx, zmq::socket_type::router);
  auto req = open(ctx, zmq::socket_type::req);
  REQUIRE(bindSocket(router, dir.ipc("api.sock")).ok());
  REQUIRE(connectSocket(req, dir.ipc("api.sock")).ok());
  bool answered = false;
  REQUIRE(watchSocket(*loop, router, EventLoop::kReadable, [&](std::uint32_t) {
                auto got = recvMessage(router);
                REQUIRE(got.ok());
                if (!got->has_value()) return;
                REQUIRE((*got)->route.size() == 2);
                CHECK((*got)->route[1].empty());
                auto r = decodeApiRequest((*got)->payload.data(), (*got)->payload.size());
                REQUIRE(r.ok());
                REQUIRE(sendMessage(router, (*got)->route, encodeApiError(r->id, ErrorCode::kNotFound, "no such program: x")).ok());
              }).ok());
  std::string reply;
  REQUIRE(watchSocket(*loop, req, EventLoop::kReadable, [&](std::uint32_t) {
                auto got = recvMessage(req);
                REQUIRE(got.ok());
                if (!got->has_value()) return;
                reply = std::string((*got)->data());
                answered = true;
              }).ok());
  // {v:1, id:9, op:"status", args:{}}
  REQUIRE(sendMessage(req, std::string("\x84\xa1v\x01\xa2id\x09\xa2op\xa6status\xa4" "args\x80", 24)).ok());
  REQUIRE(runUntil(*loop, [&] { return answered; }));
  auto oh = unpackBounded(reply.data(), reply.size());
  REQUIRE(oh.ok());
  CHECK(oh->get().via.map.size == 4);
  unwatchSocket(*loop, router);
  unwatchSocket(*loop, req);
}

TEST_CASE("too many frames are dropped whole — too large a frame never arrives", "[common]") {
  TempDir dir;
  SystemClock clock;
  auto loop = makeLoop(clock);
  zmq::context_t ctx;
  SocketOptions small;
  small.max_message_size = 1024;
  auto router = open(ctx, zmq::socket_type::router, small);
  REQUIRE(bindSocket(router, dir.ipc("r.sock")).ok());
  auto noisy = open(ctx, zmq::socket_type::dealer);
  auto big = open(ctx, zmq::socket_type::dealer);
  auto fine = open(ctx, zmq::socket_type::dealer);
  for (auto* s : {&noisy, &big, &fine}) REQUIRE(connectSocket(*s, dir.ipc("r.sock")).ok());

  std::vector<std::string> payloads;
  int malformed = 0;
  REQUIRE(watchSocket(*loop, router, EventLoop::kReadable, [&](std::uint32_t) {
                auto got = recvMessage(router);
                if (!got.ok()) {
                  CHECK(got.error().code == ErrorCode::kMalformed);
                  ++malformed;
                  return;
                }
                if (got->has_value()) payloads.emplace_back((*got)->data());
              }).ok());
  // 20 frames: over kMaxRouteFrames.
  std::vector<std::string> many(19, "x");
  REQUIRE(sendMessage(noisy, many, "last").ok());
  REQUIRE(runUntil(*loop, [&] { return malformed == 1; }));
  // 2 KiB against a 1 KiB ZMQ_MAXMSGSIZE: the router drops the connection, not the process.
  REQUIRE(sendMessage(big, std::string(2048, 'b')).ok());
  REQUIRE(sendMessage(fine, "small").ok());
  REQUIRE(runUntil(*loop, [&] { return !payloads.empty(); }));
  // Give the big one every chance to have arrived first: one more round trip from `fine`.
  REQUIRE(sendMessage(fine, "again").ok());
  REQUIRE(runUntil(*loop, [&] { return payloads.size() == 2; }));
  CHECK(payloads == std::vector<std::string>{"small", "again"});
  unwatchSocket(*loop, router);
}

// The route table and handlers without sockets: a fake MasterLink records the request and
// answers a canned envelope, so each handler's translation is checked in-process.
#include <catch2/catch.hpp>

#include <functional>
#include <set>

#include "gateway/routes.hpp"

using namespace provisr;
using namespace provisr::gateway;

namespace {

class FakeLink final : public MasterLink {
 public:
  std::function<std::string(const proto::Envelope&, std::uint64_t)> answer;
  std::vector<proto::MsgType> seen;
  std::optional<proto::Envelope> lastRequest;
  std::chrono::milliseconds lastExtra{0};

  Result<proto::Envelope> roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds extra) override {
    auto req = proto::decodeEnvelope(bytes.data(), bytes.size());
    REQUIRE(req);
    seen.push_back(req->type);
    lastRequest = *req;
    lastExtra = extra;
    if (!answer) return Error{ErrorCode::kUnavailable, "master unavailable: test"};
    const std::string reply = answer(*req, id);
    return proto::decodeEnvelope(reply.data(), reply.size());
  }
};

Result<Json> call(FakeLink& link, std::string_view op, Json args, Transport t = Transport::kHttp) {
  Context ctx{link, "/nonexistent", false, false, 0};
  const Route* r = nullptr;
  for (const auto& route : routeTable()) {
    if (route.op == op || route.path == op) r = &route;
  }
  REQUIRE(r != nullptr);
  return runRoute(*r, Call{t, std::move(args)}, ctx);
}

}  // namespace

TEST_CASE("the route table: unique routes and ops, every Go path present", "[gateway]") {
  std::set<std::string> paths, ops;
  for (const auto& r : routeTable()) {
    CHECK(paths.insert(std::string(r.method) + " " + std::string(r.path)).second);
    if (!r.op.empty()) CHECK(ops.insert(std::string(r.op)).second);
    CHECK(r.handler != nullptr);
  }
  for (const char* p : {"GET /status", "POST /start", "POST /stop", "POST /register", "POST /unregister", "POST /update",
                        "GET /groups", "GET /group/status", "POST /group/start", "POST /group/stop",
                        "GET /debug/processes", "GET /processes/([^/]+)/logs", "GET /processes/([^/]+)/spec",
                        "GET /settings/status", "POST /restart", "POST /scale", "POST /reload", "POST /reopen-logs",
                        "POST /shutdown", "GET /events", "GET /health", "GET /version"}) {
    INFO(p);
    CHECK(paths.count(p) == 1);
  }
  CHECK(findOp("group_status") != nullptr);
  CHECK(findOp("") == nullptr);
  CHECK(findOp("nope") == nullptr);
}

TEST_CASE("handlers translate to one master request and render its reply", "[gateway]") {
  FakeLink link;
  SECTION("status over HTTP without selector is the health check; over ZeroMQ it lists all") {
    auto r = call(link, "status", Json::object());
    REQUIRE(r);
    CHECK(*r == Json{{"ok", true}});
    CHECK(link.seen.empty());
    link.answer = [](const proto::Envelope&, std::uint64_t id) { return proto::encode(proto::StatusReply{}, id); };
    r = call(link, "status", Json::object(), Transport::kZmq);
    REQUIRE(r);
    CHECK(r->is_array());
    auto req = proto::decodeBody<proto::StatusRequest>(*link.lastRequest);
    CHECK(req->selector.kind == proto::SelectorKind::kAll);
  }
  SECTION("stop: the wait reaches the master and extends the deadline; not found is ok") {
    link.answer = [](const proto::Envelope&, std::uint64_t id) {
      return proto::encodeError(id, ErrorCode::kNotFound, "nothing matched");
    };
    auto r = call(link, "stop", Json{{"name", "web"}, {"wait", "4s"}});
    REQUIRE(r);
    CHECK((*r)["ok"] == true);
    CHECK(link.lastExtra == std::chrono::milliseconds(4000));
    auto req = proto::decodeBody<proto::Stop>(*link.lastRequest);
    CHECK(req->wait_ms == std::optional<std::uint64_t>(4000));
    r = call(link, "start", Json{{"name", "web"}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kNotFound);
  }
  SECTION("an unavailable master is an unavailable error, not an exception") {
    auto r = call(link, "group_status", Json{{"group", "g1"}});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kUnavailable);
  }
  SECTION("a reply of the wrong type is malformed") {
    link.answer = [](const proto::Envelope&, std::uint64_t id) { return proto::encode(proto::OkReply{}, id); };
    auto r = call(link, "groups", Json::object());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kMalformed);
  }
  SECTION("register passes the body through as spec_json; bad input never reaches the master") {
    link.answer = [](const proto::Envelope&, std::uint64_t id) { return proto::encode(proto::ActionReply{}, id); };
    auto r = call(link, "register", Json{{"body", R"({"name":"x","command":"true"})"}});
    REQUIRE(r);
    CHECK(Json::parse(proto::decodeBody<proto::Register>(*link.lastRequest)->spec_json)["name"] == "x");
    link.seen.clear();
    CHECK_FALSE(call(link, "register", Json{{"body", "{"}}));
    CHECK_FALSE(call(link, "register", Json{{"body", R"({"command":"true"})"}}));
    CHECK_FALSE(call(link, "scale", Json{{"name", "web"}, {"instances", "lots"}}));
    CHECK_FALSE(call(link, "logs", Json{{"name", "a/b"}}));
    CHECK(link.seen.empty());
  }
  SECTION("metrics routes under base_path are gone") {
    auto r = call(link, "/metrics", Json::object());
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::kNotFound);
  }
}

// Fuzz target: the public ZeroMQ API socket of the gateway — a request frame (MessagePack
// {v, id, op, args[, token]}) decoded, run through the access rules and the route table, and
// answered. The reply must be a MessagePack map carrying the request's id; every request that
// reaches the master must decode (FakeMaster).
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz/fake_master.hpp"
#include "gateway/access.hpp"
#include "gateway/zmq_edge.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto call = provisr::gateway::decodeApiCall(data, size);
  if (!call) return 0;
  provisr::fuzz::FakeMaster master;
  provisr::gateway::Context ctx{master, provisr::fuzz::scratchDir(), true, true, 1};
  provisr::gateway::AccessPolicy policy;
  policy.token = "full-token";
  policy.read_only_token = "read-token";
  const std::string reply = provisr::gateway::answerApiCall(*call, ctx, policy, true);
  nlohmann::json j;
  try {
    j = nlohmann::json::from_msgpack(reply);
  } catch (const std::exception& e) {
    provisr::fuzz::fail("an API reply is not MessagePack", e.what());
  }
  if (!j.is_object() || !j.contains("id") || j["id"] != call->id) provisr::fuzz::fail("an API reply without its id");
  if (j.value("ok", false) && !j.contains("result")) provisr::fuzz::fail("a successful API reply without result");
  return 0;
}

// The master as the gateway's fuzz targets see it: every request it receives must decode as the
// message its envelope names (what the real master would do first); it answers "not found".
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/proto/codec.hpp"
#include "fuzz/fuzz_support.hpp"
#include "fuzz/messages.hpp"
#include "gateway/master_link.hpp"

namespace provisr::fuzz {

class FakeMaster final : public gateway::MasterLink {
 public:
  Result<proto::Envelope> roundTrip(std::uint64_t id, std::string bytes, std::chrono::milliseconds) override {
    auto env = proto::decodeEnvelope(bytes.data(), bytes.size());
    if (!env) fail("the gateway sent a request that does not decode", env.error().message);
    bool matched = false;
    forEachMessage([&](auto m) {
      using T = decltype(m);
      if (T::kType != env->type) return;
      matched = true;
      auto body = proto::decodeBody<T>(*env);
      if (!body) fail("the gateway sent a body that does not decode", body.error().message);
    });
    if (!matched) fail("the gateway sent a message of no known type");
    ++requests;
    const std::string reply = proto::encodeError(id, ErrorCode::kNotFound, "no such program (fuzz master)");
    return proto::decodeEnvelope(reply.data(), reply.size());
  }
  std::uint64_t requests = 0;
};

}  // namespace provisr::fuzz

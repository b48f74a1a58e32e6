// Fuzz target: MessagePack decoding of every message type (common/proto codec), as each
// component's socket does it: the envelope, then the body as every message type (not only the
// one the envelope names, so every body decoder sees every input). A body that decodes re-encodes
// to bytes that decode to the same bytes again.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/proto/codec.hpp"
#include "fuzz/fuzz_support.hpp"
#include "fuzz/messages.hpp"

namespace {

template <class T>
void decodeAs(const provisr::proto::Envelope& env) {
  provisr::proto::Envelope as = env;
  as.type = T::kType;
  auto msg = provisr::proto::decodeBody<T>(as);
  if (!msg) {
    if (msg.error().code != provisr::ErrorCode::kMalformed) provisr::fuzz::fail("a body error is not kMalformed");
    return;
  }
  const std::string once = provisr::proto::encode(*msg, env.id);
  auto again = provisr::proto::decode<T>(once.data(), once.size());
  if (!again) provisr::fuzz::fail("a re-encoded message does not decode", again.error().message);
  if (provisr::proto::encode(*again, env.id) != once) provisr::fuzz::fail("a re-encoded message changes");
  (void)provisr::proto::decodeReply<T>(env);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (!provisr::fuzz::coversEveryType()) provisr::fuzz::fail("fuzz/messages.hpp misses a message type");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)provisr::proto::peekId(data, size);
  (void)provisr::proto::checkStructure(data, size);
  auto env = provisr::proto::decodeEnvelope(data, size);
  // The reply a component sends for an input that did not decode.
  if (!env) {
    const std::string reply = provisr::proto::errorReplyFor(data, size, env.error());
    auto back = provisr::proto::decode<provisr::proto::ErrorReply>(reply.data(), reply.size());
    if (!back) provisr::fuzz::fail("an error reply does not decode", back.error().message);
    return 0;
  }
  if (!env->body.is_nil() && env->body.type != msgpack::type::MAP) provisr::fuzz::fail("an envelope body is not a map");
  provisr::fuzz::forEachMessage([&](auto m) { decodeAs<decltype(m)>(*env); });
  return 0;
}

// The codec: encodes a schema message into its envelope {v, id, type, body} and decodes one back,
// bounded (size, msgpack unpack_limit and a pre-scan) and without letting an exception out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <msgpack.hpp>

#include "common/errors.hpp"
#include "common/proto/schema.hpp"
#include "common/util/result.hpp"

namespace provisr::proto {

inline constexpr std::uint32_t kProtocolVersion = 1;

// No message (internal or public) may be larger; ZMQ_MAXMSGSIZE is set to this on every socket.
inline constexpr std::size_t kMaxMessageSize = 16u * 1024 * 1024;

// Decode limits. A MessagePack container header of 5 bytes can claim 4 G elements, and msgpack-c
// allocates count × 24 bytes for it up front: so every decode first walks the bytes without
// allocating (a container may not claim more elements than bytes remain, nesting is capped, and
// so is the object count), then unpacks with these as unpack_limit. Worst case the decoded
// tree costs about kMaxObjects × 24 bytes plus the message size.
struct DecodeLimits {
  std::size_t max_size = kMaxMessageSize;
  std::size_t array = 1u << 20;
  std::size_t map = 1u << 20;
  std::size_t str = kMaxMessageSize;
  std::size_t bin = kMaxMessageSize;
  std::size_t ext = 0;  // no message uses ext types: any is refused
  std::size_t depth = 16;
  std::size_t objects = 1u << 20;
};
inline constexpr DecodeLimits kDefaultLimits{};

// A decoded envelope. `body` points into memory owned by the envelope (not the input buffer),
// so the input may be freed once decodeEnvelope returns.
struct Envelope {
  std::uint32_t v = kProtocolVersion;
  std::uint64_t id = 0;
  MsgType type = MsgType::kErrorReply;
  msgpack::object body;  // always a map
  std::shared_ptr<msgpack::zone> zone;  // owns what body points to
};

namespace detail {
// A msgpack output stream appending to a std::string.
struct StringSink {
  std::string* out;
  void write(const char* p, std::size_t n) { out->append(p, n); }
};
void packEnvelopeHead(msgpack::packer<StringSink>& pk, std::uint64_t id, MsgType type);
Error malformedBody(MsgType type, const char* what);
}  // namespace detail

// Encodes `msg` as a complete envelope with request id `id` (a reply carries its request's id).
template <class T>
std::string encode(const T& msg, std::uint64_t id) {
  std::string out;
  detail::StringSink sink{&out};
  msgpack::packer<detail::StringSink> pk(sink);
  detail::packEnvelopeHead(pk, id, T::kType);
  pk.pack(msg);
  return out;
}

// Error replies.
std::string encodeError(std::uint64_t id, ErrorCode code, std::string_view message);
std::string encodeError(std::uint64_t id, const Error& error);
// The reply to an input that did not decode: an ErrorReply carrying `error`, addressed to the
// request's id when the envelope is sound enough to read it (an unknown type), else to id 0.
std::string errorReplyFor(const void* data, std::size_t size, const Error& error);
// The request id of an envelope, if the bytes are a sound envelope (whatever its type).
std::optional<std::uint64_t> peekId(const void* data, std::size_t size);

// Decodes an envelope: kMalformed (too large, truncated, garbage, over a limit, not an envelope,
// wrong version) or kUnknownMessage (a sound envelope of a type this build does not know).
Result<Envelope> decodeEnvelope(const void* data, std::size_t size, const DecodeLimits& limits = kDefaultLimits);

// Decodes the body as T: kMalformed when the envelope is of another type or the body does not
// convert (wrong field type, unknown enum name, integer out of range).
template <class T>
Result<T> decodeBody(const Envelope& env) {
  if (env.type != T::kType) return detail::malformedBody(env.type, "unexpected message type");
  try {
    T msg;
    env.body.convert(msg);
    return msg;
  } catch (const std::exception& e) {
    return detail::malformedBody(env.type, e.what());
  }
}

// Decodes a reply expected to be T: an ErrorReply becomes its Error; any other type kMalformed.
template <class T>
Result<T> decodeReply(const Envelope& env) {
  if (env.type == MsgType::kErrorReply && T::kType != MsgType::kErrorReply) {
    auto er = decodeBody<ErrorReply>(env);
    if (!er) return er.error();
    return Error{er->code, std::move(er->message)};
  }
  return decodeBody<T>(env);
}

// decodeEnvelope then decodeBody<T>, for a caller that expects one type.
template <class T>
Result<T> decode(const void* data, std::size_t size, const DecodeLimits& limits = kDefaultLimits) {
  auto env = decodeEnvelope(data, size, limits);
  if (!env) return env.error();
  return decodeBody<T>(*env);
}

// Walks MessagePack bytes without allocating: exactly one object filling [data, data+size),
// within `limits`. decodeEnvelope and decodeApiRequest call it before unpacking.
Status checkStructure(const void* data, std::size_t size, const DecodeLimits& limits = kDefaultLimits);

// Unpacks one MessagePack object with the structure check and the limits; for callers that
// decode a MessagePack map that is not an envelope (the public API's args, a PUB event).
Result<msgpack::object_handle> unpackBounded(const void* data, std::size_t size,
                                             const DecodeLimits& limits = kDefaultLimits);

// ---------------------------------------------------------------------------------------------
// The public ZeroMQ API (SPEC §5, docs/zmq-api.md): requests {v, id, op, args[, token]}, replies
// {v, id, ok: true, result} or {v, id, ok: false, error: {code, message}} where code is the
// error's name ("not_found").
struct ApiRequest {
  std::uint32_t v = kProtocolVersion;
  std::uint64_t id = 0;
  std::string op;
  msgpack::object args;  // a map (an empty one when the request had none)
  std::optional<std::string> token;
  std::shared_ptr<msgpack::zone> zone;
};

Result<ApiRequest> decodeApiRequest(const void* data, std::size_t size, const DecodeLimits& limits = kDefaultLimits);

// Converts the args of a public request into T (a map with the fields of T); kInvalidArgument
// with the reason when they do not fit.
template <class T>
Result<T> decodeApiArgs(const ApiRequest& req) {
  try {
    T out;
    req.args.convert(out);
    return out;
  } catch (const std::exception& e) {
    return Error{ErrorCode::kInvalidArgument, "bad args for op " + req.op + ": " + e.what()};
  }
}

namespace detail {
void packApiReplyHead(msgpack::packer<StringSink>& pk, std::uint64_t id);
}

// A success reply whose `result` is `result` packed as MessagePack (a schema struct, a map...).
template <class T>
std::string encodeApiResult(std::uint64_t id, const T& result) {
  std::string out;
  detail::StringSink sink{&out};
  msgpack::packer<detail::StringSink> pk(sink);
  detail::packApiReplyHead(pk, id);
  pk.pack(result);
  return out;
}

std::string encodeApiError(std::uint64_t id, ErrorCode code, std::string_view message);

// Error codes by their names, as the public API and HTTP carry them.
std::optional<ErrorCode> parseErrorCodeName(std::string_view name);

}  // namespace provisr::proto

// Envelope encoding and bounded decoding of the schema's messages and of the public API.
#include "common/proto/codec.hpp"

#include <cstring>
#include <exception>
#include <vector>

namespace provisr::proto {

std::string_view msgTypeName(MsgType t) {
  switch (t) {
    case MsgType::kErrorReply: return "ErrorReply";
    case MsgType::kOkReply: return "OkReply";
    case MsgType::kHello: return "Hello";
    case MsgType::kHelloReply: return "HelloReply";
    case MsgType::kSpawn: return "Spawn";
    case MsgType::kSpawnReply: return "SpawnReply";
    case MsgType::kSignalChild: return "SignalChild";
    case MsgType::kStopChild: return "StopChild";
    case MsgType::kSnapshot: return "Snapshot";
    case MsgType::kSnapshotReply: return "SnapshotReply";
    case MsgType::kAck: return "Ack";
    case MsgType::kChildStarted: return "ChildStarted";
    case MsgType::kChildExited: return "ChildExited";
    case MsgType::kSpawnFailed: return "SpawnFailed";
    case MsgType::kLogStats: return "LogStats";
    case MsgType::kLogTail: return "LogTail";
    case MsgType::kLogTailReply: return "LogTailReply";
    case MsgType::kLogFollow: return "LogFollow";
    case MsgType::kLogLines: return "LogLines";
    case MsgType::kReopenLogs: return "ReopenLogs";
    case MsgType::kStatus: return "Status";
    case MsgType::kStatusReply: return "StatusReply";
    case MsgType::kStart: return "Start";
    case MsgType::kStop: return "Stop";
    case MsgType::kRestart: return "Restart";
    case MsgType::kActionReply: return "ActionReply";
    case MsgType::kScale: return "Scale";
    case MsgType::kRegister: return "Register";
    case MsgType::kUnregister: return "Unregister";
    case MsgType::kUpdate: return "Update";
    case MsgType::kGroups: return "Groups";
    case MsgType::kGroupsReply: return "GroupsReply";
    case MsgType::kGroupStatus: return "GroupStatus";
    case MsgType::kGroupStatusReply: return "GroupStatusReply";
    case MsgType::kGroupStart: return "GroupStart";
    case MsgType::kGroupStop: return "GroupStop";
    case MsgType::kReload: return "Reload";
    case MsgType::kReloadReply: return "ReloadReply";
    case MsgType::kLogs: return "Logs";
    case MsgType::kLogsReply: return "LogsReply";
    case MsgType::kSpec: return "Spec";
    case MsgType::kSpecReply: return "SpecReply";
    case MsgType::kSettings: return "Settings";
    case MsgType::kSettingsReply: return "SettingsReply";
    case MsgType::kShutdown: return "Shutdown";
    case MsgType::kSubscribe: return "Subscribe";
    case MsgType::kStateChanged: return "StateChanged";
    case MsgType::kDeposit: return "Deposit";
    case MsgType::kRelease: return "Release";
    case MsgType::kWithdraw: return "Withdraw";
    case MsgType::kWithdrawChunk: return "WithdrawChunk";
    case MsgType::kExited: return "Exited";
  }
  return "";
}

bool isKnownMsgType(std::uint16_t raw) { return !msgTypeName(static_cast<MsgType>(raw)).empty(); }

namespace {

Error malformed(std::string message) { return Error{ErrorCode::kMalformed, std::move(message)}; }

std::uint64_t readBigEndian(const unsigned char* p, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

bool keyIs(const msgpack::object& key, std::string_view name) {
  return key.type == msgpack::type::STR && std::string_view(key.via.str.ptr, key.via.str.size) == name;
}

bool asUint(const msgpack::object& o, std::uint64_t& out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  out = o.via.u64;
  return true;
}

msgpack::unpack_limit toUnpackLimit(const DecodeLimits& l) {
  return msgpack::unpack_limit(l.array, l.map, l.str, l.bin, l.ext, l.depth);
}

// The envelope's fields, read without judging the type.
struct RawEnvelope {
  std::uint64_t v = 0;
  std::uint64_t id = 0;
  std::uint64_t type = 0;
  const msgpack::object* body = nullptr;
};

Result<RawEnvelope> readEnvelope(const msgpack::object& root) {
  if (root.type != msgpack::type::MAP) return malformed("not an envelope: the top level is not a map");
  RawEnvelope env;
  bool haveV = false, haveId = false, haveType = false;
  for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    if (keyIs(kv.key, "v")) {
      if (!asUint(kv.val, env.v)) return malformed("envelope field v is not an unsigned integer");
      haveV = true;
    } else if (keyIs(kv.key, "id")) {
      if (!asUint(kv.val, env.id)) return malformed("envelope field id is not an unsigned integer");
      haveId = true;
    } else if (keyIs(kv.key, "type")) {
      if (!asUint(kv.val, env.type) || env.type > 0xffff) return malformed("envelope field type is not a u16");
      haveType = true;
    } else if (keyIs(kv.key, "body")) {
      env.body = &kv.val;
    }  // other keys: a newer sender's additions, ignored
  }
  if (!haveV || !haveId || !haveType || env.body == nullptr) {
    return malformed("not an envelope: it needs v, id, type and body");
  }
  if (env.v != kProtocolVersion) {
    return malformed("unsupported protocol version " + std::to_string(env.v) + " (this build speaks " +
                     std::to_string(kProtocolVersion) + ")");
  }
  return env;
}

}  // namespace

Status checkStructure(const void* data, std::size_t size, const DecodeLimits& limits) {
  const auto* p = static_cast<const unsigned char*>(data);
  if (size > limits.max_size) {
    return malformed("message of " + std::to_string(size) + " bytes exceeds the limit of " +
                     std::to_string(limits.max_size));
  }
  if (size == 0) return malformed("empty message");
  std::vector<std::uint64_t> open;  // items still to read in each open container, root first
  open.reserve(limits.depth + 1);
  open.push_back(1);
  std::size_t pos = 0;
  std::size_t objects = 0;
  auto need = [&](std::size_t n) { return n <= size - pos; };
  while (!open.empty()) {
    if (open.back() == 0) {
      open.pop_back();
      continue;
    }
    --open.back();
    if (pos >= size) return malformed("truncated message at byte " + std::to_string(pos));
    if (++objects > limits.objects) {
      return malformed("message has more than " + std::to_string(limits.objects) + " objects");
    }
    const unsigned char b = p[pos];
    std::size_t header = 1;       // bytes of this object's header
    std::uint64_t payload = 0;    // bytes after the header (str/bin bodies, numbers)
    std::uint64_t items = 0;      // elements of a container (map: keys + values)
    bool container = false;
    std::size_t lenBytes = 0;     // a length field of this many bytes follows the tag
    enum class Kind { kScalar, kStr, kBin, kArray, kMap } kind = Kind::kScalar;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
      // fixint, nil, bool
    } else if (b >= 0x80 && b <= 0x8f) {
      kind = Kind::kMap;
      items = b & 0x0fu;
    } else if (b >= 0x90 && b <= 0x9f) {
      kind = Kind::kArray;
      items = b & 0x0fu;
    } else if (b >= 0xa0 && b <= 0xbf) {
      kind = Kind::kStr;
      payload = b & 0x1fu;
    } else {
      switch (b) {
        case 0xc4: kind = Kind::kBin; lenBytes = 1; break;
        case 0xc5: kind = Kind::kBin; lenBytes = 2; break;
        case 0xc6: kind = Kind::kBin; lenBytes = 4; break;
        case 0xca: payload = 4; break;
        case 0xcb: payload = 8; break;
        case 0xcc: case 0xd0: payload = 1; break;
        case 0xcd: case 0xd1: payload = 2; break;
        case 0xce: case 0xd2: payload = 4; break;
        case 0xcf: case 0xd3: payload = 8; break;
        case 0xd9: kind = Kind::kStr; lenBytes = 1; break;
        case 0xda: kind = Kind::kStr; lenBytes = 2; break;
        case 0xdb: kind = Kind::kStr; lenBytes = 4; break;
        case 0xdc: kind = Kind::kArray; lenBytes = 2; break;
        case 0xdd: kind = Kind::kArray; lenBytes = 4; break;
        case 0xde: kind = Kind::kMap; lenBytes = 2; break;
        case 0xdf: kind = Kind::kMap; lenBytes = 4; break;
        case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
          if (limits.ext == 0) return malformed("ext type at byte " + std::to_string(pos) + ": not used by provisr");
          return malformed("ext types are not supported");
        default:  // 0xc1, never used
          return malformed("invalid MessagePack byte " + std::to_string(b) + " at byte " + std::to_string(pos));
      }
    }
    if (lenBytes > 0) {
      if (!need(1 + lenBytes)) return malformed("truncated length at byte " + std::to_string(pos));
      const std::uint64_t n = readBigEndian(p + pos + 1, lenBytes);
      header += lenBytes;
      if (kind == Kind::kStr || kind == Kind::kBin) {
        payload = n;
      } else {
        items = n;
      }
    }
    if (kind == Kind::kStr && payload > limits.str) {
      return malformed("string of " + std::to_string(payload) + " bytes over the limit");
    }
    if (kind == Kind::kBin && payload > limits.bin) {
      return malformed("bin of " + std::to_string(payload) + " bytes over the limit");
    }
    if (kind == Kind::kArray && items > limits.array) {
      return malformed("array of " + std::to_string(items) + " elements over the limit");
    }
    if (kind == Kind::kMap) {
      if (items > limits.map) return malformed("map of " + std::to_string(items) + " entries over the limit");
      items *= 2;
    }
    container = kind == Kind::kArray || kind == Kind::kMap;
    if (!need(header) || payload > size - pos - header) {
      return malformed("truncated message at byte " + std::to_string(pos));
    }
    pos += header + static_cast<std::size_t>(payload);
    if (container) {
      // Every element takes at least one byte: a header may not promise more than is left.
      if (items > size - pos) {
        return malformed("container at byte " + std::to_string(pos - header) + " claims " + std::to_string(items) +
                         " elements with " + std::to_string(size - pos) + " bytes left");
      }
      if (open.size() >= limits.depth) {
        return malformed("nesting deeper than " + std::to_string(limits.depth));
      }
      open.push_back(items);
    }
  }
  if (pos != size) return malformed(std::to_string(size - pos) + " trailing bytes after the message");
  return {};
}

Result<msgpack::object_handle> unpackBounded(const void* data, std::size_t size, const DecodeLimits& limits) {
  if (auto st = checkStructure(data, size, limits); !st) return st.error();
  try {
    std::size_t off = 0;
    msgpack::object_handle oh =
        msgpack::unpack(static_cast<const char*>(data), size, off, nullptr, nullptr, toUnpackLimit(limits));
    if (off != size) return malformed("trailing bytes after the message");
    return oh;
  } catch (const std::exception& e) {
    return malformed(std::string("undecodable MessagePack: ") + e.what());
  }
}

Result<Envelope> decodeEnvelope(const void* data, std::size_t size, const DecodeLimits& limits) {
  auto oh = unpackBounded(data, size, limits);
  if (!oh) return oh.error();
  auto raw = readEnvelope(oh->get());
  if (!raw) return raw.error();
  if (!isKnownMsgType(static_cast<std::uint16_t>(raw->type))) {
    return Error{ErrorCode::kUnknownMessage, "unknown message type " + std::to_string(raw->type) + " (request id " +
                                                 std::to_string(raw->id) + ")"};
  }
  const auto type = static_cast<MsgType>(raw->type);
  if (raw->body->type != msgpack::type::MAP) {
    return malformed("malformed " + std::string(msgTypeName(type)) + ": the body is not a map");
  }
  Envelope env;
  env.v = static_cast<std::uint32_t>(raw->v);
  env.id = raw->id;
  env.type = type;
  env.body = *raw->body;
  env.zone = std::shared_ptr<msgpack::zone>(oh->zone().release());
  return env;
}

std::optional<std::uint64_t> peekId(const void* data, std::size_t size) {
  auto oh = unpackBounded(data, size, kDefaultLimits);
  if (!oh) return std::nullopt;
  auto raw = readEnvelope(oh->get());
  if (!raw) return std::nullopt;
  return raw->id;
}

namespace detail {

void packEnvelopeHead(msgpack::packer<StringSink>& pk, std::uint64_t id, MsgType type) {
  pk.pack_map(4);
  pk.pack("v");
  pk.pack(kProtocolVersion);
  pk.pack("id");
  pk.pack(id);
  pk.pack("type");
  pk.pack(static_cast<std::uint16_t>(type));
  pk.pack("body");
}

Error malformedBody(MsgType type, const char* what) {
  std::string name(msgTypeName(type));
  if (name.empty()) name = "type " + std::to_string(static_cast<unsigned>(type));
  return malformed("malformed " + name + " body: " + what);
}

void packApiReplyHead(msgpack::packer<StringSink>& pk, std::uint64_t id) {
  pk.pack_map(4);
  pk.pack("v");
  pk.pack(kProtocolVersion);
  pk.pack("id");
  pk.pack(id);
  pk.pack("ok");
  pk.pack(true);
  pk.pack("result");
}

}  // namespace detail

std::string encodeError(std::uint64_t id, ErrorCode code, std::string_view message) {
  return encode(ErrorReply{code, std::string(message)}, id);
}

std::string encodeError(std::uint64_t id, const Error& error) { return encodeError(id, error.code, error.message); }

std::string errorReplyFor(const void* data, std::size_t size, const Error& error) {
  return encodeError(peekId(data, size).value_or(0), error);
}

// ---------------------------------------------------------------------------------------------
// Public API.

Result<ApiRequest> decodeApiRequest(const void* data, std::size_t size, const DecodeLimits& limits) {
  auto oh = unpackBounded(data, size, limits);
  if (!oh) return oh.error();
  const msgpack::object& root = oh->get();
  if (root.type != msgpack::type::MAP) return malformed("a request is a map {v, id, op, args}");
  ApiRequest req;
  std::uint64_t v = 0;
  bool haveV = false, haveOp = false;
  for (std::uint32_t i = 0; i < root.via.map.size; ++i) {
    const auto& kv = root.via.map.ptr[i];
    if (keyIs(kv.key, "v")) {
      if (!asUint(kv.val, v)) return malformed("request field v is not an unsigned integer");
      haveV = true;
    } else if (keyIs(kv.key, "id")) {
      if (!asUint(kv.val, req.id)) return malformed("request field id is not an unsigned integer");
    } else if (keyIs(kv.key, "op")) {
      if (kv.val.type != msgpack::type::STR) return malformed("request field op is not a string");
      req.op.assign(kv.val.via.str.ptr, kv.val.via.str.size);
      haveOp = true;
    } else if (keyIs(kv.key, "args")) {
      if (kv.val.type != msgpack::type::MAP && kv.val.type != msgpack::type::NIL) {
        return malformed("request field args is not a map");
      }
      req.args = kv.val;
    } else if (keyIs(kv.key, "token")) {
      if (kv.val.type != msgpack::type::STR) return malformed("request field token is not a string");
      req.token = std::string(kv.val.via.str.ptr, kv.val.via.str.size);
    }
  }
  if (haveV && v != kProtocolVersion) {
    return malformed("unsupported protocol version " + std::to_string(v) + " (this server speaks " +
                     std::to_string(kProtocolVersion) + ")");
  }
  if (!haveOp) return malformed("a request needs an op");
  if (req.args.type != msgpack::type::MAP) {
    req.args.type = msgpack::type::MAP;  // absent or nil args: an empty map
    req.args.via.map.size = 0;
    req.args.via.map.ptr = nullptr;
  }
  req.v = kProtocolVersion;
  req.zone = std::shared_ptr<msgpack::zone>(oh->zone().release());
  return req;
}

std::string encodeApiError(std::uint64_t id, ErrorCode code, std::string_view message) {
  std::string out;
  detail::StringSink sink{&out};
  msgpack::packer<detail::StringSink> pk(sink);
  pk.pack_map(4);
  pk.pack("v");
  pk.pack(kProtocolVersion);
  pk.pack("id");
  pk.pack(id);
  pk.pack("ok");
  pk.pack(false);
  pk.pack("error");
  pk.pack_map(2);
  pk.pack("code");
  pk.pack(errorCodeName(code));
  pk.pack("message");
  pk.pack(message);
  return out;
}

std::optional<ErrorCode> parseErrorCodeName(std::string_view name) {
  for (unsigned i = 0; i < 256; ++i) {
    const auto c = static_cast<ErrorCode>(i);
    if (errorCodeName(c) == name && name != "unknown") return c;
  }
  return std::nullopt;
}

}  // namespace provisr::proto

// One-pass decoding of InstanceStatus maps (and the replies holding them).
#include "gateway/reply_decode.hpp"

#include <array>
#include <cstdint>
#include <string_view>

namespace provisr::gateway {
namespace {

std::string_view keyOf(const msgpack::object_kv& kv) {
  if (kv.key.type != msgpack::type::STR) throw msgpack::type_error();
  return {kv.key.via.str.ptr, kv.key.via.str.size};
}

// Calls visit(index, value) for each key of `o` found in `names`, the first occurrence of a key
// only (as define_map, whose key map keeps the first), unknown keys skipped. The master writes
// the keys in declaration order, so the next name is tried before a search.
template <std::size_t N, class Visit>
void forEachField(const msgpack::object& o, const std::array<std::string_view, N>& names, Visit&& visit) {
  static_assert(N <= 64);
  if (o.type != msgpack::type::MAP) throw msgpack::type_error();
  std::uint64_t seen = 0;
  std::size_t hint = 0;
  for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
    const auto& kv = o.via.map.ptr[i];
    const std::string_view key = keyOf(kv);
    std::size_t idx = N;
    if (hint < N && names[hint] == key) {
      idx = hint;
    } else {
      for (std::size_t j = 0; j < N; ++j) {
        if (names[j] == key) {
          idx = j;
          break;
        }
      }
    }
    if (idx == N) continue;
    hint = idx + 1;
    const std::uint64_t bit = std::uint64_t{1} << idx;
    if ((seen & bit) != 0) continue;
    seen |= bit;
    visit(idx, kv.val);
  }
}

void readLogPaths(const msgpack::object& o, proto::LogPaths& out) {
  static constexpr std::array<std::string_view, 2> kNames = {"stdout", "stderr"};
  forEachField(o, kNames, [&](std::size_t idx, const msgpack::object& v) {
    if (idx == 0) {
      v.convert(out.stdout_path);
    } else {
      v.convert(out.stderr_path);
    }
  });
}

void readStatusList(const msgpack::object& o, std::vector<proto::InstanceStatus>& out) {
  if (o.type != msgpack::type::ARRAY) throw msgpack::type_error();
  out.clear();
  out.resize(o.via.array.size);
  for (std::uint32_t i = 0; i < o.via.array.size; ++i) readInstanceStatus(o.via.array.ptr[i], out[i]);
}

// decodeReply<T>'s envelope handling around a body reader.
template <class T, class Read>
Result<T> decodeWith(const proto::Envelope& env, Read read) {
  if (env.type == proto::MsgType::kErrorReply) {
    auto er = proto::decodeBody<proto::ErrorReply>(env);
    if (!er) return er.error();
    return Error{er->code, std::move(er->message)};
  }
  if (env.type != T::kType) return proto::detail::malformedBody(env.type, "unexpected message type");
  try {
    T msg;
    read(env.body, msg);
    return msg;
  } catch (const std::exception& e) {
    return proto::detail::malformedBody(env.type, e.what());
  }
}

}  // namespace

void readInstanceStatus(const msgpack::object& o, proto::InstanceStatus& s) {
  // The order of InstanceStatus's MSGPACK_DEFINE_MAP.
  static constexpr std::array<std::string_view, 26> kNames = {
      "name",       "running",    "pid",           "started_at",       "stopped_at", "restarts",
      "state",      "provisioned", "exit_error",   "program",          "instance",   "priority",
      "groups",     "exit_code",  "exit_signal",   "uptime_ms",        "last_start_error", "log",
      "log_dropped_bytes", "adopted", "rss_bytes", "cpu_seconds",      "starts",     "exits",
      "log_stdout_bytes", "log_stderr_bytes"};
  forEachField(o, kNames, [&](std::size_t idx, const msgpack::object& v) {
    switch (idx) {
      case 0: v.convert(s.name); break;
      case 1: v.convert(s.running); break;
      case 2: v.convert(s.pid); break;
      case 3: v.convert(s.started_at); break;
      case 4: v.convert(s.stopped_at); break;
      case 5: v.convert(s.restarts); break;
      case 6: v.convert(s.state); break;
      case 7: v.convert(s.provisioned); break;
      case 8: v.convert(s.exit_error); break;
      case 9: v.convert(s.program); break;
      case 10: v.convert(s.instance); break;
      case 11: v.convert(s.priority); break;
      case 12: v.convert(s.groups); break;
      case 13: v.convert(s.exit_code); break;
      case 14: v.convert(s.exit_signal); break;
      case 15: v.convert(s.uptime_ms); break;
      case 16: v.convert(s.last_start_error); break;
      case 17: readLogPaths(v, s.log); break;
      case 18: v.convert(s.log_dropped_bytes); break;
      case 19: v.convert(s.adopted); break;
      case 20: v.convert(s.rss_bytes); break;
      case 21: v.convert(s.cpu_seconds); break;
      case 22: v.convert(s.starts); break;
      case 23: v.convert(s.exits); break;
      case 24: v.convert(s.log_stdout_bytes); break;
      case 25: v.convert(s.log_stderr_bytes); break;
      default: break;
    }
  });
}

Result<proto::StatusReply> decodeStatusReply(const proto::Envelope& env) {
  return decodeWith<proto::StatusReply>(env, [](const msgpack::object& body, proto::StatusReply& r) {
    static constexpr std::array<std::string_view, 2> kNames = {"instances", "single"};
    forEachField(body, kNames, [&](std::size_t idx, const msgpack::object& v) {
      if (idx == 0) {
        readStatusList(v, r.instances);
      } else {
        v.convert(r.single);
      }
    });
  });
}

Result<proto::ActionReply> decodeActionReply(const proto::Envelope& env) {
  return decodeWith<proto::ActionReply>(env, [](const msgpack::object& body, proto::ActionReply& r) {
    static constexpr std::array<std::string_view, 3> kNames = {"instances", "plan", "timed_out"};
    forEachField(body, kNames, [&](std::size_t idx, const msgpack::object& v) {
      switch (idx) {
        case 0: readStatusList(v, r.instances); break;
        case 1: v.convert(r.plan); break;
        default: v.convert(r.timed_out); break;
      }
    });
  });
}

Result<proto::GroupStatusReply> decodeGroupStatusReply(const proto::Envelope& env) {
  return decodeWith<proto::GroupStatusReply>(env, [](const msgpack::object& body, proto::GroupStatusReply& r) {
    static constexpr std::array<std::string_view, 1> kNames = {"members"};
    forEachField(body, kNames, [&](std::size_t, const msgpack::object& v) {
      // msgpack's std::map adaptor: later duplicates replace earlier ones (insert_or_assign).
      if (v.type != msgpack::type::MAP) throw msgpack::type_error();
      for (std::uint32_t i = 0; i < v.via.map.size; ++i) {
        std::string member;
        v.via.map.ptr[i].key.convert(member);
        std::vector<proto::InstanceStatus> list;
        readStatusList(v.via.map.ptr[i].val, list);
        r.members.insert_or_assign(std::move(member), std::move(list));
      }
    });
  });
}

}  // namespace provisr::gateway

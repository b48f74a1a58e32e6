// The master's replies that carry a status per instance, decoded with each InstanceStatus map
// read in one pass over its keys. msgpack-c's MSGPACK_DEFINE_MAP conversion builds a std::map
// of every object's keys first (26 string nodes per instance): at thousands of instances that
// was most of a status-all's decode time. Same values and same errors as proto::decodeReply<T>.
#pragma once

#include "common/proto/codec.hpp"
#include "common/util/result.hpp"

namespace provisr::gateway {

Result<proto::StatusReply> decodeStatusReply(const proto::Envelope& env);
Result<proto::ActionReply> decodeActionReply(const proto::Envelope& env);
Result<proto::GroupStatusReply> decodeGroupStatusReply(const proto::Envelope& env);

// One InstanceStatus from its MessagePack map; throws msgpack::type_error as convert() does.
void readInstanceStatus(const msgpack::object& o, proto::InstanceStatus& out);

}  // namespace provisr::gateway

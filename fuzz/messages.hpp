// Every message type of common/proto/schema.hpp, as a type list the fuzz targets and the seed
// writer walk; coversEveryType() notices a message added to the schema and missing here.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/proto/codec.hpp"

namespace provisr::fuzz {

template <class... T>
struct TypeList {
  static constexpr std::size_t size = sizeof...(T);
};

namespace p = provisr::proto;
using AllMessages = TypeList<
    p::ErrorReply, p::OkReply, p::Hello, p::HelloReply, p::Spawn, p::SpawnReply, p::SignalChild, p::StopChild,
    p::Snapshot, p::SnapshotReply, p::Ack, p::ChildStarted, p::ChildExited, p::SpawnFailed, p::LogStats, p::LogTail,
    p::LogTailReply, p::LogFollow, p::LogLines, p::ReopenLogs, p::StatusRequest, p::StatusReply, p::Start, p::Stop,
    p::Restart, p::ActionReply, p::Scale, p::Register, p::Unregister, p::Update, p::Groups, p::GroupsReply,
    p::GroupStatus, p::GroupStatusReply, p::GroupStart, p::GroupStop, p::Reload, p::ReloadReply, p::Logs,
    p::LogsReply, p::Spec, p::SpecReply, p::Settings, p::SettingsReply, p::Shutdown, p::Subscribe, p::StateChanged,
    p::Deposit, p::Release, p::Withdraw, p::WithdrawChunk, p::Exited>;

// Calls f(T{}) for every message type T.
template <class F, class... T>
void forEachMessage(TypeList<T...>, F&& f) {
  (f(T{}), ...);
}
template <class F>
void forEachMessage(F&& f) {
  forEachMessage(AllMessages{}, f);
}

// True when the list covers every type the codec knows (checked once by each target at start).
inline bool coversEveryType() {
  std::size_t known = 0;
  for (unsigned raw = 0; raw <= 0xffff; ++raw)
    if (p::isKnownMsgType(static_cast<std::uint16_t>(raw))) ++known;
  return known == AllMessages::size;
}

}  // namespace provisr::fuzz

// The fd store's table: deposits, releases, reaped exits and withdraw chunks.
#include "cli/keeper/fd_table.hpp"

#include <algorithm>

namespace provisr::keeper {

bool validKey(const std::string& key) {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
  });
}

Status FdTable::deposit(const proto::Deposit& d, std::vector<UniqueFd> fds) {
  if (!validKey(d.key)) return makeError(ErrorCode::kInvalidArgument, "Deposit: bad key");
  if (d.kinds.size() != fds.size()) {
    return makeError(ErrorCode::kInvalidArgument, "Deposit " + d.key + ": " + std::to_string(d.kinds.size()) +
                                                      " kinds but " + std::to_string(fds.size()) + " fds");
  }
  for (std::size_t i = 0; i < d.kinds.size(); ++i) {
    if (std::count(d.kinds.begin(), d.kinds.end(), d.kinds[i]) != 1)
      return makeError(ErrorCode::kInvalidArgument, "Deposit " + d.key + ": a kind appears twice");
  }
  if (d.pid < 0) return makeError(ErrorCode::kInvalidArgument, "Deposit " + d.key + ": negative pid");
  FdKey k{d.key, d.generation};
  if (d.pid > 0) {
    auto other = byPid_.find(d.pid);
    if (other != byPid_.end() && other->second != k) {
      // The pid was reused by a new child: the old entry's child is long gone and reaped.
      auto old = entries_.find(other->second);
      if (old != entries_.end()) old->second.pid = 0;
      byPid_.erase(other);
    }
  }
  FdEntry& e = entries_[k];
  for (std::size_t i = 0; i < d.kinds.size(); ++i) {
    auto at = std::find(e.kinds.begin(), e.kinds.end(), d.kinds[i]);
    if (at != e.kinds.end()) {
      e.fds[static_cast<std::size_t>(at - e.kinds.begin())] = std::move(fds[i]);
    } else {
      e.kinds.push_back(d.kinds[i]);
      e.fds.push_back(std::move(fds[i]));
    }
  }
  if (d.pid > 0 && e.pid != d.pid) {
    if (e.pid > 0) byPid_.erase(e.pid);
    e.pid = d.pid;
    byPid_[d.pid] = k;
  }
  return {};
}

bool FdTable::release(const FdKey& k) {
  auto it = entries_.find(k);
  if (it == entries_.end()) return false;
  const FdEntry& e = it->second;
  if (e.pid > 0) {
    byPid_.erase(e.pid);
    releasedGroups_.insert(e.pid);
  } else if (e.exit) {
    releasedGroups_.insert(e.exit->pid);
  }
  entries_.erase(it);
  return true;
}

const FdEntry* FdTable::find(const FdKey& k) const {
  auto it = entries_.find(k);
  return it == entries_.end() ? nullptr : &it->second;
}

std::optional<FdKey> FdTable::keyOfPid(pid_t pid) const {
  auto it = byPid_.find(pid);
  if (it == byPid_.end()) return std::nullopt;
  return it->second;
}

std::optional<proto::Exited> FdTable::recordExit(pid_t pid, int rawStatus, std::int64_t atMs) {
  auto it = byPid_.find(pid);
  if (it == byPid_.end()) return std::nullopt;
  FdEntry& e = entries_.at(it->second);
  proto::Exited ex;
  ex.key = it->second.key;
  ex.generation = it->second.generation;
  ex.pid = pid;
  ex.status = rawStatus;
  ex.at = atMs;
  e.exit = ex;
  // The pid is free for reuse now; the entry stays (and keeps its fds) until Release.
  byPid_.erase(it);
  return ex;
}

std::vector<proto::Exited> FdTable::pendingExits() const {
  std::vector<proto::Exited> out;
  for (const auto& [k, e] : entries_)
    if (e.exit) out.push_back(*e.exit);
  return out;
}

WithdrawChunkPlan FdTable::nextChunk(const std::optional<FdKey>& after, std::size_t maxFds) const {
  WithdrawChunkPlan plan;
  auto it = after ? entries_.upper_bound(*after) : entries_.begin();
  for (; it != entries_.end(); ++it) {
    const FdEntry& e = it->second;
    if (!plan.msg.entries.empty() && plan.fds.size() + e.fds.size() > maxFds) break;
    proto::DepositEntry de;
    de.key = it->first.key;
    de.generation = it->first.generation;
    de.kinds = e.kinds;
    de.pid = e.pid != 0 ? e.pid : (e.exit ? e.exit->pid : 0);
    plan.msg.entries.push_back(std::move(de));
    for (const auto& fd : e.fds) plan.fds.push_back(fd.get());
    plan.lastKey = it->first;
  }
  plan.msg.last = it == entries_.end();
  return plan;
}

std::vector<pid_t> FdTable::groups() const {
  std::set<pid_t> all(releasedGroups_);
  for (const auto& [k, e] : entries_) {
    if (e.pid > 0) all.insert(e.pid);
    else if (e.exit) all.insert(e.exit->pid);
  }
  return {all.begin(), all.end()};
}

std::size_t FdTable::fdCount() const {
  std::size_t n = 0;
  for (const auto& [k, e] : entries_) n += e.fds.size();
  return n;
}

}  // namespace provisr::keeper

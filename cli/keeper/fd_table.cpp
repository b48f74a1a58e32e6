// The fd store's table: deposits, releases, reaped exits and withdraw chunks.
#include "cli/keeper/fd_table.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

// Linux 6.9: pidfd_send_signal() to the process group the pidfd's process leads.
#ifndef PIDFD_SIGNAL_PROCESS_GROUP
#define PIDFD_SIGNAL_PROCESS_GROUP (1U << 2)
#endif

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

bool FdTable::release(const FdKey& k, std::uint64_t nowTicks) {
  auto it = entries_.find(k);
  if (it == entries_.end()) return false;
  FdEntry& e = it->second;
  pid_t pgid = 0;
  if (e.pid > 0) {
    // Only this entry's own mapping: after pid reuse the pid may already name a newer entry.
    auto p = byPid_.find(e.pid);
    if (p != byPid_.end() && p->second == k) byPid_.erase(p);
    pgid = e.pid;
  } else if (e.exit) {
    pgid = e.exit->pid;
  }
  if (pgid > 0) {
    Released r;
    r.ownedAtTicks = e.exit ? e.reapedAtTicks : nowTicks;
    for (std::size_t i = 0; i < e.kinds.size() && i < e.fds.size(); ++i) {
      if (e.kinds[i] == proto::FdKind::kPidfd) r.pidfd = std::move(e.fds[i]);
    }
    releasedGroups_[pgid] = std::move(r);
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

std::optional<proto::Exited> FdTable::recordExit(pid_t pid, int rawStatus, std::int64_t atMs, std::uint64_t nowTicks) {
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
  e.reapedAtTicks = nowTicks;
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
  std::vector<pid_t> out;
  for (const auto& g : groupRefs()) out.push_back(g.pgid);
  return out;
}

std::vector<GroupRef> FdTable::groupRefs() const {
  std::map<pid_t, GroupRef> all;
  for (const auto& [g, r] : releasedGroups_) all[g] = refOf(g, r);
  const std::uint64_t now = bootTicksNow();
  // Reaped entries first: an entry whose child runs names its group now, over an older entry
  // whose reaped child had the same id.
  std::vector<const FdEntry*> order;
  for (const auto& [k, e] : entries_) {
    if (e.exit) order.push_back(&e);
  }
  for (const auto& [k, e] : entries_) {
    if (!e.exit) order.push_back(&e);
  }
  for (const FdEntry* ep : order) {
    const FdEntry& e = *ep;
    GroupRef ref;
    ref.pgid = e.pid > 0 ? e.pid : (e.exit ? e.exit->pid : 0);
    if (ref.pgid <= 0) continue;
    ref.ownedAtTicks = e.exit ? e.reapedAtTicks : now;
    for (std::size_t i = 0; i < e.kinds.size() && i < e.fds.size(); ++i) {
      if (e.kinds[i] == proto::FdKind::kPidfd) ref.pidfd = e.fds[i].get();
    }
    all[ref.pgid] = ref;  // a held entry names the group now; an older release of the id is stale
  }
  std::vector<GroupRef> out;
  for (const auto& [g, r] : all) out.push_back(r);
  return out;
}

std::size_t FdTable::fdCount() const {
  std::size_t n = 0;
  for (const auto& [k, e] : entries_) n += e.fds.size();
  return n;
}

namespace {

long pidfdSignal(int pidfd, int sig, unsigned flags) { return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, flags); }

struct StatFields {
  char state = '?';
  pid_t pgrp = 0;
  std::uint64_t startTicks = 0;
};

// Fields 3, 5 and 22 of /proc/<pid>/stat; nullopt when the process is gone.
std::optional<StatFields> readStat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 1));
  std::vector<std::string> f;
  std::string field;
  while (rest >> field && f.size() < 20) f.push_back(field);
  if (f.size() < 20) return std::nullopt;  // f[0] is field 3 (state), f[19] field 22 (start time)
  StatFields s;
  s.state = f[0].empty() ? '?' : f[0][0];
  s.pgrp = static_cast<pid_t>(std::strtol(f[2].c_str(), nullptr, 10));
  s.startTicks = std::strtoull(f[19].c_str(), nullptr, 10);
  return s;
}

// Without the kernel resolving the group from the pidfd: whether the id `g.pgid` still names the
// group that was ours at `g.ownedAtTicks`. An id can be reused only after its group emptied
// (a group's members keep the number allocated), and a reused id names a group founded by the
// process that got the number. So: our leader alive (its pidfd answers) holds the id; else another
// process holding the leader's pid means reuse; else a member that started no later than the
// moment the group was known to be ours shows the group never emptied.
bool idStillOurs(const GroupRef& g) {
  if (g.pgid <= 1) return false;
  if (g.pidfd >= 0) {
    if (pidfdSignal(g.pidfd, 0, 0) == 0 || errno == EPERM) return true;
  }
  if (readStat(g.pgid)) return false;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return false;
  bool found = false;
  while (const dirent* d = ::readdir(proc)) {
    if (d->d_name[0] < '1' || d->d_name[0] > '9') continue;
    auto s = readStat(static_cast<pid_t>(std::strtol(d->d_name, nullptr, 10)));
    if (s && s->pgrp == g.pgid && s->startTicks <= g.ownedAtTicks) {
      found = true;
      break;
    }
  }
  ::closedir(proc);
  return found;
}

// 1: sent, 0: the group is empty or not ours, -1: decide without the pidfd (no pidfd, or a kernel
// without PIDFD_SIGNAL_PROCESS_GROUP).
int sendThroughPidfd(const GroupRef& g, int sig) {
  if (g.pidfd < 0) return -1;
  if (pidfdSignal(g.pidfd, sig, PIDFD_SIGNAL_PROCESS_GROUP) == 0) return 1;
  if (errno == ESRCH) return 0;
  if (errno == EPERM) return sig == 0 ? 1 : 0;
  return -1;  // EINVAL (flag unknown), EBADF (not a pidfd)
}

}  // namespace

bool groupAlive(const GroupRef& g) {
  const int viaPidfd = sendThroughPidfd(g, 0);
  if (viaPidfd >= 0) return viaPidfd == 1;
  return (::kill(-g.pgid, 0) == 0 || errno == EPERM) && idStillOurs(g);
}

bool signalGroup(const GroupRef& g, int sig) {
  const int viaPidfd = sendThroughPidfd(g, sig);
  if (viaPidfd >= 0) return viaPidfd == 1;
  return idStillOurs(g) && ::kill(-g.pgid, sig) == 0;
}

std::uint64_t bootTicksNow() {
  timespec ts{};
  ::clock_gettime(CLOCK_BOOTTIME, &ts);
  const auto hz = static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
  return static_cast<std::uint64_t>(ts.tv_sec) * hz + static_cast<std::uint64_t>(ts.tv_nsec) * hz / 1'000'000'000u;
}

}  // namespace provisr::keeper

// The fd store's table (DESIGN §2, §4 item 3): for every managed child (key, generation) the fds
// the spawner deposited — pipe read ends, pidfd — its pid, and the exit the keeper reaped while no
// spawner held it. Pure: no sockets; tests drive it with pipes.
#pragma once

#include <sys/types.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/proto/schema.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::keeper {

struct FdKey {
  std::string key;
  std::uint64_t generation = 0;
  auto operator<=>(const FdKey&) const = default;
};

struct FdEntry {
  std::vector<proto::FdKind> kinds;  // kinds[i] describes fds[i]; each kind at most once
  std::vector<UniqueFd> fds;
  pid_t pid = 0;  // 0 until the Deposit after the fork
  std::optional<proto::Exited> exit;  // reaped by the keeper, not yet released by a spawner
  std::uint64_t reapedAtTicks = 0;    // when (bootTicksNow()); the pid may be reused after it
};

// One WithdrawChunk to send: its message and the fds (still owned by the table) riding with it.
struct WithdrawChunkPlan {
  proto::WithdrawChunk msg;
  std::vector<int> fds;
  std::optional<FdKey> lastKey;  // the cursor for the next chunk
};

inline constexpr std::size_t kMaxKeyLength = 256;

// A process group to signal (at shutdown: what is left of managed programs), and what names it
// safely after its leader has been reaped, when its id may have been reused (signalGroup()).
struct GroupRef {
  pid_t pgid = 0;
  int pidfd = -1;                 // the leader's pidfd (borrowed from the table), -1 if none
  std::uint64_t ownedAtTicks = 0;  // boot-time clock ticks when the group was last known to be ours
};

class FdTable {
 public:
  // Takes `fds` (one per d.kinds entry). A second Deposit for the same (key, generation) adds to
  // the entry; a kind deposited again replaces the older fd. Invalid input closes the fds and is
  // an error (kInvalidArgument) that leaves the table unchanged.
  Status deposit(const proto::Deposit& d, std::vector<UniqueFd> fds);
  // Closes the entry's fds, except its pidfd: the group it leads is remembered with that pidfd
  // (and `nowTicks`, see GroupRef) until pruneGroups() finds it empty. False when there is no such
  // entry.
  bool release(const FdKey& k, std::uint64_t nowTicks = 0);

  const FdEntry* find(const FdKey& k) const;
  std::optional<FdKey> keyOfPid(pid_t pid) const;

  // The keeper reaped `pid`: the Exited to hand a spawner, or nullopt when the pid is not a
  // managed child (an orphaned descendant: nothing to report).
  std::optional<proto::Exited> recordExit(pid_t pid, int rawStatus, std::int64_t atMs, std::uint64_t nowTicks = 0);
  // Every reaped exit whose entry is not yet released, in key order.
  std::vector<proto::Exited> pendingExits() const;

  // The next WithdrawChunk after `after` (from the start when unset): whole entries, at most
  // `maxFds` fds in all (an entry is never split). `msg.last` is set on the final chunk; an
  // empty table gives one empty chunk with last = true.
  WithdrawChunkPlan nextChunk(const std::optional<FdKey>& after, std::size_t maxFds = proto::kMaxFdsPerMessage) const;

  // Process groups of managed children (pid = pgid): live entries, and groups released while a
  // member still ran (pruned with pruneGroups()). Ids only; signal through groupRefs().
  std::vector<pid_t> groups() const;
  // The same groups, each with what names it safely (see GroupRef).
  std::vector<GroupRef> groupRefs() const;
  // Forgets released groups for which `alive(ref)` is false (their pidfd is closed).
  template <class Alive>
  void pruneGroups(Alive alive) {
    for (auto it = releasedGroups_.begin(); it != releasedGroups_.end();) {
      it = alive(refOf(it->first, it->second)) ? std::next(it) : releasedGroups_.erase(it);
    }
  }

  std::size_t size() const { return entries_.size(); }
  std::size_t fdCount() const;

 private:
  struct Released {
    UniqueFd pidfd;  // of the group's leader (reaped by now); invalid when none was deposited
    std::uint64_t ownedAtTicks = 0;
  };
  static GroupRef refOf(pid_t pgid, const Released& r) { return GroupRef{pgid, r.pidfd.get(), r.ownedAtTicks}; }

  std::map<FdKey, FdEntry> entries_;
  std::map<pid_t, FdKey> byPid_;
  std::map<pid_t, Released> releasedGroups_;
};

// Whether any process is left in the group `g` names (false once it is empty or the id has been
// reused by an unrelated group, as far as can be told: see signalGroup).
bool groupAlive(const GroupRef& g);
// Sends `sig` to the group `g` names, never to an unrelated group that took over its id after pid
// wraparound. With the leader's pidfd the kernel resolves the group from that pidfd
// (PIDFD_SIGNAL_PROCESS_GROUP, Linux 6.9): a reused number is a different struct pid and is not
// touched. Without the flag (older kernels) or without a pidfd, the id is used only when the group
// still holds a process that started no later than `g.ownedAtTicks` (when the group was known to
// be ours: it was in the group before the id could have been reused) and no other process has
// taken the leader's pid. True when the signal was sent.
bool signalGroup(const GroupRef& g, int sig);
// Clock ticks since boot now, the unit of /proc/<pid>/stat's start time.
std::uint64_t bootTicksNow();

// True for a key the spawner may use: 1..kMaxKeyLength of [A-Za-z0-9._-].
bool validKey(const std::string& key);

}  // namespace provisr::keeper

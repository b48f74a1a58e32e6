// ChildTable: every child the spawner holds — running, being stopped, or exited and awaiting the
// master's acknowledgment — by (key, generation), plus the newest generation seen per key, which
// makes a re-sent Spawn idempotent.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/proto/schema.hpp"
#include "common/util/event_loop.hpp"
#include "spawner/log_writer.hpp"
#include "spawner/reaper.hpp"

namespace provisr::spawner {

// How the exit of a child becomes known.
enum class ExitSource : std::uint8_t {
  kOwnChild,   // we are its parent: waitid(P_PIDFD, WNOWAIT) on its pidfd, reaped after the Ack
  kKeeper,     // the keeper is its parent (we withdrew its fds): the keeper's Exited{status}
  kUnknown,    // adopted from the journal alone: only that it is gone (the pidfd turns readable)
};

struct Child {
  std::string key;
  std::uint64_t generation = 0;
  std::int64_t startedAtMs = 0;
  std::unique_ptr<ManagedChild> proc;  // pid, pidfd, start ticks, group signals
  ExitSource exitSource = ExitSource::kOwnChild;
  proto::ChildState state = proto::ChildState::kRunning;
  std::optional<ExitStatus> exit;  // set once exited (unset for kUnknown: status not known)
  bool adopted = false;
  proto::LogSinks log;
  struct StreamSlot {
    std::unique_ptr<LogStream> stream;
    bool watched = false;  // in the loop; off while a partial line waits for the flush timer
    bool eof = false;
  };
  std::vector<StreamSlot> streams;  // stdout, stderr (none for a child adopted without its pipes)
  std::optional<EventLoop::TimerId> killTimer;
  std::optional<EventLoop::TimerId> flushTimer;
  std::optional<EventLoop::TimerId> keeperExitTimer;  // kKeeper: gone, the keeper's Exited awaited
  bool pidfdWatched = false;

  pid_t pid() const { return proc ? proc->pid() : 0; }
  bool alive() const { return state != proto::ChildState::kExited; }
};

class ChildTable {
 public:
  using Id = std::pair<std::string, std::uint64_t>;

  Child& add(std::unique_ptr<Child> c);
  Child* find(const std::string& key, std::uint64_t generation);
  // The live (running or stopping) child of `key`, else the newest exited one; nullptr if none.
  Child* findByKey(const std::string& key);
  Child* findLive(const std::string& key);
  Child* findByPid(pid_t pid);
  void erase(const std::string& key, std::uint64_t generation);

  // The newest generation ever accepted for `key` (spawned, failed or adopted).
  std::optional<std::uint64_t> lastGeneration(const std::string& key) const;
  void noteGeneration(const std::string& key, std::uint64_t generation);

  // True for a pid that is our own unreleased child (orphan reaping must leave it alone).
  bool isOwnChild(pid_t pid) const;

  std::size_t size() const { return children_.size(); }
  template <class F>
  void forEach(F&& f) {
    for (auto& [id, c] : children_) f(*c);
  }
  template <class F>
  void forEach(F&& f) const {
    for (const auto& [id, c] : children_) f(static_cast<const Child&>(*c));
  }

 private:
  std::map<Id, std::unique_ptr<Child>> children_;
  std::unordered_map<std::string, std::uint64_t> lastGeneration_;
  std::unordered_map<pid_t, Id> byPid_;  // SIGCHLD asks isOwnChild for every child: O(1) each
};

}  // namespace provisr::spawner

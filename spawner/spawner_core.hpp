// SpawnerCore: the spawner's logic — master authentication and epochs, idempotent spawns, the
// acknowledged event queue, stops, log rings, the journal and adoption. The I/O shell (main.cpp)
// hands it decoded ZeroMQ messages and keeper messages; it answers with replies and sends events
// through an injected function, and watches child fds and timers on the injected EventLoop.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/proto/codec.hpp"
#include "common/proto/schema.hpp"
#include "common/util/event_loop.hpp"
#include "spawner/child_table.hpp"
#include "spawner/fd_store_client.hpp"
#include "spawner/journal.hpp"
#include "spawner/log_ring.hpp"
#include "spawner/log_writer.hpp"

namespace provisr::spawner {

// Limits on requests, beyond the codec's: anything larger is refused with kInvalidArgument.
inline constexpr std::size_t kMaxBatch = 10'000;
inline constexpr std::size_t kMaxKeyBytes = 128;
inline constexpr std::size_t kMaxArgs = 4096;
inline constexpr std::size_t kMaxEnv = 4096;
inline constexpr std::size_t kMaxTailLines = 10'000;
inline constexpr std::uint64_t kMaxStopTimeoutMs = 24ull * 3600 * 1000;

struct CoreConfig {
  std::string secret;       // what Hello must present
  std::string journalPath;  // empty: no journal
  pid_t selfPid = 0;
  // The keeper (our parent) when it holds the fd store; 0: not checked. It reports the exit only
  // of a child it is the parent of: a withdrawn child with another parent (deposited again by a
  // spawner that outlived an earlier keeper) is watched through its pidfd, exit status unknown.
  pid_t keeperPid = 0;
  Duration flushDelay = std::chrono::milliseconds(100);   // a partial line held in a shared file
  Duration statsInterval = std::chrono::seconds(1);       // LogStats at most this often
  // Exits only shrink the journal (a stale line is harmless: adoption checks the start time), so
  // that rewrite waits this long and covers every exit meanwhile; a spawn is journaled that turn.
  Duration journalCleanupDelay = std::chrono::seconds(1);
  // A child the keeper reaps (kKeeper) that is gone (its pidfd turned readable) but whose Exited
  // has not come after this long is taken as exited with an unknown status: the keeper did not
  // know its pid (a report lost that way would leave it "running" for good).
  Duration keeperExitGrace = std::chrono::seconds(10);
};

// Why a child's field was refused; empty when the spec is acceptable.
std::optional<Error> validateChildSpec(const proto::ChildSpec& spec);

class SpawnerCore {
 public:
  // Sends one message to the master's route; false when it cannot be delivered now.
  using SendFn = std::function<bool(const std::vector<std::string>& route, const std::string& bytes)>;
  using LogFn = std::function<void(const std::string& line)>;

  // `fdStore` may be null (no keeper) and must outlive the core.
  SpawnerCore(EventLoop& loop, CoreConfig cfg, SendFn send, LogFn log, FdStoreClient* fdStore = nullptr);
  ~SpawnerCore();
  SpawnerCore(const SpawnerCore&) = delete;
  SpawnerCore& operator=(const SpawnerCore&) = delete;

  // One message received on the ROUTER from `route`. Returns the reply for that route (none for
  // an Ack that succeeded). Never throws; garbage gets an ErrorReply.
  std::optional<std::string> onMessage(const std::vector<std::string>& route, std::string_view payload);

  // At start, before serving: the journal of a previous spawner and what the keeper's fd store
  // gave back. Children that still run are adopted (ChildStarted events are queued).
  struct AdoptionReport {
    std::size_t adopted = 0;      // found again (with their pipes when the fd store had them)
    std::size_t withPipes = 0;    // of those, logs resumed from the same pipes
    std::size_t reused = 0;       // journal pid now names another process: not adopted
    std::size_t gone = 0;         // journal pid no longer exists
    std::size_t dropped = 0;      // fd store entries without a pidfd, given back
  };
  // `exits`: the Exited messages that came with the withdrawal (applied by the caller afterwards).
  AdoptionReport adopt(const std::vector<JournalEntry>& journal, std::vector<WithdrawnEntry> withdrawn,
                       const std::vector<proto::Exited>& exits = {});

  // A new keeper's fd store (this spawner outlived the previous keeper, whose copies died with
  // it): from now on deposits go there, and every live child's pidfd and pipe read ends are
  // deposited again, so a later spawner crash still finds them. Returns how many children.
  std::size_t redeposit(FdStoreClient* fdStore);

  // The keeper reaped a child it inherited (fd store adoption).
  void onKeeperExited(const proto::Exited& e);
  // SIGCHLD: reaps exited children that are not managed (orphans we inherited as subreaper).
  std::size_t onSigchld();
  // End of a loop turn: writes the journal if anything changed during the turn.
  void endOfTurn();
  // SIGTERM: move what the pipes hold, write the journal. Children keep running.
  void shutdown();

  // Introspection (tests, logs).
  std::uint64_t epoch() const { return epoch_; }
  std::uint64_t lastSeq() const { return lastSeq_; }
  std::size_t queuedEvents() const { return events_.size(); }
  std::size_t journalWrites() const { return journalWrites_; }
  const ChildTable& children() const { return table_; }

 private:
  struct QueuedEvent {
    std::uint64_t seq = 0;
    std::string bytes;
    std::optional<ChildTable::Id> exitOf;  // a ChildExited: its Ack releases this child
    bool sent = false;
  };
  using Route = std::vector<std::string>;
  using Reply = std::optional<std::string>;

  // One handler per request type, all listed in handlers() (spawner_core.cpp).
  Reply onHello(const Route& route, const proto::Envelope& env);
  Reply onSpawn(const Route& route, const proto::Envelope& env);
  Reply onSignalChild(const Route& route, const proto::Envelope& env);
  Reply onStopChild(const Route& route, const proto::Envelope& env);
  Reply onSnapshot(const Route& route, const proto::Envelope& env);
  Reply onAck(const Route& route, const proto::Envelope& env);
  Reply onLogTail(const Route& route, const proto::Envelope& env);
  Reply onLogFollow(const Route& route, const proto::Envelope& env);
  Reply onReopenLogs(const Route& route, const proto::Envelope& env);
  using Handler = Reply (SpawnerCore::*)(const Route&, const proto::Envelope&);
  struct HandlerEntry {
    proto::MsgType type;
    Handler handler;
  };
  static const std::vector<HandlerEntry>& handlers();

  // kUnauthorized / kStaleEpoch unless `epoch` is the current master's and comes from its route.
  std::optional<Error> checkMaster(const Route& route, std::uint64_t epoch) const;

  proto::SpawnResult spawnOne(const proto::ChildSpec& spec);
  std::shared_ptr<LogRing> ringFor(const std::string& key);
  Result<std::shared_ptr<LogFile>> fileFor(const std::string& path, const proto::LogSinks& sinks);
  void attachStreams(Child& c, UniqueFd outRead, UniqueFd errRead);
  void watchPidfd(Child& c);
  void onPidfdReadable(const ChildTable::Id& id);
  void onKeeperExitOverdue(const ChildTable::Id& id);
  void pumpStream(const ChildTable::Id& id, std::size_t index, bool flushPartial);
  void pumpAll(Child& c, bool flushPartial);
  void onFlushTimer(const ChildTable::Id& id);
  void markExited(Child& c, std::optional<ExitStatus> status, std::int64_t atMs);
  void releaseChild(const ChildTable::Id& id);
  void detach(Child& c);  // removes every loop watch and timer of the child

  template <class T>
  void emit(T msg, std::optional<ChildTable::Id> exitOf = std::nullopt);
  void sendPending();
  void noteLogActivity(const Child& c);
  void emitLogStats();
  void pushFollowed(const std::string& key);
  std::int64_t nowMs() const;
  void log(const std::string& line) const;

  EventLoop& loop_;
  CoreConfig cfg_;
  SendFn send_;
  LogFn log_;
  FdStoreClient* fdStore_;

  std::uint64_t epoch_ = 0;
  Route masterRoute_;
  bool synced_ = false;  // the current master has taken its Snapshot: events flow to it

  ChildTable table_;
  std::deque<QueuedEvent> events_;
  std::uint64_t lastSeq_ = 0;

  Compressor compressor_;
  LogFileSet logFiles_;
  std::unique_ptr<LogScratch> scratch_;
  std::unordered_map<std::string, std::shared_ptr<LogRing>> rings_;
  std::set<ChildTable::Id> statsDirty_;
  std::optional<EventLoop::TimerId> statsTimer_;
  std::map<std::string, std::uint64_t> followed_;  // key → the next ring offset to push

  void journalCleanupSoon();

  bool journalDirty_ = false;
  std::optional<EventLoop::TimerId> journalTimer_;
  std::size_t journalWrites_ = 0;
};

}  // namespace provisr::spawner

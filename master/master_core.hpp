// MasterCore: the master's logic, pure — decoded messages and the time in, effects out (messages for
// the spawner and the gateway, a timer deadline, master.state changes, program files to write).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/loader.hpp"
#include "common/config/model.hpp"
#include "common/proto/codec.hpp"
#include "common/proto/schema.hpp"
#include "common/util/clock.hpp"
#include "master/lifecycle.hpp"
#include "master/scheduler.hpp"
#include "master/state_store.hpp"

namespace provisr::master {

using Route = std::vector<std::string>;

// A message for a gateway peer (reply or push), sent after master.state is on disk.
struct ClientMessage {
  Route route;
  std::string bytes;
};

// A program file to write (content set) or remove (content unset).
struct FileChange {
  std::string path;
  std::optional<std::string> content;
};

// What one call into the core asks the shell to do, in order: write files, flush the state
// store, send to the spawner, send to clients.
struct CoreEffects {
  std::vector<std::string> toSpawner;
  std::vector<ClientMessage> toClients;
  std::vector<FileChange> files;
  std::vector<std::string> logs;
  bool exit = false;  // leave the loop and exit 0 (after a shutdown)
  void merge(CoreEffects&& o);
};

struct CoreOptions {
  std::string secret;
  pid_t pid = 0;
  Duration spawnerTimeout = std::chrono::seconds(3);  // Hello/Snapshot/LogTail without an answer
  config::LoadOptions load;  // how Reload and Register load files
  // PATH lookup of argv[0] in the child's env; the default searches the file system.
  std::function<std::string(const std::string& prog, const std::vector<std::string>& env)> resolveExe;
  // Reads rss_bytes / cpu_seconds of a pid (status with sample); default: /proc.
  std::function<void(pid_t, proto::InstanceStatus&)> sample;
};

class MasterCore {
 public:
  // `state` is master.state as loaded (only used when the daemon turns out to be continuing).
  MasterCore(config::Config cfg, PersistedState persisted, const Clock& clock, CoreOptions opts);

  // First call: Hello to the spawner.
  CoreEffects start();
  // One message from the spawner's DEALER.
  CoreEffects onSpawnerMessage(std::string_view bytes);
  // One message from a gateway peer on the ROUTER.
  CoreEffects onClientMessage(const Route& route, std::string_view bytes);
  // The clock moved: fire every due timer.
  CoreEffects tick();
  // The spawner connection came back (or may have): Hello again.
  CoreEffects reconnect(const std::string& why);
  // The DEALER connected to (up) or lost the spawner. A connect after the first is a reconnect.
  CoreEffects onSpawnerConnection(bool up);
  // SIGTERM: stop everything in reverse priority order, then exit.
  CoreEffects shutdown();
  // SIGHUP / SIGUSR1.
  CoreEffects reload();
  CoreEffects reopenLogs();

  std::optional<MonoTime> nextDeadline() const;
  // A push to this gateway peer could not be delivered: it is gone, forget its subscriptions.
  void dropSubscriber(const Route& route) { subscribers_.erase(route); }

  // The state store: the shell flushes it once per turn, before client messages go out.
  StateStore& store() { return store_; }
  void setStore(StateStore store) { store_ = std::move(store); }

  // Introspection for tests.
  bool ready() const { return link_ == Link::kReady; }
  // The plans' work so far (Plan::work of the active plans plus the finished ones).
  std::uint64_t planWork() const;
  std::uint64_t epoch() const { return epoch_; }
  bool continuing() const { return continuing_; }
  const config::Config& config() const { return cfg_; }
  std::optional<proto::InstanceStatus> status(const std::string& instance) const;
  std::vector<std::string> instanceNames() const;

  // One handler per gateway request type (handlers.cpp lists them in one table).
  using HandlerFn = void (MasterCore::*)(const Route&, const proto::Envelope&, CoreEffects&);
  struct HandlerEntry {
    proto::MsgType type;
    HandlerFn fn;
  };
  static const std::vector<HandlerEntry>& handlers();

 private:
  enum class Link { kHello, kSnapshot, kReady };

  struct Inst {
    std::string name;
    std::string program;
    int index = 1;
    Instance life;
    // A log counter of the spawner (per child generation, and from 0 again in a new spawner) made
    // monotonic: `base` holds what earlier generations/spawners counted.
    struct LogCount {
      std::uint64_t base = 0;
      std::uint64_t cur = 0;
      void update(std::uint64_t v) {
        if (v < cur) base += cur;
        cur = v;
      }
      void fold() {
        base += cur;
        cur = 0;
      }
      std::uint64_t total() const { return base + cur; }
    };
    LogCount logStdout, logStderr, logDropped;
    std::uint64_t starts = 0;
    std::uint64_t lastStartedGen = 0;
    std::map<std::string, std::uint64_t> exits;  // by code or signal name
    bool adopted = false;
    std::optional<Duration> stopOverride;
    bool forget = false;  // remove once down (unregister, reload, scale down)
  };

  struct TimerKey {
    std::string instance;
    TimerKind kind;
    bool operator<(const TimerKey& o) const {
      return instance != o.instance ? instance < o.instance : kind < o.kind;
    }
  };
  struct Armed {
    MonoTime deadline;
    std::uint64_t generation = 0;
  };

  // A reply waiting for instances to settle (wait_ms) or for a plan to end (shutdown).
  struct Waiter {
    std::uint64_t token = 0;
    Route route;
    std::uint64_t id = 0;
    bool stop = false;
    std::vector<std::string> instances;
    std::vector<proto::PlanStep> plan;
    std::optional<MonoTime> deadline;
    std::function<void(CoreEffects&, bool timedOut)> done;  // optional custom completion
    mutable std::size_t checked = 0;  // instances[0..checked) were seen settled (settled() re-checks all at the end)
  };

  struct ActivePlan {
    Plan plan;
    bool synced = false;  // holds the status of each of its instances (set on the first advance)
  };

  // Logs requests relayed to the spawner, one LogTail per instance.
  struct LogsCall {
    Route route;
    std::uint64_t id = 0;
    std::size_t remaining = 0;
    proto::LogsReply reply;
    std::uint32_t limit = 100;
    proto::LogStreams stream = proto::LogStreams::kBoth;
    MonoTime deadline;
  };
  struct SpawnerCall {
    enum class Kind { kHello, kSnapshot, kSpawn, kLogTail, kOther } kind = Kind::kOther;
    std::uint64_t logsCall = 0;
    std::string instance;
  };

  // ---- spawner link ----
  template <class T>
  void toSpawner(T msg, CoreEffects& fx, SpawnerCall call = {});
  void sendHello(CoreEffects& fx);
  void onHelloReply(const proto::Envelope& env, CoreEffects& fx);
  void onSnapshotReply(const proto::Envelope& env, CoreEffects& fx);
  void onSpawnReply(const proto::Envelope& env, CoreEffects& fx);
  void onChildStarted(const proto::ChildStarted& ev, CoreEffects& fx);
  void onChildExited(const proto::ChildExited& ev, CoreEffects& fx);
  void onSpawnFailed(const proto::SpawnFailed& ev, CoreEffects& fx);
  void onLogTailReply(std::uint64_t callId, const std::string& instance, const proto::Envelope* env, CoreEffects& fx);
  void ack(std::uint64_t seq, CoreEffects& fx);
  void boot(CoreEffects& fx);

  // ---- instances ----
  void buildInstances();
  Inst& addInstance(const config::ProgramSpec& spec, int index);
  const config::ProgramSpec* programOf(const Inst& in) const;
  void apply(Inst& in, const Event& ev, CoreEffects& fx);
  void carryOut(Inst& in, const Action& a, CoreEffects& fx);
  void resendStop(Inst& in, CoreEffects& fx);
  proto::ChildSpec childSpec(const Inst& in, std::uint64_t generation) const;
  proto::InstanceStatus statusOf(const Inst& in, bool sample) const;
  void touch(const std::string& instance);
  void syncPlans();
  void afterChange(CoreEffects& fx);
  void flushSpawns(CoreEffects& fx);
  void advancePlans(CoreEffects& fx);
  void settleWaiters(CoreEffects& fx, bool timeoutsOnly);
  void forgetDown(CoreEffects& fx);
  std::vector<config::ProgramSpec> effectivePrograms() const;
  void publishState(const Inst& in, State from, CoreEffects& fx);

  // ---- requests ----
  Result<std::vector<std::string>> select(const proto::Selector& sel) const;
  void userStart(const std::vector<std::string>& names, std::vector<proto::PlanStep>& plan, bool dryRun,
                 CoreEffects& fx);
  void userStop(const std::vector<std::string>& names, std::optional<Duration> timeout,
                std::vector<proto::PlanStep>& plan, bool dryRun, CoreEffects& fx);
  void replyAction(const Route& route, std::uint64_t id, const std::vector<std::string>& names,
                   std::vector<proto::PlanStep> plan, std::optional<std::uint64_t> waitMs, bool stop, CoreEffects& fx);
  proto::ActionReply actionReply(const std::vector<std::string>& names, std::vector<proto::PlanStep> plan,
                                 bool timedOut) const;
  bool settled(const Waiter& w) const;
  void applyReload(const config::Config& next, CoreEffects& fx);
  void setIntent(const std::string& instance, Intent intent);
  template <class T>
  void reply(const Route& route, std::uint64_t id, const T& msg, CoreEffects& fx) {
    fx.toClients.push_back({route, proto::encode(msg, id)});
  }
  void replyError(const Route& route, std::uint64_t id, ErrorCode code, const std::string& msg, CoreEffects& fx) {
    fx.toClients.push_back({route, proto::encodeError(id, code, msg)});
  }
  std::int64_t wallMs() const;

  void onStatus(const Route&, const proto::Envelope&, CoreEffects&);
  void onStart(const Route&, const proto::Envelope&, CoreEffects&);
  void onStop(const Route&, const proto::Envelope&, CoreEffects&);
  void onRestart(const Route&, const proto::Envelope&, CoreEffects&);
  void onScale(const Route&, const proto::Envelope&, CoreEffects&);
  void onRegister(const Route&, const proto::Envelope&, CoreEffects&);
  void onUnregister(const Route&, const proto::Envelope&, CoreEffects&);
  void onUpdate(const Route&, const proto::Envelope&, CoreEffects&);
  void onGroups(const Route&, const proto::Envelope&, CoreEffects&);
  void onGroupStatus(const Route&, const proto::Envelope&, CoreEffects&);
  void onGroupStart(const Route&, const proto::Envelope&, CoreEffects&);
  void onGroupStop(const Route&, const proto::Envelope&, CoreEffects&);
  void onReload(const Route&, const proto::Envelope&, CoreEffects&);
  void onLogs(const Route&, const proto::Envelope&, CoreEffects&);
  void onSpec(const Route&, const proto::Envelope&, CoreEffects&);
  void onSettings(const Route&, const proto::Envelope&, CoreEffects&);
  void onReopenLogs(const Route&, const proto::Envelope&, CoreEffects&);
  void onShutdown(const Route&, const proto::Envelope&, CoreEffects&);
  void onSubscribe(const Route&, const proto::Envelope&, CoreEffects&);

  config::Config cfg_;
  PersistedState persisted_;
  const Clock& clock_;
  CoreOptions opts_;
  StateStore store_{""};

  std::map<std::string, Inst> insts_;
  std::map<TimerKey, Armed> timers_;
  std::vector<ActivePlan> plans_;
  std::vector<std::string> touched_;  // instances whose status the plans have not seen yet
  bool resyncPlans_ = false;          // many instances changed at once (policies, reconciliation)
  std::set<std::string> forgetting_;  // instances marked `forget`, removed once down
  std::map<std::uint64_t, Waiter> waiters_;
  std::uint64_t nextToken_ = 1;
  std::uint64_t finishedPlanWork_ = 0;
  std::map<std::uint64_t, LogsCall> logsCalls_;

  Link link_ = Link::kHello;
  std::uint64_t epoch_ = 0;
  std::uint64_t nextSpawnerId_ = 1;
  std::map<std::uint64_t, SpawnerCall> spawnerCalls_;
  std::optional<MonoTime> linkDeadline_;
  std::vector<std::function<std::string(std::uint64_t epoch)>> heldForSpawner_;  // sent once ready
  bool booted_ = false;
  bool continuing_ = false;
  std::int32_t spawnerPid_ = 0;
  bool spawnerUp_ = false;       // as the socket monitor last said
  bool spawnerSeenUp_ = false;   // connected at least once
  std::uint64_t lastSeq_ = 0;

  std::shared_ptr<std::mt19937_64> random_;  // restart_backoff jitter, seeded by the pid
  std::vector<proto::ChildSpec> pendingSpawns_;  // one Spawn per turn: a band is one message
  std::map<Route, std::vector<std::string>> subscribers_;
  std::set<std::string> followed_;
  bool shuttingDown_ = false;
  std::vector<std::pair<Route, std::string>> deferredClient_;  // client requests before ready
};

}  // namespace provisr::master

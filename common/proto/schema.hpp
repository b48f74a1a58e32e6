// The one schema: every message exchanged between keeper, spawner, master and gateway — its type,
// fields, direction and reply. This header is the contract; docs/zmq-api.md mirrors it.
//
// Wire format (codec.hpp): an envelope map {v: 1, id: u64, type: u16 (MsgType), body: map}. Every
// body is a MessagePack map keyed by the field names below (MSGPACK_DEFINE_MAP), so a field can be
// added on one side without breaking the other: a missing key keeps the struct's default, an
// unknown key is ignored. Nullable fields are std::optional (nil on the wire). Enums travel as their
// lowercase names (kNames below); an unknown name is a malformed body. ErrorCode travels as its
// number. Times users see are milliseconds since the Unix epoch (`*_ms`, `*_at`); durations are
// milliseconds (`*_ms`).
//
// Rules for changing this file: never renumber a MsgType or rename a field; add, don't reuse;
// every new message gets a round-trip test in tests/common/proto/schema_test.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <msgpack.hpp>

#include "common/errors.hpp"
#include "common/util/scm.hpp"

namespace provisr::proto {

// ---------------------------------------------------------------------------------------------
// Message types. Numbers are the wire value of the envelope's `type`; grouped by link.
enum class MsgType : std::uint16_t {
  // Any link.
  kErrorReply = 1,  // any → any: the request failed (unknown type, malformed, refused...)
  kOkReply = 2,     // any → any: the request succeeded and has nothing to return

  // master ↔ spawner (ipc://run_dir/spawner/spawner.sock, DEALER → ROUTER).
  kHello = 100,
  kHelloReply = 101,
  kSpawn = 102,
  kSpawnReply = 103,
  kSignalChild = 104,
  kStopChild = 105,
  kSnapshot = 106,
  kSnapshotReply = 107,
  kAck = 108,
  kChildStarted = 109,
  kChildExited = 110,
  kSpawnFailed = 111,
  kLogStats = 112,
  kLogTail = 113,
  kLogTailReply = 114,
  kLogFollow = 115,
  kLogLines = 116,
  kReopenLogs = 117,

  // gateway ↔ master (ipc://run_dir/master/master.sock, DEALER → ROUTER).
  kStatus = 200,
  kStatusReply = 201,
  kStart = 202,
  kStop = 203,
  kRestart = 204,
  kActionReply = 205,
  kScale = 206,
  kRegister = 207,
  kUnregister = 208,
  kUpdate = 209,
  kGroups = 210,
  kGroupsReply = 211,
  kGroupStatus = 212,
  kGroupStatusReply = 213,
  kGroupStart = 214,
  kGroupStop = 215,
  kReload = 216,
  kReloadReply = 217,
  kLogs = 218,
  kLogsReply = 219,
  kSpec = 220,
  kSpecReply = 221,
  kSettings = 222,
  kSettingsReply = 223,
  kShutdown = 224,
  kSubscribe = 225,
  kStateChanged = 226,

  // keeper ↔ spawner fd store (AF_UNIX SOCK_SEQPACKET, fds in SCM_RIGHTS).
  kDeposit = 300,
  kRelease = 301,
  kWithdraw = 302,
  kWithdrawChunk = 303,
  kExited = 304,
};

// The name of a type for logs and error messages ("Spawn"); "" for a number no message has.
std::string_view msgTypeName(MsgType t);
// True when `raw` is the number of a message this build knows.
bool isKnownMsgType(std::uint16_t raw);

// At most this many fds ride in one SOCK_SEQPACKET message (SCM_MAX_FD is 253).
inline constexpr std::size_t kMaxFdsPerMessage = kMaxFdsPerDatagram;

// ---------------------------------------------------------------------------------------------
// Enums carried by name. Each has kNames indexed by value; WireEnum<E> makes the codec use them.
template <class E>
struct WireEnum : std::false_type {};

#define PROVISR_WIRE_ENUM(E, ...)                                              \
  template <>                                                                  \
  struct WireEnum<E> : std::true_type {                                        \
    static constexpr std::array kNames = {__VA_ARGS__};                        \
  };

// Lifecycle state of an instance (SPEC §2.1).
enum class InstanceState : std::uint8_t { kStopped, kStarting, kRunning, kBackoff, kStopping, kExited, kFatal };
PROVISR_WIRE_ENUM(InstanceState, std::string_view("stopped"), std::string_view("starting"),
                  std::string_view("running"), std::string_view("backoff"), std::string_view("stopping"),
                  std::string_view("exited"), std::string_view("fatal"))

// What the spawner knows of one child: alive, being stopped (signal sent, SIGKILL armed), or
// exited with its exit not yet acknowledged by the master (the zombie is still held).
enum class ChildState : std::uint8_t { kRunning, kStopping, kExited };
PROVISR_WIRE_ENUM(ChildState, std::string_view("running"), std::string_view("stopping"),
                  std::string_view("exited"))

enum class LogStream : std::uint8_t { kStdout, kStderr };
PROVISR_WIRE_ENUM(LogStream, std::string_view("stdout"), std::string_view("stderr"))

// Which log streams a Logs request wants.
enum class LogStreams : std::uint8_t { kBoth, kStdout, kStderr };
PROVISR_WIRE_ENUM(LogStreams, std::string_view("both"), std::string_view("stdout"), std::string_view("stderr"))

// How a selector names instances (SPEC §4): an instance or a program standing for its instances,
// a program's instances, a glob with * and ?, a group's members, or everything.
enum class SelectorKind : std::uint8_t { kName, kBase, kWildcard, kGroup, kAll };
PROVISR_WIRE_ENUM(SelectorKind, std::string_view("name"), std::string_view("base"), std::string_view("wildcard"),
                  std::string_view("group"), std::string_view("all"))

// What a plan step does to a program's instances (reload, dry runs).
enum class PlanAction : std::uint8_t { kStart, kStop, kRestart, kKeep };
PROVISR_WIRE_ENUM(PlanAction, std::string_view("start"), std::string_view("stop"), std::string_view("restart"),
                  std::string_view("keep"))

// The fds deposited for one child, in the order they ride in SCM_RIGHTS.
enum class FdKind : std::uint8_t { kStdoutPipe, kStderrPipe, kPidfd };
PROVISR_WIRE_ENUM(FdKind, std::string_view("stdout_pipe"), std::string_view("stderr_pipe"), std::string_view("pidfd"))

#undef PROVISR_WIRE_ENUM

// A message without fields is an empty map on the wire (MSGPACK_DEFINE_MAP() does not compile).
#define PROVISR_NO_FIELDS                                                                   \
  template <class Packer>                                                                   \
  void msgpack_pack(Packer& pk) const {                                                     \
    pk.pack_map(0);                                                                         \
  }                                                                                         \
  void msgpack_unpack(const msgpack::object& o) {                                           \
    if (o.type != msgpack::type::MAP) throw msgpack::type_error();                          \
  }

template <class E>
constexpr std::string_view wireName(E e) {
  static_assert(WireEnum<E>::value);
  const auto i = static_cast<std::size_t>(e);
  return i < WireEnum<E>::kNames.size() ? WireEnum<E>::kNames[i] : std::string_view("?");
}

template <class E>
constexpr std::optional<E> parseWireName(std::string_view s) {
  static_assert(WireEnum<E>::value);
  for (std::size_t i = 0; i < WireEnum<E>::kNames.size(); ++i) {
    if (WireEnum<E>::kNames[i] == s) return static_cast<E>(i);
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Any link.

// any → any, reply to a request that failed. `code` is the ErrorCode number.
struct ErrorReply {
  static constexpr MsgType kType = MsgType::kErrorReply;
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
  MSGPACK_DEFINE_MAP(code, message)
  bool operator==(const ErrorReply&) const = default;
};

// any → any, reply to a request that succeeded with nothing to return.
struct OkReply {
  static constexpr MsgType kType = MsgType::kOkReply;
  PROVISR_NO_FIELDS
  bool operator==(const OkReply&) const = default;
};

// ---------------------------------------------------------------------------------------------
// master ↔ spawner. Every master → spawner request but Hello carries the epoch the spawner gave
// that master; a request with an older epoch gets ErrorReply{kStaleEpoch} and does nothing.

// master → spawner, reply: HelloReply, or ErrorReply{kUnauthorized} for a wrong secret. First
// message of every (re)connection; the spawner then refuses anything from an older master.
struct Hello {
  static constexpr MsgType kType = MsgType::kHello;
  std::string secret;       // shared secret the keeper handed both through an inherited pipe
  std::int32_t pid = 0;     // the master's pid, for logs
  MSGPACK_DEFINE_MAP(secret, pid)
  bool operator==(const Hello&) const = default;
};

// spawner → master, reply to Hello: the epoch assigned to this master (last + 1).
struct HelloReply {
  static constexpr MsgType kType = MsgType::kHelloReply;
  std::uint64_t epoch = 0;
  std::int32_t pid = 0;         // the spawner's pid
  std::uint64_t last_seq = 0;   // the newest event sequence number the spawner has issued
  MSGPACK_DEFINE_MAP(epoch, pid, last_seq)
  bool operator==(const HelloReply&) const = default;
};

// Where one child's output goes and how its files rotate (SPEC §1.6). Paths are absolute; an
// empty path means that stream goes to the ring only.
struct LogSinks {
  std::string stdout_path;
  std::string stderr_path;
  std::uint64_t max_size_bytes = 10ull * 1024 * 1024;  // 0: never rotate
  std::uint32_t max_backups = 3;
  std::uint32_t max_age_days = 7;
  bool compress = false;
  bool timestamps = false;  // prefix each line with RFC 3339 time (the spawner then copies)
  MSGPACK_DEFINE_MAP(stdout_path, stderr_path, max_size_bytes, max_backups, max_age_days, compress, timestamps)
  bool operator==(const LogSinks&) const = default;
};

// One child to start: fully resolved by the master (argv after PATH lookup, env merged), so the
// spawner decides nothing. `key` is the instance name (`api-server-2`); (key, generation) makes a
// re-sent Spawn idempotent.
struct ChildSpec {
  std::string key;
  std::uint64_t generation = 0;
  std::vector<std::string> argv;  // argv[0] is the path to exec
  std::vector<std::string> env;   // "K=V"
  std::string cwd;
  std::optional<std::string> user;   // name; unset = the spawner's own user
  std::optional<std::string> group;
  std::uint32_t umask = 022;
  LogSinks log;
  std::optional<std::uint64_t> memory_max_bytes;  // cgroup v2 caps, where provisr can enforce them
  std::optional<std::uint64_t> pids_max;
  MSGPACK_DEFINE_MAP(key, generation, argv, env, cwd, user, group, umask, log, memory_max_bytes, pids_max)
  bool operator==(const ChildSpec&) const = default;
};

// master → spawner, reply: SpawnReply (one result per child, same order). A band of N instances
// is one message. The outcome of each accepted child follows as ChildStarted or SpawnFailed.
struct Spawn {
  static constexpr MsgType kType = MsgType::kSpawn;
  std::uint64_t epoch = 0;
  std::vector<ChildSpec> children;
  MSGPACK_DEFINE_MAP(epoch, children)
  bool operator==(const Spawn&) const = default;
};

struct SpawnResult {
  std::string key;
  std::uint64_t generation = 0;
  bool accepted = false;  // false: refused at validation (code, message say why)
  bool duplicate = false; // (key, generation) already ran: nothing was started again
  std::optional<std::int32_t> pid;
  ErrorCode code = ErrorCode::kOk;
  std::string message;
  MSGPACK_DEFINE_MAP(key, generation, accepted, duplicate, pid, code, message)
  bool operator==(const SpawnResult&) const = default;
};

// spawner → master, reply to Spawn.
struct SpawnReply {
  static constexpr MsgType kType = MsgType::kSpawnReply;
  std::vector<SpawnResult> results;
  MSGPACK_DEFINE_MAP(results)
  bool operator==(const SpawnReply&) const = default;
};

// master → spawner, reply: OkReply, or ErrorReply{kNotFound}. Sends `signal` to the child's
// process group.
struct SignalChild {
  static constexpr MsgType kType = MsgType::kSignalChild;
  std::uint64_t epoch = 0;
  std::string key;
  std::int32_t signal = 15;
  MSGPACK_DEFINE_MAP(epoch, key, signal)
  bool operator==(const SignalChild&) const = default;
};

// master → spawner, reply: OkReply, or ErrorReply{kNotFound}. Sends `signal` to the process
// group, then SIGKILL to the group after timeout_ms; the exit arrives as ChildExited.
struct StopChild {
  static constexpr MsgType kType = MsgType::kStopChild;
  std::uint64_t epoch = 0;
  std::string key;
  std::int32_t signal = 15;
  std::uint64_t timeout_ms = 10'000;
  MSGPACK_DEFINE_MAP(epoch, key, signal, timeout_ms)
  bool operator==(const StopChild&) const = default;
};

// master → spawner, reply: SnapshotReply. Sent first after HelloReply; events with seq > last_seq
// follow.
struct Snapshot {
  static constexpr MsgType kType = MsgType::kSnapshot;
  std::uint64_t epoch = 0;
  MSGPACK_DEFINE_MAP(epoch)
  bool operator==(const Snapshot&) const = default;
};

// One child as the spawner holds it.
struct ChildInfo {
  std::string key;
  std::uint64_t generation = 0;
  std::int32_t pid = 0;
  std::uint64_t start_time_ticks = 0;  // /proc/<pid>/stat field 22: tells a reused pid apart
  std::int64_t started_at_ms = 0;
  ChildState state = ChildState::kRunning;
  std::optional<std::int32_t> exit_code;    // set when state is exited by exit()
  std::optional<std::int32_t> exit_signal;  // set when state is exited by a signal
  bool adopted = false;                     // found again after a full restart: exit and output unknown
  MSGPACK_DEFINE_MAP(key, generation, pid, start_time_ticks, started_at_ms, state, exit_code, exit_signal, adopted)
  bool operator==(const ChildInfo&) const = default;
};

// spawner → master, reply to Snapshot.
struct SnapshotReply {
  static constexpr MsgType kType = MsgType::kSnapshotReply;
  std::vector<ChildInfo> children;
  std::uint64_t last_seq = 0;  // every event up to this one is reflected in `children`
  MSGPACK_DEFINE_MAP(children, last_seq)
  bool operator==(const SnapshotReply&) const = default;
};

// master → spawner, no reply. Cumulative: every event with seq <= `seq` is applied; the spawner
// drops them from its queue and releases the zombies of acknowledged exits.
struct Ack {
  static constexpr MsgType kType = MsgType::kAck;
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  MSGPACK_DEFINE_MAP(epoch, seq)
  bool operator==(const Ack&) const = default;
};

// spawner → master event (seq'd, kept until acknowledged), no reply but Ack: a child runs.
struct ChildStarted {
  static constexpr MsgType kType = MsgType::kChildStarted;
  std::uint64_t seq = 0;
  std::string key;
  std::uint64_t generation = 0;
  std::int32_t pid = 0;
  std::uint64_t start_time_ticks = 0;
  std::int64_t started_at_ms = 0;
  bool adopted = false;
  MSGPACK_DEFINE_MAP(seq, key, generation, pid, start_time_ticks, started_at_ms, adopted)
  bool operator==(const ChildStarted&) const = default;
};

// spawner → master event (seq'd), no reply but Ack: a child ended. Exactly one of exit_code and
// exit_signal is set, neither for an adopted child whose status is unknown.
struct ChildExited {
  static constexpr MsgType kType = MsgType::kChildExited;
  std::uint64_t seq = 0;
  std::string key;
  std::uint64_t generation = 0;
  std::int32_t pid = 0;
  std::optional<std::int32_t> exit_code;
  std::optional<std::int32_t> exit_signal;
  bool core_dumped = false;
  std::int64_t at = 0;  // ms since the epoch
  MSGPACK_DEFINE_MAP(seq, key, generation, pid, exit_code, exit_signal, core_dumped, at)
  bool operator==(const ChildExited&) const = default;
};

// spawner → master event (seq'd), no reply but Ack: an accepted child could not be started
// (fork, user change, chdir, exec...).
struct SpawnFailed {
  static constexpr MsgType kType = MsgType::kSpawnFailed;
  std::uint64_t seq = 0;
  std::string key;
  std::uint64_t generation = 0;
  std::int32_t error_number = 0;  // errno, on the wire as "errno"
  std::string stage;              // "fork", "setuid", "chdir", "exec", "log_open"...
  std::string message;            // "exec /usr/bin/nope: No such file or directory"
  MSGPACK_DEFINE_MAP(seq, key, generation, MSGPACK_NVP("errno", error_number), stage, message)
  bool operator==(const SpawnFailed&) const = default;
};

// spawner → master event (seq'd), no reply but Ack: log counters of one child, sent when they
// change and at most once per flush.
struct LogStats {
  static constexpr MsgType kType = MsgType::kLogStats;
  std::uint64_t seq = 0;
  std::string key;
  std::uint64_t stdout_bytes = 0;
  std::uint64_t stderr_bytes = 0;
  std::uint64_t dropped_bytes = 0;
  std::uint64_t rotations = 0;
  MSGPACK_DEFINE_MAP(seq, key, stdout_bytes, stderr_bytes, dropped_bytes, rotations)
  bool operator==(const LogStats&) const = default;
};

// One line of the per-instance ring. Offsets increase monotonically per instance and continue
// across spawner restarts.
struct LogLine {
  std::uint64_t offset = 0;
  LogStream stream = LogStream::kStdout;
  std::string text;      // without the trailing newline
  std::string instance;  // the instance that wrote it
  MSGPACK_DEFINE_MAP(offset, stream, text, instance)
  bool operator==(const LogLine&) const = default;
};

// master → spawner, reply: LogTailReply, or ErrorReply{kNotFound}. Lines of one instance's ring
// with offset >= since (unset: the last `limit` lines).
struct LogTail {
  static constexpr MsgType kType = MsgType::kLogTail;
  std::uint64_t epoch = 0;
  std::string key;
  std::optional<std::uint64_t> since;
  std::uint32_t limit = 100;
  MSGPACK_DEFINE_MAP(epoch, key, since, limit)
  bool operator==(const LogTail&) const = default;
};

// spawner → master, reply to LogTail. `next` is the offset to ask for next time.
struct LogTailReply {
  static constexpr MsgType kType = MsgType::kLogTailReply;
  std::vector<LogLine> lines;
  std::uint64_t next = 0;
  MSGPACK_DEFINE_MAP(lines, next)
  bool operator==(const LogTailReply&) const = default;
};

// master → spawner, reply: OkReply. Turns pushing of new lines of `key` on or off.
struct LogFollow {
  static constexpr MsgType kType = MsgType::kLogFollow;
  std::uint64_t epoch = 0;
  std::string key;
  bool on = true;
  MSGPACK_DEFINE_MAP(epoch, key, on)
  bool operator==(const LogFollow&) const = default;
};

// spawner → master and master → gateway (topic log.<instance>), pushed, no reply, best effort:
// new lines of a followed instance.
struct LogLines {
  static constexpr MsgType kType = MsgType::kLogLines;
  std::string key;
  std::vector<LogLine> lines;
  std::uint64_t dropped = 0;  // lines lost since the previous push (slow reader)
  MSGPACK_DEFINE_MAP(key, lines, dropped)
  bool operator==(const LogLines&) const = default;
};

// gateway → master and master → spawner, reply: OkReply. Reopens every log file (after an
// outside logrotate). `epoch` matters on the spawner link only.
struct ReopenLogs {
  static constexpr MsgType kType = MsgType::kReopenLogs;
  std::uint64_t epoch = 0;
  MSGPACK_DEFINE_MAP(epoch)
  bool operator==(const ReopenLogs&) const = default;
};

// ---------------------------------------------------------------------------------------------
// gateway ↔ master. Requests are what the HTTP routes and the public ZeroMQ ops become.

// Names instances: exactly one kind; `value` is empty for kAll.
struct Selector {
  SelectorKind kind = SelectorKind::kAll;
  std::string value;
  MSGPACK_DEFINE_MAP(kind, value)
  bool operator==(const Selector&) const = default;
};

struct LogPaths {
  std::string stdout_path;  // on the wire as "stdout"
  std::string stderr_path;  // on the wire as "stderr"
  MSGPACK_DEFINE_MAP(MSGPACK_NVP("stdout", stdout_path), MSGPACK_NVP("stderr", stderr_path))
  bool operator==(const LogPaths&) const = default;
};

// The status object of one instance, every field of SPEC §2.2 (the gateway renders times as
// RFC 3339; here they are ms since the epoch).
struct InstanceStatus {
  std::string name;
  bool running = false;  // true only in state running
  std::optional<std::int32_t> pid;
  std::optional<std::int64_t> started_at;
  std::optional<std::int64_t> stopped_at;
  std::uint32_t restarts = 0;
  InstanceState state = InstanceState::kStopped;
  bool provisioned = false;
  std::optional<std::string> exit_error;
  std::string program;
  std::uint32_t instance = 1;
  std::int32_t priority = 0;
  std::vector<std::string> groups;
  std::optional<std::int32_t> exit_code;
  std::optional<std::int32_t> exit_signal;
  std::uint64_t uptime_ms = 0;
  std::optional<std::string> last_start_error;
  LogPaths log;
  std::uint64_t log_dropped_bytes = 0;
  bool adopted = false;
  std::optional<std::uint64_t> rss_bytes;   // sampled when asked
  std::optional<double> cpu_seconds;        // sampled when asked
  // Counters since this master started (Prometheus counters: a master restart resets them).
  std::uint64_t starts = 0;                     // children spawned (every start, retry and restart)
  std::map<std::string, std::uint64_t> exits;   // exits by code ("0", "1") or signal name ("SIGKILL")
  std::uint64_t log_stdout_bytes = 0;           // bytes written to the stdout log, all generations
  std::uint64_t log_stderr_bytes = 0;           // bytes written to the stderr log, all generations
  MSGPACK_DEFINE_MAP(name, running, pid, started_at, stopped_at, restarts, state, provisioned, exit_error, program,
                     instance, priority, groups, exit_code, exit_signal, uptime_ms, last_start_error, log,
                     log_dropped_bytes, adopted, rss_bytes, cpu_seconds, starts, exits, log_stdout_bytes,
                     log_stderr_bytes)
  bool operator==(const InstanceStatus&) const = default;
};

// One step of a plan (start order, stop order, reload). Steps with the same `band` run in
// parallel; bands run in order.
struct PlanStep {
  PlanAction action = PlanAction::kStart;
  std::string program;
  std::vector<std::string> instances;
  std::int32_t band = 0;  // the priority
  std::string reason;     // "added", "removed", "changed: command", "depends on db"...
  MSGPACK_DEFINE_MAP(action, program, instances, band, reason)
  bool operator==(const PlanStep&) const = default;
};

// gateway → master, reply: StatusReply, or ErrorReply{kNotFound}. (Not named Status: that is
// provisr::Status, the Result<void>.)
struct StatusRequest {
  static constexpr MsgType kType = MsgType::kStatus;
  Selector selector;
  bool sample = false;  // also read rss_bytes / cpu_seconds from /proc
  MSGPACK_DEFINE_MAP(selector, sample)
  bool operator==(const StatusRequest&) const = default;
};

// master → gateway, reply to StatusRequest. `single`: the selector named one instance, so the HTTP API
// answers an object instead of an array.
struct StatusReply {
  static constexpr MsgType kType = MsgType::kStatusReply;
  std::vector<InstanceStatus> instances;
  bool single = false;
  MSGPACK_DEFINE_MAP(instances, single)
  bool operator==(const StatusReply&) const = default;
};

// gateway → master, reply: ActionReply. Returns when every instance is running (or failed), at
// most wait_ms (unset: at once, after queuing). dry_run: only the plan.
struct Start {
  static constexpr MsgType kType = MsgType::kStart;
  Selector selector;
  std::optional<std::uint64_t> wait_ms;
  bool dry_run = false;
  MSGPACK_DEFINE_MAP(selector, wait_ms, dry_run)
  bool operator==(const Start&) const = default;
};

// gateway → master, reply: ActionReply. wait_ms, when set, replaces stop_timeout as the grace
// before SIGKILL and the reply waits until stopped (the Go meaning).
struct Stop {
  static constexpr MsgType kType = MsgType::kStop;
  Selector selector;
  std::optional<std::uint64_t> wait_ms;
  bool dry_run = false;
  MSGPACK_DEFINE_MAP(selector, wait_ms, dry_run)
  bool operator==(const Stop&) const = default;
};

// gateway → master, reply: ActionReply.
struct Restart {
  static constexpr MsgType kType = MsgType::kRestart;
  Selector selector;
  std::optional<std::uint64_t> wait_ms;
  bool dry_run = false;
  MSGPACK_DEFINE_MAP(selector, wait_ms, dry_run)
  bool operator==(const Restart&) const = default;
};

// master → gateway, reply to Start, Stop, Restart, Scale, Register, Unregister, Update,
// GroupStart, GroupStop: the instances touched, in their state when the reply was sent.
struct ActionReply {
  static constexpr MsgType kType = MsgType::kActionReply;
  std::vector<InstanceStatus> instances;
  std::vector<PlanStep> plan;  // what was (or, for dry_run, would be) done
  bool timed_out = false;      // wait_ms ran out before every instance settled
  MSGPACK_DEFINE_MAP(instances, plan, timed_out)
  bool operator==(const ActionReply&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kNotFound, kConflict}.
struct Scale {
  static constexpr MsgType kType = MsgType::kScale;
  std::string program;
  std::uint32_t instances = 1;
  MSGPACK_DEFINE_MAP(program, instances)
  bool operator==(const Scale&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kInvalidArgument, kConflict, kForbidden}.
// spec_json is the program spec as the HTTP body carried it (JSON, validated by the master).
struct Register {
  static constexpr MsgType kType = MsgType::kRegister;
  std::string spec_json;
  MSGPACK_DEFINE_MAP(spec_json)
  bool operator==(const Register&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kNotFound, kConflict}.
struct Unregister {
  static constexpr MsgType kType = MsgType::kUnregister;
  Selector selector;
  MSGPACK_DEFINE_MAP(selector)
  bool operator==(const Unregister&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kNotFound, kConflict, kInvalidArgument}.
struct Update {
  static constexpr MsgType kType = MsgType::kUpdate;
  std::string spec_json;
  std::optional<std::uint64_t> wait_ms;
  MSGPACK_DEFINE_MAP(spec_json, wait_ms)
  bool operator==(const Update&) const = default;
};

// gateway → master, reply: GroupsReply.
struct Groups {
  static constexpr MsgType kType = MsgType::kGroups;
  PROVISR_NO_FIELDS
  bool operator==(const Groups&) const = default;
};

struct GroupInfo {
  std::string name;
  std::vector<std::string> members;  // program base names
  MSGPACK_DEFINE_MAP(name, members)
  bool operator==(const GroupInfo&) const = default;
};

// master → gateway, reply to Groups.
struct GroupsReply {
  static constexpr MsgType kType = MsgType::kGroupsReply;
  std::vector<GroupInfo> groups;
  MSGPACK_DEFINE_MAP(groups)
  bool operator==(const GroupsReply&) const = default;
};

// gateway → master, reply: GroupStatusReply, or ErrorReply{kNotFound}.
struct GroupStatus {
  static constexpr MsgType kType = MsgType::kGroupStatus;
  std::string group;
  MSGPACK_DEFINE_MAP(group)
  bool operator==(const GroupStatus&) const = default;
};

// master → gateway, reply to GroupStatus: member program → its instances.
struct GroupStatusReply {
  static constexpr MsgType kType = MsgType::kGroupStatusReply;
  std::map<std::string, std::vector<InstanceStatus>> members;
  MSGPACK_DEFINE_MAP(members)
  bool operator==(const GroupStatusReply&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kNotFound}. Priority order (SPEC §2.3).
struct GroupStart {
  static constexpr MsgType kType = MsgType::kGroupStart;
  std::string group;
  std::optional<std::uint64_t> wait_ms;
  MSGPACK_DEFINE_MAP(group, wait_ms)
  bool operator==(const GroupStart&) const = default;
};

// gateway → master, reply: ActionReply, or ErrorReply{kNotFound}. Reverse priority order.
struct GroupStop {
  static constexpr MsgType kType = MsgType::kGroupStop;
  std::string group;
  std::optional<std::uint64_t> wait_ms;
  MSGPACK_DEFINE_MAP(group, wait_ms)
  bool operator==(const GroupStop&) const = default;
};

// gateway → master, reply: ReloadReply, or ErrorReply{kConfigInvalid} (the running set is kept).
struct Reload {
  static constexpr MsgType kType = MsgType::kReload;
  bool dry_run = false;
  MSGPACK_DEFINE_MAP(dry_run)
  bool operator==(const Reload&) const = default;
};

// master → gateway, reply to Reload.
struct ReloadReply {
  static constexpr MsgType kType = MsgType::kReloadReply;
  bool applied = false;                     // false for dry_run
  std::vector<PlanStep> plan;
  std::vector<std::string> restart_needed;  // changed keys reload cannot apply ("server.listen")
  std::vector<std::string> warnings;
  MSGPACK_DEFINE_MAP(applied, plan, restart_needed, warnings)
  bool operator==(const ReloadReply&) const = default;
};

// gateway → master, reply: LogsReply, or ErrorReply{kNotFound}. `name` is an instance or a
// program (then lines of all its instances, tagged).
struct Logs {
  static constexpr MsgType kType = MsgType::kLogs;
  std::string name;
  std::optional<std::uint64_t> since;
  std::uint32_t limit = 100;
  LogStreams stream = LogStreams::kBoth;
  MSGPACK_DEFINE_MAP(name, since, limit, stream)
  bool operator==(const Logs&) const = default;
};

// master → gateway, reply to Logs. `next`: instance → the offset to ask for next time.
struct LogsReply {
  static constexpr MsgType kType = MsgType::kLogsReply;
  std::vector<LogLine> lines;
  std::map<std::string, std::uint64_t> next;
  MSGPACK_DEFINE_MAP(lines, next)
  bool operator==(const LogsReply&) const = default;
};

// gateway → master, reply: SpecReply, or ErrorReply{kNotFound}.
struct Spec {
  static constexpr MsgType kType = MsgType::kSpec;
  std::string name;
  MSGPACK_DEFINE_MAP(name)
  bool operator==(const Spec&) const = default;
};

// master → gateway, reply to Spec: the program spec as JSON, and where it came from.
struct SpecReply {
  static constexpr MsgType kType = MsgType::kSpecReply;
  std::string spec_json;
  std::string origin;  // "config", "file", "api"
  std::string file;    // the program file, empty for inline specs
  MSGPACK_DEFINE_MAP(spec_json, origin, file)
  bool operator==(const SpecReply&) const = default;
};

// gateway → master, reply: SettingsReply.
struct Settings {
  static constexpr MsgType kType = MsgType::kSettings;
  PROVISR_NO_FIELDS
  bool operator==(const Settings&) const = default;
};

// master → gateway, reply to Settings: the effective daemon settings as JSON (no secrets).
struct SettingsReply {
  static constexpr MsgType kType = MsgType::kSettingsReply;
  std::string settings_json;
  MSGPACK_DEFINE_MAP(settings_json)
  bool operator==(const SettingsReply&) const = default;
};

// gateway → master, reply: OkReply, then the master stops everything in reverse priority order
// and exits 0.
struct Shutdown {
  static constexpr MsgType kType = MsgType::kShutdown;
  PROVISR_NO_FIELDS
  bool operator==(const Shutdown&) const = default;
};

// gateway → master, reply: OkReply. Replaces the gateway's subscriptions: topic prefixes such as
// "state." (every state change) or "log.web-1" (lines of web-1). Empty: none.
struct Subscribe {
  static constexpr MsgType kType = MsgType::kSubscribe;
  std::vector<std::string> topics;
  MSGPACK_DEFINE_MAP(topics)
  bool operator==(const Subscribe&) const = default;
};

// master → gateway, pushed (topic state.<instance>), no reply: an instance changed state.
struct StateChanged {
  static constexpr MsgType kType = MsgType::kStateChanged;
  std::string instance;
  InstanceState from = InstanceState::kStopped;
  InstanceState to = InstanceState::kStopped;
  std::int64_t at = 0;  // ms since the epoch
  InstanceStatus status;
  MSGPACK_DEFINE_MAP(instance, from, to, at, status)
  bool operator==(const StateChanged&) const = default;
};

// ---------------------------------------------------------------------------------------------
// keeper ↔ spawner fd store (SOCK_SEQPACKET; one envelope per datagram, fds in SCM_RIGHTS in the
// order `kinds` lists them).

// spawner → keeper, no reply: hold these fds of a child. Pipe read ends before the fork, the pidfd
// right after it (a second Deposit for the same key adds to the entry).
struct Deposit {
  static constexpr MsgType kType = MsgType::kDeposit;
  std::string key;
  std::uint64_t generation = 0;
  std::vector<FdKind> kinds;
  std::int32_t pid = 0;  // 0 before the fork
  MSGPACK_DEFINE_MAP(key, generation, kinds, pid)
  bool operator==(const Deposit&) const = default;
};

// spawner → keeper, no reply: the child is reaped and its exit acknowledged; close its fds.
struct Release {
  static constexpr MsgType kType = MsgType::kRelease;
  std::string key;
  std::uint64_t generation = 0;
  MSGPACK_DEFINE_MAP(key, generation)
  bool operator==(const Release&) const = default;
};

// spawner → keeper, reply: WithdrawChunk messages until one has last = true. A new spawner takes
// every deposited fd back.
struct Withdraw {
  static constexpr MsgType kType = MsgType::kWithdraw;
  PROVISR_NO_FIELDS
  bool operator==(const Withdraw&) const = default;
};

struct DepositEntry {
  std::string key;
  std::uint64_t generation = 0;
  std::vector<FdKind> kinds;
  std::int32_t pid = 0;
  MSGPACK_DEFINE_MAP(key, generation, kinds, pid)
  bool operator==(const DepositEntry&) const = default;
};

// keeper → spawner, reply to Withdraw: entries whose fds (at most kMaxFdsPerMessage in all, in
// entry order then kinds order) ride with this datagram.
struct WithdrawChunk {
  static constexpr MsgType kType = MsgType::kWithdrawChunk;
  std::vector<DepositEntry> entries;
  bool last = false;
  MSGPACK_DEFINE_MAP(entries, last)
  bool operator==(const WithdrawChunk&) const = default;
};

// keeper → spawner, no reply (queued while no spawner runs): a child the keeper inherited and
// reaped. `status` is the raw wait status.
struct Exited {
  static constexpr MsgType kType = MsgType::kExited;
  std::string key;
  std::uint64_t generation = 0;
  std::int32_t pid = 0;
  std::int32_t status = 0;
  std::int64_t at = 0;  // ms since the epoch
  MSGPACK_DEFINE_MAP(key, generation, pid, status, at)
  bool operator==(const Exited&) const = default;
};

// Every message type, for tests and table-driven dispatch.
template <class F>
void forEachMessageType(F&& f) {
  f.template operator()<ErrorReply>();
  f.template operator()<OkReply>();
  f.template operator()<Hello>();
  f.template operator()<HelloReply>();
  f.template operator()<Spawn>();
  f.template operator()<SpawnReply>();
  f.template operator()<SignalChild>();
  f.template operator()<StopChild>();
  f.template operator()<Snapshot>();
  f.template operator()<SnapshotReply>();
  f.template operator()<Ack>();
  f.template operator()<ChildStarted>();
  f.template operator()<ChildExited>();
  f.template operator()<SpawnFailed>();
  f.template operator()<LogStats>();
  f.template operator()<LogTail>();
  f.template operator()<LogTailReply>();
  f.template operator()<LogFollow>();
  f.template operator()<LogLines>();
  f.template operator()<ReopenLogs>();
  f.template operator()<StatusRequest>();
  f.template operator()<StatusReply>();
  f.template operator()<Start>();
  f.template operator()<Stop>();
  f.template operator()<Restart>();
  f.template operator()<ActionReply>();
  f.template operator()<Scale>();
  f.template operator()<Register>();
  f.template operator()<Unregister>();
  f.template operator()<Update>();
  f.template operator()<Groups>();
  f.template operator()<GroupsReply>();
  f.template operator()<GroupStatus>();
  f.template operator()<GroupStatusReply>();
  f.template operator()<GroupStart>();
  f.template operator()<GroupStop>();
  f.template operator()<Reload>();
  f.template operator()<ReloadReply>();
  f.template operator()<Logs>();
  f.template operator()<LogsReply>();
  f.template operator()<Spec>();
  f.template operator()<SpecReply>();
  f.template operator()<Settings>();
  f.template operator()<SettingsReply>();
  f.template operator()<Shutdown>();
  f.template operator()<Subscribe>();
  f.template operator()<StateChanged>();
  f.template operator()<Deposit>();
  f.template operator()<Release>();
  f.template operator()<Withdraw>();
  f.template operator()<WithdrawChunk>();
  f.template operator()<Exited>();
}

#undef PROVISR_NO_FIELDS

}  // namespace provisr::proto

// ---------------------------------------------------------------------------------------------
// MessagePack adaptors: wire enums by name, ErrorCode by number.
namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

template <class E>
struct convert<E, std::enable_if_t<provisr::proto::WireEnum<E>::value>> {
  const msgpack::object& operator()(const msgpack::object& o, E& v) const {
    if (o.type != msgpack::type::STR) throw msgpack::type_error();
    auto parsed = provisr::proto::parseWireName<E>(std::string_view(o.via.str.ptr, o.via.str.size));
    if (!parsed) throw msgpack::type_error();
    v = *parsed;
    return o;
  }
};

template <class E>
struct pack<E, std::enable_if_t<provisr::proto::WireEnum<E>::value>> {
  template <class Stream>
  msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& p, const E& v) const {
    const std::string_view name = provisr::proto::wireName(v);
    p.pack_str(static_cast<std::uint32_t>(name.size()));
    p.pack_str_body(name.data(), static_cast<std::uint32_t>(name.size()));
    return p;
  }
};

template <>
struct convert<provisr::ErrorCode> {
  const msgpack::object& operator()(const msgpack::object& o, provisr::ErrorCode& v) const {
    std::uint16_t raw = 0;
    o.convert(raw);
    v = static_cast<provisr::ErrorCode>(raw);  // an unknown (newer) code is kept as its number
    return o;
  }
};

template <>
struct pack<provisr::ErrorCode> {
  template <class Stream>
  msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& p, const provisr::ErrorCode& v) const {
    p.pack_uint16(static_cast<std::uint16_t>(v));
    return p;
  }
};

}  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

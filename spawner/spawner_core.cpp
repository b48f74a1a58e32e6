// SpawnerCore: requests in, replies and events out; children, pipes and timers through the loop.
#include "spawner/spawner_core.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "spawner/launcher.hpp"

namespace provisr::spawner {
namespace {

using proto::MsgType;

bool hasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

bool validName(const std::string& s, std::size_t maxBytes) {
  if (s.empty() || s.size() > maxBytes) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

bool absolutePath(const std::string& s) { return !s.empty() && s.front() == '/' && !hasNul(s) && s.size() < 4096; }

Error invalid(const std::string& what) { return makeError(ErrorCode::kInvalidArgument, what); }

// Secrets are compared in time independent of where they differ.
bool sameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0 && !b.empty();
}

int pidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U)); }

// Field 4 of /proc/<pid>/stat; 0 when unreadable (gone).
pid_t readParentPid(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  std::string state;
  long ppid = 0;
  if (!(rest >> state >> ppid)) return 0;
  return static_cast<pid_t>(ppid);
}

// The child of `parent` whose stdout is the pipe `readEnd` reads from (a pipe's two ends share one
// inode), or 0. This finds a child whose spawner died between the fork and the deposit of its
// pidfd: the keeper holds its pipes, and the child was re-parented to the keeper.
pid_t findStdoutWriter(int readEnd, pid_t parent) {
  struct stat st {};
  if (readEnd < 0 || ::fstat(readEnd, &st) != 0 || !S_ISFIFO(st.st_mode)) return 0;
  const std::string want = "pipe:[" + std::to_string(st.st_ino) + "]";
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return 0;
  pid_t found = 0;
  while (const dirent* e = ::readdir(proc)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const auto pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    if (readParentPid(pid) != parent) continue;
    char target[64];
    const std::string link = "/proc/" + std::string(e->d_name) + "/fd/1";
    const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    if (n > 0 && want == std::string_view(target, static_cast<std::size_t>(n))) {
      found = pid;
      break;
    }
  }
  ::closedir(proc);
  return found;
}

template <class T>
Result<T> body(const proto::Envelope& env) {
  return proto::decodeBody<T>(env);
}

RotationPolicy policyOf(const proto::LogSinks& s) {
  RotationPolicy p;
  p.maxSize = s.max_size_bytes;
  p.maxBackups = s.max_backups;
  p.maxAgeDays = s.max_age_days;
  p.compress = s.compress;
  return p;
}

proto::LogLine toWire(const RingLine& l, const std::string& key) {
  proto::LogLine out;
  out.offset = l.offset;
  out.stream = l.stream == LogStreamKind::kStderr ? proto::LogStream::kStderr : proto::LogStream::kStdout;
  out.text = l.text;
  out.instance = key;
  return out;
}

}  // namespace

std::optional<Error> validateChildSpec(const proto::ChildSpec& spec) {
  if (!validName(spec.key, kMaxKeyBytes)) {
    return invalid("key '" + spec.key.substr(0, 64) + "' is not a name ([A-Za-z0-9._-]{1,128})");
  }
  const std::string at = "child " + spec.key + ": ";
  if (spec.argv.empty()) return invalid(at + "argv is empty");
  if (spec.argv.size() > kMaxArgs) return invalid(at + "more than 4096 arguments");
  if (!absolutePath(spec.argv[0])) return invalid(at + "argv[0] must be an absolute path (the master resolves PATH)");
  for (const auto& a : spec.argv) {
    if (hasNul(a)) return invalid(at + "an argument holds a NUL byte");
  }
  if (spec.env.size() > kMaxEnv) return invalid(at + "more than 4096 environment entries");
  for (const auto& kv : spec.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0 || hasNul(kv)) {
      return invalid(at + "environment entry '" + kv.substr(0, 64) + "' is not K=V");
    }
  }
  if (!spec.cwd.empty() && !absolutePath(spec.cwd)) return invalid(at + "cwd must be an absolute path");
  for (const auto* id : {&spec.user, &spec.group}) {
    if (*id && (id->value().empty() || id->value().size() > 64 || hasNul(**id) ||
                id->value().find_first_of("/: \t\n") != std::string::npos)) {
      return invalid(at + "user or group '" + id->value().substr(0, 64) + "' is not a valid name");
    }
  }
  if (spec.umask > 0777) return invalid(at + "umask is not within 0..0777");
  for (const auto* p : {&spec.log.stdout_path, &spec.log.stderr_path}) {
    if (!p->empty() && !absolutePath(*p)) return invalid(at + "log path '" + p->substr(0, 64) + "' is not absolute");
  }
  if (spec.log.max_backups > 100'000) return invalid(at + "log max_backups is over 100000");
  return std::nullopt;
}

SpawnerCore::SpawnerCore(EventLoop& loop, CoreConfig cfg, SendFn send, LogFn log, FdStoreClient* fdStore)
    : loop_(loop),
      cfg_(std::move(cfg)),
      send_(std::move(send)),
      log_(std::move(log)),
      fdStore_(fdStore),
      logFiles_(loop.clock(), &compressor_) {
  auto s = LogScratch::create();
  if (!s) {
    log("cannot create the log scratch pipe: " + s.error().message + "; logs are copied instead");
  } else {
    scratch_ = std::move(*s);
  }
}

SpawnerCore::~SpawnerCore() {
  table_.forEach([this](Child& c) { detach(c); });
  if (statsTimer_) loop_.cancelTimer(*statsTimer_);
  if (journalTimer_) loop_.cancelTimer(*journalTimer_);
}

void SpawnerCore::journalCleanupSoon() {
  if (journalTimer_ || cfg_.journalPath.empty()) return;
  journalTimer_ = loop_.addTimer(cfg_.journalCleanupDelay, [this] {
    journalTimer_.reset();
    journalDirty_ = true;  // written at the end of this turn
  });
}

void SpawnerCore::log(const std::string& line) const {
  if (log_) log_(line);
}

std::int64_t SpawnerCore::nowMs() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(loop_.clock().wallNow().time_since_epoch()).count();
}

const std::vector<SpawnerCore::HandlerEntry>& SpawnerCore::handlers() {
  static const std::vector<HandlerEntry> kHandlers = {
      {MsgType::kHello, &SpawnerCore::onHello},
      {MsgType::kSpawn, &SpawnerCore::onSpawn},
      {MsgType::kSignalChild, &SpawnerCore::onSignalChild},
      {MsgType::kStopChild, &SpawnerCore::onStopChild},
      {MsgType::kSnapshot, &SpawnerCore::onSnapshot},
      {MsgType::kAck, &SpawnerCore::onAck},
      {MsgType::kLogTail, &SpawnerCore::onLogTail},
      {MsgType::kLogFollow, &SpawnerCore::onLogFollow},
      {MsgType::kReopenLogs, &SpawnerCore::onReopenLogs},
  };
  return kHandlers;
}

std::optional<std::string> SpawnerCore::onMessage(const Route& route, std::string_view payload) {
  auto env = proto::decodeEnvelope(payload.data(), payload.size());
  if (!env) return proto::errorReplyFor(payload.data(), payload.size(), env.error());
  for (const auto& h : handlers()) {
    if (h.type != env->type) continue;
    Reply r = (this->*h.handler)(route, *env);
    // Anything the current master says shows its route works: retry events that did not go out.
    if (synced_ && route == masterRoute_) sendPending();
    return r;
  }
  return proto::encodeError(env->id, ErrorCode::kUnknownMessage,
                            "the spawner takes no " + std::string(proto::msgTypeName(env->type)) + " message");
}

std::optional<Error> SpawnerCore::checkMaster(const Route& route, std::uint64_t epoch) const {
  if (epoch_ == 0) return makeError(ErrorCode::kUnauthorized, "no master has said Hello: send Hello first");
  if (epoch != epoch_) {
    return makeError(ErrorCode::kStaleEpoch, "epoch " + std::to_string(epoch) + " is not the current master's (" +
                                                 std::to_string(epoch_) + "): send Hello again");
  }
  if (route != masterRoute_) {
    return makeError(ErrorCode::kUnauthorized, "this connection has not said Hello: send Hello first");
  }
  return std::nullopt;
}

#define PROVISR_DECODE(T, var)                                    \
  auto var##_r = body<T>(env);                                    \
  if (!var##_r) return proto::encodeError(env.id, var##_r.error()); \
  T& var = *var##_r

#define PROVISR_CHECK_MASTER(epoch)                                       \
  if (auto denied = checkMaster(route, (epoch))) return proto::encodeError(env.id, *denied)

SpawnerCore::Reply SpawnerCore::onHello(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::Hello, hello);
  if (!sameSecret(hello.secret, cfg_.secret)) {
    log("refused Hello from pid " + std::to_string(hello.pid) + ": wrong secret");
    return proto::encodeError(env.id, ErrorCode::kUnauthorized, "wrong secret");
  }
  ++epoch_;
  masterRoute_ = route;
  synced_ = false;
  followed_.clear();
  log("master pid " + std::to_string(hello.pid) + " connected with epoch " + std::to_string(epoch_));
  proto::HelloReply r;
  r.epoch = epoch_;
  r.pid = cfg_.selfPid;
  r.last_seq = lastSeq_;
  return proto::encode(r, env.id);
}

SpawnerCore::Reply SpawnerCore::onSpawn(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::Spawn, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (req.children.size() > kMaxBatch) {
    return proto::encodeError(env.id, ErrorCode::kInvalidArgument, "more than 10000 children in one Spawn");
  }
  proto::SpawnReply reply;
  reply.results.reserve(req.children.size());
  for (const auto& spec : req.children) reply.results.push_back(spawnOne(spec));
  return proto::encode(reply, env.id);
}

proto::SpawnResult SpawnerCore::spawnOne(const proto::ChildSpec& spec) {
  proto::SpawnResult res;
  res.key = spec.key;
  res.generation = spec.generation;
  if (auto bad = validateChildSpec(spec)) {
    res.code = bad->code;
    res.message = bad->message;
    return res;
  }
  if (auto last = table_.lastGeneration(spec.key); last && spec.generation <= *last) {
    // A re-sent request (or an older one overtaken): nothing starts again.
    res.accepted = true;
    res.duplicate = true;
    if (Child* c = table_.find(spec.key, spec.generation)) res.pid = c->pid();
    res.message = "generation " + std::to_string(spec.generation) + " of " + spec.key + " was already accepted";
    return res;
  }
  if (Child* live = table_.findLive(spec.key)) {
    res.code = ErrorCode::kConflict;
    res.message = spec.key + " still runs as generation " + std::to_string(live->generation) + " (pid " +
                  std::to_string(live->pid()) + ")";
    log("refused to spawn generation " + std::to_string(spec.generation) + " of " + res.message);
    return res;
  }
  table_.noteGeneration(spec.key, spec.generation);
  res.accepted = true;

  auto failed = [&](int err, std::string stage, std::string message) {
    proto::SpawnFailed f;
    f.key = spec.key;
    f.generation = spec.generation;
    f.error_number = err;
    f.stage = std::move(stage);
    f.message = std::move(message);
    res.code = ErrorCode::kSpawnFailed;
    res.message = f.message;
    log("spawn of " + spec.key + " failed: " + f.message);
    emit(std::move(f));
    return res;
  };

  // The log files first: a child whose output has nowhere to go is not started.
  // errno is still the failed open's (its error is only formatted): out of fds is EMFILE/ENFILE,
  // like a failed pipe; anything else EIO.
  auto openErrno = [] { return errno == EMFILE || errno == ENFILE ? errno : EIO; };
  auto outFile = fileFor(spec.log.stdout_path, spec.log);
  if (!outFile) return failed(openErrno(), "log_open", outFile.error().message);
  auto errFile = fileFor(spec.log.stderr_path, spec.log);
  if (!errFile) return failed(openErrno(), "log_open", errFile.error().message);
  auto outPipe = makeOutputPipe();
  if (!outPipe) return failed(EMFILE, "pipe", outPipe.error().message);
  auto errPipe = makeOutputPipe();
  if (!errPipe) return failed(EMFILE, "pipe", errPipe.error().message);

  // The read ends go to the keeper before the fork: no child ever runs with its output held only
  // by us (DESIGN.md §2).
  const bool deposited = fdStore_ != nullptr && fdStore_->connected();
  if (deposited) {
    Status st = fdStore_->deposit(spec.key, spec.generation, 0,
                                  {{proto::FdKind::kStdoutPipe, outPipe->read.get()},
                                   {proto::FdKind::kStderrPipe, errPipe->read.get()}});
    if (!st.ok()) log("fd store deposit for " + spec.key + " failed: " + st.error().message);
  }

  LaunchRequest lr;
  lr.argv = spec.argv;
  lr.env = spec.env;
  lr.cwd = spec.cwd;
  lr.user = spec.user;
  lr.group = spec.group;
  lr.umask = static_cast<mode_t>(spec.umask);
  lr.stdoutWrite = outPipe->write.get();
  lr.stderrWrite = errPipe->write.get();
  lr.cgroupName = spec.key + "." + std::to_string(spec.generation);
  lr.caps.pidsMax = spec.pids_max;
  lr.caps.memoryMax = spec.memory_max_bytes;
  LaunchFailure why;
  auto launched = launch(lr, &why);
  outPipe->write.reset();
  errPipe->write.reset();
  if (!launched) {
    if (deposited && fdStore_->connected()) (void)fdStore_->release(spec.key, spec.generation);
    return failed(why.sysErrno, why.stage, launched.error().message);
  }
  if (deposited && fdStore_->connected()) {
    Status st = fdStore_->deposit(spec.key, spec.generation, launched->pid,
                                  {{proto::FdKind::kPidfd, launched->pidfd.get()}});
    if (!st.ok()) log("fd store deposit of the pidfd of " + spec.key + " failed: " + st.error().message);
  }

  auto c = std::make_unique<Child>();
  c->key = spec.key;
  c->generation = spec.generation;
  c->startedAtMs = nowMs();
  c->proc = std::make_unique<ManagedChild>(launched->pid, std::move(launched->pidfd), launched->startTicks);
  c->exitSource = ExitSource::kOwnChild;
  c->log = spec.log;
  Child& child = table_.add(std::move(c));
  // The streams are made from the files opened above (LogFileSet keeps them while streams use them).
  attachStreams(child, std::move(outPipe->read), std::move(errPipe->read));
  watchPidfd(child);
  journalDirty_ = true;
  res.pid = child.pid();

  proto::ChildStarted ev;
  ev.key = child.key;
  ev.generation = child.generation;
  ev.pid = child.pid();
  ev.start_time_ticks = child.proc->startTicks();
  ev.started_at_ms = child.startedAtMs;
  emit(std::move(ev));
  return res;
}

std::shared_ptr<LogRing> SpawnerCore::ringFor(const std::string& key) {
  auto& r = rings_[key];
  if (!r) r = std::make_shared<LogRing>();
  return r;
}

Result<std::shared_ptr<LogFile>> SpawnerCore::fileFor(const std::string& path, const proto::LogSinks& sinks) {
  // No path: the stream feeds the ring only. Its own /dev/null LogFile keeps it unshared, so bytes
  // are spliced away at once and never held for whole lines.
  if (path.empty()) return LogFile::open("/dev/null", RotationPolicy{}, loop_.clock(), nullptr);
  return logFiles_.get(path, policyOf(sinks));
}

void SpawnerCore::attachStreams(Child& c, UniqueFd outRead, UniqueFd errRead) {
  if (!scratch_) return;
  auto ring = ringFor(c.key);
  const ChildTable::Id id{c.key, c.generation};
  std::pair<UniqueFd*, LogStreamKind> pipes[] = {{&outRead, LogStreamKind::kStdout}, {&errRead, LogStreamKind::kStderr}};
  for (auto& [fd, kind] : pipes) {
    if (!fd->valid()) continue;
    const std::string& path = kind == LogStreamKind::kStdout ? c.log.stdout_path : c.log.stderr_path;
    auto file = fileFor(path, c.log);
    if (!file) {
      log("cannot open log " + path + " of " + c.key + ": " + file.error().message + "; its output goes to the ring only");
      file = fileFor("", c.log);
      if (!file) continue;
    }
    Child::StreamSlot slot;
    slot.stream = std::make_unique<LogStream>(std::move(*fd), *file, *scratch_, loop_.clock(), kind, c.log.timestamps,
                                              ring);
    c.streams.push_back(std::move(slot));
  }
  for (std::size_t i = 0; i < c.streams.size(); ++i) {
    Status st = loop_.addFd(c.streams[i].stream->fd(), EventLoop::kReadable,
                            [this, id, i](std::uint32_t) { pumpStream(id, i, false); });
    c.streams[i].watched = st.ok();
  }
}

void SpawnerCore::watchPidfd(Child& c) {
  if (!c.proc) return;
  const ChildTable::Id id{c.key, c.generation};
  Status st = loop_.addFd(c.proc->pidfd(), EventLoop::kReadable, [this, id](std::uint32_t) { onPidfdReadable(id); });
  c.pidfdWatched = st.ok();
  if (!st.ok()) log("cannot watch the pidfd of " + c.key + ": " + st.error().message);
}

void SpawnerCore::onPidfdReadable(const ChildTable::Id& id) {
  Child* c = table_.find(id.first, id.second);
  if (c == nullptr) return;
  if (c->pidfdWatched) {
    loop_.removeFd(c->proc->pidfd());  // level-triggered: a held zombie stays readable
    c->pidfdWatched = false;
  }
  if (!c->alive()) return;
  if (c->exitSource == ExitSource::kKeeper) {
    // The keeper reaps it and reports how it ended (onKeeperExited); this is only the backstop.
    if (!c->keeperExitTimer) {
      c->keeperExitTimer = loop_.addTimer(cfg_.keeperExitGrace, [this, id] { onKeeperExitOverdue(id); });
    }
    return;
  }
  if (c->exitSource == ExitSource::kUnknown) {
    markExited(*c, std::nullopt, nowMs());
    return;
  }
  auto st = c->proc->peekExit();
  if (!st) {
    log("cannot read the exit of " + c->key + ": " + st.error().message);
    markExited(*c, std::nullopt, nowMs());
    return;
  }
  if (!st->has_value()) {
    watchPidfd(*c);  // spurious: watch again
    return;
  }
  markExited(*c, **st, nowMs());
}

void SpawnerCore::onKeeperExitOverdue(const ChildTable::Id& id) {
  Child* c = table_.find(id.first, id.second);
  if (c == nullptr) return;
  c->keeperExitTimer.reset();
  if (!c->alive()) return;
  log(c->key + " (pid " + std::to_string(c->pid()) + ") is gone but the keeper did not report its exit; exit status unknown");
  markExited(*c, std::nullopt, nowMs());
}

void SpawnerCore::markExited(Child& c, std::optional<ExitStatus> status, std::int64_t atMs) {
  c.state = proto::ChildState::kExited;
  c.exit = status;
  // The kill timer of a stop stays armed: descendants left in the group still get their SIGKILL.
  pumpAll(c, false);
  journalCleanupSoon();
  proto::ChildExited ev;
  ev.key = c.key;
  ev.generation = c.generation;
  ev.pid = c.pid();
  if (status) {
    if (status->exited) {
      ev.exit_code = status->code;
    } else {
      ev.exit_signal = status->signal;
      ev.core_dumped = status->coreDumped;
    }
  }
  ev.at = atMs;
  if (!c.streams.empty()) statsDirty_.insert({c.key, c.generation});
  emitLogStats();
  emit(std::move(ev), ChildTable::Id{c.key, c.generation});
}

void SpawnerCore::pumpStream(const ChildTable::Id& id, std::size_t index, bool flushPartial) {
  Child* c = table_.find(id.first, id.second);
  if (c == nullptr || index >= c->streams.size()) return;
  auto& slot = c->streams[index];
  if (slot.eof) return;
  PumpResult r = slot.stream->pump(flushPartial);
  switch (r) {
    case PumpResult::kDrained:
    case PumpResult::kMore:
      break;  // level-triggered: called again while data waits
    case PumpResult::kHeld:
      // A partial line stays in the pipe (shared file): stop watching it until the flush timer.
      if (slot.watched) {
        loop_.removeFd(slot.stream->fd());
        slot.watched = false;
      }
      if (!c->flushTimer) c->flushTimer = loop_.addTimer(cfg_.flushDelay, [this, id] { onFlushTimer(id); });
      break;
    case PumpResult::kEof:
      if (slot.watched) loop_.removeFd(slot.stream->fd());
      slot.watched = false;
      slot.eof = true;
      break;
  }
  noteLogActivity(*c);
}

void SpawnerCore::onFlushTimer(const ChildTable::Id& id) {
  Child* c = table_.find(id.first, id.second);
  if (c == nullptr) return;
  c->flushTimer.reset();
  for (std::size_t i = 0; i < c->streams.size(); ++i) {
    auto& slot = c->streams[i];
    if (slot.eof || slot.watched) continue;
    pumpStream(id, i, true);
    if (slot.eof || slot.watched) continue;
    Status st = loop_.addFd(slot.stream->fd(), EventLoop::kReadable,
                            [this, id, i](std::uint32_t) { pumpStream(id, i, false); });
    slot.watched = st.ok();
  }
}

void SpawnerCore::pumpAll(Child& c, bool flushPartial) {
  const ChildTable::Id id{c.key, c.generation};
  for (std::size_t i = 0; i < c.streams.size(); ++i) pumpStream(id, i, flushPartial);
}

void SpawnerCore::noteLogActivity(const Child& c) {
  auto it = followed_.find(c.key);
  if (it != followed_.end()) pushFollowed(c.key);
  if (!synced_) return;  // counters reach a new master through its own LogStats later
  statsDirty_.insert({c.key, c.generation});
  if (!statsTimer_) {
    statsTimer_ = loop_.addTimer(cfg_.statsInterval, [this] {
      statsTimer_.reset();
      emitLogStats();
    });
  }
}

void SpawnerCore::emitLogStats() {
  if (!synced_) {
    statsDirty_.clear();
    return;
  }
  for (const auto& id : statsDirty_) {
    Child* c = table_.find(id.first, id.second);
    if (c == nullptr) continue;
    proto::LogStats s;
    s.key = c->key;
    std::set<const LogFile*> files;
    for (const auto& slot : c->streams) {
      const LogCounters& k = slot.stream->counters();
      (slot.stream->kind() == LogStreamKind::kStdout ? s.stdout_bytes : s.stderr_bytes) += k.bytes;
      s.dropped_bytes += k.droppedBytes;
      if (files.insert(slot.stream->file().get()).second) s.rotations += slot.stream->file()->rotations();
    }
    emit(std::move(s));
  }
  statsDirty_.clear();
}

void SpawnerCore::pushFollowed(const std::string& key) {
  auto it = followed_.find(key);
  auto ring = rings_.find(key);
  if (it == followed_.end() || ring == rings_.end() || !synced_) return;
  if (ring->second->nextOffset() <= it->second) return;
  TailResult t = ring->second->tail(it->second, 1000);
  proto::LogLines ll;
  ll.key = key;
  if (!t.lines.empty() && t.lines.front().offset > it->second) ll.dropped = t.lines.front().offset - it->second;
  for (const auto& l : t.lines) ll.lines.push_back(toWire(l, key));
  it->second = t.next;
  (void)send_(masterRoute_, proto::encode(ll, 0));  // best effort, not queued
}

template <class T>
void SpawnerCore::emit(T msg, std::optional<ChildTable::Id> exitOf) {
  msg.seq = ++lastSeq_;
  QueuedEvent e;
  e.seq = msg.seq;
  e.bytes = proto::encode(msg, msg.seq);
  e.exitOf = std::move(exitOf);
  events_.push_back(std::move(e));
  sendPending();
}

void SpawnerCore::sendPending() {
  if (!synced_) return;
  for (auto& e : events_) {
    if (e.sent) continue;
    if (!send_(masterRoute_, e.bytes)) return;  // in order: the rest waits for the next try
    e.sent = true;
  }
}

SpawnerCore::Reply SpawnerCore::onSignalChild(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::SignalChild, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (req.signal < 0 || req.signal >= NSIG) return proto::encodeError(env.id, ErrorCode::kInvalidArgument, "no such signal");
  Child* c = table_.findLive(req.key);
  if (c == nullptr) return proto::encodeError(env.id, ErrorCode::kNotFound, "no running child " + req.key.substr(0, 128));
  Status st = c->proc->signalGroup(req.signal);
  if (!st.ok()) st = c->proc->signalLeader(req.signal);
  if (!st.ok()) return proto::encodeError(env.id, st.error());
  return proto::encode(proto::OkReply{}, env.id);
}

SpawnerCore::Reply SpawnerCore::onStopChild(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::StopChild, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (req.signal <= 0 || req.signal >= NSIG) return proto::encodeError(env.id, ErrorCode::kInvalidArgument, "no such signal");
  if (req.timeout_ms > kMaxStopTimeoutMs) {
    return proto::encodeError(env.id, ErrorCode::kInvalidArgument, "timeout_ms is over a day");
  }
  Child* c = table_.findLive(req.key);
  if (c == nullptr) return proto::encodeError(env.id, ErrorCode::kNotFound, "no running child " + req.key.substr(0, 128));
  if (c->state == proto::ChildState::kStopping) return proto::encode(proto::OkReply{}, env.id);  // already on its way
  Status st = c->proc->beginStop(req.signal);
  if (!st.ok()) return proto::encodeError(env.id, st.error());
  c->state = proto::ChildState::kStopping;
  const ChildTable::Id id{c->key, c->generation};
  c->killTimer = loop_.addTimer(std::chrono::milliseconds(req.timeout_ms), [this, id] {
    Child* k = table_.find(id.first, id.second);
    if (k == nullptr) return;
    k->killTimer.reset();
    if (k->alive() || k->proc->groupAlive()) {
      log("stop timeout of " + k->key + ": SIGKILL to process group " + std::to_string(k->proc->pgid()));
      (void)k->proc->killGroup();
    }
  });
  return proto::encode(proto::OkReply{}, env.id);
}

SpawnerCore::Reply SpawnerCore::onSnapshot(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::Snapshot, req);
  PROVISR_CHECK_MASTER(req.epoch);
  proto::SnapshotReply r;
  table_.forEach([&](const Child& c) {
    proto::ChildInfo i;
    i.key = c.key;
    i.generation = c.generation;
    i.pid = c.pid();
    i.start_time_ticks = c.proc ? c.proc->startTicks() : 0;
    i.started_at_ms = c.startedAtMs;
    i.state = c.state;
    if (c.exit) {
      if (c.exit->exited) {
        i.exit_code = c.exit->code;
      } else {
        i.exit_signal = c.exit->signal;
      }
    }
    i.adopted = c.adopted;
    r.children.push_back(std::move(i));
  });
  r.last_seq = lastSeq_;
  // Everything queued so far is reflected in the snapshot; only later events follow.
  for (auto& e : events_) e.sent = true;
  synced_ = true;
  return proto::encode(r, env.id);
}

SpawnerCore::Reply SpawnerCore::onAck(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::Ack, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (req.seq > lastSeq_) {
    return proto::encodeError(env.id, ErrorCode::kInvalidArgument,
                              "ack of seq " + std::to_string(req.seq) + " beyond the last issued " +
                                  std::to_string(lastSeq_));
  }
  while (!events_.empty() && events_.front().seq <= req.seq) {
    std::optional<ChildTable::Id> exitOf = std::move(events_.front().exitOf);
    events_.pop_front();
    if (exitOf) releaseChild(*exitOf);
  }
  return std::nullopt;
}

void SpawnerCore::releaseChild(const ChildTable::Id& id) {
  Child* c = table_.find(id.first, id.second);
  if (c == nullptr) return;
  pumpAll(*c, true);
  if (c->proc->stopRequested() && c->proc->groupAlive() && c->exitSource == ExitSource::kOwnChild) {
    (void)c->proc->killGroup();  // the stop asked for the whole group; nothing may outlive the release
  }
  if (c->exitSource == ExitSource::kOwnChild) {
    if (Status st = c->proc->release(); !st.ok()) log("release of " + c->key + " failed: " + st.error().message);
  }
  if (fdStore_ != nullptr && fdStore_->connected()) {
    if (Status st = fdStore_->release(c->key, c->generation); !st.ok()) {
      log("fd store release of " + c->key + " failed: " + st.error().message);
    }
  }
  detach(*c);
  statsDirty_.erase(id);
  table_.erase(id.first, id.second);
}

void SpawnerCore::detach(Child& c) {
  if (c.pidfdWatched && c.proc) loop_.removeFd(c.proc->pidfd());
  c.pidfdWatched = false;
  for (auto& slot : c.streams) {
    if (slot.watched) loop_.removeFd(slot.stream->fd());
    slot.watched = false;
  }
  if (c.killTimer) loop_.cancelTimer(*c.killTimer);
  if (c.flushTimer) loop_.cancelTimer(*c.flushTimer);
  if (c.keeperExitTimer) loop_.cancelTimer(*c.keeperExitTimer);
  c.killTimer.reset();
  c.flushTimer.reset();
  c.keeperExitTimer.reset();
}

SpawnerCore::Reply SpawnerCore::onLogTail(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::LogTail, req);
  PROVISR_CHECK_MASTER(req.epoch);
  auto it = rings_.find(req.key);
  if (it == rings_.end()) {
    if (table_.findByKey(req.key) == nullptr) {
      return proto::encodeError(env.id, ErrorCode::kNotFound, "no log of " + req.key.substr(0, 128));
    }
    return proto::encode(proto::LogTailReply{}, env.id);
  }
  // Move what the pipes hold first, so a tail right after output sees it.
  table_.forEach([&](Child& c) {
    if (c.key == req.key) pumpAll(c, false);
  });
  const std::size_t limit = std::min<std::size_t>(req.limit == 0 ? 100 : req.limit, kMaxTailLines);
  TailResult t = req.since ? it->second->tail(*req.since, limit) : it->second->last(limit);
  proto::LogTailReply r;
  r.next = t.next;
  for (const auto& l : t.lines) r.lines.push_back(toWire(l, req.key));
  return proto::encode(r, env.id);
}

SpawnerCore::Reply SpawnerCore::onLogFollow(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::LogFollow, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (!validName(req.key, kMaxKeyBytes)) return proto::encodeError(env.id, ErrorCode::kInvalidArgument, "bad key");
  if (req.on) {
    followed_[req.key] = ringFor(req.key)->nextOffset();
  } else {
    followed_.erase(req.key);
  }
  return proto::encode(proto::OkReply{}, env.id);
}

SpawnerCore::Reply SpawnerCore::onReopenLogs(const Route& route, const proto::Envelope& env) {
  PROVISR_DECODE(proto::ReopenLogs, req);
  PROVISR_CHECK_MASTER(req.epoch);
  if (Status st = logFiles_.reopenAll(); !st.ok()) return proto::encodeError(env.id, st.error());
  return proto::encode(proto::OkReply{}, env.id);
}

#undef PROVISR_DECODE
#undef PROVISR_CHECK_MASTER

SpawnerCore::AdoptionReport SpawnerCore::adopt(const std::vector<JournalEntry>& journal,
                                               std::vector<WithdrawnEntry> withdrawn,
                                               const std::vector<proto::Exited>& exits) {
  AdoptionReport rep;
  std::map<ChildTable::Id, WithdrawnEntry*> byId;
  for (auto& w : withdrawn) byId[{w.entry.key, w.entry.generation}] = &w;
  std::set<ChildTable::Id> used;
  // Whether the keeper will report this child's exit (it is the child's parent), else only the
  // pidfd tells that it is gone.
  // A child the keeper already reaped is gone from /proc; its exit came with the withdrawal.
  auto heldSource = [&](const std::string& key, std::uint64_t generation, pid_t pid) {
    if (cfg_.keeperPid == 0) return ExitSource::kKeeper;
    const pid_t parent = readParentPid(pid);
    if (parent == cfg_.keeperPid) return ExitSource::kKeeper;
    if (parent == 0 && std::any_of(exits.begin(), exits.end(), [&](const proto::Exited& x) {
          return x.key == key && x.generation == generation;
        }))
      return ExitSource::kKeeper;
    log(key + " (pid " + std::to_string(pid) + ") is not the keeper's child: its exit status will be unknown");
    return ExitSource::kUnknown;
  };

  auto adoptOne = [&](const std::string& key, std::uint64_t generation, pid_t pid, UniqueFd pidfd,
                      std::uint64_t ticks, std::int64_t startedAtMs, const proto::LogSinks& sinks, ExitSource source,
                      UniqueFd outRead, UniqueFd errRead) {
    auto c = std::make_unique<Child>();
    c->key = key;
    c->generation = generation;
    c->startedAtMs = startedAtMs;
    c->proc = std::make_unique<ManagedChild>(pid, std::move(pidfd), ticks);
    c->exitSource = source;
    c->adopted = source == ExitSource::kUnknown;
    c->log = sinks;
    Child& child = table_.add(std::move(c));
    const bool pipes = outRead.valid() || errRead.valid();
    attachStreams(child, std::move(outRead), std::move(errRead));
    watchPidfd(child);
    journalDirty_ = true;
    ++rep.adopted;
    if (pipes) ++rep.withPipes;
    log("adopted " + key + " (pid " + std::to_string(pid) + (pipes ? ", logs resumed" : ", output lost") + ")");
    proto::ChildStarted ev;
    ev.key = key;
    ev.generation = generation;
    ev.pid = pid;
    ev.start_time_ticks = ticks;
    ev.started_at_ms = startedAtMs;
    ev.adopted = child.adopted;
    emit(std::move(ev));
  };

  for (const auto& e : journal) {
    // Only a child adopted below takes its generation (ChildTable::add): one that is gone or whose
    // pid was reused is forgotten, so a fresh master (whose generations start again at 1) can
    // start that instance again instead of being told its Spawn is a duplicate.
    if (!validName(e.key, kMaxKeyBytes) || table_.find(e.key, e.generation) != nullptr) continue;
    auto w = byId.find({e.key, e.generation});
    if (w != byId.end() && w->second->fdOf(proto::FdKind::kPidfd) >= 0) {
      // The keeper held the pidfd since the fork: it names the child, whatever /proc says now.
      used.insert(w->first);
      WithdrawnEntry& we = *w->second;
      adoptOne(e.key, e.generation, e.pid, we.take(proto::FdKind::kPidfd), e.startTicks, e.startedAtMs,
               e.hasLog ? e.log : proto::LogSinks{}, heldSource(e.key, e.generation, e.pid), we.take(proto::FdKind::kStdoutPipe),
               we.take(proto::FdKind::kStderrPipe));
      continue;
    }
    // pidfd first, then the start time: if the pid was reused in between, the ticks tell.
    UniqueFd pidfd(pidfdOpen(e.pid));
    if (!pidfd) {
      ++rep.gone;
      log("journal child " + e.key + " (pid " + std::to_string(e.pid) + ") is gone");
      continue;
    }
    if (readStartTicks(e.pid) != e.startTicks) {
      ++rep.reused;
      log("journal child " + e.key + ": pid " + std::to_string(e.pid) + " now names another process; not adopted");
      continue;
    }
    if (w != byId.end()) {
      // The keeper has its pipes but the pidfd deposit never arrived: it is still the keeper's
      // child (the keeper reports its exit), and its log resumes from the deposited pipes.
      used.insert(w->first);
      WithdrawnEntry& we = *w->second;
      adoptOne(e.key, e.generation, e.pid, std::move(pidfd), e.startTicks, e.startedAtMs,
               e.hasLog ? e.log : proto::LogSinks{}, heldSource(e.key, e.generation, e.pid), we.take(proto::FdKind::kStdoutPipe),
               we.take(proto::FdKind::kStderrPipe));
      continue;
    }
    adoptOne(e.key, e.generation, e.pid, std::move(pidfd), e.startTicks, e.startedAtMs,
             e.hasLog ? e.log : proto::LogSinks{}, ExitSource::kUnknown, UniqueFd(), UniqueFd());
  }
  // Deposited but not (yet) journaled: the spawner died within the turn that started them.
  for (auto& w : withdrawn) {
    const ChildTable::Id id{w.entry.key, w.entry.generation};
    if (used.count(id) != 0 || table_.find(id.first, id.second) != nullptr) continue;
    if (validName(id.first, kMaxKeyBytes) && w.fdOf(proto::FdKind::kPidfd) < 0) {
      // Forked, but the spawner died before the pidfd went to the keeper: find the child by its
      // stdout pipe among the keeper's children, or it would run on untracked.
      const pid_t parent = cfg_.keeperPid != 0 ? cfg_.keeperPid : ::getpid();
      if (const pid_t pid = findStdoutWriter(w.fdOf(proto::FdKind::kStdoutPipe), parent); pid > 0) {
        UniqueFd pidfd(pidfdOpen(pid));
        if (pidfd && readParentPid(pid) == parent) {
          used.insert(id);
          table_.noteGeneration(id.first, id.second);
          log("found " + id.first + " (pid " + std::to_string(pid) + ") by its stdout pipe");
          adoptOne(id.first, id.second, pid, std::move(pidfd), readStartTicks(pid), nowMs(), proto::LogSinks{},
                   heldSource(id.first, id.second, pid), w.take(proto::FdKind::kStdoutPipe),
                   w.take(proto::FdKind::kStderrPipe));
          // The keeper's entry has no pid yet: without it the keeper would reap this child as an
          // unknown orphan and never report its exit.
          const Child* found = table_.find(id.first, id.second);
          if (found != nullptr && found->proc && fdStore_ != nullptr && fdStore_->connected()) {
            if (Status st = fdStore_->deposit(id.first, id.second, pid, {{proto::FdKind::kPidfd, found->proc->pidfd()}});
                !st.ok())
              log("fd store deposit of the pidfd of " + id.first + " failed: " + st.error().message);
          }
          continue;
        }
      }
    }
    if (!validName(id.first, kMaxKeyBytes) || w.entry.pid <= 0 || w.fdOf(proto::FdKind::kPidfd) < 0) {
      ++rep.dropped;
      log("fd store entry " + id.first + " has no pidfd; giving its fds back");
      if (fdStore_ != nullptr && fdStore_->connected()) (void)fdStore_->release(id.first, id.second);
      continue;
    }
    table_.noteGeneration(id.first, id.second);
    adoptOne(id.first, id.second, w.entry.pid, w.take(proto::FdKind::kPidfd), readStartTicks(w.entry.pid), nowMs(),
             proto::LogSinks{}, heldSource(id.first, id.second, w.entry.pid), w.take(proto::FdKind::kStdoutPipe),
             w.take(proto::FdKind::kStderrPipe));
  }
  return rep;
}

std::size_t SpawnerCore::redeposit(FdStoreClient* fdStore) {
  fdStore_ = fdStore;
  std::size_t n = 0;
  table_.forEach([&](Child& c) {
    if (!c.alive() || !c.proc || fdStore_ == nullptr || !fdStore_->connected()) return;
    std::vector<std::pair<proto::FdKind, int>> fds = {{proto::FdKind::kPidfd, c.proc->pidfd()}};
    for (const auto& slot : c.streams) {
      if (slot.eof) continue;
      fds.emplace_back(slot.stream->kind() == LogStreamKind::kStderr ? proto::FdKind::kStderrPipe
                                                                     : proto::FdKind::kStdoutPipe,
                       slot.stream->fd());
    }
    if (Status st = fdStore_->deposit(c.key, c.generation, c.pid(), fds); !st.ok()) {
      log("fd store deposit of " + c.key + " failed: " + st.error().message);
      return;
    }
    ++n;
  });
  return n;
}

void SpawnerCore::onKeeperExited(const proto::Exited& e) {
  Child* c = table_.find(e.key, e.generation);
  if (c == nullptr || !c->alive()) {
    log("keeper reported the exit of unknown child " + e.key.substr(0, 128) + " (pid " + std::to_string(e.pid) + ")");
    return;
  }
  markExited(*c, ExitStatus::fromWaitStatus(e.status), e.at != 0 ? e.at : nowMs());
}

std::size_t SpawnerCore::onSigchld() {
  auto reaped = reapOrphans([this](pid_t pid) { return table_.isOwnChild(pid); });
  return reaped.size();
}

void SpawnerCore::endOfTurn() {
  if (!journalDirty_ || cfg_.journalPath.empty()) return;
  journalDirty_ = false;
  std::vector<JournalEntry> entries;
  table_.forEach([&](const Child& c) {
    if (!c.alive()) return;
    JournalEntry e;
    e.key = c.key;
    e.generation = c.generation;
    e.pid = c.pid();
    e.startTicks = c.proc->startTicks();
    e.startedAtMs = c.startedAtMs;
    e.log = c.log;
    e.hasLog = true;
    entries.push_back(std::move(e));
  });
  ++journalWrites_;
  if (Status st = writeJournal(cfg_.journalPath, entries); !st.ok()) {
    journalDirty_ = true;  // try again next turn
    log("journal write failed: " + st.error().message);
  }
}

void SpawnerCore::shutdown() {
  // With the keeper holding the pipes, a partial line stays in them for the next spawner;
  // without it the pipes die with us, so everything goes out now.
  const bool keeperHolds = fdStore_ != nullptr && fdStore_->connected();
  table_.forEach([&](Child& c) { pumpAll(c, !keeperHolds); });
  journalDirty_ = true;
  endOfTurn();
}

}  // namespace provisr::spawner

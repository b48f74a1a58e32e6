// The fd store's socket side: accept, recvmsg/sendmsg with SCM_RIGHTS, per-connection output
// queues (a withdraw of thousands of fds can fill the socket buffer), decoding through the codec.
#include "cli/keeper/fd_store.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "cli/keeper/log.hpp"
#include "common/proto/codec.hpp"
#include "common/util/scm.hpp"

namespace provisr::keeper {
namespace {

Error sysError(const std::string& what) { return makeError(ErrorCode::kInternal, what + ": " + std::strerror(errno)); }

}  // namespace

Result<std::unique_ptr<FdStore>> FdStore::listen(EventLoop& loop, const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    return makeError(ErrorCode::kInvalidArgument, "fd store socket path too long (max " +
                                                      std::to_string(sizeof addr.sun_path - 1) + " bytes): " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return sysError("socket");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sysError("unlink " + path);
  const mode_t old = ::umask(0177);  // born 0600: no window where another user could connect
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return sysError("bind " + path);
  if (::listen(fd.get(), 16) != 0) return sysError("listen " + path);
  std::unique_ptr<FdStore> store(new FdStore(loop, std::move(fd), path));
  FdStore* self = store.get();
  if (auto st = loop.addFd(store->listener_.get(), EventLoop::kReadable, [self](std::uint32_t) { self->onAccept(); }); !st)
    return st.error();
  return store;
}

FdStore::FdStore(EventLoop& loop, UniqueFd listener, std::string path)
    : loop_(loop), listener_(std::move(listener)), path_(std::move(path)), rxbuf_(kMaxDatagram) {}

FdStore::~FdStore() {
  for (auto& [fd, c] : conns_) loop_.removeFd(fd);
  loop_.removeFd(listener_.get());
  ::unlink(path_.c_str());
}

void FdStore::onAccept() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) logLine(std::string("fd store: accept: ") + std::strerror(errno));
      return;
    }
    // Only our own user (or root) may hand us fds; the socket is 0600 too.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || (cred.uid != ::geteuid() && cred.uid != 0)) {
      logLine("fd store: refused a connection from uid " + std::to_string(cred.uid));
      continue;
    }
    const int raw = fd.get();
    Conn& c = conns_[raw];
    c.fd = std::move(fd);
    if (auto st = loop_.addFd(raw, EventLoop::kReadable, [this, raw](std::uint32_t ev) {
          if ((ev & EventLoop::kWritable) != 0) flush(raw);
          if ((ev & (EventLoop::kReadable | EventLoop::kError)) != 0) onReadable(raw);
        }); !st) {
      logLine("fd store: " + st.error().message);
      conns_.erase(raw);
      continue;
    }
    logLine("fd store: spawner connected (pid " + std::to_string(cred.pid) + "), holding " +
            std::to_string(table_.size()) + " entries, " + std::to_string(table_.fdCount()) + " fds");
    for (const auto& ex : table_.pendingExits()) queue(raw, proto::encode(ex, 0));
  }
}

void FdStore::onReadable(int fd) { readPending(fd, rxbuf_, 64); }

void FdStore::readPending(int fd, std::vector<char>& buf, std::size_t maxMessages) {
  for (std::size_t budget = maxMessages; budget > 0; --budget) {
    if (conns_.count(fd) == 0) return;
    // recvWithFds owns every fd first, so nothing leaks whatever the message turns out to be.
    RecvWithFds got = recvWithFds(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    const ssize_t n = got.n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n < 0 && (errno == ECONNRESET || errno == EPIPE)) {
      // A spawner that died with unread messages (an Exited we pushed) resets the connection, and
      // the kernel reports that before the datagrams it had sent: read those first (its last
      // deposits), the end of the connection comes after them.
      conns_.at(fd).peerGone = true;
      continue;
    }
    std::vector<UniqueFd> fds = std::move(got.fds);
    if (n <= 0) {
      if (n < 0) logLine(std::string("fd store: recvmsg: ") + std::strerror(errno));
      logLine("fd store: spawner disconnected; keeping " + std::to_string(table_.size()) + " entries");
      drop(fd);
      return;
    }
    if ((got.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
      logLine("fd store: dropped a truncated message (too large, or too many fds for our RLIMIT_NOFILE)");
      queue(fd, proto::encodeError(0, ErrorCode::kMalformed, "truncated message or fds"));
      continue;
    }
    handle(conns_.at(fd), buf.data(), static_cast<std::size_t>(n), std::move(fds));
  }
}

void FdStore::handle(Conn& c, const char* data, std::size_t size, std::vector<UniqueFd> fds) {
  const int fd = c.fd.get();
  auto env = proto::decodeEnvelope(data, size);
  if (!env) {
    logLine("fd store: " + env.error().message);
    queue(fd, proto::errorReplyFor(data, size, env.error()));
    return;
  }
  switch (env->type) {
    case proto::MsgType::kDeposit: {
      auto d = proto::decodeBody<proto::Deposit>(*env);
      if (!d) {
        queue(fd, proto::encodeError(env->id, d.error()));
        return;
      }
      if (auto st = table_.deposit(*d, std::move(fds)); !st) {
        logLine("fd store: " + st.error().message);
        queue(fd, proto::encodeError(env->id, st.error()));
      }
      return;
    }
    case proto::MsgType::kRelease: {
      auto r = proto::decodeBody<proto::Release>(*env);
      if (!r) {
        queue(fd, proto::encodeError(env->id, r.error()));
        return;
      }
      table_.release(FdKey{r->key, r->generation}, bootTicksNow());  // an unknown entry: already released
      table_.pruneGroups([](const GroupRef& g) { return groupAlive(g); });
      return;
    }
    case proto::MsgType::kWithdraw: {
      const std::uint64_t id = env->id;
      // What a previous spawner sent before it died (deposits of children it had just forked,
      // releases) may still wait unread on its connection: apply all of it first, or the new
      // spawner would miss those children (and a late release would drop an entry it adopted).
      drainOthers(fd);
      logLine("fd store: withdraw of " + std::to_string(table_.size()) + " entries");
      queue(fd, WithdrawCursor{std::nullopt, id});
      return;
    }
    default:
      queue(fd, proto::encodeError(env->id, ErrorCode::kUnknownMessage,
                                   std::string("not a fd store request: ") + std::string(proto::msgTypeName(env->type))));
      return;
  }
}

void FdStore::drainOthers(int except) {
  if (draining_) return;
  draining_ = true;
  std::vector<char> buf(kMaxDatagram);  // the caller's message may still live in rxbuf_
  std::vector<int> others;
  for (const auto& [fd, c] : conns_) {
    if (fd != except) others.push_back(fd);
  }
  for (int fd : others) readPending(fd, buf, std::size_t{1} << 16);  // until EAGAIN or the peer's close
  draining_ = false;
}

bool FdStore::onReaped(pid_t pid, int rawStatus, std::int64_t atMs) {
  auto ex = table_.recordExit(pid, rawStatus, atMs, bootTicksNow());
  if (!ex) return false;
  const std::string bytes = proto::encode(*ex, 0);
  std::vector<int> targets;
  for (const auto& [fd, c] : conns_) targets.push_back(fd);
  for (int fd : targets) queue(fd, bytes);
  return true;
}

void FdStore::queue(int fd, OutItem item) {
  auto it = conns_.find(fd);
  if (it == conns_.end() || it->second.peerGone) return;
  it->second.out.push_back(std::move(item));
  flush(fd);
}

void FdStore::flush(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  while (!c.out.empty()) {
    std::string bytes;
    std::vector<int> fds;
    WithdrawChunkPlan plan;
    auto* cursor = std::get_if<WithdrawCursor>(&c.out.front());
    if (cursor != nullptr) {
      // Built just before sending, so every fd in it is still open in the table.
      plan = table_.nextChunk(cursor->after);
      bytes = proto::encode(plan.msg, cursor->id);
      fds = plan.fds;
    } else {
      bytes = std::get<std::string>(c.out.front());
    }
    const ssize_t n = sendWithFds(fd, bytes, fds, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR || errno == ENOBUFS) {
        if (!c.watchingWritable) {
          c.watchingWritable = true;
          (void)loop_.modifyFd(fd, EventLoop::kReadable | EventLoop::kWritable);
        }
        return;
      }
      // The spawner is gone, but what it sent before may still wait unread: the connection is
      // dropped when reading reaches its end, not now (that would discard its last deposits).
      logLine(std::string("fd store: sendmsg: ") + std::strerror(errno) + "; reading what the spawner sent before");
      c.peerGone = true;
      c.out.clear();
      if (c.watchingWritable) {
        c.watchingWritable = false;
        (void)loop_.modifyFd(fd, EventLoop::kReadable);
      }
      return;
    }
    if (cursor != nullptr && !plan.msg.last) {
      cursor->after = plan.lastKey;
    } else {
      c.out.pop_front();
    }
  }
  if (c.watchingWritable) {
    c.watchingWritable = false;
    (void)loop_.modifyFd(fd, EventLoop::kReadable);
  }
}

void FdStore::drop(int fd) {
  loop_.removeFd(fd);
  conns_.erase(fd);
}

}  // namespace provisr::keeper

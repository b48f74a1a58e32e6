// FdStoreClient: SCM_RIGHTS datagrams to and from the keeper's fd store.
#include "spawner/fd_store_client.hpp"

#include "common/util/scm.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace provisr::spawner {
namespace {

Error sysError(ErrorCode code, const std::string& what, int err) {
  return makeError(code, what + ": " + std::strerror(err));
}

}  // namespace

Status sendDatagram(int sock, std::string_view bytes, const std::vector<int>& fds) {
  if (fds.size() > proto::kMaxFdsPerMessage) {
    return makeError(ErrorCode::kInvalidArgument, "more than 253 fds in one datagram");
  }
  ssize_t n;
  do {
    n = sendWithFds(sock, bytes, fds, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return sysError(ErrorCode::kUnavailable, "fd store sendmsg", errno);
  return {};
}

Result<std::optional<FdDatagram>> recvDatagram(int sock, std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return sysError(ErrorCode::kUnavailable, "fd store poll", errno);
  if (rc == 0) return std::optional<FdDatagram>{};

  FdDatagram out;
  out.bytes.resize(proto::kMaxMessageSize > 1u << 20 ? 1u << 20 : proto::kMaxMessageSize);
  RecvWithFds got;
  do {
    got = recvWithFds(sock, out.bytes.data(), out.bytes.size(), MSG_DONTWAIT);
  } while (got.n < 0 && errno == EINTR);
  if (got.n < 0) {
    if (errno == EAGAIN) return std::optional<FdDatagram>{};
    return sysError(ErrorCode::kUnavailable, "fd store recvmsg", errno);
  }
  const ssize_t n = got.n;
  out.fds = std::move(got.fds);
  if (n == 0 && out.fds.empty()) return makeError(ErrorCode::kUnavailable, "the fd store closed the connection");
  if ((got.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    return makeError(ErrorCode::kMalformed, "truncated fd store datagram");  // fds close with `out`
  }
  out.bytes.resize(static_cast<std::size_t>(n));
  return std::optional<FdDatagram>{std::move(out)};
}

int WithdrawnEntry::fdOf(proto::FdKind kind) const {
  for (std::size_t i = 0; i < entry.kinds.size() && i < fds.size(); ++i) {
    if (entry.kinds[i] == kind) return fds[i].get();
  }
  return -1;
}

UniqueFd WithdrawnEntry::take(proto::FdKind kind) {
  for (std::size_t i = 0; i < entry.kinds.size() && i < fds.size(); ++i) {
    if (entry.kinds[i] == kind && fds[i].valid()) return std::move(fds[i]);
  }
  return {};
}

Result<FdStoreClient> FdStoreClient::connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    return makeError(ErrorCode::kInvalidArgument, "fd store path too long: " + path);
  }
  UniqueFd s(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!s) return sysError(ErrorCode::kInternal, "socket(AF_UNIX, SOCK_SEQPACKET)", errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::connect(s.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    return sysError(ErrorCode::kUnavailable, "connect to the fd store " + path, errno);
  }
  return FdStoreClient(std::move(s));
}

Status FdStoreClient::sendMessage(std::string_view bytes, const std::vector<int>& fds) {
  if (!sock_) return makeError(ErrorCode::kUnavailable, "not connected to the fd store");
  Status st = sendDatagram(sock_.get(), bytes, fds);
  if (!st.ok()) sock_.reset();
  return st;
}

Status FdStoreClient::deposit(const std::string& key, std::uint64_t generation, pid_t pid,
                              const std::vector<std::pair<proto::FdKind, int>>& fds) {
  proto::Deposit d;
  d.key = key;
  d.generation = generation;
  d.pid = pid;
  std::vector<int> raw;
  for (const auto& [kind, fd] : fds) {
    d.kinds.push_back(kind);
    raw.push_back(fd);
  }
  return sendMessage(proto::encode(d, 0), raw);
}

Status FdStoreClient::release(const std::string& key, std::uint64_t generation) {
  proto::Release r;
  r.key = key;
  r.generation = generation;
  return sendMessage(proto::encode(r, 0), {});
}

Result<WithdrawResult> FdStoreClient::withdraw(std::chrono::milliseconds timeout) {
  if (Status st = sendMessage(proto::encode(proto::Withdraw{}, 0), {}); !st.ok()) return st.error();
  WithdrawResult out;
  for (;;) {
    auto got = recvDatagram(sock_.get(), timeout);
    if (!got) {
      sock_.reset();
      return got.error();
    }
    if (!got->has_value()) {
      return makeError(ErrorCode::kTimeout, "the fd store did not answer Withdraw in time");
    }
    FdDatagram& dg = **got;
    auto env = proto::decodeEnvelope(dg.bytes.data(), dg.bytes.size());
    if (!env) return env.error();
    if (env->type == proto::MsgType::kExited) {
      auto ex = proto::decodeBody<proto::Exited>(*env);
      if (ex) out.exits.push_back(std::move(*ex));
      continue;
    }
    auto chunk = proto::decodeBody<proto::WithdrawChunk>(*env);
    if (!chunk) return chunk.error();
    std::size_t want = 0;
    for (const auto& e : chunk->entries) want += e.kinds.size();
    if (want != dg.fds.size()) {
      return makeError(ErrorCode::kMalformed, "WithdrawChunk names " + std::to_string(want) + " fds but carries " +
                                                  std::to_string(dg.fds.size()));
    }
    std::size_t at = 0;
    for (auto& e : chunk->entries) {
      WithdrawnEntry w;
      for (std::size_t i = 0; i < e.kinds.size(); ++i) w.fds.push_back(std::move(dg.fds[at++]));
      w.entry = std::move(e);
      out.entries.push_back(std::move(w));
    }
    if (chunk->last) return out;
  }
}

Result<std::optional<proto::Exited>> FdStoreClient::readExited() {
  for (;;) {
    if (!sock_) return makeError(ErrorCode::kUnavailable, "not connected to the fd store");
    auto got = recvDatagram(sock_.get(), std::chrono::milliseconds(0));
    if (!got) {
      if (got.error().code == ErrorCode::kUnavailable) sock_.reset();
      return got.error();
    }
    if (!got->has_value()) return std::optional<proto::Exited>{};
    auto ex = proto::decode<proto::Exited>((*got)->bytes.data(), (*got)->bytes.size());
    if (ex) return std::optional<proto::Exited>{std::move(*ex)};
    // Anything else from the keeper is not for us at this point: skip it.
  }
}

}  // namespace provisr::spawner

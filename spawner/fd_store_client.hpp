// FdStoreClient: the spawner's side of the keeper's fd store (DESIGN.md §2, §4 item 3) — pipe read
// ends and pidfds deposited over AF_UNIX SOCK_SEQPACKET with SCM_RIGHTS, withdrawn by a new spawner.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/proto/codec.hpp"
#include "common/proto/schema.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::spawner {

// One datagram: an envelope and the fds that rode with it (owned).
struct FdDatagram {
  std::string bytes;
  std::vector<UniqueFd> fds;
};

// Sends one datagram with `fds` (borrowed, at most kMaxFdsPerMessage) in SCM_RIGHTS. Blocking.
Status sendDatagram(int sock, std::string_view bytes, const std::vector<int>& fds);
// Receives one datagram, waiting at most `timeout` (zero: do not wait). nullopt: nothing came.
// kUnavailable when the peer closed; kMalformed for a truncated datagram or control message (its
// fds are closed). Received fds are CLOEXEC.
Result<std::optional<FdDatagram>> recvDatagram(int sock, std::chrono::milliseconds timeout);

// What one withdrawn entry holds: the entry and its fds in `kinds` order.
struct WithdrawnEntry {
  proto::DepositEntry entry;
  std::vector<UniqueFd> fds;
  // The fd of a kind, or -1.
  int fdOf(proto::FdKind kind) const;
  UniqueFd take(proto::FdKind kind);
};

struct WithdrawResult {
  std::vector<WithdrawnEntry> entries;
  std::vector<proto::Exited> exits;  // Exited messages that arrived while withdrawing
};

class FdStoreClient {
 public:
  // Connects to the keeper's socket (a path of at most 107 bytes).
  static Result<FdStoreClient> connect(const std::string& path);
  // For tests: an already connected socket.
  explicit FdStoreClient(UniqueFd sock) : sock_(std::move(sock)) {}

  int fd() const { return sock_.get(); }
  bool connected() const { return sock_.valid(); }

  // spawner → keeper. A send error drops the connection (connected() turns false).
  Status deposit(const std::string& key, std::uint64_t generation, pid_t pid,
                 const std::vector<std::pair<proto::FdKind, int>>& fds);
  Status release(const std::string& key, std::uint64_t generation);
  // Asks for every deposited fd and reads WithdrawChunks until `last`, each within `timeout`.
  Result<WithdrawResult> withdraw(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Reads what the keeper pushed (Exited) without blocking; nullopt when nothing is waiting.
  // kUnavailable when the keeper closed the socket.
  Result<std::optional<proto::Exited>> readExited();

 private:
  Status sendMessage(std::string_view bytes, const std::vector<int>& fds);

  UniqueFd sock_;
};

}  // namespace provisr::spawner

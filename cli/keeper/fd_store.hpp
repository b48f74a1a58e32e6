// The fd store server (DESIGN §2): an AF_UNIX SOCK_SEQPACKET socket in run_dir/keeper where the
// spawner deposits each child's fds with SCM_RIGHTS, releases them, withdraws them all after a
// restart, and is told of the exits the keeper reaped while it was away.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/keeper/fd_table.hpp"
#include "common/util/event_loop.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::keeper {

// Largest datagram the store accepts; a Deposit is far smaller.
inline constexpr std::size_t kMaxDatagram = 64 * 1024;

class FdStore {
 public:
  // Binds `path` (mode 0600, a stale socket file is replaced: the caller holds the run_dir lock)
  // and serves it on `loop`.
  static Result<std::unique_ptr<FdStore>> listen(EventLoop& loop, const std::string& path);
  FdStore(const FdStore&) = delete;
  FdStore& operator=(const FdStore&) = delete;
  ~FdStore();

  // The keeper reaped `pid` with wait status `rawStatus`: if it is a managed child, queue Exited
  // to every connected spawner (and to any that connects until the entry is released). Returns
  // whether it was a managed child.
  bool onReaped(pid_t pid, int rawStatus, std::int64_t atMs);

  FdTable& table() { return table_; }
  std::size_t connections() const { return conns_.size(); }

 private:
  struct WithdrawCursor {
    std::optional<FdKey> after;  // the last entry sent; unset before the first chunk
    std::uint64_t id = 0;        // the Withdraw's request id, echoed by every chunk
  };
  using OutItem = std::variant<std::string, WithdrawCursor>;
  struct Conn {
    UniqueFd fd;
    std::deque<OutItem> out;
    bool watchingWritable = false;
    bool peerGone = false;  // a send failed or the peer reset: only its queued datagrams are read
  };

  FdStore(EventLoop& loop, UniqueFd listener, std::string path);
  void onAccept();
  void onReadable(int fd);
  // Reads and applies up to `maxMessages` datagrams of `fd` into `buf`; drops it on close.
  void readPending(int fd, std::vector<char>& buf, std::size_t maxMessages);
  // Applies everything already sent on every connection but `except` (before a Withdraw).
  void drainOthers(int except);
  void handle(Conn& c, const char* data, std::size_t size, std::vector<UniqueFd> fds);
  void queue(int fd, OutItem item);
  void flush(int fd);  // sends what it can; closes the connection on a hard error
  void drop(int fd);

  EventLoop& loop_;
  UniqueFd listener_;
  std::string path_;
  FdTable table_;
  std::map<int, Conn> conns_;
  std::vector<char> rxbuf_;  // one datagram; allocated once
  bool draining_ = false;
};

}  // namespace provisr::keeper

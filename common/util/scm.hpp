// Datagrams with file descriptors (SCM_RIGHTS) over an AF_UNIX socket: the keeper's fd store and
// its clients send and receive through these two calls.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string_view>
#include <vector>

#include "common/util/fd.hpp"

namespace provisr {

// At most this many fds ride in one datagram (the kernel's SCM_MAX_FD).
inline constexpr std::size_t kMaxFdsPerDatagram = 253;

// One sendmsg of `bytes` with `fds` attached; returns what sendmsg returns (-1 with errno set).
ssize_t sendWithFds(int sock, std::string_view bytes, const std::vector<int>& fds, int flags);

struct RecvWithFds {
  ssize_t n = -1;          // what recvmsg returned (-1 with errno set)
  int msg_flags = 0;       // MSG_TRUNC / MSG_CTRUNC when the datagram did not fit
  std::vector<UniqueFd> fds;  // every fd that arrived (close-on-exec), owned even on errors
};

// One recvmsg into `buf` (MSG_CMSG_CLOEXEC is added to `flags`); fds are taken into ownership
// first, so none leaks whatever the datagram turns out to hold.
RecvWithFds recvWithFds(int sock, char* buf, std::size_t size, int flags);

}  // namespace provisr

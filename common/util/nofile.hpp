// RLIMIT_NOFILE for the processes that hold descriptors for every managed child: the spawner
// (log files, pipe read ends, pidfds: about 9 per child) and the keeper's fd store (up to 3).
#pragma once

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace provisr {

// The soft limit goes up to the hard one; where the process may (CAP_SYS_RESOURCE, e.g. root),
// both go up to `want`, capped by fs.nr_open, so thousands of children do not run into a
// distribution's default hard limit. A limit is never lowered. Returns what failed, or "".
inline std::string raiseNofile(rlim_t want = rlim_t{1} << 20) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return std::string("getrlimit: ") + std::strerror(errno);
  rlim_t cap = want;
  if (std::ifstream in("/proc/sys/fs/nr_open"); in) {
    unsigned long long v = 0;
    if (in >> v && v < cap) cap = static_cast<rlim_t>(v);
  }
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < cap) {
    const rlimit more{cap, cap};
    if (::setrlimit(RLIMIT_NOFILE, &more) == 0) return "";
    // Not allowed to raise the hard limit: the soft one still goes up to it.
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return std::string("cannot raise RLIMIT_NOFILE: ") + std::strerror(errno);
  }
  return "";
}

}  // namespace provisr

// Small system lookups the master core needs: PATH search for argv[0] and /proc sampling.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/proto/schema.hpp"

namespace provisr::master {

// argv[0] searched in the PATH of `env` ("PATH=..."); unchanged when not found (the spawner then
// reports the exec error).
std::string resolveExecutable(const std::string& prog, const std::vector<std::string>& env);
// rss_bytes and cpu_seconds of `pid` from /proc; leaves them unset when the pid is gone.
void sampleProc(pid_t pid, proto::InstanceStatus& out);

}  // namespace provisr::master

// The run_dir on disk: created and checked without following symlinks, the keeper's lock with its
// pid, a surviving spawner found through its lock, its secret, and atomic file writes.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr::keeper {

class RunDir {
 public:
  // Creates `path` (absolute) with mode 0700 when missing, then opens it O_NOFOLLOW and checks it:
  // a directory owned by us, not writable by group or others — and, when any ancestor is
  // writable by another user (/tmp), not readable by them either (exactly 0700; as root, 0750
  // with a group other than ours is accepted too: the `[daemon] user` layout of DESIGN §2).
  static Result<RunDir> open(const std::string& path);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

  // Creates `name` below the run_dir (0700) if missing and opens it, with the same checks.
  Result<UniqueFd> subdir(const std::string& name) const;

  // Writes `text` to `name` (relative to the run_dir) through `name.tmp` + rename.
  Status writeAtomic(const std::string& name, const std::string& text, mode_t mode) const;

 private:
  RunDir(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
};

// Takes keeper/keeper.lock (flock, kept until the fd closes) and writes our pid into it. When a
// live keeper holds it: kUnavailable naming that keeper's pid.
Result<UniqueFd> takeKeeperLock(int keeperDirFd, const std::string& displayPath);

// The pid in a lock file whose flock is held by a live process (a spawner that outlived its
// keeper), or nullopt when nobody holds it.
std::optional<pid_t> lockHolder(int dirFd, const std::string& name);

// Reads a secret file (a regular file owned by us, not accessible by others): 64 hex digits.
Result<std::string> readSecretFile(int dirFd, const std::string& name);

// 32 random bytes, hex encoded.
Result<std::string> makeSecret();

}  // namespace provisr::keeper

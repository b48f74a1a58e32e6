// `[daemon] user` (DESIGN §2, §6): the account master and gateway drop to when started as root,
// the run_dir layout that lets them reach their sockets and nothing else, and the drop itself.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/util/result.hpp"

namespace provisr::config {

struct Account {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;               // primary group: the run_dir's group (dedicate it to this user)
  std::vector<gid_t> groups;   // every group of the account, the primary one included
};

// The account to drop to: nullopt when no drop applies (not root, no `[daemon] user`, or that
// user is root). An error when the user is unknown.
Result<std::optional<Account>> daemonAccount(const std::optional<std::string>& user);

// Looks an account up by name (getpwnam + getgrouplist).
Result<Account> lookupAccount(const std::string& name);

// Prepares `run_dir` for components that drop to `account` (called as root by `provisr serve`,
// before the keeper starts): run_dir root:<gid> 0750, `spawner/` root:<gid> 02750 (its socket
// is made 0660 by the spawner), `master/` <uid>:<gid> 0700 with everything in it owned by the
// account. Nothing is followed through a symlink; a run_dir that exists and is not a directory
// owned by root is left alone (the keeper's checks then refuse it with their own message).
Status prepareRunDir(const std::string& run_dir, const Account& account);

// Whether `account` can pass into run_dir's `master/` (write) and `spawner/` (search): checked by
// a child that becomes the account. kForbidden naming the problem otherwise.
Status checkReachable(const std::string& run_dir, const Account& account);

// Makes `dirFd` and every entry directly in it owned by the account (no symlink followed; a file
// with a second hard link is left alone), and the directory 0700. The master calls it on `master/` before dropping.
Status ownDirectory(int dirFd, const std::string& display, const Account& account);

// setgroups(account's groups), setgid, setuid (real, effective and saved), then checks that
// root cannot be regained and sets PR_SET_NO_NEW_PRIVS. Re-arms PR_SET_PDEATHSIG with
// `deathSignal` (a uid change clears it) when non-zero, and fails when `parent` is no longer our
// parent (it died before the signal was armed again). Call it before starting any thread
// (NO_NEW_PRIVS and PDEATHSIG are per thread).
Status dropPrivileges(const Account& account, int deathSignal, pid_t parent);

}  // namespace provisr::config

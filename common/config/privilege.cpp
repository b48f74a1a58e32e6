// Accounts, the dropped run_dir layout and the privilege drop of master and gateway.
#include "common/config/privilege.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/util/fd.hpp"

namespace provisr::config {
namespace {

Error sysError(const std::string& what) { return makeError(ErrorCode::kInternal, what + ": " + std::strerror(errno)); }

// Opens (creating with `mode` when missing) the directory `name` below `parentFd`, never through
// a symlink. nullopt-like empty fd with errno set on failure.
UniqueFd openDirAt(int parentFd, const std::string& name, mode_t mode) {
  if (::mkdirat(parentFd, name.c_str(), mode) != 0 && errno != EEXIST) return UniqueFd();
  return UniqueFd(::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

Status setOwner(int fd, const std::string& display, uid_t uid, gid_t gid, mode_t mode) {
  if (::fchown(fd, uid, gid) != 0) return sysError("chown " + display);
  if (::fchmod(fd, mode) != 0) return sysError("chmod " + display);
  return {};
}

}  // namespace

Result<Account> lookupAccount(const std::string& name) {
  errno = 0;
  const passwd* pw = ::getpwnam(name.c_str());
  if (pw == nullptr) return makeError(ErrorCode::kNotFound, "unknown user `" + name + "`");
  Account a;
  a.name = pw->pw_name;
  a.uid = pw->pw_uid;
  a.gid = pw->pw_gid;
  int n = 32;
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::vector<gid_t> g(static_cast<std::size_t>(n));
    int got = n;
    if (::getgrouplist(a.name.c_str(), a.gid, g.data(), &got) >= 0) {
      g.resize(static_cast<std::size_t>(got));
      a.groups = std::move(g);
      return a;
    }
    n = got > n ? got : n * 4;
  }
  return makeError(ErrorCode::kInternal, "cannot list the groups of `" + name + "`");
}

Result<std::optional<Account>> daemonAccount(const std::optional<std::string>& user) {
  if (!user || ::geteuid() != 0) return std::optional<Account>();
  auto a = lookupAccount(*user);
  if (!a) return a.error();
  if (a->uid == 0) return std::optional<Account>();
  return std::optional<Account>(std::move(*a));
}

Status ownDirectory(int dirFd, const std::string& display, const Account& account) {
  if (auto st = setOwner(dirFd, display, account.uid, account.gid, 0700); !st) return st;
  UniqueFd copy(::fcntl(dirFd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return sysError("dup " + display);
  DIR* d = ::fdopendir(copy.get());
  if (d == nullptr) return sysError("opendir " + display);
  (void)copy.release();
  ::rewinddir(d);
  Status out;
  while (dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    // Root changes owners here while the account can write the directory: only what an earlier
    // root master left (not yet the account's), never a symlink, and never a file with a second
    // name, which would hand the account a root file it hard-linked in.
    // The checks and the chown go through one O_PATH descriptor: a name swapped in between is
    // not the file checked.
    UniqueFd f(::openat(dirFd, n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (!f || ::fstat(f.get(), &st) != 0) continue;
    if (st.st_uid == account.uid || S_ISLNK(st.st_mode)) continue;
    if (!S_ISDIR(st.st_mode) && st.st_nlink != 1) continue;
    if (::fchownat(f.get(), "", account.uid, account.gid, AT_EMPTY_PATH) != 0 && out.ok())
      out = sysError("chown " + display + "/" + n);
  }
  ::closedir(d);
  return out;
}

Status prepareRunDir(const std::string& run_dir, const Account& account) {
  if (run_dir.empty() || run_dir.front() != '/') return makeError(ErrorCode::kInvalidArgument, "run_dir must be absolute: " + run_dir);
  const auto slash = run_dir.find_last_of('/');
  const std::string parent = slash == 0 ? "/" : run_dir.substr(0, slash);
  const std::string name = run_dir.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return makeError(ErrorCode::kInvalidArgument, "odd run_dir " + run_dir);
  // Missing ancestors are made searchable: the dropped components walk through them.
  std::string sofar;
  for (std::size_t pos = 1; pos <= parent.size();) {
    std::size_t end = parent.find('/', pos);
    if (end == std::string::npos) end = parent.size();
    sofar += "/" + parent.substr(pos, end - pos);
    pos = end + 1;
    if (::mkdir(sofar.c_str(), 0755) != 0 && errno != EEXIST) return sysError("mkdir " + sofar);
  }
  UniqueFd parentFd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parentFd) return sysError("open " + parent);
  UniqueFd dir = openDirAt(parentFd.get(), name, 0700);
  if (!dir) return {};  // a symlink or worse: the keeper says why
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return sysError("stat " + run_dir);
  if (st.st_uid != 0) return {};  // not ours to change: the keeper refuses it
  if (auto s = setOwner(dir.get(), run_dir, 0, account.gid, 0750); !s) return s;

  UniqueFd spawner = openDirAt(dir.get(), "spawner", 0700);
  if (!spawner) return sysError("open " + run_dir + "/spawner");
  if (::fstat(spawner.get(), &st) != 0 || st.st_uid != 0)
    return makeError(ErrorCode::kForbidden, run_dir + "/spawner is not owned by root");
  // setgid: the socket the spawner binds in it is born with the daemon group.
  if (auto s = setOwner(spawner.get(), run_dir + "/spawner", 0, account.gid, 02750); !s) return s;

  UniqueFd master = openDirAt(dir.get(), "master", 0700);
  if (!master) return sysError("open " + run_dir + "/master");
  if (auto s = ownDirectory(master.get(), run_dir + "/master", account); !s) return s;
  return checkReachable(run_dir, account);
}

Status checkReachable(const std::string& run_dir, const Account& account) {
  // A child becomes the account and tries: an ancestor of run_dir that the user cannot search
  // would otherwise show up as a master that cannot bind, in a crash loop.
  const std::string master = run_dir + "/master";
  const std::string sock = run_dir + "/spawner";
  const pid_t pid = ::fork();
  if (pid < 0) return sysError("fork");
  if (pid == 0) {
    if (::setgroups(account.groups.size(), account.groups.data()) != 0 || ::setresgid(account.gid, account.gid, account.gid) != 0 ||
        ::setresuid(account.uid, account.uid, account.uid) != 0)
      ::_exit(2);
    ::_exit(::access(master.c_str(), W_OK | X_OK) == 0 && ::access(sock.c_str(), X_OK) == 0 ? 0 : 1);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return makeError(ErrorCode::kForbidden, "user " + account.name + " cannot reach " + master + " and " + sock +
                                              ": every directory above run_dir must be searchable (x) by it");
}

Status dropPrivileges(const Account& account, int deathSignal, pid_t parent) {
  if (::setgroups(account.groups.size(), account.groups.data()) != 0) return sysError("setgroups");
  if (::setresgid(account.gid, account.gid, account.gid) != 0) return sysError("setresgid");
  if (::setresuid(account.uid, account.uid, account.uid) != 0) return sysError("setresuid");
  if (::setuid(0) == 0 || ::geteuid() == 0 || (::getegid() == 0 && account.gid != 0))
    return makeError(ErrorCode::kInternal, "root could be regained after dropping to " + account.name);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return sysError("PR_SET_NO_NEW_PRIVS");
  if (deathSignal != 0) {
    if (::prctl(PR_SET_PDEATHSIG, deathSignal) != 0) return sysError("PR_SET_PDEATHSIG");
    if (::getppid() != parent) return makeError(ErrorCode::kUnavailable, "the parent died while dropping privileges");
  }
  return {};
}

}  // namespace provisr::config

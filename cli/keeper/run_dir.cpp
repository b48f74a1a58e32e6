// run_dir creation and checks (lstat semantics via O_NOFOLLOW + fstat), locks, secret, atomic writes.
#include "cli/keeper/run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

namespace provisr::keeper {
namespace {

Error sysError(const std::string& what) { return makeError(ErrorCode::kInternal, what + ": " + std::strerror(errno)); }

// Checks an opened directory: ours, and closed to others as far as `strict` asks.
Status checkDir(int fd, const std::string& path, bool strict) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return sysError("stat " + path);
  if (!S_ISDIR(st.st_mode)) return makeError(ErrorCode::kInvalidArgument, path + " is not a directory");
  if (st.st_uid != ::geteuid()) {
    return makeError(ErrorCode::kForbidden, path + " is owned by uid " + std::to_string(st.st_uid) +
                                                ", not by us (uid " + std::to_string(::geteuid()) +
                                                "): refusing it as run_dir; remove it or choose another --run-dir");
  }
  // Under a shared directory only we may enter — and, when root runs master and gateway as
  // `[daemon] user`, that user's group, which `provisr serve` gave the directory (r-x, 0750).
  const bool daemonGroup = ::geteuid() == 0 && st.st_gid != ::getegid();
  const mode_t others = strict ? (daemonGroup ? 027 : 077) : 022;
  if ((st.st_mode & others) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return makeError(ErrorCode::kForbidden, path + " has mode " + mode + (strict ? " under a shared directory; it must be 0700" : "; others may write it") +
                                                ": refusing it as run_dir (chmod 0700 it or choose another --run-dir)");
  }
  return {};
}

// Opens (creating with 0700 when missing) the directory `name` below `parentFd`, never through
// a symlink.
Result<UniqueFd> openDirAt(int parentFd, const std::string& name, const std::string& display) {
  if (::mkdirat(parentFd, name.c_str(), 0700) != 0 && errno != EEXIST) return sysError("mkdir " + display);
  UniqueFd fd(::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR)
      return makeError(ErrorCode::kForbidden, display + " is a symlink or not a directory: refusing it");
    return sysError("open " + display);
  }
  return fd;
}

// True when a user other than us and root can create entries in `dir` (a /tmp-like place).
bool sharedDir(const struct stat& st) {
  if ((st.st_mode & S_IWOTH) != 0) return true;
  if ((st.st_mode & S_IWGRP) != 0 && st.st_gid != ::getegid()) return true;
  return st.st_uid != ::geteuid() && st.st_uid != 0;
}

std::string readSmall(int fd) {
  char buf[64];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

std::optional<pid_t> parsePid(const std::string& text) {
  pid_t pid = 0;
  bool any = false;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      pid = pid * 10 + (c - '0');
      any = true;
      if (pid > 1 << 22) return std::nullopt;
    } else if (c == '\n' || c == ' ') {
      break;
    } else {
      return std::nullopt;
    }
  }
  if (!any || pid <= 0) return std::nullopt;
  return pid;
}

}  // namespace

Result<RunDir> RunDir::open(const std::string& path) {
  if (path.empty() || path[0] != '/') return makeError(ErrorCode::kInvalidArgument, "run_dir must be absolute: " + path);
  // Walk from / down, opening each component without following a symlink in the last one,
  // noting whether any ancestor is shared with other users.
  UniqueFd cur(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur) return sysError("open /");
  bool shared = false;
  std::string sofar;
  std::size_t pos = 1;
  while (pos <= path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    const std::string name = path.substr(pos, end - pos);
    pos = end + 1;
    if (name.empty() || name == ".") continue;
    if (name == "..") return makeError(ErrorCode::kInvalidArgument, "run_dir must not contain '..': " + path);
    struct stat st {};
    if (::fstat(cur.get(), &st) != 0) return sysError("stat " + (sofar.empty() ? "/" : sofar));
    if (sharedDir(st)) shared = true;
    sofar += "/" + name;
    const bool last = pos > path.size();
    if (!last) {
      // Ancestors may be symlinks the admin made (/var/run -> /run); the run_dir itself may not.
      if (::mkdirat(cur.get(), name.c_str(), 0700) != 0 && errno != EEXIST) return sysError("mkdir " + sofar);
      UniqueFd next(::openat(cur.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!next) return sysError("open " + sofar);
      cur = std::move(next);
      continue;
    }
    auto fd = openDirAt(cur.get(), name, sofar);
    if (!fd) return fd.error();
    if (auto st2 = checkDir(fd->get(), sofar, shared); !st2) return st2.error();
    return RunDir(sofar, std::move(*fd));
  }
  return makeError(ErrorCode::kInvalidArgument, "run_dir must not be /");
}

Result<UniqueFd> RunDir::subdir(const std::string& name) const {
  auto fd = openDirAt(fd_.get(), name, path_ + "/" + name);
  if (!fd) return fd.error();
  if (auto st = checkDir(fd->get(), path_ + "/" + name, true); !st) return st.error();
  return fd;
}

Status RunDir::writeAtomic(const std::string& name, const std::string& text, mode_t mode) const {
  const std::string tmp = name + ".tmp";
  UniqueFd fd(::openat(fd_.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return sysError("open " + path_ + "/" + tmp);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("write " + path_ + "/" + tmp);
    done += static_cast<std::size_t>(n);
  }
  if (::renameat(fd_.get(), tmp.c_str(), fd_.get(), name.c_str()) != 0) return sysError("rename " + path_ + "/" + name);
  return {};
}

Result<UniqueFd> takeKeeperLock(int keeperDirFd, const std::string& displayPath) {
  UniqueFd fd(::openat(keeperDirFd, "keeper.lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return sysError("open " + displayPath);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return sysError("flock " + displayPath);
    // The holder writes its pid right after locking: give it a moment to appear.
    std::optional<pid_t> holder;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!(holder = parsePid(readSmall(fd.get()))) && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return makeError(ErrorCode::kUnavailable,
                     "another provisr-keeper (pid " + (holder ? std::to_string(*holder) : std::string("unknown")) +
                         ") holds " + displayPath + ": it already runs on this run_dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) != 0 || ::pwrite(fd.get(), pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    return sysError("write " + displayPath);
  return fd;
}

std::optional<pid_t> lockHolder(int dirFd, const std::string& name) {
  UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return std::nullopt;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) == 0) return std::nullopt;  // stale: nobody holds it
  if (errno != EWOULDBLOCK) return std::nullopt;
  std::optional<pid_t> pid;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (!(pid = parsePid(readSmall(fd.get()))) && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pid;
}

Result<std::string> readSecretFile(int dirFd, const std::string& name) {
  UniqueFd fd(::openat(dirFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return sysError("open " + name);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sysError("stat " + name);
  if (!S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0)
    return makeError(ErrorCode::kForbidden, name + " must be a regular file of ours with mode 0600");
  char buf[130];
  const ssize_t n = ::pread(fd.get(), buf, sizeof buf, 0);
  if (n < 0) return sysError("read " + name);
  std::string s(buf, static_cast<std::size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  if (s.size() != 64 || s.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
    return makeError(ErrorCode::kMalformed, name + " does not hold a 64-digit hex secret");
  return s;
}

Result<std::string> makeSecret() {
  unsigned char raw[32];
  std::size_t got = 0;
  while (got < sizeof raw) {
    const ssize_t n = ::getrandom(raw + got, sizeof raw - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("getrandom");
    got += static_cast<std::size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace provisr::keeper

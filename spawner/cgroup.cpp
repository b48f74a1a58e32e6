// Cgroups for managed children: find the mounts, make a leaf per launch, kill and remove leaves.
#include "spawner/cgroup.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

namespace provisr::spawner::cgroup {
namespace {

// The leaf provisr's own processes move into when cgroup2 controllers must be enabled for the
// children of their cgroup (a cgroup with processes cannot delegate controllers: "no internal
// processes"). A spawner started inside it uses its parent as the base.
constexpr const char* kSupervisorLeaf = "provisr-supervisor";
constexpr int kKillRounds = 100;

struct Mount {
  std::string point;  // where it is mounted
  std::string root;   // the hierarchy path shown at that mount point
};

struct State {
  Layout layout;
  Mount v2, v1Pids, v1Memory;
  std::mutex mu;                   // guards pending and subtreeMade
  std::set<std::string> pending;   // leaves to remove once empty
  bool subtreeMade = false;
};

std::string unescapeMount(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
      out.push_back(static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  return out;
}

bool hasToken(const std::string& list, const std::string& token, char sep = ',') {
  for (const auto& t : split(list, sep)) {
    if (t == token) return true;
  }
  return false;
}

std::string readSmall(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Writes `value` with one write(2); returns 0 or errno.
int writeValue(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = n == static_cast<ssize_t>(value.size()) ? 0 : (n < 0 ? errno : EIO);
  ::close(fd);
  return err;
}

std::string parentOf(const std::string& p) {
  auto slash = p.find_last_of('/');
  return slash == std::string::npos || slash == 0 ? std::string("/") : p.substr(0, slash);
}

std::string baseName(const std::string& p) {
  auto slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// The directory of hierarchy path `path` (as /proc/<pid>/cgroup shows it) below mount `m`.
std::optional<std::string> dirOf(const Mount& m, const std::string& path) {
  if (m.point.empty()) return std::nullopt;
  std::string rel = path;
  if (m.root != "/") {
    if (rel.compare(0, m.root.size(), m.root) != 0) return std::nullopt;
    rel = rel.substr(m.root.size());
  }
  if (rel == "/") rel.clear();
  return m.point + rel;
}

struct CgroupLine {
  std::string controllers;  // empty for cgroup2 ("0::/path")
  std::string path;
  bool v2 = false;
};

std::vector<CgroupLine> readCgroupFile(const std::string& file) {
  std::vector<CgroupLine> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    CgroupLine l;
    l.controllers = line.substr(a + 1, b - a - 1);
    l.path = line.substr(b + 1);
    l.v2 = line.compare(0, a, "0") == 0 && l.controllers.empty();
    out.push_back(std::move(l));
  }
  return out;
}

// rmdir of every directory below `dir` (leaves only: provisr never nests deeper), then `dir`.
void sweepSubtree(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    std::vector<std::string> subs;
    while (dirent* e = ::readdir(d)) {
      if (e->d_type == DT_DIR && e->d_name[0] != '.') subs.push_back(dir + "/" + e->d_name);
    }
    ::closedir(d);
    for (const auto& s : subs) ::rmdir(s.c_str());
  }
  ::rmdir(dir.c_str());
}

// Subtrees of spawners that are gone: their empty leaves and the subtree itself.
void sweepDead(const std::string& base) {
  DIR* d = ::opendir(base.c_str());
  if (d == nullptr) return;
  std::vector<std::string> dead;
  const std::string prefix = kSubtreePrefix;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    // Our own pid: a subtree left by an earlier process that had it.
    if (pid <= 0 || pid == ::getpid() || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) {
      dead.push_back(base + "/" + name);
    }
  }
  ::closedir(d);
  for (const auto& s : dead) sweepSubtree(s);
}

std::string ownSubtree(const std::string& base) { return base + "/" + kSubtreePrefix + std::to_string(::getpid()); }

State& state();

void sweepOwnAtExit() {
  State& s = state();
  for (const auto* base : {&s.layout.v2Base, &s.layout.v1PidsBase, &s.layout.v1MemoryBase}) {
    if (!base->empty()) sweepSubtree(ownSubtree(*base));
  }
}

// Moves the keeper, the spawner and the spawner's siblings (master, gateway) out of `base` into
// its provisr-supervisor leaf, so controllers can be enabled for base's children.
void moveOwnProcesses(const std::string& base) {
  const std::string leaf = base + "/" + kSupervisorLeaf;
  if (::mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) return;
  const pid_t parent = ::getppid();
  std::istringstream procs(readSmall(base + "/cgroup.procs"));
  pid_t pid = 0;
  while (procs >> pid) {
    // The parent is the keeper only while it lives: an orphaned spawner's parent (1 or another
    // subreaper) is not ours to move.
    bool ours = pid == ::getpid() || (pid == parent && parent > 1);
    if (!ours) {
      std::string stat = readSmall("/proc/" + std::to_string(pid) + "/stat");
      auto close = stat.rfind(')');
      int ppid = 0;
      char st = 0;
      if (close != std::string::npos && std::sscanf(stat.c_str() + close + 1, " %c %d", &st, &ppid) == 2) {
        ours = ppid == parent && parent > 1;
      }
    }
    if (ours) (void)writeValue(leaf + "/cgroup.procs", std::to_string(pid));
  }
}

// Enables `ctl` for the children of `dir`; true when it is (or already was) enabled.
bool enableController(const std::string& dir, const std::string& ctl) {
  if (hasToken(readSmall(dir + "/cgroup.subtree_control"), ctl, ' ')) return true;
  return writeValue(dir + "/cgroup.subtree_control", "+" + ctl) == 0;
}

void detectV2(State& s, const std::vector<CgroupLine>& self) {
  Layout& L = s.layout;
  auto line = std::find_if(self.begin(), self.end(), [](const CgroupLine& l) { return l.v2; });
  if (line == self.end()) {
    L.notes.push_back("this process is in no cgroup2 hierarchy");
    return;
  }
  auto base = dirOf(s.v2, line->path);
  if (!base) {
    L.notes.push_back("this process's cgroup2 path is outside the mount at " + s.v2.point);
    return;
  }
  if (baseName(*base) == kSupervisorLeaf) base = parentOf(*base);
  if (::access(base->c_str(), W_OK) != 0) {
    L.notes.push_back("cgroup2 directory " + *base + " is not writable");
    return;
  }
  L.v2Mount = s.v2.point;
  L.v2Base = *base;
  const std::string controllers = readSmall(*base + "/cgroup.controllers");
  // cgroup.controllers lists what the parent delegates to base; enabling one for base's children
  // needs base free of processes (unless base is the root).
  for (const char* ctl : {"pids", "memory"}) {
    if (!hasToken(controllers.substr(0, controllers.find('\n')), ctl, ' ')) continue;
    bool ok = enableController(*base, ctl);
    if (!ok && errno == EBUSY) {
      moveOwnProcesses(*base);
      ok = enableController(*base, ctl);
    }
    if (!ok) {
      L.notes.push_back(std::string("cannot enable the cgroup2 ") + ctl + " controller below " + *base);
      continue;
    }
    (std::string_view(ctl) == "pids" ? L.v2Pids : L.v2Memory) = true;
  }
}

void detectV1(State& s, const std::vector<CgroupLine>& self, const char* ctl, const Mount& m, std::string& out) {
  if (m.point.empty()) return;
  auto line = std::find_if(self.begin(), self.end(), [&](const CgroupLine& l) { return !l.v2 && hasToken(l.controllers, ctl); });
  if (line == self.end()) return;
  auto dir = dirOf(m, line->path);
  if (!dir || ::access(dir->c_str(), W_OK) != 0) {
    s.layout.notes.push_back(std::string("the v1 ") + ctl + " hierarchy at " + m.point + " is not writable here");
    return;
  }
  out = *dir;
}

State& state() {
  static State* s = [] {
    auto* st = new State();  // lives for the whole process: used by an atexit handler
    Layout& L = st->layout;
    if (::geteuid() != 0) {
      L.notes.push_back("not running as root");
      return st;
    }
    std::ifstream in("/proc/self/mountinfo");
    std::string line;
    while (std::getline(in, line)) {
      auto f = split(line, ' ');
      auto dash = std::find(f.begin(), f.end(), "-");
      if (f.size() < 6 || dash == f.end() || std::distance(dash, f.end()) < 4) continue;
      const std::string& type = *(dash + 1);
      const std::string& super = *(dash + 3);
      const bool rw = hasToken(f[5], "rw") && hasToken(super.empty() ? "rw" : super, "rw");
      Mount m{unescapeMount(f[4]), unescapeMount(f[3])};
      if (!rw || ::access(m.point.c_str(), W_OK) != 0) continue;
      if (type == "cgroup2" && st->v2.point.empty()) st->v2 = m;
      if (type == "cgroup" && hasToken(super, "pids") && st->v1Pids.point.empty()) st->v1Pids = m;
      if (type == "cgroup" && hasToken(super, "memory") && st->v1Memory.point.empty()) st->v1Memory = m;
    }
    auto self = readCgroupFile("/proc/self/cgroup");
    if (!st->v2.point.empty()) {
      detectV2(*st, self);
    } else {
      L.notes.push_back("no writable cgroup2 mount");
    }
    if (!L.v2Pids) detectV1(*st, self, "pids", st->v1Pids, L.v1PidsBase);
    if (!L.v2Memory) detectV1(*st, self, "memory", st->v1Memory, L.v1MemoryBase);
    for (const auto* base : {&L.v2Base, &L.v1PidsBase, &L.v1MemoryBase}) {
      if (!base->empty()) sweepDead(*base);
    }
    if (L.tracking()) std::atexit(sweepOwnAtExit);
    return st;
  }();
  return *s;
}

// rmdir of a leaf and, when it was the last one of another (gone) spawner's subtree, that subtree.
bool removeDir(const std::string& dir) {
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) return false;
  const std::string parent = parentOf(dir);
  const std::string name = baseName(parent);
  const std::string prefix = kSubtreePrefix;
  if (name.compare(0, prefix.size(), prefix) == 0 &&
      std::strtol(name.c_str() + prefix.size(), nullptr, 10) != ::getpid()) {
    ::rmdir(parent.c_str());  // fails while other leaves are there: fine
  }
  return true;
}

void retryPendingLocked(State& s) {
  for (auto it = s.pending.begin(); it != s.pending.end();) {
    it = removeDir(*it) ? s.pending.erase(it) : std::next(it);
  }
}

std::string sanitize(const std::string& name) {
  std::string out = name.empty() ? std::string("child") : name.substr(0, 200);
  for (char& c : out) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!ok) c = '_';
  }
  if (out == "." || out == "..") out = "child";
  return out;
}

// The subtree dirs (made once per process) in which leaves go, v2 first.
std::vector<std::string> subtrees(State& s, int* err) {
  const Layout& L = s.layout;
  std::vector<std::string> out;
  if (!L.v2Base.empty()) out.push_back(ownSubtree(L.v2Base));
  if (!L.v1PidsBase.empty()) out.push_back(ownSubtree(L.v1PidsBase));
  if (!L.v1MemoryBase.empty()) out.push_back(ownSubtree(L.v1MemoryBase));
  for (const auto& d : s.subtreeMade ? std::vector<std::string>() : out) {
    if (::mkdir(d.c_str(), 0755) != 0 && errno != EEXIST) {
      *err = errno;
      return {};
    }
  }
  if (!s.subtreeMade && !L.v2Base.empty()) {
    if (L.v2Pids) (void)enableController(out[0], "pids");
    if (L.v2Memory) (void)enableController(out[0], "memory");
  }
  s.subtreeMade = true;
  return out;
}

}  // namespace

const Layout& layout() { return state().layout; }

Result<Leaf> prepare(const std::string& name, const Caps& caps, int* err) {
  State& s = state();
  const Layout& L = s.layout;
  Leaf leaf;
  if (!L.tracking()) return leaf;
  std::lock_guard lock(s.mu);
  retryPendingLocked(s);
  int e = 0;
  auto fail = [&](int code, const std::string& what) -> Error {
    if (err != nullptr) *err = code;
    for (auto it = leaf.dirs.rbegin(); it != leaf.dirs.rend(); ++it) ::rmdir(it->c_str());
    return makeError(ErrorCode::kSpawnFailed, what + ": " + std::strerror(code) + " (errno " + std::to_string(code) + ")");
  };
  auto subs = subtrees(s, &e);
  if (subs.empty()) return fail(e, "cannot make provisr's cgroup subtree");
  // Which hierarchies this leaf needs: cgroup2 always (it tracks and kills); the v1 pids one when it
  // is the only tracker or carries pids_max; the v1 memory one only for memory_max.
  std::vector<std::string> wanted;
  std::size_t i = 0;
  std::string v1Pids, v1Mem;
  if (!L.v2Base.empty()) wanted.push_back(subs[i++]);
  if (!L.v1PidsBase.empty()) {
    const std::string& d = subs[i++];
    if (L.v2Base.empty() || (caps.pidsMax && !L.v2Pids)) wanted.push_back(v1Pids = d);
  }
  if (!L.v1MemoryBase.empty()) {
    const std::string& d = subs[i++];
    if (caps.memoryMax && !L.v2Memory) wanted.push_back(v1Mem = d);
  }
  const std::string base = sanitize(name);
  static std::uint64_t seq = 0;
  // mkdir first (one call in the usual case); a leftover of an earlier child of the same name
  // (EEXIST) goes if it is empty, else the next name is tried.
  auto makeLeaf = [&](const std::string& dir) -> int {
    if (::mkdir(dir.c_str(), 0755) == 0) return 0;
    const int code = errno;
    if (code == EEXIST) {
      if (::rmdir(dir.c_str()) != 0) return EEXIST;
      return ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
    }
    if (code == ENOENT) {  // the subtree is gone (made once per process): make it again
      s.subtreeMade = false;
      int se = 0;
      if (subtrees(s, &se).empty()) return se;
      return ::mkdir(dir.c_str(), 0755) == 0 ? 0 : errno;
    }
    return code;
  };
  std::string chosen;
  for (int attempt = 0; attempt < 10 && chosen.empty(); ++attempt) {
    std::string cand = attempt == 0 ? base : base + "~" + std::to_string(++seq);
    bool clash = false;
    for (const auto& sub : wanted) {
      const std::string dir = sub + "/" + cand;
      const int r = makeLeaf(dir);
      if (r == 0) {
        leaf.dirs.push_back(dir);
      } else if (r == EEXIST) {
        clash = true;
        break;
      } else {
        return fail(r, "cannot make cgroup " + dir);
      }
    }
    if (!clash) {
      chosen = cand;
    } else {
      for (auto it = leaf.dirs.rbegin(); it != leaf.dirs.rend(); ++it) ::rmdir(it->c_str());
      leaf.dirs.clear();
    }
  }
  if (chosen.empty()) return fail(EEXIST, "no free cgroup leaf name for " + base);
  auto cap = [&](const std::string& file, std::uint64_t v) -> std::optional<Error> {
    if (int w = writeValue(file, std::to_string(v)); w != 0) return fail(w, "cannot write " + file);
    return std::nullopt;
  };
  const std::string v2leaf = L.v2Base.empty() ? std::string() : leaf.dirs[0];
  if (caps.pidsMax) {
    std::string file = L.v2Pids ? v2leaf + "/pids.max" : (v1Pids.empty() ? "" : v1Pids + "/" + chosen + "/pids.max");
    if (!file.empty()) {
      if (auto x = cap(file, *caps.pidsMax)) return *x;
      leaf.pidsCapped = true;
    }
  }
  if (caps.memoryMax) {
    std::string file = L.v2Memory ? v2leaf + "/memory.max"
                                  : (v1Mem.empty() ? "" : v1Mem + "/" + chosen + "/memory.limit_in_bytes");
    if (!file.empty()) {
      if (auto x = cap(file, *caps.memoryMax)) return *x;
      leaf.memoryCapped = true;
    }
  }
  if (!v2leaf.empty()) {
    leaf.v2Dir.reset(::open(v2leaf.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!leaf.v2Dir) return fail(errno, "cannot open " + v2leaf);
  }
  for (std::size_t d = v2leaf.empty() ? 0 : 1; d < leaf.dirs.size(); ++d) {
    const std::string& dir = leaf.dirs[d];
    int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return fail(errno, "cannot open " + dir + "/cgroup.procs");
    leaf.procs.emplace_back(fd);
  }
  return leaf;
}

void discard(const Leaf& leaf) {
  for (auto it = leaf.dirs.rbegin(); it != leaf.dirs.rend(); ++it) ::rmdir(it->c_str());
}

Membership membershipOf(pid_t pid) {
  Membership m;
  State& s = state();
  if (!s.layout.tracking()) return m;
  const std::string prefix = kSubtreePrefix;
  auto isLeaf = [&](const std::string& path) {
    const std::string name = baseName(parentOf(path));
    return name.compare(0, prefix.size(), prefix) == 0;
  };
  std::string v1p, v1m;
  for (const auto& l : readCgroupFile("/proc/" + std::to_string(pid) + "/cgroup")) {
    if (!isLeaf(l.path)) continue;
    if (l.v2) {
      if (auto d = dirOf(s.v2, l.path)) m.v2 = *d;
    } else if (hasToken(l.controllers, "pids")) {
      if (auto d = dirOf(s.v1Pids, l.path)) v1p = *d;
    } else if (hasToken(l.controllers, "memory")) {
      if (auto d = dirOf(s.v1Memory, l.path)) v1m = *d;
    }
  }
  for (const auto* d : {&m.v2, &v1p, &v1m}) {
    if (!d->empty()) m.dirs.push_back(*d);
  }
  return m;
}

std::vector<pid_t> members(const Membership& m) {
  std::vector<pid_t> out;
  if (m.empty()) return out;
  std::istringstream in(readSmall(m.dirs[0] + "/cgroup.procs"));
  pid_t pid = 0;
  while (in >> pid) out.push_back(pid);
  return out;
}

bool populated(const Membership& m) {
  if (m.empty()) return false;
  if (!m.v2.empty()) {
    const std::string ev = readSmall(m.v2 + "/cgroup.events");
    if (!ev.empty()) return ev.find("populated 1") != std::string::npos;
  }
  return !members(m).empty();
}

void killAll(const Membership& m) {
  if (m.empty()) return;
  if (!m.v2.empty() && writeValue(m.v2 + "/cgroup.kill", "1") == 0) return;
  // No cgroup.kill: rounds of SIGKILL over the members; a member forked during a round is in the
  // next one's list. Bounded.
  for (int round = 0; round < kKillRounds; ++round) {
    auto pids = members(m);
    if (pids.empty()) return;
    for (pid_t p : pids) ::kill(p, SIGKILL);
  }
}

void signalOutside(const Membership& m, int sig, pid_t skipPgid) {
  for (pid_t p : members(m)) {
    if (::getpgid(p) != skipPgid) ::kill(p, sig);
  }
}

void remove(const Membership& m, std::chrono::milliseconds wait) {
  if (m.empty()) return;
  State& s = state();
  if (!m.v2.empty() && wait.count() > 0) {
    // cgroup.events signals POLLPRI when `populated` changes: wait for it without spinning.
    const auto until = std::chrono::steady_clock::now() + wait;
    int fd = ::open((m.v2 + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC);
    while (fd >= 0) {
      char buf[256];
      ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      if (n <= 0) break;
      buf[n] = '\0';
      if (std::strstr(buf, "populated 0") != nullptr) break;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLPRI, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    }
    if (fd >= 0) ::close(fd);
  }
  std::lock_guard lock(s.mu);
  for (auto it = m.dirs.rbegin(); it != m.dirs.rend(); ++it) {
    if (!removeDir(*it)) s.pending.insert(*it);
  }
  retryPendingLocked(s);
}

}  // namespace provisr::spawner::cgroup

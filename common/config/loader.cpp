// Loading a whole config (SPEC §1): the main file, env files, inline and directory programs, then
// the cross-program validation (names, groups, dependencies, accounts, logs, resource caps).
#include "common/config/loader.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "common/config/program.hpp"

extern char** environ;  // POSIX: the calling process's environment

namespace provisr::config {

using detail::Draft;
using detail::Node;
using detail::Sink;
using detail::SpecContext;
using detail::TableReader;

std::vector<Diagnostic> LoadResult::errors() const {
  std::vector<Diagnostic> out;
  for (const auto& d : diagnostics)
    if (d.isError()) out.push_back(d);
  return out;
}

std::vector<Diagnostic> LoadResult::warnings() const {
  std::vector<Diagnostic> out;
  for (const auto& d : diagnostics)
    if (!d.isError()) out.push_back(d);
  return out;
}

std::vector<Diagnostic> ProgramLoadResult::errors() const {
  std::vector<Diagnostic> out;
  for (const auto& d : diagnostics)
    if (d.isError()) out.push_back(d);
  return out;
}

std::vector<Diagnostic> ProgramLoadResult::warnings() const {
  std::vector<Diagnostic> out;
  for (const auto& d : diagnostics)
    if (!d.isError()) out.push_back(d);
  return out;
}

namespace {

using EnvMap = std::map<std::string, std::string>;

EnvMap osEnvironment(const LoadOptions& o) {
  if (o.os_env) return *o.os_env;
  EnvMap out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

uid_t effectiveUid(const LoadOptions& o) { return o.euid ? *o.euid : geteuid(); }

// Config, program and env files are regular files of bounded size: a FIFO would block the load
// (O_NONBLOCK keeps even the open from waiting) and /dev/zero would never end.
constexpr off_t kMaxConfigFileBytes = 4 * 1024 * 1024;

std::optional<std::string> readFile(const std::string& path, std::string& error) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    error = std::strerror(errno);
    return std::nullopt;
  }
  struct stat st {};
  std::optional<std::string> out;
  if (::fstat(fd, &st) != 0) {
    error = std::strerror(errno);
  } else if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
  } else if (st.st_size > kMaxConfigFileBytes) {
    error = "larger than " + std::to_string(kMaxConfigFileBytes / (1024 * 1024)) + " MiB";
  } else {
    std::string text;
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        error = std::strerror(errno);
        break;
      }
      if (n == 0) {
        out = std::move(text);
        break;
      }
      if (text.size() + static_cast<std::size_t>(n) > static_cast<std::size_t>(kMaxConfigFileBytes)) {
        error = "larger than " + std::to_string(kMaxConfigFileBytes / (1024 * 1024)) + " MiB";
        break;
      }
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

std::string absolutePath(const std::string& path) {
  std::error_code ec;
  auto p = std::filesystem::absolute(path, ec);
  return (ec ? std::filesystem::path(path) : p).lexically_normal().string();
}

std::string parentDir(const std::string& abs_path) {
  auto dir = std::filesystem::path(abs_path).parent_path().string();
  return dir.empty() ? "/" : dir;
}

// The minimal base of a child's environment when `use_os_env = false` (SPEC §1.1).
EnvMap baseEnvironment(bool use_os_env, const EnvMap& os) {
  if (use_os_env) return os;
  EnvMap out;
  for (const char* k : {"PATH", "HOME", "USER", "LANG"})
    if (auto it = os.find(k); it != os.end()) out.insert(*it);
  if (!out.count("PATH")) out["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  return out;
}

std::pair<std::string, std::string> splitKv(const std::string& kv) {
  auto eq = kv.find('=');
  if (eq == std::string::npos) return {kv, ""};
  return {kv.substr(0, eq), kv.substr(eq + 1)};
}

struct GroupDraft {
  GroupSpec group;
  std::vector<int> member_lines;
  std::string key;
  int line = 0;
};

// Everything the main file holds besides the Config itself.
struct MainDraft {
  std::vector<Draft> inline_programs;
  std::vector<GroupDraft> groups;
  std::vector<int> env_lines;
  int env_files_line = 0;
  int daemon_user_line = 0;
};

// A key or certificate file named in [server]: it must exist as a regular file; when we can read
// it (the CLI or a dropped master may not: then nothing more is judged), it must hold `marker`.
void checkServerFile(Sink& s, int line, const std::string& key, const std::string& path, std::string_view marker,
                     std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    s.error(line, key, "cannot use " + path + ": " + std::strerror(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    s.error(line, key, path + " is not a regular file");
    return;
  }
  if (marker.empty() || st.st_size > (1 << 20)) {
    if (st.st_size > (1 << 20)) s.error(line, key, path + " is over 1 MiB: not " + std::string(what));
    return;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return;  // not readable by this user: the component that needs it says more
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  const ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  if (text.find(marker) == std::string::npos) s.error(line, key, path + " is not " + std::string(what));
}

// A tcp:// endpoint on something else than loopback (`*`, 0.0.0.0, an address, a name).
bool publicTcpEndpoint(const std::string& endpoint) {
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6);
  if (!host.empty() && host.front() == '[') {
    host = host.substr(1, host.find(']') == std::string::npos ? std::string::npos : host.find(']') - 1);
  } else if (auto c = host.rfind(':'); c != std::string::npos) {
    host = host.substr(0, c);
  }
  if (auto semi = host.find(';'); semi != std::string::npos) host = host.substr(semi + 1);  // source;dest
  return !(host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0 || host.rfind("::ffff:127.", 0) == 0);
}

void decodeServer(Sink& s, const Node& n, ServerConfig& out, const std::string& dir) {
  TableReader t(s, n, "server");
  if (auto v = readString(s, t.get("listen"), "server.listen")) out.listen = *v;
  if (auto v = readString(s, t.get("base_path"), "server.base_path")) out.base_path = *v;
  out.zmq_listen = readString(s, t.get("zmq_listen"), "server.zmq_listen");
  out.zmq_events = readString(s, t.get("zmq_events"), "server.zmq_events");
  if (auto v = readBool(s, t.get("allow_insecure"), "server.allow_insecure")) out.allow_insecure = *v;
  if (auto v = readBool(s, t.get("allow_root_programs"), "server.allow_root_programs")) out.allow_root_programs = *v;
  if (const Node* a = t.get("auth"); expectTable(s, a, "server.auth")) {
    TableReader at(s, *a, "server.auth");
    out.auth.token = readString(s, at.get("token"), "server.auth.token");
    out.auth.token_file = readPath(s, at.get("token_file"), "server.auth.token_file", dir);
    out.auth.read_only_token = readString(s, at.get("read_only_token"), "server.auth.read_only_token");
    out.auth.read_only_token_file = readPath(s, at.get("read_only_token_file"), "server.auth.read_only_token_file", dir);
    if (out.auth.token && out.auth.token_file)
      s.error(at.get("token_file")->line, "server.auth.token_file", "set either `token` or `token_file`, not both");
    if (out.auth.read_only_token && out.auth.read_only_token_file)
      s.error(at.get("read_only_token_file")->line, "server.auth.read_only_token_file",
              "set either `read_only_token` or `read_only_token_file`, not both");
    if (out.auth.token && out.auth.token->empty()) s.error(at.get("token")->line, "server.auth.token", "must not be empty");
    if ((out.auth.read_only_token || out.auth.read_only_token_file) && !out.auth.enabled())
      s.error(a->line, "server.auth", "a read-only token needs a full `token` or `token_file` as well");
    if (const Node* en = at.get("enabled")) {
      auto on = readBool(s, en, "server.auth.enabled");
      // A Go user relied on auth being on: losing it silently would expose the API.
      if (on && *on && !out.auth.enabled())
        s.error(en->line, "server.auth.enabled",
                "the Go provisr's user store is not supported: set `token` or `token_file` in [server.auth] "
                "so the API stays authenticated (provisr refuses to start without one)");
      else
        s.warn(en->line, "server.auth.enabled", "`enabled` is not supported yet by provisr and is ignored "
                                                "(authentication is on when `token` or `token_file` is set)");
    }
    for (const char* k : {"jwt_secret", "token_ttl", "bcrypt_cost", "store"}) at.unsupported(k);
    at.finish();
  }
  if (const Node* tl = t.get("tls"); expectTable(s, tl, "server.tls")) {
    TableReader tt(s, *tl, "server.tls");
    out.tls.cert_file = readPath(s, tt.get("cert_file"), "server.tls.cert_file", dir);
    out.tls.key_file = readPath(s, tt.get("key_file"), "server.tls.key_file", dir);
    if (out.tls.cert_file.has_value() != out.tls.key_file.has_value())
      s.error(tl->line, "server.tls", "set both `cert_file` and `key_file`, or neither");
    if (out.tls.cert_file)
      checkServerFile(s, tt.get("cert_file")->line, "server.tls.cert_file", *out.tls.cert_file, "-----BEGIN CERTIFICATE-----",
                      "a PEM certificate");
    if (out.tls.key_file)
      checkServerFile(s, tt.get("key_file")->line, "server.tls.key_file", *out.tls.key_file, "PRIVATE KEY-----",
                      "a PEM private key");
    for (const char* k : {"enabled", "min_version", "max_version", "dir", "auto_generate", "auto_gen"}) tt.unsupported(k);
    tt.finish();
  }
  if (const Node* z = t.get("zmq_curve"); expectTable(s, z, "server.zmq_curve")) {
    TableReader zt(s, *z, "server.zmq_curve");
    out.zmq_curve.server_key_file = readPath(s, zt.get("server_key_file"), "server.zmq_curve.server_key_file", dir);
    out.zmq_curve.client_keys_dir = readPath(s, zt.get("client_keys_dir"), "server.zmq_curve.client_keys_dir", dir);
    if (out.zmq_curve.server_key_file.has_value() != out.zmq_curve.client_keys_dir.has_value())
      s.error(z->line, "server.zmq_curve", "set both `server_key_file` and `client_keys_dir`, or neither");
    if (out.zmq_curve.server_key_file)
      checkServerFile(s, zt.get("server_key_file")->line, "server.zmq_curve.server_key_file", *out.zmq_curve.server_key_file,
                      "", "a CURVE secret key");
    struct stat st {};
    if (out.zmq_curve.client_keys_dir &&
        (::stat(out.zmq_curve.client_keys_dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
      s.error(zt.get("client_keys_dir")->line, "server.zmq_curve.client_keys_dir",
              *out.zmq_curve.client_keys_dir + " is not a directory");
    zt.finish();
  }
  // DESIGN §6: the public ZeroMQ API off loopback is CURVE-only.
  for (const auto& [value, key] : {std::pair{&out.zmq_listen, "server.zmq_listen"}, std::pair{&out.zmq_events, "server.zmq_events"}}) {
    if (*value && publicTcpEndpoint(**value) && !out.zmq_curve.server_key_file) {
      const Node* v = n.find(key + 7);
      s.error(v ? v->line : n.line, key,
              "`" + **value + "` is not a loopback address: set [server.zmq_curve] server_key_file and client_keys_dir "
              "(CURVE keys) to expose the ZeroMQ API there");
    }
  }
  t.finish();
}

void decodeDaemon(Sink& s, const Node& n, DaemonConfig& out, const std::string& dir) {
  TableReader t(s, n, "daemon");
  if (auto v = readPath(s, t.get("run_dir"), "daemon.run_dir", dir)) out.run_dir = *v;
  if (auto v = readPath(s, t.get("log_dir"), "daemon.log_dir", dir)) out.log_dir = *v;
  out.user = readString(s, t.get("user"), "daemon.user");
  out.pid_file = readPath(s, t.get("pid_file"), "daemon.pid_file", dir);
  out.log_file = readPath(s, t.get("log_file"), "daemon.log_file", dir);
  t.finish();
}

void fillDaemonDefaults(DaemonConfig& d, const LoadOptions& o) {
  EnvMap env = osEnvironment(o);
  uid_t uid = effectiveUid(o);
  auto get = [&](const char* k) -> std::string {
    auto it = env.find(k);
    return it == env.end() ? std::string() : it->second;
  };
  if (d.run_dir.empty()) {
    if (uid == 0) d.run_dir = "/run/provisr";
    else if (!get("XDG_RUNTIME_DIR").empty()) d.run_dir = get("XDG_RUNTIME_DIR") + "/provisr";
    else d.run_dir = "/tmp/provisr-" + std::to_string(uid);
  }
  if (d.log_dir.empty()) {
    if (uid == 0) d.log_dir = "/var/log/provisr";
    else if (!get("XDG_STATE_HOME").empty()) d.log_dir = get("XDG_STATE_HOME") + "/provisr/logs";
    else if (!get("HOME").empty()) d.log_dir = get("HOME") + "/.local/state/provisr/logs";
    else d.log_dir = d.run_dir + "/logs";  // no home at all (a bare service account)
  }
}

void decodeMain(Sink& s, const Node& root, Config& cfg, MainDraft& md, const LoadOptions& o) {
  const std::string& dir = cfg.dir;
  TableReader t(s, root, "");
  if (auto v = readBool(s, t.get("use_os_env"), "use_os_env")) cfg.use_os_env = *v;
  if (const Node* env = t.get("env")) {
    if (auto v = readStringList(s, env, "env")) {
      for (std::size_t i = 0; i < v->size(); ++i) {
        auto eq = (*v)[i].find('=');
        if (eq == std::string::npos || eq == 0)
          s.error(env->items[i].line, detail::indexKey("env", i), "must be \"NAME=value\", not `" + (*v)[i] + "`");
        md.env_lines.push_back(env->items[i].line);
      }
      cfg.env = *v;
    }
  }
  if (const Node* ef = t.get("env_files")) {
    md.env_files_line = ef->line;
    if (auto v = readStringList(s, ef, "env_files")) {
      for (std::size_t i = 0; i < v->size(); ++i) {
        std::string path = detail::resolvePath(dir, (*v)[i]);
        cfg.env_files.push_back(path);
        std::string err;
        auto text = readFile(path, err);
        if (!text) {
          s.error(ef->items[i].line, detail::indexKey("env_files", i), "cannot read `" + path + "`: " + err);
          continue;
        }
        auto vars = parseDotenv(*text);
        if (!vars) {
          // "line N: why" → a diagnostic located in the dotenv file itself.
          const std::string& m = vars.error().message;
          int line = 0;
          std::string why = m;
          if (m.rfind("line ", 0) == 0) {
            line = std::atoi(m.c_str() + 5);
            if (auto c = m.find(": "); c != std::string::npos) why = m.substr(c + 2);
          }
          Sink dotenv(*s.out(), path);
          dotenv.error(line, "", why);
          s.countError();
          continue;
        }
        for (auto& kv : *vars) cfg.env_file_vars.push_back(std::move(kv));
      }
    }
  }
  cfg.programs_directory = dir + "/programs";
  if (auto v = readPath(s, t.get("programs_directory"), "programs_directory", dir)) cfg.programs_directory = *v;
  cfg.pid_dir = readPath(s, t.get("pid_dir"), "pid_dir", dir);
  if (const Node* log = t.get("log"); expectTable(s, log, "log")) cfg.log = detail::decodeLog(s, *log, "log", dir);
  if (const Node* srv = t.get("server"); expectTable(s, srv, "server")) decodeServer(s, *srv, cfg.server, dir);
  if (const Node* m = t.get("metrics"); expectTable(s, m, "metrics")) {
    TableReader mt(s, *m, "metrics");
    if (auto v = readBool(s, mt.get("enabled"), "metrics.enabled")) cfg.metrics.enabled = *v;
    cfg.metrics.listen = readString(s, mt.get("listen"), "metrics.listen");
    mt.unsupported("process_metrics");
    mt.finish();
  }
  if (const Node* d = t.get("daemon"); expectTable(s, d, "daemon")) {
    decodeDaemon(s, *d, cfg.daemon, dir);
    if (const Node* u = d->find("user")) md.daemon_user_line = u->line;
  }
  fillDaemonDefaults(cfg.daemon, o);
  if (const Node* g = t.get("groups")) {
    if (g->kind != Node::Kind::kArray) {
      s.error(g->line, "groups", std::string("must be a list of tables, not ") + detail::kindName(g->kind));
    } else {
      for (std::size_t i = 0; i < g->items.size(); ++i) {
        const Node& item = g->items[i];
        std::string key = detail::indexKey("groups", i);
        if (!expectTable(s, &item, key)) continue;
        TableReader gt(s, item, key);
        GroupDraft gd;
        gd.key = key;
        gd.line = item.line;
        const Node* name = gt.get("name");
        if (!name) s.error(item.line, key, "missing required key `name`");
        else if (auto v = readString(s, name, gt.key("name"))) {
          if (!isValidName(*v)) s.error(name->line, gt.key("name"), "invalid group name `" + *v + "`");
          gd.group.name = *v;
        }
        const Node* members = gt.get("members");
        if (auto v = readStringList(s, members, gt.key("members"))) {
          gd.group.members = *v;
          for (const auto& m : members->items) gd.member_lines.push_back(m.line);
        }
        gt.finish();
        md.groups.push_back(std::move(gd));
      }
    }
  }
  if (const Node* p = t.get("processes")) {
    if (p->kind != Node::Kind::kArray) {
      s.error(p->line, "processes", std::string("must be a list of tables, not ") + detail::kindName(p->kind));
    } else {
      SpecContext ctx{dir, dir, Origin::kInline};
      for (std::size_t i = 0; i < p->items.size(); ++i) {
        std::string key = detail::indexKey("processes", i);
        if (!expectTable(s, &p->items[i], key)) continue;
        if (auto d = detail::decodeEnvelope(s, p->items[i], key, ctx, false)) md.inline_programs.push_back(std::move(*d));
      }
    }
  }
  t.unsupported("history");
  t.finish();
}

// One program file of programs_directory (or a registration): read, parse, decode.
std::optional<Draft> loadProgramDocument(std::string_view text, const std::string& format, const std::string& path,
                                         const std::string& main_dir, bool flat_spec, std::vector<Diagnostic>& out) {
  Sink s(out, path);
  auto parsed = detail::parseDocument(text, format);
  if (!parsed.root) {
    s.error(parsed.failure.line, "", "cannot parse: " + parsed.failure.message);
    return std::nullopt;
  }
  SpecContext ctx{parentDir(path), main_dir, flat_spec ? Origin::kApi : Origin::kDirectory};
  if (flat_spec) return detail::decodeSpec(s, *parsed.root, "", ctx);
  return detail::decodeEnvelope(s, *parsed.root, "", ctx, true);
}

std::string keyOf(const Draft& d, std::string_view field) { return detail::joinKey(d.key, field); }

LogPolicy resolveLog(const LogSettings& p, const LogSettings& g, const std::string& daemon_log_dir) {
  LogPolicy out;
  out.dir = p.dir ? *p.dir : g.dir ? *g.dir : daemon_log_dir;
  out.stdout_path = p.stdout_path ? p.stdout_path : g.stdout_path;
  out.stderr_path = p.stderr_path ? p.stderr_path : g.stderr_path;
  out.max_size_mb = p.max_size_mb.value_or(g.max_size_mb.value_or(out.max_size_mb));
  out.max_backups = p.max_backups.value_or(g.max_backups.value_or(out.max_backups));
  out.max_age_days = p.max_age_days.value_or(g.max_age_days.value_or(out.max_age_days));
  out.compress = p.compress.value_or(g.compress.value_or(out.compress));
  out.timestamps = p.timestamps.value_or(g.timestamps.value_or(out.timestamps));
  return out;
}

// Adds `layer` to `vars`, expanding each value from what came before; unknown names are reported.
void expandLayer(EnvMap& vars, const std::vector<std::pair<std::string, std::string>>& layer,
                 const std::function<void(std::size_t, const std::string&)>& on_unknown) {
  for (std::size_t i = 0; i < layer.size(); ++i) {
    std::vector<std::string> unknown;
    vars[layer[i].first] = expandVars(layer[i].second, vars, &unknown);
    if (on_unknown)
      for (const auto& u : unknown) on_unknown(i, u);
  }
}

std::vector<std::pair<std::string, std::string>> splitAll(const std::vector<std::string>& kvs) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& kv : kvs) out.push_back(splitKv(kv));
  return out;
}

// Whether a root spawner can carry `controller` ("pids" or "memory") in a cgroup: a writable cgroup2
// mount whose cgroup.controllers lists it, or a writable cgroup v1 hierarchy of it (the spawner's
// fallback on hybrid layouts, docs/resources.md). Mounts come from /proc/self/mountinfo: the
// hierarchy can be anywhere (/sys/fs/cgroup itself is often a tmpfs holding the mount points).
bool cgroupCanCarry(const std::string& controller) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto sep = line.find(" - ");
    if (sep == std::string::npos) continue;
    std::istringstream pre(line.substr(0, sep));
    std::istringstream post(line.substr(sep + 3));
    std::string id, parent, dev, root, point, opts, type, source, super;
    if (!(pre >> id >> parent >> dev >> root >> point >> opts) || !(post >> type >> source >> super)) continue;
    if (access(point.c_str(), W_OK) != 0) continue;
    if (type == "cgroup2") {
      std::ifstream c(point + "/cgroup.controllers");
      for (std::string w; c >> w;) {
        if (w == controller) return true;
      }
    } else if (type == "cgroup") {
      std::istringstream list(super);
      for (std::string w; std::getline(list, w, ',');) {
        if (w == controller) return true;
      }
    }
  }
  return false;
}

struct CapSupport {
  bool pids = false;
  bool memory = false;
};

CapSupport canEnforceCaps(const LoadOptions& o) {
  if (effectiveUid(o) != 0) return {};
  return {cgroupCanCarry("pids"), cgroupCanCarry("memory")};
}

// Cross-program checks over every draft; only drafts with `check` set get diagnostics.
void validatePrograms(std::vector<Draft>& drafts, const std::set<std::string>& broken_names, const Config& cfg,
                      const LoadOptions& o, std::vector<Diagnostic>& out, const EnvMap& globals_env) {
  std::map<std::string, const Draft*> by_name;
  for (auto& d : drafts) {
    Sink s(out, d.spec.source_file);
    auto [it, inserted] = by_name.emplace(d.spec.name, &d);
    if (!inserted && d.check) {
      const auto& first = it->second->spec;
      s.error(d.name_line, keyOf(d, "name"),
              "duplicate program name `" + d.spec.name + "`: also defined in " + first.source_file +
                  (first.source_line ? ":" + std::to_string(first.source_line) : "") + " (and here in " +
                  d.spec.source_file + ")");
    }
  }
  std::map<std::string, const Draft*> instance_owner;
  for (const auto& d : drafts)
    if (d.spec.instances > 1)
      for (const auto& n : d.spec.instanceNames()) instance_owner.emplace(n, &d);
  for (auto& d : drafts) {
    Sink s(out, d.spec.source_file);
    if (!d.check) continue;
    if (auto it = instance_owner.find(d.spec.name); it != instance_owner.end() && it->second != &d)
      s.error(d.name_line, keyOf(d, "name"),
              "program name `" + d.spec.name + "` equals an instance name of `" + it->second->spec.name + "` (" +
                  std::to_string(it->second->spec.instances) + " instances, declared in " +
                  it->second->spec.source_file + ")");
    // A program with several instances also claims `<name>-i`: those must not be program names.
    if (d.spec.instances > 1)
      for (const auto& n : d.spec.instanceNames())
        if (auto it = by_name.find(n); it != by_name.end() && !it->second->check)
          s.error(d.name_line, keyOf(d, "instances"),
                  "instance name `" + n + "` is already a program (declared in " + it->second->spec.source_file + ")");
  }
  // depends_on: known, not self, no cycles, not a later (higher) priority.
  for (auto& d : drafts) {
    if (!d.check) continue;
    Sink s(out, d.spec.source_file);
    for (const auto& dep : d.spec.depends_on) {
      auto it = by_name.find(dep);
      if (it == by_name.end() && broken_names.count(dep)) continue;  // already reported in its own file
      if (it == by_name.end()) {
        s.error(d.depends_line, keyOf(d, "depends_on"), "unknown program `" + dep + "`" +
                                                            detail::didYouMean(dep, [&] {
                                                              std::vector<std::string> names;
                                                              for (const auto& [n, _] : by_name) names.push_back(n);
                                                              return names;
                                                            }()));
      } else if (it->second->spec.priority > d.spec.priority) {
        s.error(d.depends_line, keyOf(d, "depends_on"),
                "depends on `" + dep + "` whose priority " + std::to_string(it->second->spec.priority) +
                    " is higher than this program's " + std::to_string(d.spec.priority) +
                    " (it would start later); give it a lower or equal priority");
      }
    }
    // A cycle through d: DFS from d's dependencies back to d.
    std::vector<std::string> path{d.spec.name};
    std::set<std::string> seen;
    std::function<bool(const Draft&)> reaches = [&](const Draft& from) -> bool {
      for (const auto& dep : from.spec.depends_on) {
        if (dep == d.spec.name) return true;
        auto it = by_name.find(dep);
        if (it == by_name.end() || !seen.insert(dep).second) continue;
        path.push_back(dep);
        if (reaches(*it->second)) return true;
        path.pop_back();
      }
      return false;
    };
    if (reaches(d)) {
      std::string chain;
      for (const auto& p : path) chain += p + " -> ";
      s.error(d.depends_line, keyOf(d, "depends_on"), "dependency cycle: " + chain + d.spec.name);
    }
  }
  // Accounts.
  if (o.check_accounts) {
    for (auto& d : drafts) {
      if (!d.check) continue;
      Sink s(out, d.spec.source_file);
      if (d.spec.user && getpwnam(d.spec.user->c_str()) == nullptr)
        s.error(d.user_line, keyOf(d, "user"), "unknown user `" + *d.spec.user + "`");
      if (d.spec.group && getgrnam(d.spec.group->c_str()) == nullptr)
        s.error(d.group_line, keyOf(d, "group"), "unknown group `" + *d.spec.group + "`");
    }
  }
  // Logs: resolve, then warn when a shared file would get differing rotation policies.
  std::map<std::string, const Draft*> log_owner;
  for (auto& d : drafts) {
    if (d.check) d.spec.log = resolveLog(d.log, cfg.log, cfg.daemon.log_dir);
    for (const auto& path : {d.spec.log.stdout_path, d.spec.log.stderr_path}) {
      if (!path) continue;
      auto [it, inserted] = log_owner.emplace(*path, &d);
      if (inserted || it->second == &d || !d.check) continue;
      const LogPolicy& a = it->second->spec.log;
      const LogPolicy& b = d.spec.log;
      if (a.max_size_mb != b.max_size_mb || a.max_backups != b.max_backups || a.max_age_days != b.max_age_days ||
          a.compress != b.compress) {
        Sink s(out, d.spec.source_file);
        s.warn(d.log_line ? d.log_line : d.line, keyOf(d, "log"),
               "log file " + *path + " is shared with program `" + it->second->spec.name +
                   "` whose rotation policy differs; the first program's policy (max_size_mb=" +
                   std::to_string(a.max_size_mb) + ", max_backups=" + std::to_string(a.max_backups) +
                   ", max_age_days=" + std::to_string(a.max_age_days) + ") applies");
      }
    }
  }
  // Resource caps need a root provisr and a writable cgroup hierarchy carrying their controller.
  const CapSupport enforce = canEnforceCaps(o);
  for (auto& d : drafts) {
    if (!d.check) continue;
    const bool pidsCap = d.spec.max_processes || d.spec.pids_max;
    const bool memCap = d.spec.memory_max.has_value();
    if ((pidsCap && !enforce.pids) || (memCap && !enforce.memory)) {
      Sink s(out, d.spec.source_file);
      s.warn(d.caps_line, keyOf(d, d.caps_field),
             "resource caps (max_processes, memory_max, pids_max) cannot be enforced: they need provisr "
             "running as root with a writable cgroup hierarchy that has the pids/memory controller "
             "(cgroup2, or the cgroup v1 pids/memory hierarchy); they are ignored here");
    }
  }
  // `${NAME}` in program env that nothing before defines.
  for (auto& d : drafts) {
    if (!d.check) continue;
    Sink s(out, d.spec.source_file);
    EnvMap vars = globals_env;
    vars["PROVISR_INSTANCE"] = "";  // set per child after the program env, but not "unknown"
    vars["PROVISR_NAME"] = "";
    expandLayer(vars, splitAll(d.spec.env), [&](std::size_t i, const std::string& name) {
      s.warn(d.env_line, detail::indexKey(keyOf(d, "env"), i),
             "`${" + name + "}` is not defined by any earlier variable and expands to an empty string");
    });
  }
}

// The env that comes before any program's own env (base, env_files, global env), with warnings.
EnvMap globalEnvironment(const Config& cfg, const LoadOptions& o, Sink* s, const MainDraft* md) {
  EnvMap vars = baseEnvironment(cfg.use_os_env, osEnvironment(o));
  expandLayer(vars, cfg.env_file_vars, [&](std::size_t, const std::string& name) {
    if (s) s->warn(md->env_files_line, "env_files", "`${" + name + "}` is not defined before it and expands to an empty string");
  });
  expandLayer(vars, splitAll(cfg.env), [&](std::size_t i, const std::string& name) {
    if (s) s->warn(i < md->env_lines.size() ? md->env_lines[i] : 0, detail::indexKey("env", i),
                   "`${" + name + "}` is not defined by any earlier variable and expands to an empty string");
  });
  return vars;
}

std::vector<std::string> listProgramFiles(const std::string& dir, Sink& s) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;  // missing = no programs (SPEC §1.1)
  if (!std::filesystem::is_directory(dir, ec)) {
    s.error(0, "programs_directory", "`" + dir + "` is not a directory");
    return out;
  }
  try {
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      std::string name = e.path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      if (detail::formatForPath(name).empty()) continue;
      if (!e.is_regular_file(ec)) continue;  // follows symlinks; directories are not descended
      out.push_back(e.path().string());
    }
  } catch (const std::filesystem::filesystem_error& e) {
    s.error(0, "programs_directory", "cannot list `" + dir + "`: " + e.code().message());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Diagnostics in file order: the main file, then program files by name; lines ascending within each.
void sortDiagnostics(std::vector<Diagnostic>& ds, const std::vector<std::string>& file_order) {
  auto rank = [&](const std::string& f) {
    auto it = std::find(file_order.begin(), file_order.end(), f);
    return static_cast<std::size_t>(it - file_order.begin());
  };
  std::stable_sort(ds.begin(), ds.end(), [&](const Diagnostic& a, const Diagnostic& b) {
    auto ra = rank(a.file), rb = rank(b.file);
    if (ra != rb) return ra < rb;
    return a.line < b.line;
  });
}

}  // namespace

LoadResult loadConfig(const std::string& path, const LoadOptions& options) {
  LoadResult r;
  Config cfg;
  cfg.file = absolutePath(path);
  cfg.dir = parentDir(cfg.file);
  Sink s(r.diagnostics, cfg.file);
  std::string format = detail::formatForPath(cfg.file);
  if (format.empty()) {
    s.error(0, "", "unknown config format: the file name must end in .toml, .yaml, .yml or .json");
    return r;
  }
  std::string err;
  auto text = readFile(cfg.file, err);
  if (!text) {
    s.error(0, "", "cannot read the config: " + err);
    return r;
  }
  auto parsed = detail::parseDocument(*text, format);
  if (!parsed.root) {
    s.error(parsed.failure.line, "", "cannot parse: " + parsed.failure.message);
    return r;
  }
  MainDraft md;
  decodeMain(s, *parsed.root, cfg, md, options);

  std::vector<Draft> drafts = std::move(md.inline_programs);
  std::vector<std::string> file_order{cfg.file};
  for (const auto& f : listProgramFiles(cfg.programs_directory, s)) {
    if (f == cfg.file) continue;  // `programs_directory = "."`: the main file is not a program
    file_order.push_back(f);
    std::string ferr;
    auto ftext = readFile(f, ferr);
    if (!ftext) {
      Sink fs(r.diagnostics, f);
      fs.error(0, "", "cannot read: " + ferr);
      continue;
    }
    if (auto d = loadProgramDocument(*ftext, detail::formatForPath(f), f, cfg.dir, false, r.diagnostics))
      drafts.push_back(std::move(*d));
  }
  std::set<std::string> broken_names;
  for (const auto& d : drafts)
    if (!d.valid) broken_names.insert(d.spec.name);
  drafts.erase(std::remove_if(drafts.begin(), drafts.end(), [](const Draft& d) { return !d.valid; }), drafts.end());
  EnvMap globals = globalEnvironment(cfg, options, &s, &md);
  validatePrograms(drafts, broken_names, cfg, options, r.diagnostics, globals);

  // Groups: valid, unique, every member a known program.
  std::set<std::string> group_names;
  for (const auto& gd : md.groups) {
    if (!gd.group.name.empty() && !group_names.insert(gd.group.name).second)
      s.error(gd.line, gd.key + ".name", "duplicate group name `" + gd.group.name + "`");
    std::vector<std::string> names(broken_names.begin(), broken_names.end());
    for (const auto& d : drafts) names.push_back(d.spec.name);
    for (std::size_t i = 0; i < gd.group.members.size(); ++i) {
      const auto& m = gd.group.members[i];
      if (std::find(names.begin(), names.end(), m) == names.end())
        s.error(i < gd.member_lines.size() ? gd.member_lines[i] : gd.line, detail::indexKey(gd.key + ".members", i),
                "unknown member `" + m + "`: no program has that name" + detail::didYouMean(m, names));
    }
    cfg.groups.push_back(gd.group);
  }
  if (options.check_accounts && cfg.daemon.user && getpwnam(cfg.daemon.user->c_str()) == nullptr)
    s.error(md.daemon_user_line, "daemon.user", "unknown user `" + *cfg.daemon.user + "`");

  sortDiagnostics(r.diagnostics, file_order);
  bool failed = std::any_of(r.diagnostics.begin(), r.diagnostics.end(), [](const auto& d) { return d.isError(); });
  if (failed) return r;
  for (auto& d : drafts) cfg.programs.push_back(std::move(d.spec));
  r.config = std::move(cfg);
  return r;
}

ProgramLoadResult loadProgramText(std::string_view text, std::string_view format, const std::string& virtual_path,
                                  const Config& cfg, bool flat_spec, const LoadOptions& options) {
  ProgramLoadResult r;
  std::string path = absolutePath(virtual_path);
  auto d = loadProgramDocument(text, std::string(format), path, cfg.dir, flat_spec, r.diagnostics);
  if (d && !d->valid) return r;
  if (!d) {
    r.skipped = r.errors().empty();
    return r;
  }
  // Judge the new program against the others; a program of the same file is the one it replaces.
  std::vector<Draft> drafts;
  for (const auto& p : cfg.programs) {
    if (p.name == d->spec.name && p.source_file == path) continue;
    Draft other;
    other.spec = p;
    other.check = false;
    drafts.push_back(std::move(other));
  }
  drafts.push_back(std::move(*d));
  EnvMap globals = globalEnvironment(cfg, options, nullptr, nullptr);
  validatePrograms(drafts, {}, cfg, options, r.diagnostics, globals);
  if (std::any_of(r.diagnostics.begin(), r.diagnostics.end(), [](const auto& x) { return x.isError(); })) return r;
  r.program = std::move(drafts.back().spec);
  return r;
}

ProgramLoadResult loadProgramFile(const std::string& path, const Config& cfg, const LoadOptions& options) {
  std::string err;
  auto text = readFile(path, err);
  if (!text) {
    ProgramLoadResult r;
    r.diagnostics.push_back({Diagnostic::Severity::kError, absolutePath(path), 0, "", "cannot read: " + err});
    return r;
  }
  std::string format = detail::formatForPath(path);
  if (format.empty()) {
    ProgramLoadResult r;
    r.diagnostics.push_back({Diagnostic::Severity::kError, absolutePath(path), 0, "",
                             "unknown format: the file name must end in .toml, .yaml, .yml or .json"});
    return r;
  }
  return loadProgramText(*text, format, path, cfg, false, options);
}

std::vector<std::string> childEnvironment(const Config& cfg, const ProgramSpec& program, int instance,
                                          const LoadOptions& options) {
  // Keeps first-definition order so the result is stable; later layers replace values in place.
  std::vector<std::pair<std::string, std::string>> ordered;
  EnvMap vars;
  auto set = [&](const std::string& k, const std::string& v) {
    if (vars.count(k)) {
      for (auto& [ok, ov] : ordered)
        if (ok == k) ov = v;
    } else {
      ordered.emplace_back(k, v);
    }
    vars[k] = v;
  };
  for (const auto& [k, v] : baseEnvironment(cfg.use_os_env, osEnvironment(options))) set(k, v);
  if (program.user) {
    // SPEC §1.4: HOME, USER, LOGNAME, SHELL come from the account; env layers may still override.
    if (const passwd* pw = getpwnam(program.user->c_str())) {
      set("HOME", pw->pw_dir);
      set("USER", pw->pw_name);
      set("LOGNAME", pw->pw_name);
      set("SHELL", pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh");
    }
  }
  auto layer = [&](const std::vector<std::pair<std::string, std::string>>& kvs) {
    for (const auto& [k, v] : kvs) set(k, expandVars(v, vars));
  };
  layer(cfg.env_file_vars);
  layer(splitAll(cfg.env));
  layer(splitAll(program.env));
  set("PROVISR_INSTANCE", std::to_string(instance));
  set("PROVISR_NAME", program.instanceName(instance));
  std::vector<std::string> out;
  out.reserve(ordered.size());
  for (const auto& [k, v] : ordered) out.push_back(k + "=" + v);
  return out;
}

}  // namespace provisr::config

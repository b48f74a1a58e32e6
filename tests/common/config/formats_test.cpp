// Every key of SPEC §1 in TOML, YAML and JSON: the same config written in each gives equal models,
// and each value lands where it should.
#include <sstream>

#include "config_test_util.hpp"

using namespace provisr::config;
using namespace provisr::config::test;
using namespace std::chrono_literals;

namespace {

const char* kMainToml = R"(use_os_env = false
env = ["GLOBAL_NAME=provisr", "CHAIN=${GLOBAL_NAME}-x"]
env_files = ["vars.env"]
programs_directory = "progs"
pid_dir = "pids"

[log]
dir = "logs"
stdout = "all.out.log"
stderr = "all.err.log"
max_size_mb = 20
max_backups = 4
max_age_days = 9
compress = true
timestamps = true

[server]
listen = "127.0.0.1:9999"
base_path = "/v1"
zmq_listen = "tcp://127.0.0.1:5555"
zmq_events = "tcp://127.0.0.1:5556"
allow_insecure = true
allow_root_programs = true

[server.auth]
token_file = "token"
read_only_token = "ro"

[server.tls]
cert_file = "cert.pem"
key_file = "key.pem"

[server.zmq_curve]
server_key_file = "curve/server.key"
client_keys_dir = "curve/clients"

[metrics]
enabled = true
listen = "127.0.0.1:9090"

[daemon]
run_dir = "run"
log_dir = "dlogs"
user = "nobody"
pid_file = "provisr.pid"
log_file = "provisr.log"

[[groups]]
name = "all"
members = ["web", "db", "worker"]

[[processes]]
type = "process"
[processes.spec]
name = "db"
args = ["/usr/bin/db", "--port", "5432"]
priority = -1
)";

const char* kMainYaml = R"(use_os_env: false
env: ["GLOBAL_NAME=provisr", "CHAIN=${GLOBAL_NAME}-x"]
env_files: [vars.env]
programs_directory: progs
pid_dir: pids
log:
  dir: logs
  stdout: all.out.log
  stderr: all.err.log
  max_size_mb: 20
  max_backups: 4
  max_age_days: 9
  compress: true
  timestamps: true
server:
  listen: "127.0.0.1:9999"
  base_path: /v1
  zmq_listen: "tcp://127.0.0.1:5555"
  zmq_events: "tcp://127.0.0.1:5556"
  allow_insecure: true
  allow_root_programs: true
  auth:
    token_file: token
    read_only_token: ro
  tls:
    cert_file: cert.pem
    key_file: key.pem
  zmq_curve:
    server_key_file: curve/server.key
    client_keys_dir: curve/clients
metrics:
  enabled: true
  listen: "127.0.0.1:9090"
daemon:
  run_dir: run
  log_dir: dlogs
  user: nobody
  pid_file: provisr.pid
  log_file: provisr.log
groups:
  - name: all
    members: [web, db, worker]
processes:
  - type: process
    spec:
      name: db
      args: [/usr/bin/db, --port, "5432"]
      priority: -1
)";

const char* kMainJson = R"({
  "use_os_env": false,
  "env": ["GLOBAL_NAME=provisr", "CHAIN=${GLOBAL_NAME}-x"],
  "env_files": ["vars.env"],
  "programs_directory": "progs",
  "pid_dir": "pids",
  "log": {"dir": "logs", "stdout": "all.out.log", "stderr": "all.err.log", "max_size_mb": 20, "max_backups": 4, "max_age_days": 9, "compress": true,
          "timestamps": true},
  "server": {
    "listen": "127.0.0.1:9999", "base_path": "/v1",
    "zmq_listen": "tcp://127.0.0.1:5555", "zmq_events": "tcp://127.0.0.1:5556",
    "allow_insecure": true, "allow_root_programs": true,
    "auth": {"token_file": "token", "read_only_token": "ro"},
    "tls": {"cert_file": "cert.pem", "key_file": "key.pem"},
    "zmq_curve": {"server_key_file": "curve/server.key", "client_keys_dir": "curve/clients"}
  },
  "metrics": {"enabled": true, "listen": "127.0.0.1:9090"},
  "daemon": {"run_dir": "run", "log_dir": "dlogs", "user": "nobody", "pid_file": "provisr.pid",
             "log_file": "provisr.log"},
  "groups": [{"name": "all", "members": ["web", "db", "worker"]}],
  "processes": [{"type": "process", "spec": {"name": "db", "args": ["/usr/bin/db", "--port", "5432"],
                                             "priority": -1}}]
}
)";

const char* kWebToml = R"(type = "process"
[spec]
name = "web"
command = "python3 -m http.server 8000"
work_dir = "www"
env = ["PATH=${PATH}:/opt/bin", "PORT=8000"]
priority = 5
instances = 2
start_duration = "1.5s"
retry_count = 3
retry_interval = 2000000000
auto_restart = "on-failure"
restart_interval = "3s"
restart_backoff = { max = "1m", factor = 2.5, reset_after = "90s", jitter = 0.1 }
success_exit_codes = [0, 3]
stop_signal = "SIGINT"
stop_timeout = "20s"
user = "nobody"
group = "nogroup"
umask = "027"
max_processes = 50
memory_max = "512M"
pids_max = 100
depends_on = ["db"]
[spec.log]
dir = "weblogs"
stdout = "web.out.log"
max_size_mb = 5
max_backups = 1
max_age_days = 2
compress = false
timestamps = false
)";

const char* kWebYaml = R"(type: process
spec:
  name: web
  command: python3 -m http.server 8000
  work_dir: www
  env:
    - PATH=${PATH}:/opt/bin
    - PORT=8000
  priority: 5
  instances: 2
  start_duration: 1.5s
  retry_count: 3
  retry_interval: 2000000000
  auto_restart: on-failure
  restart_interval: 3s
  restart_backoff: {max: 1m, factor: 2.5, reset_after: 90s, jitter: 0.1}
  success_exit_codes: [0, 3]
  stop_signal: SIGINT
  stop_timeout: 20s
  user: nobody
  group: nogroup
  umask: "027"
  max_processes: 50
  memory_max: 512M
  pids_max: 100
  depends_on: [db]
  log:
    dir: weblogs
    stdout: web.out.log
    max_size_mb: 5
    max_backups: 1
    max_age_days: 2
    compress: false
    timestamps: false
)";

const char* kWebJson = R"({"type": "process", "spec": {
  "name": "web", "command": "python3 -m http.server 8000", "work_dir": "www",
  "env": ["PATH=${PATH}:/opt/bin", "PORT=8000"], "priority": 5, "instances": 2,
  "start_duration": "1.5s", "retry_count": 3, "retry_interval": 2000000000,
  "auto_restart": "on-failure", "restart_interval": "3s",
  "restart_backoff": {"max": "1m", "factor": 2.5, "reset_after": "90s", "jitter": 0.1},
  "success_exit_codes": [0, 3], "stop_signal": "SIGINT", "stop_timeout": "20s",
  "user": "nobody", "group": "nogroup", "umask": "027", "max_processes": 50, "memory_max": "512M",
  "pids_max": 100, "depends_on": ["db"],
  "log": {"dir": "weblogs", "stdout": "web.out.log", "max_size_mb": 5, "max_backups": 1,
          "max_age_days": 2, "compress": false, "timestamps": false}
}}
)";

// The Go nested log shape, a numeric signal and `origin = "api"`.
const char* kWorkerToml = R"(type = "process"
origin = "api"
[spec]
name = "worker"
args = ["/bin/worker"]
auto_restart = true
stop_signal = 3
umask = "0o077"
memory_max = 1073741824
[spec.log.file]
dir = "/var/log/worker"
stdoutPath = "/var/log/worker/out.log"
stderrPath = "err.log"
maxSizeMB = 7
maxBackups = 2
maxAgeDays = 1
compress = true
)";

const char* kWorkerYaml = R"(type: process
origin: api
spec:
  name: worker
  args: [/bin/worker]
  auto_restart: true
  stop_signal: 3
  umask: 077
  memory_max: 1G
  log:
    file:
      dir: /var/log/worker
      stdoutPath: /var/log/worker/out.log
      stderrPath: err.log
      maxSizeMB: 7
      maxBackups: 2
      maxAgeDays: 1
      compress: true
)";

const char* kWorkerJson = R"({"type": "process", "origin": "api", "spec": {"name": "worker",
  "args": ["/bin/worker"], "auto_restart": true, "stop_signal": 3, "umask": "077", "memory_max": "1024M",
  "log": {"file": {"dir": "/var/log/worker", "stdoutPath": "/var/log/worker/out.log", "stderrPath": "err.log",
                   "maxSizeMB": 7, "maxBackups": 2, "maxAgeDays": 1, "compress": true}}}}
)";

std::string opt(const std::optional<std::string>& s) { return s ? *s : "<unset>"; }
template <class T>
std::string optNum(const std::optional<T>& v) {
  return v ? std::to_string(*v) : "<unset>";
}

// Everything in a Config except where it came from, with the temp dir replaced by <T>.
std::string describe(const Config& c, const std::string& tmp) {
  std::ostringstream os;
  auto list = [&](const std::vector<std::string>& v) {
    for (const auto& s : v) os << s << ",";
    os << "\n";
  };
  os << c.use_os_env << "\n";
  list(c.env);
  list(c.env_files);
  for (const auto& [k, v] : c.env_file_vars) os << k << "=" << v << ";";
  os << "\n" << c.programs_directory << " " << opt(c.pid_dir) << "\n";
  os << opt(c.log.dir) << opt(c.log.stdout_path) << opt(c.log.stderr_path) << optNum(c.log.max_size_mb)
     << optNum(c.log.max_backups) << optNum(c.log.max_age_days) << optNum(c.log.compress)
     << optNum(c.log.timestamps) << "\n";
  const auto& s = c.server;
  os << s.listen << s.base_path << opt(s.zmq_listen) << opt(s.zmq_events) << s.allow_insecure
     << s.allow_root_programs << opt(s.auth.token) << opt(s.auth.token_file) << opt(s.auth.read_only_token)
     << opt(s.auth.read_only_token_file) << opt(s.tls.cert_file) << opt(s.tls.key_file)
     << opt(s.zmq_curve.server_key_file) << opt(s.zmq_curve.client_keys_dir) << "\n";
  os << c.metrics.enabled << opt(c.metrics.listen) << "\n";
  os << c.daemon.run_dir << c.daemon.log_dir << opt(c.daemon.user) << opt(c.daemon.pid_file)
     << opt(c.daemon.log_file) << "\n";
  for (const auto& g : c.groups) {
    os << g.name << ":";
    list(g.members);
  }
  for (auto p : c.programs) {
    os << p.name << " " << opt(p.command) << "|";
    list(p.args);
    list(p.argv);
    os << p.work_dir << "\n";
    list(p.env);
    os << p.priority << " " << p.instances << " " << p.start_duration.count() << " " << p.retry_count << " "
       << p.retry_interval.count() << " " << static_cast<int>(p.auto_restart) << " " << p.restart_interval.count();
    if (p.restart_backoff)
      os << " backoff " << p.restart_backoff->max.count() << " " << p.restart_backoff->factor << " "
         << p.restart_backoff->reset_after.count() << " " << p.restart_backoff->jitter;
    os << "\ncodes ";
    for (int x : p.success_exit_codes) os << x << ",";
    os << " sig " << p.stop_signal << p.stop_signal_name << " " << p.stop_timeout.count() << " " << opt(p.user)
       << opt(p.group) << " umask " << p.umask << " " << optNum(p.max_processes) << optNum(p.memory_max)
       << optNum(p.pids_max) << "\n";
    list(p.depends_on);
    os << "log " << p.log.dir << opt(p.log.stdout_path) << opt(p.log.stderr_path) << p.log.max_size_mb
       << p.log.max_backups << p.log.max_age_days << p.log.compress << p.log.timestamps << "\n";
    os << "origin " << static_cast<int>(p.origin) << "\n";
  }
  std::string out = os.str();
  for (auto at = out.find(tmp); at != std::string::npos; at = out.find(tmp)) out.replace(at, tmp.size(), "<T>");
  return out;
}

struct Loaded {
  std::string text;
  LoadResult result;
};

// The files [server.tls] and [server.zmq_curve] of the main files name (the loader checks them).
void writeServerFiles(const TempDir& tmp) {
  tmp.write("cert.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  tmp.write("key.pem", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  tmp.write("curve/server.key", "secret-key = \"0000000000000000000000000000000000000000\"\n");
  tmp.write("curve/clients/a.key", "0000000000000000000000000000000000000000\n");
}

Loaded loadSet(const std::string& ext, const char* main, const char* web, const char* worker) {
  TempDir tmp;
  std::string file = tmp.write("provisr." + ext, main);
  tmp.write("vars.env", "FROM_FILE=1\nexport QUOTED=\"a b\"\n");
  tmp.write("progs/web." + ext, web);
  tmp.write("progs/worker." + ext, worker);
  writeServerFiles(tmp);
  tmp.write("progs/.hidden.toml", "garbage = ");
  tmp.write("progs/README.md", "not a program");
  tmp.write("progs/sub/nested.toml", "garbage = ");
  Loaded out;
  out.result = loadConfig(file, testOptions());
  if (out.result.ok()) out.text = describe(*out.result.config, tmp.path());
  return out;
}

}  // namespace

TEST_CASE("the same config in TOML, YAML and JSON gives equal models", "[common]") {
  auto toml = loadSet("toml", kMainToml, kWebToml, kWorkerToml);
  auto yaml = loadSet("yaml", kMainYaml, kWebYaml, kWorkerYaml);
  auto json = loadSet("json", kMainJson, kWebJson, kWorkerJson);
  INFO(dump(toml.result.diagnostics) << dump(yaml.result.diagnostics) << dump(json.result.diagnostics));
  REQUIRE(toml.result.ok());
  REQUIRE(yaml.result.ok());
  REQUIRE(json.result.ok());
  CHECK(toml.text == yaml.text);
  CHECK(toml.text == json.text);
  // Only warnings: the resource caps cannot be enforced when not root.
  CHECK(toml.result.diagnostics.size() == json.result.diagnostics.size());
  CHECK(yaml.result.diagnostics.size() == json.result.diagnostics.size());
}

TEST_CASE("every main-file key lands in the model", "[common]") {
  TempDir tmp;
  std::string file = tmp.write("provisr.toml", kMainToml);
  tmp.write("vars.env", "FROM_FILE=1\n");
  tmp.write("progs/web.toml", kWebToml);
  tmp.write("progs/worker.toml", kWorkerToml);
  writeServerFiles(tmp);
  auto r = loadConfig(file, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  const Config& c = *r.config;
  const std::string& t = tmp.path();
  CHECK(c.file == file);
  CHECK(c.dir == t);
  CHECK_FALSE(c.use_os_env);
  CHECK(c.env_files == std::vector<std::string>{t + "/vars.env"});
  CHECK(c.env_file_vars == std::vector<std::pair<std::string, std::string>>{{"FROM_FILE", "1"}});
  CHECK(c.programs_directory == t + "/progs");
  CHECK(c.pid_dir == t + "/pids");
  CHECK(c.log.dir == t + "/logs");
  CHECK(c.log.stdout_path == t + "/all.out.log");
  CHECK(c.log.stderr_path == t + "/all.err.log");
  CHECK(c.log.max_size_mb == 20);
  CHECK(c.log.max_backups == 4);
  CHECK(c.log.max_age_days == 9);
  CHECK(c.log.compress == true);
  CHECK(c.log.timestamps == true);
  CHECK(c.server.listen == "127.0.0.1:9999");
  CHECK(c.server.base_path == "/v1");
  CHECK(c.server.zmq_listen == "tcp://127.0.0.1:5555");
  CHECK(c.server.zmq_events == "tcp://127.0.0.1:5556");
  CHECK(c.server.allow_insecure);
  CHECK(c.server.allow_root_programs);
  CHECK(c.server.auth.token_file == t + "/token");
  CHECK(c.server.auth.read_only_token == "ro");
  CHECK(c.server.auth.enabled());
  CHECK(c.server.tls.cert_file == t + "/cert.pem");
  CHECK(c.server.tls.key_file == t + "/key.pem");
  CHECK(c.server.zmq_curve.server_key_file == t + "/curve/server.key");
  CHECK(c.server.zmq_curve.client_keys_dir == t + "/curve/clients");
  CHECK(c.metrics.enabled);
  CHECK(c.metrics.listen == "127.0.0.1:9090");
  CHECK(c.daemon.run_dir == t + "/run");
  CHECK(c.daemon.log_dir == t + "/dlogs");
  CHECK(c.daemon.user == "nobody");
  CHECK(c.daemon.pid_file == t + "/provisr.pid");
  CHECK(c.daemon.log_file == t + "/provisr.log");
  REQUIRE(c.groups.size() == 1);
  CHECK(c.groups[0] == GroupSpec{"all", {"web", "db", "worker"}});
  // Inline first, then the directory sorted by name; hidden, non-config and nested files ignored.
  REQUIRE(c.programs.size() == 3);
  CHECK(c.programs[0].name == "db");
  CHECK(c.programs[0].origin == Origin::kInline);
  CHECK(c.programs[0].provisioned());
  CHECK(c.programs[0].source_file == file);
  CHECK(c.programs[1].name == "web");
  CHECK(c.programs[1].origin == Origin::kDirectory);
  CHECK(c.programs[2].name == "worker");
  CHECK(c.programs[2].origin == Origin::kApi);
}

TEST_CASE("every spec field lands in the model", "[common]") {
  TempDir tmp;
  std::string file = tmp.write("provisr.toml", kMainToml);
  tmp.write("vars.env", "FROM_FILE=1\n");
  std::string web_file = tmp.write("progs/web.toml", kWebToml);
  tmp.write("progs/worker.toml", kWorkerToml);
  writeServerFiles(tmp);
  auto r = loadConfig(file, testOptions());
  INFO(dump(r.diagnostics));
  REQUIRE(r.ok());
  const std::string& t = tmp.path();
  const ProgramSpec& w = *r.config->findProgram("web");
  CHECK(w.command == "python3 -m http.server 8000");
  CHECK(w.args.empty());
  CHECK(w.argv == std::vector<std::string>{"python3", "-m", "http.server", "8000"});
  CHECK(w.work_dir == t + "/progs/www");  // relative to the file that holds it
  CHECK(w.env == std::vector<std::string>{"PATH=${PATH}:/opt/bin", "PORT=8000"});
  CHECK(w.priority == 5);
  CHECK(w.instances == 2);
  CHECK(w.instanceNames() == std::vector<std::string>{"web-1", "web-2"});
  CHECK(w.start_duration == 1500ms);
  CHECK(w.retry_count == 3);
  CHECK(w.retry_interval == 2s);
  CHECK(w.auto_restart == AutoRestart::kOnFailure);
  CHECK(w.restart_interval == 3s);
  REQUIRE(w.restart_backoff);
  CHECK(w.restart_backoff->max == 1min);
  CHECK(w.restart_backoff->factor == 2.5);
  CHECK(w.restart_backoff->reset_after == 90s);
  CHECK(w.restart_backoff->jitter == 0.1);
  CHECK(w.success_exit_codes == std::vector<int>{0, 3});
  CHECK(w.stop_signal == 2);
  CHECK(w.stop_signal_name == "INT");
  CHECK(w.stop_timeout == 20s);
  CHECK(w.user == "nobody");
  CHECK(w.group == "nogroup");
  CHECK(w.umask == 027);
  CHECK(w.max_processes == 50);
  CHECK(w.memory_max == 512LL * 1024 * 1024);
  CHECK(w.pids_max == 100);
  CHECK(w.depends_on == std::vector<std::string>{"db"});
  CHECK(w.log.dir == t + "/progs/weblogs");
  CHECK(w.log.stdout_path == t + "/progs/web.out.log");
  CHECK(w.log.stderr_path == t + "/all.err.log");  // the global [log] stderr, relative to the main file
  CHECK(w.log.max_size_mb == 5);
  CHECK(w.log.max_backups == 1);
  CHECK(w.log.max_age_days == 2);
  CHECK_FALSE(w.log.compress);
  CHECK_FALSE(w.log.timestamps);
  CHECK(w.log.stdoutFile("web-1") == t + "/progs/web.out.log");
  CHECK(w.log.stderrFile("web-1") == t + "/all.err.log");
  CHECK(w.source_file == web_file);
  CHECK(w.source_line == 2);

  const ProgramSpec& k = *r.config->findProgram("worker");
  CHECK_FALSE(k.command);
  CHECK(k.argv == std::vector<std::string>{"/bin/worker"});
  CHECK(k.work_dir == t);  // default: the main config's directory
  CHECK(k.auto_restart == AutoRestart::kAlways);
  CHECK(k.stop_signal == 3);
  CHECK(k.stop_signal_name == "QUIT");
  CHECK(k.umask == 077);
  CHECK(k.memory_max == 1LL << 30);
  CHECK(k.log.dir == "/var/log/worker");
  CHECK(k.log.stdout_path == "/var/log/worker/out.log");
  CHECK(k.log.stderr_path == t + "/progs/err.log");
  CHECK(k.log.max_size_mb == 7);
  CHECK(k.log.max_backups == 2);
  CHECK(k.log.max_age_days == 1);
  CHECK(k.log.compress);
  CHECK(k.log.timestamps);  // from the global [log]

  const ProgramSpec& db = *r.config->findProgram("db");
  CHECK(db.argv == std::vector<std::string>{"/usr/bin/db", "--port", "5432"});
  CHECK(db.log.dir == t + "/logs");  // the global [log] dir
  CHECK(db.log.stdout_path == t + "/all.out.log");
  CHECK(db.log.max_size_mb == 20);
  CHECK(db.log.compress);
}

TEST_CASE("truncated documents are reported, never crash", "[common]") {
  TempDir tmp;
  auto base = loadConfig(tmp.write("config.toml", ""), testOptions());
  REQUIRE(base.ok());
  struct Doc {
    const char* format;
    std::string text;
  };
  for (const auto& doc : {Doc{"toml", kWebToml}, Doc{"yaml", kWebYaml}, Doc{"json", kWebJson},
                          Doc{"toml", kWorkerToml}, Doc{"yaml", kWorkerYaml}, Doc{"json", kWorkerJson}}) {
    for (std::size_t n = 0; n < doc.text.size(); n += 3) {
      auto r = loadProgramText(doc.text.substr(0, n), doc.format, tmp.path() + "/programs/p." + doc.format,
                               *base.config, false, testOptions());
      // A prefix either loads (it cut only trailing keys) or says why not; a skipped result has no errors.
      if (!r.ok() && !r.skipped) {
        INFO(doc.format << " prefix " << n);
        CHECK_FALSE(r.errors().empty());
      }
    }
  }
}

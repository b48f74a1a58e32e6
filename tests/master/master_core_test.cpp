// Tests of MasterCore with a fake clock and a fake spawner: ordering, reconciliation, intent,
// queued requests, selectors, groups, reload.
#include "master/master_core.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

using namespace provisr;
using namespace provisr::master;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "provisr-master-core-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void write(const std::string& rel, const std::string& text) const {
    fs::create_directories(fs::path(path_ + "/" + rel).parent_path());
    std::ofstream(path_ + "/" + rel) << text;
  }

 private:
  std::string path_;
};

// db (priority 1), api ×2 (priority 5), web (priority 10, start_duration 1s); groups.
const char* kPrograms[][2] = {
    {"programs/db.toml", "[spec]\nname = \"db\"\ncommand = \"sleep 100\"\npriority = 1\n"},
    {"programs/api.toml",
     "[spec]\nname = \"api\"\ncommand = \"sleep 100\"\npriority = 5\ninstances = 2\nauto_restart = true\n"
     "restart_interval = \"2s\"\n"},
    {"programs/web.toml",
     "[spec]\nname = \"web\"\ncommand = \"sleep 100\"\npriority = 10\nstart_duration = \"1s\"\n"},
};

std::string mainConfig(const std::string& dir) {
  return "programs_directory = \"programs\"\n[log]\ndir = \"" + dir +
         "/logs\"\n[[groups]]\nname = \"backend\"\nmembers = [\"db\", \"api\"]\n";
}

struct Spawned {
  std::string key;
  std::uint64_t generation;
};

// The core plus a fake spawner that records what the core asks for and feeds events back.
class Harness {
 public:
  explicit Harness(PersistedState persisted = {}, const std::string& extraMain = "") {
    dir.write("config.toml", extraMain + mainConfig(dir.path()));
    for (const auto& p : kPrograms) dir.write(p[0], p[1]);
    config::LoadOptions lo;
    lo.check_accounts = false;
    auto loaded = config::loadConfig(dir.path() + "/config.toml", lo);
    REQUIRE(loaded.ok());
    CoreOptions opts;
    opts.secret = "s";
    opts.pid = 42;
    opts.load = lo;
    opts.resolveExe = [](const std::string& p, const std::vector<std::string>&) { return "/bin/" + p; };
    core = std::make_unique<MasterCore>(*loaded.config, std::move(persisted), clock, opts);
    core->setStore(StateStore(dir.path() + "/master.state"));
  }

  // Hello → HelloReply{epoch} → Snapshot → SnapshotReply{children}.
  void connect(std::uint64_t epoch, std::vector<proto::ChildInfo> children = {}, bool reconnect = false) {
    CoreEffects fx = reconnect ? core->reconnect("test") : core->start();
    auto hello = expectOne<proto::Hello>(fx);
    proto::HelloReply hr;
    hr.epoch = epoch;
    hr.pid = 7;
    hr.last_seq = seq;
    fx = core->onSpawnerMessage(proto::encode(hr, hello.second));
    auto snap = expectOne<proto::Snapshot>(fx);
    CHECK(snap.first.epoch == epoch);
    proto::SnapshotReply sr;
    sr.children = std::move(children);
    sr.last_seq = seq;
    absorb(core->onSpawnerMessage(proto::encode(sr, snap.second)));
  }

  template <class T>
  std::pair<T, std::uint64_t> expectOne(const CoreEffects& fx) {
    for (const auto& m : fx.toSpawner) {
      auto env = proto::decodeEnvelope(m.data(), m.size());
      REQUIRE(env.ok());
      if (env->type == T::kType) {
        auto b = proto::decodeBody<T>(*env);
        REQUIRE(b.ok());
        return {*b, env->id};
      }
    }
    FAIL("no " << proto::msgTypeName(T::kType) << " sent");
    return {};
  }

  // Records Spawn / StopChild / SignalChild and client messages.
  void absorb(CoreEffects fx) {
    for (const auto& m : fx.toSpawner) {
      auto env = proto::decodeEnvelope(m.data(), m.size());
      REQUIRE(env.ok());
      if (env->type == proto::MsgType::kSpawn) {
        auto s = proto::decodeBody<proto::Spawn>(*env);
        for (const auto& c : s->children) {
          spawns.push_back({c.key, c.generation});
          specs[c.key] = c;
        }
      } else if (env->type == proto::MsgType::kStopChild) {
        stops.push_back(proto::decodeBody<proto::StopChild>(*env)->key);
      }
    }
    for (auto& c : fx.toClients) clientMsgs.push_back(std::move(c));
    for (auto& l : fx.logs) logs.push_back(l);
    for (auto& f : fx.files) files.push_back(f);
    if (fx.exit) exited = true;
    (void)core->store().flush();
  }

  std::uint64_t generationOf(const std::string& key) const {
    for (auto it = spawns.rbegin(); it != spawns.rend(); ++it) {
      if (it->key == key) return it->generation;
    }
    return 0;
  }
  void started(const std::string& key, int pid) {
    proto::ChildStarted ev;
    ev.seq = ++seq;
    ev.key = key;
    ev.generation = generationOf(key);
    ev.pid = pid;
    absorb(core->onSpawnerMessage(proto::encode(ev, ev.seq)));
  }
  void exitedWith(const std::string& key, std::optional<int> code, std::optional<int> sig = std::nullopt) {
    proto::ChildExited ev;
    ev.seq = ++seq;
    ev.key = key;
    ev.generation = generationOf(key);
    ev.exit_code = code;
    ev.exit_signal = sig;
    absorb(core->onSpawnerMessage(proto::encode(ev, ev.seq)));
  }
  void advance(Duration d) {
    clock.advance(d);
    absorb(core->tick());
  }
  std::set<std::string> spawnedKeys() const {
    std::set<std::string> s;
    for (const auto& x : spawns) s.insert(x.key);
    return s;
  }
  std::string state(const std::string& instance) const {
    auto s = core->status(instance);
    REQUIRE(s);
    return std::string(proto::wireName(s->state));
  }

  // A gateway request; returns the reply envelope.
  template <class T>
  proto::Envelope request(const T& msg) {
    const std::uint64_t id = ++nextId;
    absorb(core->onClientMessage({"gw"}, proto::encode(msg, id)));
    for (auto it = clientMsgs.begin(); it != clientMsgs.end(); ++it) {
      auto env = proto::decodeEnvelope(it->bytes.data(), it->bytes.size());
      if (env.ok() && env->id == id) {
        clientMsgs.erase(it);
        return *env;
      }
    }
    FAIL("no reply to request " << id);
    return {};
  }

  TempDir dir;
  FakeClock clock;
  std::unique_ptr<MasterCore> core;
  std::vector<Spawned> spawns;
  std::map<std::string, proto::ChildSpec> specs;
  std::vector<std::string> stops;
  std::vector<ClientMessage> clientMsgs;
  std::vector<std::string> logs;
  std::vector<FileChange> files;
  std::uint64_t seq = 0;
  std::uint64_t nextId = 100;
  bool exited = false;
};

proto::ChildInfo child(const std::string& key, std::uint64_t gen, int pid) {
  proto::ChildInfo c;
  c.key = key;
  c.generation = gen;
  c.pid = pid;
  c.started_at_ms = 1'700'000'000'000;
  return c;
}

}  // namespace

TEST_CASE("boot starts priority bands in order, the next when the previous runs", "[master]") {
  Harness h;
  h.connect(1);
  CHECK(h.spawnedKeys() == std::set<std::string>{"db"});
  CHECK(h.specs["db"].argv == std::vector<std::string>{"/bin/sleep", "100"});
  CHECK(h.specs["db"].log.stdout_path == h.dir.path() + "/logs/db.stdout.log");
  h.started("db", 100);
  CHECK(h.state("db") == "running");
  CHECK(h.spawnedKeys() == std::set<std::string>{"db", "api-1", "api-2"});
  h.started("api-1", 101);
  CHECK(h.spawnedKeys().count("web") == 0);  // api-2 still starting
  h.started("api-2", 102);
  CHECK(h.spawnedKeys().count("web") == 1);
  h.started("web", 103);
  CHECK(h.state("web") == "starting");
  h.advance(1s);
  CHECK(h.state("web") == "running");
}

TEST_CASE("a failed band member does not block the next band", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  proto::SpawnFailed f;
  f.seq = ++h.seq;
  f.key = "api-2";
  f.generation = h.generationOf("api-2");
  f.stage = "exec";
  f.message = "nope";
  h.absorb(h.core->onSpawnerMessage(proto::encode(f, f.seq)));
  CHECK(h.state("api-2") == "fatal");
  CHECK(h.spawnedKeys().count("web") == 1);
}

TEST_CASE("reconciliation adopts running children without spawning", "[master]") {
  Harness h;
  h.connect(1, {child("db", 3, 500), child("api-1", 2, 501), child("api-2", 2, 502), child("web", 1, 503)});
  CHECK(h.core->continuing());
  CHECK(h.spawns.empty());
  for (const char* n : {"db", "api-1", "api-2", "web"}) CHECK(h.state(n) == "running");
  CHECK(h.core->status("db")->pid == 500);
  // The next spawn of db gets a generation the spawner has not seen.
  h.request(proto::Restart{{proto::SelectorKind::kName, "db"}, std::nullopt, false});
  CHECK(h.stops == std::vector<std::string>{"db"});
  h.exitedWith("db", std::nullopt, 15);
  // exitedWith uses the last spawn's generation: feed the adopted one explicitly.
  proto::ChildExited ev;
  ev.seq = ++h.seq;
  ev.key = "db";
  ev.generation = 3;
  ev.exit_signal = 15;
  h.absorb(h.core->onSpawnerMessage(proto::encode(ev, ev.seq)));
  REQUIRE(h.generationOf("db") == 4);
}

TEST_CASE("an exit queued while the master was down is applied once, by policy", "[master]") {
  Harness h;
  proto::ChildInfo gone = child("api-1", 2, 501);
  gone.state = proto::ChildState::kExited;
  gone.exit_code = 1;
  h.connect(2, {child("db", 1, 500), gone, child("api-2", 2, 502), child("web", 1, 503)});
  CHECK(h.state("api-1") == "backoff");  // auto_restart: restarted after restart_interval
  CHECK(h.spawns.empty());
  h.advance(2s);
  CHECK(h.spawnedKeys() == std::set<std::string>{"api-1"});
  CHECK(h.core->status("api-1")->restarts == 1);
}

TEST_CASE("a restart cut by a master kill between its stop and its start still ends with a new child", "[master]") {
  // db has no auto_restart: an exit 0 while no master runs would otherwise leave it `exited`.
  Harness a;
  a.connect(1);
  a.started("db", 100);
  a.started("api-1", 101);
  a.started("api-2", 102);
  a.advance(1s);
  a.started("web", 103);
  a.advance(1s);
  a.request(proto::Restart{{proto::SelectorKind::kName, "db"}, std::nullopt, false});
  REQUIRE(a.stops == std::vector<std::string>{"db"});
  REQUIRE(a.core->store().intent("db") == Intent::kRestarting);
  const std::uint64_t oldGen = a.generationOf("db");
  const PersistedState onDisk = a.core->store().state();

  SECTION("the stop was carried out while no master ran: the next master starts db") {
    Harness b(onDisk);
    proto::ChildInfo gone = child("db", oldGen, 100);
    gone.state = proto::ChildState::kExited;
    gone.exit_code = 0;
    b.connect(2, {gone, child("api-1", 1, 101), child("api-2", 1, 102), child("web", 1, 103)});
    CHECK(b.spawnedKeys() == std::set<std::string>{"db"});
    CHECK(b.generationOf("db") > oldGen);
    b.started("db", 200);
    CHECK(b.state("db") == "running");
    CHECK(b.core->store().intent("db") == Intent::kStarted);
    CHECK(b.core->status("db")->restarts == 0);  // a user restart, not a policy one
  }
  SECTION("the stop never reached the child: the next master stops it, then starts a new one") {
    Harness b(onDisk);
    b.connect(2, {child("db", oldGen, 100), child("api-1", 1, 101), child("api-2", 1, 102), child("web", 1, 103)});
    CHECK(b.stops == std::vector<std::string>{"db"});
    CHECK(b.spawns.empty());
    proto::ChildExited ev;  // the adopted child's exit (its generation is the old master's)
    ev.seq = ++b.seq;
    ev.key = "db";
    ev.generation = oldGen;
    ev.exit_code = 0;
    b.absorb(b.core->onSpawnerMessage(proto::encode(ev, ev.seq)));
    CHECK(b.spawnedKeys() == std::set<std::string>{"db"});
    b.started("db", 200);
    CHECK(b.state("db") == "running");
    CHECK(b.core->store().intent("db") == Intent::kStarted);
  }
  SECTION("the restart finished before the kill: nothing is restarted again") {
    a.exitedWith("db", 0);
    a.started("db", 200);
    CHECK(a.core->store().intent("db") == Intent::kStarted);
    Harness b(a.core->store().state());
    b.connect(2, {child("db", a.generationOf("db"), 200), child("api-1", 1, 101), child("api-2", 1, 102),
                  child("web", 1, 103)});
    CHECK(b.stops.empty());
    CHECK(b.spawns.empty());
    CHECK(b.state("db") == "running");
  }
}

TEST_CASE("a user stop survives a spawner reconnect", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  auto r = h.request(proto::Stop{{proto::SelectorKind::kName, "api-1"}, std::nullopt, false});
  CHECK(r.type == proto::MsgType::kActionReply);
  CHECK(h.stops == std::vector<std::string>{"api-1"});
  h.exitedWith("api-1", std::nullopt, 15);
  CHECK(h.state("api-1") == "stopped");
  CHECK(h.core->store().intent("api-1") == Intent::kStopped);
  const auto before = h.spawns.size();
  h.connect(2, {child("db", 1, 100), child("api-2", 1, 102), child("web", 1, 103)}, true);
  CHECK(h.spawns.size() == before);
  CHECK(h.state("api-1") == "stopped");
  CHECK(h.state("api-2") == "running");
}

TEST_CASE("persisted intent is read back only when the daemon is continuing", "[master]") {
  PersistedState ps;
  ps.intents["db"] = Intent::kStopped;
  ps.restarts["api-2"] = 4;
  SECTION("fresh spawner: start from the config") {
    Harness h(ps);
    h.connect(1);
    CHECK(h.spawnedKeys() == std::set<std::string>{"db"});
    CHECK(h.core->status("api-2")->restarts == 0);
  }
  SECTION("continuing: db stays stopped, counters come back") {
    Harness h(ps);
    h.connect(2, {child("api-2", 1, 502)});
    CHECK(h.spawnedKeys().count("db") == 0);
    CHECK(h.state("db") == "stopped");
    CHECK(h.core->status("api-2")->restarts == 4);
    CHECK(h.spawnedKeys().count("api-1") == 1);  // not stopped by a user: started
  }
  SECTION("continuing: a stopped instance whose exit was never acknowledged is not restarted") {
    ps.intents["api-2"] = Intent::kStopped;
    Harness h(ps);
    proto::ChildInfo gone = child("api-2", 1, 502);
    gone.state = proto::ChildState::kExited;
    gone.exit_signal = 15;
    h.connect(2, {gone});
    CHECK(h.state("api-2") == "stopped");
    CHECK(h.spawnedKeys().count("api-2") == 0);
    h.advance(5s);
    CHECK(h.spawnedKeys().count("api-2") == 0);
  }
}

TEST_CASE("a request on an instance mid-transition is queued and runs after it", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  CHECK(h.state("web") == "starting");
  h.request(proto::Stop{{proto::SelectorKind::kName, "web"}, std::nullopt, false});
  CHECK(h.state("web") == "starting");
  CHECK(h.stops.empty());
  h.started("web", 103);
  h.advance(1s);  // start_duration passes: running, then the queued stop
  CHECK(h.stops == std::vector<std::string>{"web"});
  CHECK(h.state("web") == "stopping");
}

TEST_CASE("start with wait_ms replies when settled", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  h.request(proto::Stop{{proto::SelectorKind::kName, "web"}, std::nullopt, false});
  h.exitedWith("web", std::nullopt, 15);
  const std::uint64_t id = ++h.nextId;
  h.absorb(h.core->onClientMessage({"gw"}, proto::encode(proto::Start{{proto::SelectorKind::kName, "web"}, 5000, false}, id)));
  CHECK(h.clientMsgs.empty());
  h.started("web", 104);
  CHECK(h.clientMsgs.empty());
  h.advance(1s);
  REQUIRE(h.clientMsgs.size() == 1);
  auto env = proto::decodeEnvelope(h.clientMsgs[0].bytes.data(), h.clientMsgs[0].bytes.size());
  auto ar = proto::decodeBody<proto::ActionReply>(*env);
  REQUIRE(ar.ok());
  CHECK_FALSE(ar->timed_out);
  CHECK(ar->instances.at(0).state == proto::InstanceState::kRunning);
}

TEST_CASE("status selectors", "[master]") {
  Harness h;
  h.connect(1);
  auto status = [&](proto::SelectorKind k, std::string v) {
    return h.request(proto::StatusRequest{{k, std::move(v)}, false});
  };
  auto one = proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kName, "db"));
  CHECK(one->single);
  CHECK(one->instances.size() == 1);
  auto prog = proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kName, "api"));
  CHECK_FALSE(prog->single);
  CHECK(prog->instances.size() == 2);
  CHECK(proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kBase, "api"))->instances.size() == 2);
  CHECK(proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kWildcard, "a*-?"))->instances.size() == 2);
  auto group = proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kGroup, "backend"));
  CHECK(group->instances.size() == 3);
  CHECK(group->instances[0].groups == std::vector<std::string>{"backend"});
  CHECK(proto::decodeBody<proto::StatusReply>(status(proto::SelectorKind::kAll, ""))->instances.size() == 4);
  auto missing = proto::decodeReply<proto::StatusReply>(status(proto::SelectorKind::kName, "nope"));
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::kNotFound);
  // Garbage gets an ErrorReply, not a crash.
  auto fx = h.core->onClientMessage({"gw"}, "\x93garbage");
  REQUIRE(fx.toClients.size() == 1);
}

TEST_CASE("group stop and status cover every instance of multi-instance members", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  auto gs = proto::decodeBody<proto::GroupStatusReply>(h.request(proto::GroupStatus{"backend"}));
  REQUIRE(gs.ok());
  CHECK(gs->members.at("api").size() == 2);
  CHECK(gs->members.at("db").size() == 1);
  h.request(proto::GroupStop{"backend", std::nullopt});
  // Reverse order: api (priority 5) first, db only once both api instances are down.
  CHECK(std::set<std::string>(h.stops.begin(), h.stops.end()) == std::set<std::string>{"api-1", "api-2"});
  h.exitedWith("api-1", std::nullopt, 15);
  h.exitedWith("api-2", std::nullopt, 15);
  CHECK(h.stops.back() == "db");
  auto missing = proto::decodeReply<proto::GroupStatusReply>(h.request(proto::GroupStatus{"nope"}));
  CHECK(missing.error().code == ErrorCode::kNotFound);
  h.exitedWith("db", std::nullopt, 15);
  h.request(proto::GroupStart{"backend", std::nullopt});
  CHECK(h.generationOf("db") == 2);
  CHECK(h.generationOf("api-1") == 1);  // waits for db's band
  h.started("db", 200);
  CHECK(h.generationOf("api-1") == 2);
}

TEST_CASE("reload applies the plan — an invalid config changes nothing", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  h.dir.write("programs/web.toml", "[spec]\nname = \"web\"\ncommand = \"sleep 200\"\npriority = 10\n");
  h.dir.write("programs/extra.toml", "[spec]\nname = \"extra\"\ncommand = \"sleep 1\"\npriority = 3\n");
  auto dry = proto::decodeBody<proto::ReloadReply>(h.request(proto::Reload{true}));
  REQUIRE(dry.ok());
  CHECK_FALSE(dry->applied);
  CHECK(dry->plan.size() == 2);
  CHECK(h.spawnedKeys().count("extra") == 0);
  auto applied = proto::decodeBody<proto::ReloadReply>(h.request(proto::Reload{false}));
  REQUIRE(applied.ok());
  CHECK(applied->applied);
  CHECK(h.spawnedKeys().count("extra") == 1);
  CHECK(h.stops == std::vector<std::string>{"web"});
  h.exitedWith("web", std::nullopt, 15);
  CHECK(h.specs["web"].argv.back() == "200");
  h.dir.write("programs/bad.toml", "[spec]\nname = \"bad\"\nbogus_key = 1\n");
  auto bad = proto::decodeReply<proto::ReloadReply>(h.request(proto::Reload{false}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ErrorCode::kConfigInvalid);
  CHECK(bad.error().message.find("bogus_key") != std::string::npos);
}

TEST_CASE("register writes an api program file — config programs refuse unregister", "[master]") {
  Harness h;
  h.connect(1);
  auto r = h.request(proto::Register{R"({"name":"reg","command":"sleep 5"})"});
  REQUIRE(r.type == proto::MsgType::kActionReply);
  CHECK(h.spawnedKeys().count("reg") == 1);
  auto dup = proto::decodeReply<proto::ActionReply>(h.request(proto::Register{R"({"name":"db","command":"true"})"}));
  CHECK(dup.error().code == ErrorCode::kConflict);
  auto un = proto::decodeReply<proto::ActionReply>(h.request(proto::Unregister{{proto::SelectorKind::kName, "db"}}));
  CHECK(un.error().code == ErrorCode::kConflict);
  auto weird = proto::decodeReply<proto::ActionReply>(h.request(proto::Register{R"({"name":5})"}));
  CHECK(weird.error().code == ErrorCode::kInvalidArgument);
  auto ok = h.request(proto::Unregister{{proto::SelectorKind::kName, "reg"}});
  CHECK(ok.type == proto::MsgType::kActionReply);
}

TEST_CASE("shutdown stops in reverse priority order, then exits", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  h.absorb(h.core->shutdown());
  CHECK(h.stops == std::vector<std::string>{"web"});
  h.exitedWith("web", std::nullopt, 15);
  CHECK(h.stops.size() == 3);
  h.exitedWith("api-1", std::nullopt, 15);
  h.exitedWith("api-2", std::nullopt, 15);
  CHECK(h.stops.back() == "db");
  CHECK_FALSE(h.exited);
  h.exitedWith("db", std::nullopt, 15);
  CHECK(h.exited);
}

TEST_CASE("scale adds and removes instances and is kept as intent", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  auto r = proto::decodeBody<proto::ActionReply>(h.request(proto::Scale{"api", 3}));
  REQUIRE(r.ok());
  CHECK(h.spawnedKeys().count("api-3") == 1);
  CHECK(h.core->store().state().scale.at("api") == 3);
  h.started("api-3", 103);
  h.request(proto::Scale{"api", 1});
  CHECK(std::set<std::string>(h.stops.begin(), h.stops.end()) == std::set<std::string>{"api-1", "api-2", "api-3"});
  CHECK(h.spawnedKeys().count("api") == 1);
  h.exitedWith("api-1", std::nullopt, 15);
  h.exitedWith("api-2", std::nullopt, 15);
  CHECK_FALSE(h.core->status("api-1"));
  CHECK(h.core->status("api-3"));  // still stopping
  auto missing = proto::decodeReply<proto::ActionReply>(h.request(proto::Scale{"nope", 2}));
  CHECK(missing.error().code == ErrorCode::kNotFound);
}

TEST_CASE("dry-run start only plans", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  h.request(proto::Stop{{proto::SelectorKind::kAll, ""}, std::nullopt, false});
  for (const char* n : {"web", "api-1", "api-2", "db"}) h.exitedWith(n, std::nullopt, 15);
  const auto before = h.spawns.size();
  auto r = proto::decodeBody<proto::ActionReply>(h.request(proto::Start{{proto::SelectorKind::kAll, ""}, std::nullopt, true}));
  REQUIRE(r.ok());
  CHECK(h.spawns.size() == before);
  REQUIRE(r->plan.size() == 3);
  CHECK(r->plan[0].program == "db");
  CHECK(r->plan[1].program == "api");
  CHECK(r->plan[1].instances.size() == 2);
  CHECK(r->plan[2].program == "web");
}

TEST_CASE("update restarts with the new spec and rolls back when it fails to start", "[master]") {
  Harness h;
  h.connect(1);
  h.request(proto::Register{R"({"name":"reg","command":"sleep 5"})"});
  h.started("reg", 300);
  CHECK(h.state("reg") == "running");
  const std::uint64_t id = ++h.nextId;
  h.absorb(h.core->onClientMessage({"gw"}, proto::encode(proto::Update{R"({"name":"reg","command":"nope-cmd"})", 10000}, id)));
  CHECK(h.stops == std::vector<std::string>{"reg"});
  h.exitedWith("reg", std::nullopt, 15);
  CHECK(h.specs["reg"].argv == std::vector<std::string>{"/bin/nope-cmd"});
  proto::SpawnFailed f;
  f.seq = ++h.seq;
  f.key = "reg";
  f.generation = h.generationOf("reg");
  f.stage = "exec";
  f.message = "No such file or directory";
  h.absorb(h.core->onSpawnerMessage(proto::encode(f, f.seq)));
  // Back to the old spec: spawned again with it, and the update reported as failed.
  CHECK(h.specs["reg"].argv == std::vector<std::string>{"/bin/sleep", "5"});
  CHECK(h.state("reg") == "starting");
  REQUIRE(h.clientMsgs.size() == 1);
  auto env = proto::decodeEnvelope(h.clientMsgs[0].bytes.data(), h.clientMsgs[0].bytes.size());
  auto er = proto::decodeReply<proto::ActionReply>(*env);
  REQUIRE_FALSE(er.ok());
  CHECK(er.error().code == ErrorCode::kSpawnFailed);
}

TEST_CASE("a band is one Spawn — subscribers get every state change", "[master]") {
  Harness h;
  h.connect(1);
  auto sub = h.request(proto::Subscribe{{"state."}});
  CHECK(sub.type == proto::MsgType::kOkReply);
  proto::ChildStarted ev;
  ev.seq = ++h.seq;
  ev.key = "db";
  ev.generation = h.generationOf("db");
  ev.pid = 100;
  CoreEffects fx = h.core->onSpawnerMessage(proto::encode(ev, ev.seq));
  std::size_t spawnMsgs = 0;
  for (const auto& m : fx.toSpawner) {
    auto env = proto::decodeEnvelope(m.data(), m.size());
    if (env->type != proto::MsgType::kSpawn) continue;
    ++spawnMsgs;
    CHECK(proto::decodeBody<proto::Spawn>(*env)->children.size() == 2);
  }
  CHECK(spawnMsgs == 1);
  std::vector<std::pair<std::string, proto::InstanceState>> pushed;
  for (const auto& c : fx.toClients) {
    CHECK(c.route == Route{"gw"});
    auto env = proto::decodeEnvelope(c.bytes.data(), c.bytes.size());
    REQUIRE(env->type == proto::MsgType::kStateChanged);
    auto sc = proto::decodeBody<proto::StateChanged>(*env);
    pushed.emplace_back(sc->instance, sc->to);
  }
  CHECK(pushed == std::vector<std::pair<std::string, proto::InstanceState>>{
                      {"db", proto::InstanceState::kRunning},
                      {"api-1", proto::InstanceState::kStarting},
                      {"api-2", proto::InstanceState::kStarting}});
}

TEST_CASE("pid_dir holds a pid file per running instance", "[master]") {
  TempDir pids;
  Harness h({}, "pid_dir = \"" + pids.path() + "\"\n");
  h.connect(1);
  h.started("db", 4242);
  REQUIRE_FALSE(h.files.empty());
  CHECK(h.files.back().path == pids.path() + "/db.pid");
  CHECK(h.files.back().content == std::optional<std::string>("4242\n"));
  h.request(proto::Stop{{proto::SelectorKind::kName, "db"}, std::nullopt, false});
  h.exitedWith("db", std::nullopt, 15);
  CHECK(h.files.back().path == pids.path() + "/db.pid");
  CHECK_FALSE(h.files.back().content);
}

TEST_CASE("an unanswered Hello is resent only while the spawner is connected", "[master]") {
  Harness h;
  auto countHellos = [](const CoreEffects& fx) {
    std::size_t n = 0;
    for (const auto& m : fx.toSpawner) {
      auto env = proto::decodeEnvelope(m.data(), m.size());
      n += env.ok() && env->type == proto::MsgType::kHello ? 1u : 0u;
    }
    return n;
  };
  CHECK(countHellos(h.core->start()) == 1);
  h.clock.advance(4s);
  CHECK(countHellos(h.core->tick()) == 0);  // never connected: the first Hello still waits in the socket
  CHECK(countHellos(h.core->onSpawnerConnection(true)) == 0);  // the first connect delivers it
  h.clock.advance(4s);
  CHECK(countHellos(h.core->tick()) == 1);  // connected and silent: ask again
  CHECK(countHellos(h.core->onSpawnerConnection(false)) == 0);
  CHECK(countHellos(h.core->onSpawnerConnection(true)) == 1);  // a reconnect: Hello again
}

TEST_CASE("a stop lost with a restarted spawner is asked again", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  h.started("web", 103);
  h.advance(1s);
  h.request(proto::Stop{{proto::SelectorKind::kName, "api-1"}, std::nullopt, false});
  CHECK(h.stops == std::vector<std::string>{"api-1"});
  CHECK(h.state("api-1") == "stopping");
  // The spawner died before carrying the stop out; the new one re-adopted api-1, still running.
  h.connect(1, {child("db", 1, 100), child("api-1", 1, 101), child("api-2", 1, 102), child("web", 1, 103)}, true);
  CHECK(h.stops == std::vector<std::string>{"api-1", "api-1"});
  CHECK(h.state("api-1") == "stopping");
  h.exitedWith("api-1", std::nullopt, 15);
  CHECK(h.state("api-1") == "stopped");
  // A spawner that is already stopping it is not asked twice.
  h.request(proto::Stop{{proto::SelectorKind::kName, "api-2"}, std::nullopt, false});
  auto stopping = child("api-2", 1, 102);
  stopping.state = proto::ChildState::kStopping;
  h.connect(2, {child("db", 1, 100), stopping, child("web", 1, 103)}, true);
  CHECK(h.stops == std::vector<std::string>{"api-1", "api-1", "api-2"});
}

TEST_CASE("a spawn lost with a restarted spawner is sent again with the same generation", "[master]") {
  Harness h;
  h.connect(1);
  h.started("db", 100);
  h.started("api-1", 101);
  h.started("api-2", 102);
  REQUIRE(h.spawnedKeys().count("web") == 1);
  const auto gen = h.generationOf("web");
  const auto before = h.spawns.size();
  // web's Spawn died with the spawner: the new one holds everything but web.
  h.connect(1, {child("db", 1, 100), child("api-1", 1, 101), child("api-2", 1, 102)}, true);
  REQUIRE(h.spawns.size() == before + 1);
  CHECK(h.spawns.back().key == "web");
  CHECK(h.spawns.back().generation == gen);
  CHECK(h.state("web") == "starting");
  h.started("web", 103);
  h.advance(1s);
  CHECK(h.state("web") == "running");
}

TEST_CASE("a restarted master never reuses a generation of a child the spawner no longer holds", "[master]") {
  TempDir keep;
  const std::string statePath = keep.path() + "/master.state";
  std::uint64_t webGen = 0;
  {
    Harness h;
    h.core->setStore(StateStore(statePath));
    h.connect(1);
    h.started("db", 100);
    h.started("api-1", 101);
    h.started("api-2", 102);
    h.started("web", 103);
    h.advance(1s);
    webGen = h.generationOf("web");
    REQUIRE(h.core->store().state().generationFloor > webGen);
  }
  // web ended and the spawner forgot it; the others still run. The new master starts web again
  // with a generation above every one sent before (the spawner would call an old one a duplicate).
  StateStore store(statePath);
  auto loaded = store.load();
  Harness h(loaded.state);
  h.core->setStore(std::move(store));
  h.connect(2, {child("db", 1, 100), child("api-1", 1, 101), child("api-2", 1, 102)});
  REQUIRE(h.spawnedKeys() == std::set<std::string>{"web"});
  CHECK(h.generationOf("web") > webGen);
  CHECK(h.generationOf("web") >= loaded.state.generationFloor);
}

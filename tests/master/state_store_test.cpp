// Tests of master.state: round trip, batching (one write for many changes), corrupt and missing files.
#include "master/state_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace provisr;
using namespace provisr::master;
namespace fs = std::filesystem;

namespace {

// A per-test directory, removed afterwards.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "provisr-state-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

PersistedState sample() {
  PersistedState s;
  s.intents["web-1"] = Intent::kStopped;
  s.intents["api"] = Intent::kStarted;
  s.scale["worker"] = 4;
  s.restarts["web-1"] = 12;
  s.restarts["db"] = 18446744073709551615ull;
  return s;
}

}  // namespace

TEST_CASE("encode/decode round trip, byte-exact format", "[master][state]") {
  const auto text = encodeState(sample());
  const auto body =
      "provisr-master-state 1\n"
      "intent api started\n"
      "intent web-1 stopped\n"
      "scale worker 4\n"
      "restarts db 18446744073709551615\n"
      "restarts web-1 12\n";
  CHECK(text.rfind(body, 0) == 0);
  CHECK_THAT(text, Catch::Matches("[\\s\\S]*\nend 5 [0-9a-f]{16}\n"));
  auto back = decodeState(text);
  REQUIRE(back.ok());
  CHECK(*back == sample());

  auto empty = decodeState(encodeState({}));
  REQUIRE(empty.ok());
  CHECK(empty->empty());
}

TEST_CASE("a restart in progress is kept as its own intent", "[master][state]") {
  PersistedState s;
  s.intents["db"] = Intent::kRestarting;
  s.intents["web"] = Intent::kStarted;
  const auto text = encodeState(s);
  CHECK(text.find("intent db restarting\n") != std::string::npos);
  auto back = decodeState(text);
  REQUIRE(back.ok());
  CHECK(*back == s);
}

TEST_CASE("decode refuses every kind of damage", "[master][state]") {
  const std::string good = encodeState(sample());
  std::vector<std::pair<std::string, std::string>> bad{
      {"", "empty file"},
      {"garbage\n", "not a provisr master state file"},
      {"provisr-master-state 2\nend 0 0000000000000000\n", "another version"},
      {good.substr(0, good.size() - 1), "no newline"},
      {good.substr(0, good.find("end ")), "no trailer"},
      {good.substr(0, good.find("scale")) + good.substr(good.find("restarts")), "record count"},
      {good + "intent x started\n", "data after the trailer"},
  };
  std::string flipped = good;
  flipped[flipped.find("12")] = '9';  // same length, same count: only the checksum sees it
  bad.emplace_back(flipped, "checksum");
  std::string bad_intent = good;
  bad_intent.replace(bad_intent.find("stopped"), 7, "paused!");
  bad.emplace_back(bad_intent, "unknown intent");
  for (const auto& [text, why] : bad) {
    CAPTURE(text);
    auto r = decodeState(text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ErrorCode::kMalformed);
    CHECK_THAT(r.error().message, Catch::Contains(why));
  }
  CHECK_THAT(decodeState("provisr-master-state 1\nscale w -1\nend 1 0000000000000000\n").error().message,
             Catch::Contains("line 2: bad instance count"));
  CHECK_THAT(decodeState("provisr-master-state 1\nfrob w 1\nend 1 0000000000000000\n").error().message,
             Catch::Contains("line 2: unknown record 'frob'"));
  CHECK_THAT(decodeState("provisr-master-state 1\nintent a/b stopped\n").error().message,
             Catch::Contains("line 2: malformed record"));
}

TEST_CASE("store round trip through the file", "[master][state]") {
  TempDir dir;
  const auto path = dir.file("master.state");
  {
    StateStore store(path);
    CHECK(store.setIntent("web-1", Intent::kStopped).ok());
    CHECK(store.setIntent("api", Intent::kStarted).ok());
    CHECK(store.setScale("worker", 4).ok());
    CHECK(store.setRestarts("web-1", 12).ok());
    CHECK(store.setRestarts("db", 18446744073709551615ull).ok());
    REQUIRE(store.flush().ok());
  }
  StateStore again(path);
  const auto loaded = again.load();
  CHECK_FALSE(loaded.problem.has_value());
  CHECK(loaded.state == sample());
  CHECK(again.state() == sample());
  CHECK_FALSE(again.dirty());
  CHECK(again.intent("web-1") == Intent::kStopped);
  CHECK_FALSE(again.intent("nobody").has_value());
  struct stat sb {};
  REQUIRE(::stat(path.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
  CHECK_FALSE(fs::exists(path + ".tmp"));
}

TEST_CASE("changes are batched: one write per flush, none when clean", "[master][state]") {
  TempDir dir;
  const auto path = dir.file("master.state");
  StateStore store(path);
  CHECK(store.flush().ok());
  CHECK(store.writes() == 0);
  CHECK_FALSE(fs::exists(path));

  for (int i = 0; i < 500; ++i) {
    REQUIRE(store.setIntent("w-" + std::to_string(i), Intent::kStarted).ok());
    REQUIRE(store.setRestarts("w-" + std::to_string(i), static_cast<std::uint64_t>(i)).ok());
  }
  CHECK(store.dirty());
  CHECK_FALSE(fs::exists(path));  // nothing touches the disk before the flush
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 1);
  CHECK_FALSE(store.dirty());
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 1);

  // Setting what is already held is not a change.
  REQUIRE(store.setIntent("w-1", Intent::kStarted).ok());
  REQUIRE(store.setRestarts("w-1", 1).ok());
  store.clearScale("never-set");
  CHECK_FALSE(store.dirty());

  store.forgetInstance("w-1");
  REQUIRE(store.setScale("w", 3).ok());
  REQUIRE(store.setIntent("w-2", Intent::kStopped).ok());
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 2);
  StateStore reread(path);
  const auto loaded = reread.load();
  CHECK(loaded.state.intents.size() == 499);
  CHECK(loaded.state.intents.at("w-2") == Intent::kStopped);
  CHECK(loaded.state.scale.at("w") == 3);
  CHECK_FALSE(loaded.state.restarts.count("w-1"));
}

TEST_CASE("a missing file is a first start — a corrupt one starts from the config with a reason", "[master][state]") {
  TempDir dir;
  const auto path = dir.file("master.state");
  StateStore store(path);
  auto loaded = store.load();
  CHECK_FALSE(loaded.problem.has_value());
  CHECK(loaded.state.empty());

  const std::string good = encodeState(sample());
  spit(path, good.substr(0, good.size() / 2));  // a torn write by something else
  loaded = store.load();
  REQUIRE(loaded.problem.has_value());
  CHECK(loaded.problem->code == ErrorCode::kMalformed);
  CHECK_THAT(loaded.problem->message, Catch::Contains(path));
  CHECK_THAT(loaded.problem->message, Catch::Contains("starting from the config"));
  CHECK(loaded.state.empty());
  CHECK(store.state().empty());

  // The next flush replaces the corrupt file with a good one.
  REQUIRE(store.setIntent("web", Intent::kStopped).ok());
  REQUIRE(store.flush().ok());
  StateStore reread(path);
  CHECK_FALSE(reread.load().problem.has_value());
  CHECK(reread.intent("web") == Intent::kStopped);
}

TEST_CASE("a load after changes discards them and holds the file's state", "[master][state]") {
  TempDir dir;
  const auto path = dir.file("master.state");
  spit(path, encodeState(sample()));
  StateStore store(path);
  REQUIRE(store.setIntent("zzz", Intent::kStopped).ok());
  CHECK(store.load().state == sample());
  CHECK_FALSE(store.dirty());
}

TEST_CASE("names that the format cannot hold are refused", "[master][state]") {
  TempDir dir;
  StateStore store(dir.file("master.state"));
  CHECK(store.setIntent("has space", Intent::kStopped).error().code == ErrorCode::kInvalidArgument);
  CHECK_FALSE(store.setIntent("", Intent::kStopped).ok());
  CHECK_FALSE(store.setScale("new\nline", 1).ok());
  CHECK_FALSE(store.setScale("ok", -1).ok());
  CHECK_FALSE(store.setRestarts(std::string(129, 'a'), 1).ok());
  CHECK_FALSE(store.dirty());
}

TEST_CASE("a failed write keeps the store dirty and leaves no temp file", "[master][state]") {
  TempDir dir;
  const auto path = dir.file("missing-dir/master.state");
  StateStore store(path);
  REQUIRE(store.setIntent("web", Intent::kStopped).ok());
  auto st = store.flush();
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.error().message, Catch::Contains("cannot create"));
  CHECK(store.dirty());
  CHECK(store.writes() == 0);
  fs::create_directory(dir.path / "missing-dir");
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 1);
  CHECK(slurp(path) == encodeState(store.state()));
}

TEST_CASE("the generation floor round-trips and only rises", "[master][state]") {
  PersistedState s;
  s.generationFloor = 2048;
  const auto text = encodeState(s);
  CHECK(text.find("\ngenerations 2048\n") != std::string::npos);
  auto back = decodeState(text);
  REQUIRE(back.ok());
  CHECK(back->generationFloor == 2048);
  CHECK_FALSE(decodeState("provisr-master-state 1\ngenerations x\nend 1 0000000000000000\n").ok());

  TempDir dir;
  StateStore store(dir.file("master.state"));
  store.raiseGenerationFloor(10);
  CHECK(store.dirty());
  REQUIRE(store.flush().ok());
  store.raiseGenerationFloor(5);
  CHECK_FALSE(store.dirty());
  StateStore again(dir.file("master.state"));
  CHECK(again.load().state.generationFloor == 10);
}

TEST_CASE("restart counters alone wait for flushCounters — any other write carries them", "[master][state]") {
  TempDir dir;
  const std::string path = (dir.path / "master.state").string();
  StateStore store(path);
  REQUIRE(store.setRestarts("w-1", 3).ok());
  CHECK_FALSE(store.dirty());
  CHECK(store.countersDirty());
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 0);  // a restart does not pay for a write of its own
  REQUIRE(store.flushCounters().ok());
  CHECK(store.writes() == 1);
  CHECK_FALSE(store.countersDirty());
  CHECK(StateStore(path).load().state.restarts.at("w-1") == 3);

  REQUIRE(store.setRestarts("w-1", 4).ok());
  REQUIRE(store.setIntent("w-1", Intent::kStopped).ok());
  REQUIRE(store.flush().ok());
  CHECK(store.writes() == 2);
  CHECK_FALSE(store.countersDirty());
  CHECK(StateStore(path).load().state.restarts.at("w-1") == 4);
  REQUIRE(store.flushCounters().ok());
  CHECK(store.writes() == 2);
}

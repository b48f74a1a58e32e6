// Issue 9, finite resources: the spawner out of file descriptors. A start fails with SpawnFailed
// ("Too many open files") on that instance, which backs off and retries like any failed start;
// the daemon keeps answering; once the spawner has fds again the instance starts.
#include <catch2/catch.hpp>

#include <sys/resource.h>

#include <chrono>
#include <filesystem>

#include "tests/api/trio.hpp"
#include "tests/limits/probe.hpp"

using namespace provisr::test;
using namespace provisr::test::limits;
using namespace std::chrono_literals;

namespace {

// The lowest fd number `pid` has free: the next open() there gets it.
int lowestFreeFd(pid_t pid) {
  std::set<int> used;
  for (const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    used.insert(std::atoi(e.path().filename().c_str()));
  }
  int fd = 0;
  while (used.count(fd)) ++fd;
  return fd;
}

int prlimit(pid_t pid, const rlimit* set, rlimit* old) {
  return static_cast<int>(::syscall(SYS_prlimit64, pid, RLIMIT_NOFILE, set, old));
}

// Puts the spawner's soft RLIMIT_NOFILE back, whatever happens in the test.
class RestoreNofile {
 public:
  RestoreNofile(pid_t pid, rlimit old) : pid_(pid), old_(old) {}
  RestoreNofile(const RestoreNofile&) = delete;
  RestoreNofile& operator=(const RestoreNofile&) = delete;
  ~RestoreNofile() { restore(); }
  void restore() {
    if (pid_ > 0) prlimit(pid_, &old_, nullptr);
    pid_ = 0;
  }

 private:
  pid_t pid_;
  rlimit old_;
};

}  // namespace

TEST_CASE("limits: the spawner out of fds - the start fails with EMFILE, backs off, and succeeds once fds are free", "[limits][fds]") {
  api::TrioOptions o;
  o.zmq = false;
  o.extra = "[[processes]]\ntype = \"process\"\nspec.name = \"victim\"\nspec.args = [\"" + api::helper("sleeper") +
            "\"]\nspec.retry_count = 1000\nspec.retry_interval = \"200ms\"\n"
            "[[processes]]\ntype = \"process\"\nspec.name = \"bystander\"\nspec.args = [\"" + api::helper("sleeper") + "\"]\n";
  api::Trio t(o);
  REQUIRE(t.ready());
  REQUIRE(t.waitState("victim", "running"));
  REQUIRE(t.waitState("bystander", "running"));
  const auto bystander = t.pid("bystander");
  REQUIRE(t.post("/stop?name=victim&wait=10s")->status == 200);
  REQUIRE(t.waitState("victim", "stopped"));
  const pid_t spawner = spawnerPid(t.run_dir);
  REQUIRE(spawner > 0);

  // No fd left: the soft limit at the lowest free fd number (the hard limit stays).
  rlimit old{};
  REQUIRE(prlimit(spawner, nullptr, &old) == 0);
  // The stopped child's pipes are closed once its exit is acknowledged: wait for a stable count.
  int lowest = lowestFreeFd(spawner);
  waitFor(
      [&] {
        int now = lowestFreeFd(spawner);
        bool stable = now == lowest;
        lowest = now;
        return stable;
      },
      2s);
  RestoreNofile restore(spawner, old);
  rlimit tight{static_cast<rlim_t>(lowest), old.rlim_max};
  REQUIRE(prlimit(spawner, &tight, nullptr) == 0);

  REQUIRE(t.post("/start?name=victim")->status / 100 == 2);
  std::string error;
  REQUIRE(waitFor(
      [&] {
        auto j = api::body(t.get("/status?name=victim"));
        if (!j.is_object() || !j["last_start_error"].is_string()) return false;
        error = j["last_start_error"].get<std::string>();
        return true;
      },
      15s));
  INFO("last_start_error: " << error);
  CHECK(error.find("Too many open files") != std::string::npos);
  // It backs off and retries (each retry fails the same way) instead of running or going fatal.
  const std::string during = t.state("victim");
  CHECK((during == "backoff" || during == "starting"));
  // The daemon answers and the other program is untouched.
  CHECK(t.state("bystander") == "running");
  CHECK(t.pid("bystander") == bystander);
  auto all = t.get("/status?wildcard=*");
  REQUIRE(all);
  CHECK(all->status == 200);

  // fds again: the next retry starts it.
  const auto freed = std::chrono::steady_clock::now();
  restore.restore();
  REQUIRE(t.waitState("victim", "running", 15s));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - freed).count();
  CHECK(t.pid("victim"));
  WARN("fd exhaustion: spawner soft RLIMIT_NOFILE " << lowest << " (its lowest free fd); start error '" << error
                                                  << "'; state while short: " << during << "; running " << ms
                                                  << " ms after the limit was raised");
}

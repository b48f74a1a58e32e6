// Issue 9, finite resources: a full disk under a child's log. The child is not blocked and does not
// die, the spawner counts the bytes it had to drop (status log_dropped_bytes and /metrics), and the
// log grows again once space returns. The disk is a 1 MiB tmpfs the test mounts (and unmounts).
#include <catch2/catch.hpp>

#include <sys/mount.h>

#include <chrono>
#include <filesystem>
#include <regex>

#include "tests/api/trio.hpp"
#include "tests/limits/probe.hpp"

using namespace provisr::test;
using namespace provisr::test::limits;
using namespace std::chrono_literals;

namespace {

// A tmpfs of `size` at `dir`, detached when the test ends (whatever holds files on it).
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, const std::string& size) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    ok_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, ("size=" + size).c_str()) == 0;
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  ~TmpfsMount() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool ok() const { return ok_; }

 private:
  std::string dir_;
  bool ok_ = false;
};

long heartbeat(const std::string& path) { return std::atol(slurp(path).c_str()); }

// The largest N of the "line N" lines in `text`; -1 when none.
long lastLine(const std::string& text) {
  long n = -1;
  static const std::regex re("line ([0-9]+) ");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
    n = std::max(n, std::atol((*it)[1].str().c_str()));
  }
  return n;
}

std::uint64_t droppedInStatus(const api::Trio& t, const std::string& name) {
  auto j = api::body(t.get("/status?name=" + name));
  return j.is_object() && j["log_dropped_bytes"].is_number() ? j["log_dropped_bytes"].get<std::uint64_t>() : 0;
}

// provisr_log_dropped_bytes_total of `name` in the Prometheus text; 0 when absent.
std::uint64_t droppedInMetrics(const api::Trio& t, const std::string& name) {
  httplib::Client c("127.0.0.1", t.metrics_port);
  c.set_read_timeout(10s);
  c.set_default_headers({{"Authorization", std::string("Bearer ") + api::kToken}});
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return 0;
  std::regex re("provisr_log_dropped_bytes_total\\{[^}]*\"" + name + "\"[^}]*\\} ([0-9]+)");
  std::smatch m;
  return std::regex_search(r->body, m, re) ? std::stoull(m[1].str()) : 0;
}

}  // namespace

TEST_CASE("limits: disk full under a child's log - not blocked, bytes counted, logging resumes", "[limits][disk]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot mount a tmpfs");
    return;
  }
  TempDir outer;
  const std::string disk = outer.str() + "/disk";
  TmpfsMount mount(disk, "1m");
  REQUIRE(mount.ok());
  const std::string beat = outer.str() + "/heartbeat";
  // Ballast: most of the 1 MiB, so the log fills the rest in well under a second.
  const std::string ballast = disk + "/ballast";
  {
    std::ofstream b(ballast);
    b << std::string(700 * 1024, 'b');
    REQUIRE(b.good());
  }
  api::TrioOptions o;
  o.zmq = false;
  o.extra = "[[processes]]\ntype = \"process\"\nspec.name = \"filler\"\nspec.args = [\"" + api::helper("heartlogger") +
            "\", \"" + beat + "\", \"5\", \"200\", \"10\"]\nspec.log.stdout = \"" + disk +
            "/filler.out\"\nspec.log.stderr = \"" + disk + "/filler.err\"\n";
  api::Trio t(o);
  REQUIRE(t.ready());
  REQUIRE(t.waitState("filler", "running"));
  const auto pid = t.pid("filler");
  REQUIRE(pid);

  // The disk fills; the spawner drops instead of blocking, and counts it.
  REQUIRE(waitFor([&] { return droppedInStatus(t, "filler") > 0; }, 20s));
  // The child is not blocked: its heartbeat moves on while the disk stays full.
  const long b0 = heartbeat(beat);
  CHECK(waitFor([&] { return heartbeat(beat) > b0 + 500; }, 10s));
  CHECK(t.state("filler") == "running");
  CHECK(t.pid("filler") == pid);
  CHECK(waitFor([&] { return droppedInMetrics(t, "filler") > 0; }, 10s));
  const std::uint64_t droppedFull = droppedInStatus(t, "filler");
  const long logged = lastLine(slurp(disk + "/filler.out"));

  // Space comes back: new lines reach the file again.
  std::filesystem::remove(ballast);
  const long after = heartbeat(beat);
  CHECK(waitFor([&] { return lastLine(slurp(disk + "/filler.out")) > after; }, 10s));
  CHECK(t.state("filler") == "running");
  CHECK(t.pid("filler") == pid);
  WARN("disk full: " << droppedFull << " bytes dropped while full (status), last line on disk before freeing "
                     << logged << ", heartbeat at " << after << " when freed; the log took lines past it afterwards");
  REQUIRE(t.post("/stop?name=filler&wait=10s")->status == 200);
}

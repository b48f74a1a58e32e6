// Log throughput benchmark: a child (`cat FILE`) writes through a pipe that LogStream moves into a
// file, in splice mode, shared-file (whole lines) mode or timestamps mode. Prints MB/s.
#include <poll.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "spawner/launcher.hpp"
#include "spawner/log_writer.hpp"
#include "spawner/reaper.hpp"

namespace ps = provisr::spawner;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: log_bench splice|shared|timestamps INPUT OUTPUT_DIR\n");
    return 2;
  }
  std::string mode = argv[1];
  std::string input = argv[2];
  std::string outDir = argv[3];
  struct stat st {};
  if (::stat(input.c_str(), &st) != 0) return 2;
  provisr::SystemClock clock;
  ps::LogFileSet files(clock, nullptr);
  auto scratch = std::move(ps::LogScratch::create().value());
  auto file = files.get(outDir + "/bench.log", {});
  if (!file.ok()) return 2;
  int writers = mode == "shared" ? 2 : 1;

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<ps::LogStream>> streams;
  std::vector<std::unique_ptr<ps::ManagedChild>> kids;
  auto ring = std::make_shared<ps::LogRing>();
  for (int i = 0; i < writers; ++i) {
    ps::LaunchRequest req;
    req.argv = {"cat", input};
    req.env = {"PATH=/usr/bin:/bin"};
    auto r = ps::launch(req);
    if (!r.ok()) return 3;
    kids.push_back(std::make_unique<ps::ManagedChild>(r->pid, std::move(r->pidfd), r->startTicks));
    streams.push_back(std::make_unique<ps::LogStream>(std::move(r->stdoutRead), *file, *scratch, clock,
                                                      ps::LogStreamKind::kStdout, mode == "timestamps", ring));
  }
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (std::size_t i = 0; i < streams.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, streams[i]->fd(), &ev);
  }
  std::size_t open = streams.size();
  std::vector<bool> done(streams.size(), false);
  while (open > 0) {
    epoll_event evs[8];
    int n = ::epoll_wait(ep, evs, 8, 1000);
    for (int i = 0; i < n; ++i) {
      auto idx = evs[i].data.u64;
      ps::PumpResult r;
      do {
        r = streams[idx]->pump();
      } while (r == ps::PumpResult::kMore);
      if (r == ps::PumpResult::kEof && !done[idx]) {
        done[idx] = true;
        --open;
      }
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  for (auto& k : kids) {
    while (true) {
      auto e = k->peekExit();
      if (e.ok() && e->has_value()) break;
      ::poll(nullptr, 0, 1);
    }
    (void)k->release();
  }
  double secs = std::chrono::duration<double>(t1 - t0).count();
  double mb = static_cast<double>(st.st_size) * writers / 1e6;
  std::uint64_t bytes = 0;
  for (auto& s : streams) bytes += s->counters().bytes;
  std::printf("%-11s %8.1f MB in %6.3f s = %8.1f MB/s  (file bytes counted %llu)\n", mode.c_str(), mb, secs, mb / secs,
              static_cast<unsigned long long>(bytes));
  return 0;
}

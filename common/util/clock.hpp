// Clock: the one source of time for the pure cores, so tests drive them with a fake clock.
#pragma once

#include <chrono>

namespace provisr {

using Duration = std::chrono::nanoseconds;
using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime now() const = 0;      // for timers and durations
  virtual WallTime wallNow() const = 0;  // for timestamps users see
};

class SystemClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return std::chrono::system_clock::now(); }
};

// Moves only when told to; wall time advances in step with monotonic time.
class FakeClock final : public Clock {
 public:
  FakeClock() : mono_(std::chrono::hours(1)), wall_(std::chrono::seconds(1'800'000'000)) {}
  MonoTime now() const override { return mono_; }
  WallTime wallNow() const override { return wall_; }
  void advance(Duration d) {
    mono_ += d;
    wall_ += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

 private:
  MonoTime mono_;
  WallTime wall_;
};

}  // namespace provisr

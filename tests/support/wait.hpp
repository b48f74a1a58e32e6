// Test support: waiting for a condition with a deadline — the only way tests wait.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

namespace provisr::test {

// Polls `cond` until it holds or `deadline` passes; the pause between checks grows from 1 ms to
// 20 ms. Returns whether it held.
inline bool waitFor(const std::function<bool()>& cond,
                    std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(pause);  // between checks of a deadline-bounded wait
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

}  // namespace provisr::test

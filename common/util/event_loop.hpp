// EventLoop: the one loop shape of every component — single-threaded epoll over plain fds, a
// signalfd, edge-triggered sources such as ZeroMQ sockets, and a timer min-heap on an injected
// Clock; it sleeps until the next deadline and never wakes when idle.
#pragma once

#include <signal.h>
#include <sys/signalfd.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "common/util/clock.hpp"
#include "common/util/fd.hpp"
#include "common/util/result.hpp"

namespace provisr {

class EventLoop {
 public:
  // Readiness bits passed to callbacks and used as interest masks.
  static constexpr std::uint32_t kReadable = 1u << 0;
  static constexpr std::uint32_t kWritable = 1u << 1;
  static constexpr std::uint32_t kError = 1u << 2;  // hang-up or error on the fd (delivered unasked)

  using TimerId = std::uint64_t;
  using FdCallback = std::function<void(std::uint32_t events)>;
  using TimerCallback = std::function<void()>;
  using SignalCallback = std::function<void(const signalfd_siginfo& info)>;
  // For an edge-triggered source: the readiness it has *now* (kReadable/kWritable bits), e.g.
  // a ZeroMQ socket's ZMQ_EVENTS. Must be cheap and must not block.
  using PendingFn = std::function<std::uint32_t()>;

  struct Stats {
    std::uint64_t turns = 0;      // iterations of run()/runOnce()
    std::uint64_t wakeups = 0;    // epoll_wait calls that returned with events or a timeout
    std::uint64_t callbacks = 0;  // callbacks invoked (fd, edge, signal, timer)
  };

  // Fails only when the kernel refuses an epoll or eventfd (fd or memory exhaustion).
  static Result<std::unique_ptr<EventLoop>> create(Clock& clock);

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // ---- plain fds (level-triggered) --------------------------------------------------------
  // Calls `cb` while `fd` is ready for `interest`. The loop does not own or close the fd; remove
  // it before closing it. A callback may add or remove any watch, including its own.
  Status addFd(int fd, std::uint32_t interest, FdCallback cb);
  Status modifyFd(int fd, std::uint32_t interest);
  void removeFd(int fd);

  // ---- edge-triggered sources (ZeroMQ sockets) --------------------------------------------
  // `fd` only signals that `pending` may have changed (ZMQ_FD). The loop calls `pending` after
  // every wake of `fd` and again on every turn before it sleeps, and calls `cb` with the ready
  // bits while any is set — so a send or recv on the socket anywhere (which can consume the
  // edge) never leaves it stuck. `cb` need not drain the source: it is called again next turn.
  // Remove with removeFd.
  Status addEdgeSource(int fd, std::uint32_t interest, PendingFn pending, FdCallback cb);
  // Changes what an edge source is watched for (e.g. add kWritable while output is queued).
  Status modifyEdgeSource(int fd, std::uint32_t interest);

  // ---- signals ----------------------------------------------------------------------------
  // Blocks `signo` in the calling thread (do it before creating any thread so every thread
  // inherits the mask) and delivers it through the loop's signalfd. Replaces an earlier
  // callback for the same signal. The mask is left blocked when the loop is destroyed: a
  // late SIGTERM must not kill a process that is shutting down on purpose.
  Status onSignal(int signo, SignalCallback cb);
  void ignoreSignal(int signo);  // stops delivering it (it stays blocked)

  // ---- timers -----------------------------------------------------------------------------
  // One-shot timers on the injected clock; same-deadline timers fire in the order added. Ids
  // are never reused. A timer added from a callback fires on a later turn, never the same one.
  TimerId addTimer(Duration delay, TimerCallback cb);
  TimerId addTimerAt(MonoTime deadline, TimerCallback cb);
  bool cancelTimer(TimerId id);  // false if it already fired or was cancelled
  std::optional<MonoTime> nextDeadline() const;
  std::size_t pendingTimers() const { return timers_.size(); }

  // ---- running ----------------------------------------------------------------------------
  // Runs turns until stop(). Each turn: fire due timers, poll edge sources, then — only if
  // neither did anything — sleep in epoll until the next deadline (forever with no timer), and
  // dispatch what woke it.
  void run();
  // One turn, sleeping at most `maxWait` (zero: do not sleep; nullopt: as run() would).
  // Returns the number of callbacks invoked. Tests with a FakeClock drive the loop this way.
  std::size_t runOnce(std::optional<Duration> maxWait = Duration::zero());
  // Leaves run() after the current callback; safe from any thread and from a signal handler.
  void stop();
  bool stopped() const { return stop_.load(); }

  const Stats& stats() const { return stats_; }
  Clock& clock() const { return clock_; }

 private:
  struct Watch {
    int fd = -1;
    std::uint32_t interest = 0;
    FdCallback cb;
    PendingFn pending;  // set for edge sources
  };
  struct TimerEntry {
    MonoTime deadline;
    TimerId id;
    bool operator>(const TimerEntry& o) const { return deadline != o.deadline ? deadline > o.deadline : id > o.id; }
  };

  EventLoop(Clock& clock, UniqueFd epoll, UniqueFd wake);
  Status ctl(int op, int fd, std::uint32_t interest, std::uint64_t key);
  std::size_t fireDueTimers();
  std::size_t pollEdgeSources(bool& stillPending);
  std::size_t drainSignals();
  void compactTimers();

  Clock& clock_;
  UniqueFd epoll_;
  UniqueFd wake_;    // eventfd: stop() from elsewhere
  UniqueFd signal_;  // signalfd, created on the first onSignal
  sigset_t signalMask_{};
  std::unordered_map<int, SignalCallback> signalCallbacks_;

  // Watches by key; the key (not the fd) rides in epoll data, so an event for a watch removed
  // earlier in the same batch is never delivered to a new watch that reused the fd number.
  std::unordered_map<std::uint64_t, std::shared_ptr<Watch>> watches_;
  std::unordered_map<int, std::uint64_t> keyByFd_;
  std::vector<std::uint64_t> edgeKeys_;  // edge sources, in the order added
  std::uint64_t nextKey_ = 16;           // keys below are reserved (wake, signal)

  struct TimerSlot {
    MonoTime deadline;
    TimerCallback cb;
  };
  // Lazy deletion: a heap entry whose id is not in timers_ was cancelled; the heap is rebuilt
  // when such entries outnumber the live ones.
  mutable std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> heap_;
  std::unordered_map<TimerId, TimerSlot> timers_;
  TimerId nextTimer_ = 1;

  std::atomic<bool> stop_{false};
  Stats stats_;
};

}  // namespace provisr

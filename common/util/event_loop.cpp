// EventLoop: epoll + signalfd + edge-triggered (ZeroMQ) sources + a timer min-heap.
#include "common/util/event_loop.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace provisr {
namespace {

constexpr std::uint64_t kWakeKey = 1;
constexpr std::uint64_t kSignalKey = 2;

Error sysError(const char* what) { return makeError(ErrorCode::kInternal, std::string(what) + ": " + std::strerror(errno)); }

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "provisr: event loop: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

std::uint32_t toEpoll(std::uint32_t interest) {
  std::uint32_t ev = 0;
  if (interest & EventLoop::kReadable) ev |= EPOLLIN;
  if (interest & EventLoop::kWritable) ev |= EPOLLOUT;
  return ev;
}

std::uint32_t fromEpoll(std::uint32_t ev) {
  std::uint32_t bits = 0;
  if (ev & EPOLLIN) bits |= EventLoop::kReadable;
  if (ev & EPOLLOUT) bits |= EventLoop::kWritable;
  if (ev & (EPOLLERR | EPOLLHUP)) bits |= EventLoop::kError;
  return bits;
}

}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::create(Clock& clock) {
  UniqueFd ep(::epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return sysError("epoll_create1");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return sysError("eventfd");
  std::unique_ptr<EventLoop> loop(new EventLoop(clock, std::move(ep), std::move(wake)));
  if (auto st = loop->ctl(EPOLL_CTL_ADD, loop->wake_.get(), kReadable, kWakeKey); !st) return st.error();
  return loop;
}

EventLoop::EventLoop(Clock& clock, UniqueFd epoll, UniqueFd wake)
    : clock_(clock), epoll_(std::move(epoll)), wake_(std::move(wake)) {
  sigemptyset(&signalMask_);
}

EventLoop::~EventLoop() = default;

Status EventLoop::ctl(int op, int fd, std::uint32_t interest, std::uint64_t key) {
  epoll_event ev{};
  ev.events = toEpoll(interest);
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), op, fd, &ev) != 0) {
    return makeError(errno == EBADF || errno == EPERM || errno == EEXIST ? ErrorCode::kInvalidArgument
                                                                          : ErrorCode::kInternal,
                     "epoll_ctl fd " + std::to_string(fd) + ": " + std::strerror(errno));
  }
  return {};
}

// ---- fds ------------------------------------------------------------------------------------

Status EventLoop::addFd(int fd, std::uint32_t interest, FdCallback cb) {
  if (keyByFd_.count(fd) != 0) return makeError(ErrorCode::kInvalidArgument, "fd " + std::to_string(fd) + " is already watched");
  const std::uint64_t key = nextKey_++;
  if (auto st = ctl(EPOLL_CTL_ADD, fd, interest, key); !st) return st;
  watches_[key] = std::make_shared<Watch>(Watch{fd, interest, std::move(cb), nullptr});
  keyByFd_[fd] = key;
  return {};
}

Status EventLoop::modifyFd(int fd, std::uint32_t interest) {
  auto it = keyByFd_.find(fd);
  if (it == keyByFd_.end()) return makeError(ErrorCode::kNotFound, "fd " + std::to_string(fd) + " is not watched");
  auto& w = watches_.at(it->second);
  if (w->pending) return modifyEdgeSource(fd, interest);
  if (auto st = ctl(EPOLL_CTL_MOD, fd, interest, it->second); !st) return st;
  w->interest = interest;
  return {};
}

void EventLoop::removeFd(int fd) {
  auto it = keyByFd_.find(fd);
  if (it == keyByFd_.end()) return;
  const std::uint64_t key = it->second;
  epoll_event ev{};
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, &ev);  // may already be closed: nothing to undo
  keyByFd_.erase(it);
  watches_.erase(key);
  edgeKeys_.erase(std::remove(edgeKeys_.begin(), edgeKeys_.end(), key), edgeKeys_.end());
}

Status EventLoop::addEdgeSource(int fd, std::uint32_t interest, PendingFn pending, FdCallback cb) {
  if (!pending) return makeError(ErrorCode::kInvalidArgument, "an edge source needs a pending function");
  if (keyByFd_.count(fd) != 0) return makeError(ErrorCode::kInvalidArgument, "fd " + std::to_string(fd) + " is already watched");
  const std::uint64_t key = nextKey_++;
  // The fd only says "look again"; ZeroMQ signals both directions as readability.
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = key;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return makeError(ErrorCode::kInvalidArgument, "epoll_ctl fd " + std::to_string(fd) + ": " + std::strerror(errno));
  }
  watches_[key] = std::make_shared<Watch>(Watch{fd, interest, std::move(cb), std::move(pending)});
  keyByFd_[fd] = key;
  edgeKeys_.push_back(key);
  return {};
}

Status EventLoop::modifyEdgeSource(int fd, std::uint32_t interest) {
  auto it = keyByFd_.find(fd);
  if (it == keyByFd_.end()) return makeError(ErrorCode::kNotFound, "fd " + std::to_string(fd) + " is not watched");
  auto& w = watches_.at(it->second);
  if (!w->pending) return makeError(ErrorCode::kInvalidArgument, "fd " + std::to_string(fd) + " is not an edge source");
  w->interest = interest;  // polled every turn: no epoll change needed
  return {};
}

std::size_t EventLoop::pollEdgeSources(bool& stillPending) {
  std::size_t n = 0;
  // Copy: callbacks may add or remove sources.
  const std::vector<std::uint64_t> keys = edgeKeys_;
  for (std::uint64_t key : keys) {
    auto it = watches_.find(key);
    if (it == watches_.end()) continue;
    std::shared_ptr<Watch> w = it->second;
    const std::uint32_t ready = w->pending() & w->interest;
    if (ready == 0) continue;
    ++n;
    ++stats_.callbacks;
    w->cb(ready);
    if (stop_.load()) break;
  }
  // After every callback (any of which may have sent or received on any socket): anything left?
  stillPending = false;
  for (std::uint64_t key : edgeKeys_) {
    auto it = watches_.find(key);
    if (it != watches_.end() && (it->second->pending() & it->second->interest) != 0) {
      stillPending = true;
      break;
    }
  }
  return n;
}

// ---- signals --------------------------------------------------------------------------------

Status EventLoop::onSignal(int signo, SignalCallback cb) {
  sigset_t one;
  sigemptyset(&one);
  if (sigaddset(&one, signo) != 0) return makeError(ErrorCode::kInvalidArgument, "bad signal number " + std::to_string(signo));
  if (::pthread_sigmask(SIG_BLOCK, &one, nullptr) != 0) return sysError("pthread_sigmask");
  sigset_t mask = signalMask_;
  sigaddset(&mask, signo);
  if (!signal_) {
    UniqueFd sfd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!sfd) return sysError("signalfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kSignalKey;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, sfd.get(), &ev) != 0) return sysError("epoll_ctl signalfd");
    signal_ = std::move(sfd);
  } else if (::signalfd(signal_.get(), &mask, 0) < 0) {
    return sysError("signalfd");
  }
  signalMask_ = mask;
  signalCallbacks_[signo] = std::move(cb);
  return {};
}

void EventLoop::ignoreSignal(int signo) {
  signalCallbacks_.erase(signo);
  if (sigdelset(&signalMask_, signo) != 0 || !signal_) return;
  if (::signalfd(signal_.get(), &signalMask_, 0) < 0) die("signalfd");
}

std::size_t EventLoop::drainSignals() {
  std::size_t n = 0;
  signalfd_siginfo infos[16];
  for (;;) {
    const ssize_t got = ::read(signal_.get(), infos, sizeof infos);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      die("read signalfd");
    }
    const auto count = static_cast<std::size_t>(got) / sizeof(signalfd_siginfo);
    for (std::size_t i = 0; i < count; ++i) {
      auto it = signalCallbacks_.find(static_cast<int>(infos[i].ssi_signo));
      if (it == signalCallbacks_.end()) continue;
      SignalCallback cb = it->second;  // the callback may replace itself
      ++n;
      ++stats_.callbacks;
      cb(infos[i]);
    }
    if (count < sizeof infos / sizeof infos[0]) break;
  }
  return n;
}

// ---- timers ---------------------------------------------------------------------------------

EventLoop::TimerId EventLoop::addTimer(Duration delay, TimerCallback cb) {
  return addTimerAt(clock_.now() + delay, std::move(cb));
}

EventLoop::TimerId EventLoop::addTimerAt(MonoTime deadline, TimerCallback cb) {
  const TimerId id = nextTimer_++;
  timers_.emplace(id, TimerSlot{deadline, std::move(cb)});
  heap_.push(TimerEntry{deadline, id});
  return id;
}

bool EventLoop::cancelTimer(TimerId id) {
  if (timers_.erase(id) == 0) return false;
  compactTimers();
  return true;
}

void EventLoop::compactTimers() {
  if (heap_.size() < 64 || heap_.size() < 2 * timers_.size()) return;
  std::vector<TimerEntry> live;
  live.reserve(timers_.size());
  for (const auto& [id, slot] : timers_) live.push_back(TimerEntry{slot.deadline, id});
  heap_ = decltype(heap_)(std::greater<>(), std::move(live));
}

std::optional<MonoTime> EventLoop::nextDeadline() const {
  while (!heap_.empty() && timers_.count(heap_.top().id) == 0) heap_.pop();
  if (heap_.empty()) return std::nullopt;
  return heap_.top().deadline;
}

std::size_t EventLoop::fireDueTimers() {
  std::size_t n = 0;
  const MonoTime now = clock_.now();
  const TimerId firstNew = nextTimer_;  // timers added by these callbacks wait for a later turn
  std::vector<TimerEntry> deferred;
  while (!heap_.empty() && !stop_.load()) {
    const TimerEntry top = heap_.top();
    auto it = timers_.find(top.id);
    if (it == timers_.end()) {
      heap_.pop();
      continue;
    }
    if (top.deadline > now) break;
    heap_.pop();
    if (top.id >= firstNew) {
      deferred.push_back(top);
      continue;
    }
    TimerCallback cb = std::move(it->second.cb);
    timers_.erase(it);
    ++n;
    ++stats_.callbacks;
    cb();
  }
  for (const auto& e : deferred) heap_.push(e);
  return n;
}

// ---- running --------------------------------------------------------------------------------

void EventLoop::stop() {
  stop_.store(true);
  const std::uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);  // async-signal-safe; EAGAIN means already woken
}

void EventLoop::run() {
  while (!stop_.load()) runOnce(std::nullopt);
  stop_.store(false);
}

std::size_t EventLoop::runOnce(std::optional<Duration> maxWait) {
  ++stats_.turns;
  std::size_t n = fireDueTimers();
  bool edgePending = false;
  if (!stop_.load()) n += pollEdgeSources(edgePending);

  // Sleep until the next deadline (rounded up: waking early would only spin), forever when
  // nothing is scheduled — but not at all when this turn already did work or work is pending,
  // so a turn either makes progress or sleeps once.
  int timeoutMs = -1;
  const bool busy = stop_.load() || edgePending || n > 0;
  if (busy || !timers_.empty() || maxWait) {
    Duration wait = Duration::max();
    if (busy) wait = Duration::zero();
    if (auto d = nextDeadline()) wait = std::min(wait, std::max(Duration::zero(), *d - clock_.now()));
    if (maxWait) wait = std::min(wait, std::max(Duration::zero(), *maxWait));
    if (wait >= std::chrono::milliseconds(INT_MAX)) {
      timeoutMs = INT_MAX;  // ~24.8 days; the next turn computes the rest
    } else {
      const auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
      timeoutMs = static_cast<int>(std::min<decltype(ms)>(ms, INT_MAX));
    }
  }

  epoll_event events[64];
  const int got = ::epoll_wait(epoll_.get(), events, 64, timeoutMs);
  if (got < 0) {
    if (errno == EINTR) return n;
    die("epoll_wait");
  }
  if (timeoutMs != 0) ++stats_.wakeups;
  bool edgeWoke = false;
  for (int i = 0; i < got; ++i) {
    const std::uint64_t key = events[i].data.u64;
    if (key == kWakeKey) {
      std::uint64_t v = 0;
      (void)!::read(wake_.get(), &v, sizeof v);
      continue;
    }
    if (key == kSignalKey) {
      if (signal_) n += drainSignals();
      continue;
    }
    auto it = watches_.find(key);
    if (it == watches_.end()) continue;  // removed by an earlier callback of this batch
    std::shared_ptr<Watch> w = it->second;
    if (w->pending) {
      edgeWoke = true;
      continue;
    }
    const std::uint32_t bits = fromEpoll(events[i].events) & (w->interest | kError);
    if (bits == 0) continue;
    ++n;
    ++stats_.callbacks;
    w->cb(bits);
    if (stop_.load()) return n;
  }
  if (edgeWoke && !stop_.load()) n += pollEdgeSources(edgePending);
  return n;
}

}  // namespace provisr

// Restart policy, exit verdicts and the components.json rendering.
#include "cli/keeper/supervision.hpp"

#include <algorithm>

namespace provisr::keeper {

std::string_view componentName(Component c) {
  switch (c) {
    case Component::kSpawner: return "spawner";
    case Component::kMaster: return "master";
    case Component::kGateway: return "gateway";
  }
  return "?";
}

std::string_view stateName(ComponentState s) {
  switch (s) {
    case ComponentState::kStopped: return "stopped";
    case ComponentState::kRunning: return "running";
    case ComponentState::kRestarting: return "restarting";
  }
  return "?";
}

Duration Backoff::afterExit(Duration ran) {
  if (ran >= kHealthyRun) {
    next_ = kFirstDelay;
    return Duration::zero();
  }
  const Duration delay = next_;
  next_ = std::min(next_ * 2, kMaxDelay);
  return delay;
}

Supervision::Supervision(Clock& clock) : clock_(clock) {}

void Supervision::started(Component c, pid_t pid, bool adopted, std::optional<std::int64_t> startedAtMs) {
  auto& s = status_[index(c)];
  s.pid = pid;
  s.startedAtMs = startedAtMs ? *startedAtMs
                              : std::chrono::duration_cast<std::chrono::milliseconds>(clock_.wallNow().time_since_epoch()).count();
  s.state = ComponentState::kRunning;
  s.adopted = adopted;
  startedMono_[index(c)] = clock_.now();
}

ExitDecision Supervision::exited(Component c, std::optional<int> exitCode, bool shuttingDown) {
  auto& s = status_[index(c)];
  const Duration ran = clock_.now() - startedMono_[index(c)];
  s.adopted = false;
  if (shuttingDown) {
    s.state = ComponentState::kStopped;
    return {ExitVerdict::kStopped, Duration::zero()};
  }
  if (exitCode == kExitPermanent) {
    s.state = ComponentState::kStopped;
    return {ExitVerdict::kPermanent, Duration::zero()};
  }
  if (c == Component::kMaster && exitCode == 0) {
    s.state = ComponentState::kStopped;
    return {ExitVerdict::kShutdown, Duration::zero()};
  }
  s.state = ComponentState::kRestarting;
  ++s.restarts;
  return {ExitVerdict::kRestart, backoff_[index(c)].afterExit(ran)};
}

bool Supervision::anyRunning() const {
  return std::any_of(status_.begin(), status_.end(), [](const ComponentStatus& s) { return s.state == ComponentState::kRunning; });
}

namespace {

void appendEntry(std::string& out, std::string_view name, const ComponentStatus& s) {
  out += '"';
  out += name;
  out += "\": {\"pid\": ";
  out += s.pid ? std::to_string(*s.pid) : "null";
  out += ", \"started_at_ms\": ";
  out += s.startedAtMs ? std::to_string(*s.startedAtMs) : "null";
  out += ", \"restarts\": ";
  out += std::to_string(s.restarts);
  out += ", \"state\": \"";
  out += stateName(s.state);
  out += "\"";
  if (s.adopted) out += ", \"adopted\": true";
  out += '}';
}

}  // namespace

std::string Supervision::renderJson(pid_t keeperPid, std::int64_t keeperStartedAtMs, ComponentState keeperState) const {
  ComponentStatus self;
  self.pid = keeperPid;
  self.startedAtMs = keeperStartedAtMs;
  self.state = keeperState;
  std::string out = "{";
  appendEntry(out, "keeper", self);
  for (Component c : kComponents) {
    out += ", ";
    appendEntry(out, componentName(c), status(c));
  }
  out += "}\n";
  return out;
}

}  // namespace provisr::keeper

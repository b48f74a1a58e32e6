// provisr-gateway: parses flags, loads [server]/[metrics], opens the HTTP, metrics and ZeroMQ
// edges, and runs the main loop (signals + ZeroMQ) until SIGTERM/SIGINT.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <zmq.hpp>

#include "common/config/loader.hpp"
#include "common/config/privilege.hpp"
#include "common/util/clock.hpp"
#include "common/util/event_loop.hpp"
#include "gateway/access.hpp"
#include "gateway/event_hub.hpp"
#include "gateway/http_server.hpp"
#include "gateway/log.hpp"
#include "gateway/master_link.hpp"
#include "gateway/metrics.hpp"
#include "gateway/routes.hpp"
#include "gateway/zmq_edge.hpp"

namespace {

using namespace provisr;
using namespace provisr::gateway;

struct Flags {
  std::string config;
  std::string run_dir;
  long sse_ping_ms = 10000;
  long max_streams = 32;
};

int usage(const char* why) {
  logLine(std::string("usage: provisr-gateway --config FILE --run-dir DIR [--sse-ping-ms N] [--max-streams N]: ") +
          why);
  return 2;
}

int run(const Flags& flags) {
  auto loaded = config::loadConfig(flags.config);
  if (!loaded.ok()) {
    for (const auto& d : loaded.errors()) logLine("config: " + d.str());
    logLine("invalid config " + flags.config + ": not starting");
    return 1;
  }
  const config::Config& cfg = *loaded.config;
  const pid_t parent = ::getppid();
  auto account = config::daemonAccount(cfg.daemon.user);
  if (!account) {
    logLine("daemon.user: " + account.error().message);
    return 1;
  }

  auto policy = makeAccessPolicy(cfg.server, cfg.server.listen, ::geteuid());
  if (!policy) {
    logLine(policy.error().message);
    return 1;
  }
  auto zmqPolicy = makeAccessPolicy(cfg.server, zmqEndpointHost(cfg.server.zmq_listen.value_or("ipc://local")) + ":0",
                                    ::geteuid());
  if (!zmqPolicy) {
    logLine(zmqPolicy.error().message);
    return 1;
  }

  // Signals are blocked before any thread starts, so every thread inherits the mask and only
  // the loop's signalfd sees them.
  SystemClock clock;
  auto loop = EventLoop::create(clock);
  if (!loop) {
    logLine("event loop: " + loop.error().message);
    return 1;
  }
  for (int sig : {SIGTERM, SIGINT}) {
    if (auto st = (*loop)->onSignal(sig, [&](const signalfd_siginfo&) { (*loop)->stop(); }); !st) {
      logLine("signals: " + st.error().message);
      return 1;
    }
  }
  ::signal(SIGPIPE, SIG_IGN);

  zmq::context_t zctx(1);
  const std::string masterEndpoint = "ipc://" + flags.run_dir + "/master/master.sock";
  auto master = std::make_unique<MasterClient>(zctx, masterEndpoint, std::chrono::milliseconds(2000));
  Context ctx{*master, flags.run_dir, policy->authEnabled(), cfg.metrics.enabled && cfg.metrics.listen.has_value(),
              cfg.groups.size(),
              ::geteuid() == 0 && !cfg.server.allow_root_programs && !cfg.daemon.user};

  ZmqEdge* edgePtr = nullptr;
  EventHub hub(static_cast<std::size_t>(flags.max_streams), 1000, [&edgePtr] {
    if (edgePtr) edgePtr->topicsChanged();
  });

  HttpOptions hopts;
  hopts.listen = cfg.server.listen;
  hopts.base_path = cfg.server.base_path;
  hopts.threads = static_cast<std::size_t>(flags.max_streams) + 32;
  hopts.sse_ping = std::chrono::milliseconds(flags.sse_ping_ms);
  hopts.tls_cert_file = cfg.server.tls.cert_file;
  hopts.tls_key_file = cfg.server.tls.key_file;
  HttpServer http(hopts, ctx, *policy, hub);
  if (auto st = http.bind(); !st) {
    logLine(st.error().message);
    return 1;
  }
  std::unique_ptr<MetricsServer> metrics;
  if (ctx.metrics_enabled) {
    metrics = std::make_unique<MetricsServer>(*cfg.metrics.listen, ctx, *policy);
    if (auto st = metrics->bind(); !st) {
      logLine(st.error().message);
      return 1;
    }
  }

  auto curve = loadCurveKeys(cfg.server.zmq_curve);
  if (!curve) {
    logLine(curve.error().message);
    return 1;
  }

  // Everything that may need root is done (token files and the TLS key read, ports bound): drop
  // to `[daemon] user` before any thread starts (ZeroMQ's start with the first socket).
  if (*account) {
    const config::Account& acc = **account;
    if (Status st = config::dropPrivileges(acc, SIGKILL, parent); !st.ok()) {
      logLine("cannot drop to " + acc.name + ": " + st.error().message);
      return 1;
    }
    logLine("running as " + acc.name + " (uid " + std::to_string(acc.uid) + ", gid " + std::to_string(acc.gid) + ")");
  }

  ZmqEdgeOptions zopts;
  zopts.master_endpoint = masterEndpoint;
  zopts.api_listen = cfg.server.zmq_listen;
  zopts.events_listen = cfg.server.zmq_events;
  zopts.curve = *curve;
  ZmqEdge edge(zctx, **loop, zopts, ctx, *zmqPolicy, hub);
  edgePtr = &edge;
  if (auto st = edge.start(); !st) {
    logLine("zeromq: " + st.error().message);
    return 1;
  }

  if (!policy->authEnabled()) {
    logLine("warning: no [server.auth] token: the API is open to every local user" +
            std::string(policy->protected_mode ? " (protected mode: only loopback clients are answered; set [server.auth] "
                                                "token or token_file, or [server] allow_insecure = true)"
                                              : "") +
            std::string(policy->root_without_auth ? "; register/update/unregister are refused while running as root"
                                                  : ""));
  }
  logLine(std::string("listening on ") + (hopts.tls() ? "https://" : "http://") + listenHost(cfg.server.listen) + ":" + std::to_string(http.port()) +
          normalizeBasePath(cfg.server.base_path) + " (master " + masterEndpoint + ")");
  if (metrics) logLine("metrics on http://" + listenHost(*cfg.metrics.listen) + ":" + std::to_string(metrics->port()) + "/metrics");
  if (auto ep = edge.apiEndpoint()) logLine("zeromq api on " + *ep);
  if (auto ep = edge.eventsEndpoint()) logLine("zeromq events on " + *ep);

  std::thread httpThread([&] { http.run(); });
  std::thread metricsThread;
  if (metrics) metricsThread = std::thread([&] { metrics->run(); });

  (*loop)->run();

  logLine("shutting down");
  hub.shutdown();
  http.stop();
  if (metrics) metrics->stop();
  httpThread.join();
  if (metricsThread.joinable()) metricsThread.join();
  edge.stop();
  edgePtr = nullptr;
  master.reset();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Memory: glibc gives each thread that allocates its own arena (up to 8 per core), and keeps
  // what a large reply used in them. Two arenas are enough for two cores of HTTP workers; a fixed
  // mmap threshold (glibc otherwise raises it to the largest block freed) keeps the big blocks of
  // a status-all (its text, its decoded list) in their own mappings, returned when freed.
  ::mallopt(M_ARENA_MAX, 2);
  ::mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (a == "--config") {
      const char* v = value("--config");
      if (!v) return usage("--config needs a value");
      flags.config = v;
    } else if (a == "--run-dir") {
      const char* v = value("--run-dir");
      if (!v) return usage("--run-dir needs a value");
      flags.run_dir = v;
    } else if (a == "--sse-ping-ms") {
      const char* v = value("--sse-ping-ms");
      if (!v) return usage("--sse-ping-ms needs a value");
      flags.sse_ping_ms = std::strtol(v, nullptr, 10);
    } else if (a == "--max-streams") {
      const char* v = value("--max-streams");
      if (!v) return usage("--max-streams needs a value");
      flags.max_streams = std::strtol(v, nullptr, 10);
    } else {
      return usage(("unknown argument " + a).c_str());
    }
  }
  if (flags.config.empty() || flags.run_dir.empty()) return usage("--config and --run-dir are required");
  if (flags.sse_ping_ms < 10) flags.sse_ping_ms = 10;
  if (flags.max_streams < 1) flags.max_streams = 1;
  return run(flags);
}

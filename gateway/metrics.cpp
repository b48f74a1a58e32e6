// Prometheus rendering from one sampled status request and components.json, and its server.
#include "gateway/metrics.hpp"

#include <httplib.h>

#include <chrono>
#include <sstream>

#include "common/util/version.hpp"

namespace provisr::gateway {
namespace {

void family(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

std::string num(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}

std::string ids(const proto::InstanceStatus& s) {
  return "name=\"" + escapeLabel(s.name) + "\",program=\"" + escapeLabel(s.program.empty() ? s.name : s.program) + "\"";
}

}  // namespace

std::string escapeLabel(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string renderMetrics(const std::optional<std::vector<proto::InstanceStatus>>& instances,
                          const std::optional<Json>& health) {
  std::ostringstream o;
  family(o, "provisr_gateway_info", "gauge", "The gateway's version (always 1).");
  o << "provisr_gateway_info{version=\"" << escapeLabel(provisr::version()) << "\"} 1\n";
  family(o, "provisr_master_up", "gauge", "1 when the master answered this scrape's status request.");
  o << "provisr_master_up " << (instances ? 1 : 0) << '\n';

  if (instances) {
    const auto& list = *instances;
    family(o, "provisr_process_state", "gauge", "1 for the instance's current lifecycle state, 0 for the others.");
    for (const auto& s : list) {
      for (const auto& state : proto::WireEnum<proto::InstanceState>::kNames) {
        o << "provisr_process_state{" << ids(s) << ",state=\"" << state << "\"} "
          << (proto::wireName(s.state) == state ? 1 : 0) << '\n';
      }
    }
    family(o, "provisr_process_restarts_total", "counter", "Automatic restarts after a running instance exited.");
    for (const auto& s : list) o << "provisr_process_restarts_total{" << ids(s) << "} " << s.restarts << '\n';
    family(o, "provisr_process_starts_total", "counter", "Children spawned for the instance (starts, retries, restarts).");
    for (const auto& s : list) o << "provisr_process_starts_total{" << ids(s) << "} " << s.starts << '\n';
    family(o, "provisr_process_exits_total", "counter", "Exits of the instance's children by exit code or signal name.");
    for (const auto& s : list) {
      for (const auto& [code, n] : s.exits) {
        o << "provisr_process_exits_total{" << ids(s) << ",code=\"" << escapeLabel(code) << "\"} " << n << '\n';
      }
    }
    family(o, "provisr_log_bytes_total", "counter", "Bytes the instance wrote to its log files, per stream.");
    for (const auto& s : list) {
      o << "provisr_log_bytes_total{" << ids(s) << ",stream=\"stdout\"} " << s.log_stdout_bytes << '\n';
      o << "provisr_log_bytes_total{" << ids(s) << ",stream=\"stderr\"} " << s.log_stderr_bytes << '\n';
    }
    family(o, "provisr_process_up_seconds", "gauge", "Seconds since the instance entered running (0 when not running).");
    for (const auto& s : list) {
      o << "provisr_process_up_seconds{" << ids(s) << "} " << num(static_cast<double>(s.uptime_ms) / 1000.0) << '\n';
    }
    family(o, "provisr_process_last_exit_code", "gauge", "Exit code of the instance's last exit (absent: none yet).");
    for (const auto& s : list) {
      if (s.exit_code) o << "provisr_process_last_exit_code{" << ids(s) << "} " << *s.exit_code << '\n';
    }
    family(o, "provisr_process_rss_bytes", "gauge", "Resident set size, read from /proc at scrape time.");
    for (const auto& s : list) {
      if (s.rss_bytes) o << "provisr_process_rss_bytes{" << ids(s) << "} " << *s.rss_bytes << '\n';
    }
    family(o, "provisr_process_cpu_seconds_total", "counter", "User + system CPU time, read at scrape time.");
    for (const auto& s : list) {
      if (s.cpu_seconds) o << "provisr_process_cpu_seconds_total{" << ids(s) << "} " << num(*s.cpu_seconds) << '\n';
    }
    family(o, "provisr_log_dropped_bytes_total", "counter", "Log bytes dropped on write errors.");
    for (const auto& s : list) {
      o << "provisr_log_dropped_bytes_total{" << ids(s) << "} " << s.log_dropped_bytes << '\n';
    }
  }

  if (health && health->contains("components")) {
    const Json& comps = (*health)["components"];
    family(o, "provisr_component_restarts_total", "counter", "Restarts of each provisr component by the keeper.");
    for (auto it = comps.begin(); it != comps.end(); ++it) {
      o << "provisr_component_restarts_total{component=\"" << escapeLabel(it.key()) << "\"} "
        << it.value().value("restarts", 0) << '\n';
    }
    family(o, "provisr_component_up", "gauge", "1 when the keeper reports the component running.");
    for (auto it = comps.begin(); it != comps.end(); ++it) {
      o << "provisr_component_up{component=\"" << escapeLabel(it.key()) << "\"} "
        << (it.value().value("state", std::string()) == "running" ? 1 : 0) << '\n';
    }
  }
  return o.str();
}

MetricsServer::MetricsServer(std::string listen, Context& ctx, const AccessPolicy& policy)
    : listen_(std::move(listen)), ctx_(ctx), policy_(policy), server_(std::make_unique<httplib::Server>()) {
  auto& svr = *server_;
  svr.new_task_queue = [] { return new httplib::ThreadPool(4); };
  svr.set_tcp_nodelay(true);
  svr.set_keep_alive_max_count(1000);
  svr.set_keep_alive_timeout(5);
  svr.set_read_timeout(5, 0);
  svr.set_payload_max_length(4096);
  svr.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    auto token = bearerToken(req.get_header_value("Authorization"));
    if (auto denied = checkAccess(policy_, Access::kRead, token, isLoopbackAddress(req.remote_addr), false)) {
      res.status = httpStatusFor(denied->code, "metrics");
      res.set_content(errorBody(*denied).dump() + "\n", "application/json");
      return;
    }
    std::optional<std::vector<proto::InstanceStatus>> instances;
    auto r = ctx_.master.call<proto::StatusReply>(
        proto::StatusRequest{proto::Selector{proto::SelectorKind::kAll, ""}, true});
    if (r) instances = std::move(r->instances);
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::optional<Json> health;
    if (auto h = readHealth(ctx_.run_dir, now)) health = std::move(*h);
    res.set_content(renderMetrics(instances, health), "text/plain; version=0.0.4; charset=utf-8");
  });
}

MetricsServer::~MetricsServer() = default;

Status MetricsServer::bind() {
  std::string host = listenHost(listen_);
  if (host.empty()) host = "0.0.0.0";
  const auto colon = listen_.rfind(':');
  int port = -1;
  try {
    if (colon != std::string::npos) port = std::stoi(listen_.substr(colon + 1));
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0) return Error{ErrorCode::kInvalidArgument, "metrics.listen '" + listen_ + "' needs host:port"};
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ <= 0) return Error{ErrorCode::kUnavailable, "cannot bind metrics " + listen_};
  } else {
    if (!server_->bind_to_port(host, port)) return Error{ErrorCode::kUnavailable, "cannot bind metrics " + listen_};
    port_ = port;
  }
  return {};
}

void MetricsServer::run() { server_->listen_after_bind(); }
void MetricsServer::stop() { server_->stop(); }

}  // namespace provisr::gateway

// Prometheus text exposition at [metrics] listen /metrics: per-instance state, restarts, uptime,
// RSS and CPU (sampled by the master at scrape time, no timer), component restarts, gateway info.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/proto/schema.hpp"
#include "common/util/result.hpp"
#include "gateway/access.hpp"
#include "gateway/routes.hpp"

namespace httplib {
class Server;
}

namespace provisr::gateway {

// The exposition text. `instances` unset: the master did not answer (provisr_master_up 0).
// `health` is readHealth's body, or unset when components.json is unreadable.
std::string renderMetrics(const std::optional<std::vector<proto::InstanceStatus>>& instances,
                          const std::optional<Json>& health);

// A label value escaped for the exposition format (\\, \", \n).
std::string escapeLabel(std::string_view v);

class MetricsServer {
 public:
  MetricsServer(std::string listen, Context& ctx, const AccessPolicy& policy);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  Status bind();
  int port() const { return port_; }
  void run();
  void stop();

 private:
  std::string listen_;
  Context& ctx_;
  const AccessPolicy& policy_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
};

}  // namespace provisr::gateway

// The HTTP edge: httplib wired to the route table, the access rules and the SSE streams.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "common/util/result.hpp"
#include "gateway/access.hpp"
#include "gateway/event_hub.hpp"
#include "gateway/routes.hpp"

namespace httplib {
class Server;
}

namespace provisr::gateway {

struct HttpOptions {
  std::string listen = "127.0.0.1:8080";  // host:port
  std::string base_path = "/api";
  // Worker threads. httplib keeps a thread per open connection, and each SSE stream holds one:
  // the cap is the stream cap plus room for ordinary requests. The pool starts `min_threads`
  // and grows on demand; a worker idle for `idle_exit` exits (down to min_threads).
  std::size_t threads = 64;
  std::size_t min_threads = 2;
  std::chrono::milliseconds idle_exit{10000};
  std::size_t max_body = 1u << 20;
  // A stream with nothing to send writes an SSE comment this often, so a client that went away
  // is noticed (the write fails) and its slot freed; only while a stream is open.
  std::chrono::milliseconds sse_ping{10000};
  // How often an idle stream checks that its client is still connected (no write, no traffic):
  // a client that closed its connection frees its slot within this time.
  std::chrono::milliseconds sse_liveness{500};
  // `[server.tls]`: HTTPS only (httplib's OpenSSL server) when both are set.
  std::optional<std::string> tls_cert_file;
  std::optional<std::string> tls_key_file;
  bool tls() const { return tls_cert_file.has_value() && tls_key_file.has_value(); }
};

// base_path as Go sanitised it: trimmed, leading '/', no trailing '/', "" for the root.
std::string normalizeBasePath(std::string_view base);

class HttpServer {
 public:
  HttpServer(HttpOptions options, Context& ctx, const AccessPolicy& policy, EventHub& hub);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listen address (port 0: any free port, see port()).
  Status bind();
  int port() const { return port_; }
  // Serves until stop(); blocks in accept while idle (no timer).
  void run();
  void stop();

 private:
  HttpOptions options_;
  Context& ctx_;
  const AccessPolicy& policy_;
  EventHub& hub_;
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  int listenFd_ = -1;  // the listening socket, to raise httplib's accept backlog of 5
};

}  // namespace provisr::gateway

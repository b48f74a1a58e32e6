// httplib configuration, route registration from the one table, access checks and SSE.
#include "gateway/http_server.hpp"

#include <httplib.h>
#include <malloc.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <regex>

#include "gateway/log.hpp"
#include "gateway/worker_pool.hpp"

namespace provisr::gateway {
namespace {

std::string regexEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".^$|()[]{}*+?\\").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void sendJson(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n", "application/json");
}

// A body already rendered as JSON text: moved into the response, not copied.
void sendText(httplib::Response& res, int status, std::string body) {
  res.status = status;
  body.push_back('\n');
  res.body = std::move(body);
  res.set_header("Content-Type", "application/json");
}

// After a reply this large, the heap the handler built it in (decoded statuses, the text) is
// handed back to the kernel: otherwise a status of thousands of instances leaves the gateway
// tens of MiB larger for good.
constexpr std::size_t kTrimAfterBytes = 256 * 1024;

void sendError(httplib::Response& res, const Error& e, std::string_view op) {
  sendJson(res, httpStatusFor(e.code, op), errorBody(e));
}

// Query parameters some route reads. Anything else is a typo (`nmae=web` would otherwise turn a
// status query into the health check) and answers 400.
constexpr std::array<std::string_view, 14> kQueryParams = {"name",  "base",  "wildcard", "wait",   "wait_ms",
                                                           "dry_run", "sample", "group",  "pattern", "since",
                                                           "limit", "stream", "follow",  "instances"};

// The query as call arguments: each parameter once, from the known set.
Result<Args> queryArgs(const httplib::Request& req) {
  Args args = Args::object();
  for (const auto& [k, v] : req.params) {
    if (std::find(kQueryParams.begin(), kQueryParams.end(), k) == kQueryParams.end()) {
      return Error{ErrorCode::kInvalidArgument, "unknown query parameter '" + k.substr(0, 64) + "'"};
    }
    if (args.contains(k)) {
      return Error{ErrorCode::kInvalidArgument, "query parameter '" + k + "' given more than once"};
    }
    args[k] = v;
  }
  return args;
}

}  // namespace

std::string normalizeBasePath(std::string_view base) {
  while (!base.empty() && (base.front() == ' ' || base.front() == '\t')) base.remove_prefix(1);
  while (!base.empty() && (base.back() == ' ' || base.back() == '\t' || base.back() == '/')) base.remove_suffix(1);
  if (base.empty()) return "";
  std::string out(base);
  if (out.front() != '/') out.insert(out.begin(), '/');
  return out;
}

HttpServer::HttpServer(HttpOptions options, Context& ctx, const AccessPolicy& policy, EventHub& hub)
    : options_(std::move(options)), ctx_(ctx), policy_(policy), hub_(hub) {
  // The certificate and key are read here, while the gateway may still be root (the key may be
  // readable by root alone); SSL_CTX_use_PrivateKey_file also checks that the key matches.
  if (options_.tls()) {
    server_ = std::make_unique<httplib::SSLServer>(options_.tls_cert_file->c_str(), options_.tls_key_file->c_str());
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  auto& svr = *server_;
  const std::size_t threads = options_.threads;
  svr.new_task_queue = [threads, min = options_.min_threads, idle = options_.idle_exit] {
    return new WorkerPool(min, threads, idle);
  };
  svr.set_tcp_nodelay(true);  // without it keep-alive stalls ~40 ms per request (DEPS.md)
  svr.set_keep_alive_max_count(10000);
  svr.set_keep_alive_timeout(5);
  svr.set_read_timeout(5, 0);
  svr.set_write_timeout(5, 0);
  svr.set_payload_max_length(options_.max_body);
  // httplib listens with a backlog of 5: a burst of connections overflows the accept queue and
  // the kernel drops them. Keep the socket (and httplib's SO_REUSEADDR) to listen() again, longer.
  svr.set_socket_options([this](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listenFd_ = sock;
  });

  const std::string base = regexEscape(normalizeBasePath(options_.base_path));
  for (const Route& route : routeTable()) {
    const std::string pattern = base + std::string(route.path);
    const Route* r = &route;
    auto handler = [this, r](const httplib::Request& req, httplib::Response& res) {
      const std::string_view op = r->op.empty() ? r->path : r->op;
      Call call;
      call.transport = Transport::kHttp;
      auto query = queryArgs(req);
      if (!query) {
        sendError(res, query.error(), op);
        return;
      }
      call.args = std::move(*query);
      if (req.matches.size() > 1) {
        if (call.args.contains("name")) {
          sendError(res, Error{ErrorCode::kInvalidArgument, "the name is in the path: drop the name parameter"}, op);
          return;
        }
        call.args["name"] = req.matches[1].str();
      }
      if (!req.body.empty()) call.args["body"] = req.body;

      const bool health = r->access == Access::kStatus && !call.args.contains("name") &&
                          !call.args.contains("base") && !call.args.contains("wildcard");
      auto token = bearerToken(req.get_header_value("Authorization"));
      if (auto denied = checkAccess(policy_, r->access, token, isLoopbackAddress(req.remote_addr), health)) {
        sendError(res, *denied, op);
        return;
      }
      if (r->stream) {
        auto topic = r->stream(call.args);
        if (!topic) {
          sendError(res, topic.error(), op);
          return;
        }
        if (*topic) {
          auto stream = hub_.open(**topic);
          if (!stream) {
            sendError(res, Error{ErrorCode::kUnavailable, "too many open event streams; close one or retry later"}, op);
            return;
          }
          res.set_header("Cache-Control", "no-cache");
          res.set_header("X-Accel-Buffering", "no");
          auto first = std::make_shared<bool>(true);
          auto lastWrite = std::make_shared<std::chrono::steady_clock::time_point>();
          res.set_chunked_content_provider(
              "text/event-stream",
              [this, stream, first, lastWrite](std::size_t, httplib::DataSink& sink) {
                const auto now = std::chrono::steady_clock::now();
                if (*first) {
                  *first = false;
                  *lastWrite = now;
                  const std::string hello = ": subscribed " + stream->prefix() + "\n\n";
                  return sink.write(hello.data(), hello.size());
                }
                // Wait at most one liveness slice: between slices httplib checks the socket (a
                // peer that closed makes it unreadable-at-EOF), so a vanished client frees its
                // slot within a slice, without a write.
                auto events = hub_.wait(*stream, std::min(options_.sse_ping, options_.sse_liveness));
                if (hub_.isShutdown()) {
                  sink.done();
                  return true;
                }
                std::string out;
                for (const auto& ev : events) out += "event: " + ev.topic + "\ndata: " + ev.json + "\n\n";
                if (out.empty()) {
                  if (std::chrono::steady_clock::now() - *lastWrite < options_.sse_ping) return sink.is_writable();
                  out = ":\n\n";  // keep-alive for proxies; a failed write frees the slot too
                }
                *lastWrite = std::chrono::steady_clock::now();
                return sink.write(out.data(), out.size());
              },
              [this, stream](bool) { hub_.close(stream); });
          return;
        }
      }
      auto result = runRouteText(*r, call, ctx_);
      if (!result) {
        sendError(res, result.error(), op);
        return;
      }
      const bool large = result->size() >= kTrimAfterBytes;
      sendText(res, 200, std::move(*result));
      if (large) ::malloc_trim(0);
    };
    if (route.method == "GET") {
      svr.Get(pattern, handler);
    } else {
      svr.Post(pattern, handler);
    }
    // The other methods on a known path: 405 naming the one that works.
    auto notAllowed = [r](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", std::string(r->method));
      sendJson(res, 405,
               errorBody(Error{ErrorCode::kInvalidArgument,
                               "method " + req.method + " not allowed on " + req.path + ": use " + std::string(r->method)}));
    };
    if (route.method == "GET") {
      svr.Post(pattern, notAllowed);
    } else {
      svr.Get(pattern, notAllowed);
    }
    svr.Put(pattern, notAllowed);
    svr.Patch(pattern, notAllowed);
    svr.Delete(pattern, notAllowed);
  }
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      sendJson(res, 404, errorBody(Error{ErrorCode::kNotFound, "no route " + req.method + " " + req.path}));
    } else if (res.status == 413) {
      sendJson(res, 413, errorBody(Error{ErrorCode::kInvalidArgument, "request body too large"}));
    } else if (res.status == 400) {
      // httplib refuses a POST without Content-Length before any route runs (`curl -X POST`).
      const bool bodyless = req.method == "POST" && !req.has_header("Content-Length") &&
                            !req.has_header("Transfer-Encoding");
      sendJson(res, 400, errorBody(Error{ErrorCode::kInvalidArgument,
                                         bodyless ? "bad request: POST " + req.path +
                                                        " needs a Content-Length header: send an empty body "
                                                        "(curl -d '') or a JSON body; selectors go in the query"
                                                  : std::string("bad request: the HTTP request could not be parsed")}));
    }
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    sendJson(res, 500, errorBody(Error{ErrorCode::kInternal, "internal error: " + what}));
  });
}

HttpServer::~HttpServer() = default;

Status HttpServer::bind() {
  if (!server_->is_valid()) {
    return Error{ErrorCode::kInvalidArgument, "server.tls: cannot load the certificate " + options_.tls_cert_file.value_or("") +
                                                  " with the key " + options_.tls_key_file.value_or("") +
                                                  " (unreadable, not PEM, or the key does not match the certificate)"};
  }
  std::string host = listenHost(options_.listen);
  if (host.empty()) host = "0.0.0.0";
  const auto colon = options_.listen.rfind(':');
  if (colon == std::string::npos) {
    return Error{ErrorCode::kInvalidArgument, "server.listen '" + options_.listen + "' needs host:port"};
  }
  int port = 0;
  try {
    port = std::stoi(options_.listen.substr(colon + 1));
  } catch (const std::exception&) {
    return Error{ErrorCode::kInvalidArgument, "server.listen '" + options_.listen + "': bad port"};
  }
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ <= 0) return Error{ErrorCode::kUnavailable, "cannot bind " + options_.listen};
  } else {
    if (!server_->bind_to_port(host, port)) {
      return Error{ErrorCode::kUnavailable, "cannot bind " + options_.listen + " (address in use?)"};
    }
    port_ = port;
  }
  if (listenFd_ >= 0) ::listen(listenFd_, 1024);  // same socket, a longer accept queue
  return {};
}

void HttpServer::run() { server_->listen_after_bind(); }

void HttpServer::stop() { server_->stop(); }

}  // namespace provisr::gateway

// Fuzz target: the HTTP request → master request translation (gateway/routes + translate), as the
// HTTP server drives it. Input: a request line `METHOD /path?query` (path under the base path),
// then, after the first newline, the body. Query parsing and URL decoding are httplib's, as in
// the server. Every request the gateway sends the master must decode (FakeMaster).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <httplib.h>

#include "fuzz/fake_master.hpp"
#include "gateway/routes.hpp"

namespace {

using provisr::gateway::Route;

struct Compiled {
  const Route* route;
  std::regex pattern;
};

const std::vector<Compiled>& routes() {
  static const std::vector<Compiled> all = [] {
    std::vector<Compiled> out;
    for (const Route& r : provisr::gateway::routeTable()) out.push_back({&r, std::regex(std::string(r.path))});
    return out;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  const std::string_view body = nl == std::string_view::npos ? std::string_view{} : in.substr(nl + 1);
  const auto sp = line.find(' ');
  if (sp == std::string_view::npos) return 0;
  const std::string method(line.substr(0, sp));
  const std::string_view target = line.substr(sp + 1);
  const auto q = target.find('?');
  const std::string path = httplib::detail::decode_url(std::string(target.substr(0, q)), false);
  httplib::Params params;
  if (q != std::string_view::npos) httplib::detail::parse_query_text(std::string(target.substr(q + 1)), params);

  provisr::fuzz::FakeMaster master;
  provisr::gateway::Context ctx{master, provisr::fuzz::scratchDir(), false, true, 1};
  for (const auto& c : routes()) {
    if (c.route->method != method) continue;
    std::smatch m;
    if (!std::regex_match(path, m, c.pattern)) continue;
    provisr::gateway::Call call;
    call.transport = provisr::gateway::Transport::kHttp;
    for (const auto& [k, v] : params)
      if (!call.args.contains(k)) call.args[k] = v;
    if (m.size() > 1) call.args["name"] = m[1].str();
    if (!body.empty()) call.args["body"] = std::string(body);
    if (c.route->stream) {
      // http_server.cpp calls the stream hook outside runRoute's catch: an exception there ends in
      // httplib's own handler (a 500 with an EXCEPTION_WHAT header).
      try {
        auto topic = c.route->stream(call.args);
        if (topic && *topic) continue;  // an event stream: nothing goes to the master
      } catch (const std::exception& e) {
        provisr::fuzz::fail("a stream hook threw", e.what());
        break;
      }
    }
    auto result = provisr::gateway::runRoute(*c.route, call, ctx);
    if (!result && result.error().code == provisr::ErrorCode::kInternal)
      provisr::fuzz::fail("a route threw", result.error().message);
    // The body the server sends, serialised as http_server.cpp does (invalid UTF-8 replaced).
    const nlohmann::json out = result ? *result : provisr::gateway::errorBody(result.error());
    if (!result) (void)provisr::gateway::httpStatusFor(result.error().code, c.route->op);
    try {
      (void)out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    } catch (const nlohmann::json::exception& e) {
      provisr::fuzz::fail("a response body does not serialise", e.what());
    }
    break;
  }
  return 0;
}

// The CLI's plain HTTP client (cli/http_client.hpp): the response reader fed bytes directly, URL
// parsing, and whole requests against loopback listeners that answer well, badly, or never.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <catch2/catch.hpp>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/run.hpp"
#include "tests/support/wait.hpp"

// tests_integration links no CLI library: the client is compiled into this test directly.
#include "cli/http_client.hpp"

using namespace provisr::cli;
using namespace provisr::cli::http;
using namespace std::chrono_literals;

namespace {

using State = ResponseReader::State;

// Feeds `bytes` in pieces of `piece` bytes (0: all at once), then the end of the connection.
State feedAll(ResponseReader& r, const std::string& bytes, std::size_t piece, bool close = true) {
  if (piece == 0) piece = bytes.size() ? bytes.size() : 1;
  for (std::size_t i = 0; i < bytes.size() && r.state() != State::kDone && r.state() != State::kError; i += piece)
    r.feed(std::string_view(bytes).substr(i, piece));
  if (close && r.state() != State::kDone && r.state() != State::kError) r.finish();
  return r.state();
}

// A loopback listener on an ephemeral port whose one connection gets `answer` after the request
// head (and a Content-Length body) has arrived; then it closes, or with `hold` keeps the
// connection open, unanswered, until the listener is destroyed. Everything is bounded by a
// 10-second deadline.
class Listener {
 public:
  explicit Listener(std::string answer, bool hold = false) : answer_(std::move(answer)), hold_(hold) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    REQUIRE(::pipe2(stop_, O_CLOEXEC) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~Listener() {
    char c = 'x';
    if (::write(stop_[1], &c, 1) != 1) { /* the thread still ends at its deadline */ }
    thread_.join();
    ::close(fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/api"; }
  // The request bytes the listener received.
  std::string request() {
    REQUIRE(provisr::test::waitFor([&] { return received_.load(); }, 10s));
    return request_;
  }

 private:
  // Waits for `fd` or the stop pipe; false on stop or deadline.
  bool wait(int fd, std::chrono::steady_clock::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (left <= 0) return false;
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      int n = ::poll(p, 2, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      if (p[1].revents) return false;
      return true;
    }
  }

  void serve() {
    const auto until = std::chrono::steady_clock::now() + 10s;
    if (!wait(fd_, until)) return;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    std::string got;
    char buf[4096];
    for (;;) {
      auto head_end = got.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        std::size_t want = 0;
        auto cl = got.find("Content-Length: ");
        if (cl != std::string::npos && cl < head_end) want = std::stoul(got.substr(cl + 16));
        if (got.size() >= head_end + 4 + want) break;
      }
      if (!wait(c, until)) break;
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    request_ = got;
    received_ = true;
    if (hold_) {
      wait(stop_[0], until);  // keeps the connection open and silent until the test is done
    } else {
      // Several writes, so the client sees the answer in more than one read now and then.
      for (std::size_t i = 0; i < answer_.size(); i += 7) {
        std::string_view part = std::string_view(answer_).substr(i, 7);
        if (::send(c, part.data(), part.size(), MSG_NOSIGNAL) < 0) break;
      }
    }
    ::close(c);
  }

  std::string answer_;
  bool hold_;
  int fd_ = -1;
  int stop_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
  std::atomic<bool> received_{false};
};

// An HTTP answer with `body` and its Content-Length.
std::string answerWith(const std::string& status_line, const std::string& body) {
  return status_line + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

Url mustParse(const std::string& text) {
  std::string error;
  auto url = parseUrl(text, &error);
  INFO(error);
  REQUIRE(url);
  return *url;
}

}  // namespace

TEST_CASE("http reader: a Content-Length body, whole or a byte at a time", "[cli][http]") {
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
  for (std::size_t piece : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{5}, std::size_t{13}}) {
    ResponseReader r;
    CHECK(feedAll(r, answer, piece, false) == State::kDone);  // complete without the close
    CHECK(r.status() == 200);
    CHECK(r.body() == "{\"ok\":true}");
    CHECK(r.contentLength() == 11u);
  }
  ResponseReader empty;
  CHECK(feedAll(empty, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 0, false) == State::kDone);
  CHECK(empty.status() == 404);
  CHECK(empty.body().empty());
}

TEST_CASE("http reader: chunked bodies with extensions and trailers, in any split", "[cli][http]") {
  const std::string answer =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"
      "1;ext=1\r\n \r\n"
      "A\r\n0123456789\r\n"
      "0\r\nX-Trailer: yes\r\n\r\n";
  for (std::size_t piece = 0; piece <= answer.size(); ++piece) {
    ResponseReader r;
    INFO("piece " << piece);
    CHECK(feedAll(r, answer, piece, false) == State::kDone);
    CHECK(r.status() == 200);
    CHECK(r.body() == "hello 0123456789");
  }
  // LF-only line ends are read too.
  ResponseReader lf;
  CHECK(feedAll(lf, "HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n3\nabc\n0\n\n", 1, false) == State::kDone);
  CHECK(lf.body() == "abc");
}

TEST_CASE("http reader: a body that runs to the close, 204, and an interim 100", "[cli][http]") {
  ResponseReader r;
  CHECK(feedAll(r, "HTTP/1.0 200 OK\r\n\r\nuntil the end", 3, false) == State::kBody);
  CHECK(r.finish() == State::kDone);
  CHECK(r.body() == "until the end");

  ResponseReader none;
  CHECK(feedAll(none, "HTTP/1.1 204 No Content\r\n\r\n", 0, false) == State::kDone);
  CHECK(none.status() == 204);

  ResponseReader interim;
  CHECK(feedAll(interim, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 4, false) ==
        State::kDone);
  CHECK(interim.status() == 201);
  CHECK(interim.body() == "ok");
}

TEST_CASE("http reader: short reads are errors that say how much arrived", "[cli][http]") {
  ResponseReader body;
  CHECK(feedAll(body, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", 2) == State::kError);
  CHECK(body.error().find("5 of 10 bytes") != std::string::npos);

  ResponseReader chunked;
  CHECK(feedAll(chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", 1) == State::kError);
  CHECK(chunked.error().find("chunked") != std::string::npos);

  ResponseReader head;
  CHECK(feedAll(head, "HTTP/1.1 200 OK\r\nContent-Le", 0) == State::kError);
  CHECK(head.error().find("headers") != std::string::npos);

  ResponseReader nothing;
  CHECK(nothing.finish() == State::kError);
  CHECK(nothing.error().find("without an answer") != std::string::npos);
}

TEST_CASE("http reader: what is not an HTTP answer is refused", "[cli][http]") {
  // Refused from the first bytes, without waiting for a whole head.
  ResponseReader ssh;
  CHECK(ssh.feed("SSH-2.0-OpenSSH_9.2\r\n") == State::kError);
  CHECK(ssh.error().find("not an HTTP answer: 'SSH-2.0") != std::string::npos);
  // A TLS alert (plain HTTP sent to an HTTPS port).
  ResponseReader tls;
  CHECK(tls.feed(std::string("\x15\x03\x01\x00\x02\x02\x46", 7)) == State::kError);
  CHECK(tls.error().find("\\x15") != std::string::npos);

  for (const char* bad : {"HTTP/1.1 2x0 OK\r\n\r\n", "HTTP/2 200\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.1 099 Low\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"}) {
    ResponseReader r;
    INFO(bad);
    CHECK(feedAll(r, bad, 0) == State::kError);
    CHECK_FALSE(r.error().empty());
  }
  ResponseReader huge;
  CHECK(feedAll(huge, "HTTP/1.1 200 OK\r\nX: " + std::string(70 * 1024, 'a'), 4096) == State::kError);
  CHECK(huge.error().find("64 KiB") != std::string::npos);
}

TEST_CASE("http reader: a streamed body goes to the callback, which can stop it", "[cli][http]") {
  std::string seen;
  ResponseReader r([&](std::string_view b) {
    seen.append(b);
    return seen.find("stop") == std::string::npos;
  });
  r.feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nstop\r\n4\r\nmore\r\n");
  CHECK(r.state() == State::kDone);
  CHECK(seen == "abcdstop");
  CHECK(r.body().empty());
}

TEST_CASE("http url: scheme, host, port and base path", "[cli][http]") {
  auto u = mustParse("http://127.0.0.1:8080/api/");
  CHECK(u.scheme == "http");
  CHECK(u.host == "127.0.0.1");
  CHECK(u.port == 8080);
  CHECK(u.path == "/api");
  CHECK(u.host_header == "127.0.0.1:8080");
  auto bare = mustParse("localhost:9");
  CHECK(bare.scheme == "http");
  CHECK(bare.host == "localhost");
  CHECK(bare.path.empty());
  auto v6 = mustParse("http://[::1]:18080/x");
  CHECK(v6.host == "::1");
  CHECK(v6.port == 18080);
  CHECK(v6.host_header == "[::1]:18080");
  CHECK(mustParse("HTTPS://example.org").port == 443);
  CHECK(mustParse("http://example.org/").port == 80);
  std::string error;
  CHECK_FALSE(parseUrl("ftp://127.0.0.1/", &error));
  CHECK(error.find("ftp") != std::string::npos);
  CHECK_FALSE(parseUrl("http://127.0.0.1:99999/api", &error));
  CHECK(error.find("99999") != std::string::npos);
  CHECK_FALSE(parseUrl("http://:80/api", &error));
  CHECK_FALSE(parseUrl("http://user:pw@127.0.0.1/api", &error));
}

TEST_CASE("http request: GET and POST against a loopback listener", "[cli][http]") {
  SECTION("a Content-Length answer, and the request as sent") {
    Listener l(answerWith("HTTP/1.1 200 OK\r\nConnection: close", R"([{"name":"web"}])"));
    Request req;
    req.target = "/status?wildcard=%2A";
    req.headers.emplace_back("Authorization", "Bearer t0k");
    auto r = perform(mustParse(l.url()), req, Timeouts{});
    INFO(r.error);
    CHECK(r.status == 200);
    CHECK(r.body == "[{\"name\":\"web\"}]");
    std::string sent = l.request();
    CHECK(sent.rfind("GET /api/status?wildcard=%2A HTTP/1.1\r\n", 0) == 0);
    CHECK(sent.find("\r\nHost: 127.0.0.1:" + std::to_string(l.port()) + "\r\n") != std::string::npos);
    CHECK(sent.find("\r\nConnection: close\r\n") != std::string::npos);
    CHECK(sent.find("\r\nAuthorization: Bearer t0k\r\n") != std::string::npos);
    CHECK(sent.find("Accept-Encoding") == std::string::npos);  // no compressed answers
    CHECK(sent.find("Content-Length") == std::string::npos);
  }
  SECTION("a POST always carries its length, and a chunked answer") {
    Listener l("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n{\"ok\":true}\r\n0\r\n\r\n");
    Request req;
    req.method = "POST";
    req.target = "/stop?name=web";
    auto r = perform(mustParse(l.url()), req, Timeouts{});
    INFO(r.error);
    CHECK(r.status == 200);
    CHECK(r.body == "{\"ok\":true}");
    std::string sent = l.request();
    CHECK(sent.rfind("POST /api/stop?name=web HTTP/1.1\r\n", 0) == 0);
    CHECK(sent.find("\r\nContent-Length: 0\r\n") != std::string::npos);
    CHECK(sent.find("\r\nContent-Type: application/json\r\n") != std::string::npos);
  }
  SECTION("an error status comes back with its body") {
    Listener l(answerWith("HTTP/1.1 400 Bad Request", R"({"error":"unknown: nosuch"})"));
    auto r = perform(mustParse(l.url()), Request{"GET", "/status?name=nosuch", {}, {}}, Timeouts{});
    CHECK(r.status == 400);
    CHECK(r.body == "{\"error\":\"unknown: nosuch\"}");
  }
  SECTION("an answer cut short is an error, not a truncated body") {
    Listener l("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial\":");
    auto r = perform(mustParse(l.url()), Request{"GET", "/status", {}, {}}, Timeouts{});
    CHECK(r.status == 0);
    CHECK(r.body.empty());
    CHECK(r.error.find("11 of 100 bytes") != std::string::npos);
  }
  SECTION("garbage instead of HTTP") {
    Listener l("hello, this is not http\n");
    auto r = perform(mustParse(l.url()), Request{"GET", "/status", {}, {}}, Timeouts{});
    CHECK(r.status == 0);
    CHECK(r.error.find("not an HTTP answer") != std::string::npos);
  }
  SECTION("a stream: a success body goes to the callback, an error body is returned") {
    Listener l("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n");
    std::string seen;
    Timeouts t;
    t.read = 0ms;
    auto r = perform(mustParse(l.url()), Request{"GET", "/events", {}, {}}, t, [&](std::string_view b) {
      seen.append(b);
      return true;
    });
    // The listener closes mid-stream: the stream is over, it did not fail.
    CHECK(r.status == 200);
    CHECK(seen == "data: ");
  }
}

TEST_CASE("http request: a listener that never answers times out and a closed port is refused", "[cli][http]") {
  {
    Listener silent("", /*hold=*/true);
    Timeouts t;
    t.read = 200ms;
    auto start = std::chrono::steady_clock::now();
    auto r = perform(mustParse(silent.url()), Request{"GET", "/status", {}, {}}, t);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(r.status == 0);
    CHECK(r.error.find("no answer from 127.0.0.1:" + std::to_string(silent.port()) + " within 200ms") != std::string::npos);
    CHECK(took >= 190ms);
    CHECK(took < 5s);
  }
  // A port nothing listens on: take one from the kernel, then close it.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(fd);
  auto r = perform(mustParse("http://127.0.0.1:" + std::to_string(port) + "/api"), Request{"GET", "/status", {}, {}},
                   Timeouts{});
  CHECK(r.status == 0);
  CHECK(r.error == "connection refused by 127.0.0.1:" + std::to_string(port));
}

TEST_CASE("provisr status through the plain client: JSON re-indented, errors mapped to exit codes", "[cli][http]") {
  using provisr::test::binPath;
  using provisr::test::run;
  const std::string reply = R"([{"groups":[],"log":{"stderr":"/l/e","stdout":"/l/o"},"name":"web","pid":7,"state":"running"}])";
  {
    Listener l(answerWith("HTTP/1.1 200 OK", reply));
    auto r = run({binPath("provisr"), "status", "--api-url", l.url()});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == nlohmann::json::parse(reply).dump(2) + "\n");
    CHECK(l.request().rfind("GET /api/status?wildcard=* HTTP/1.1\r\n", 0) == 0);
  }
  {
    Listener l(answerWith("HTTP/1.1 400 Bad Request", R"({"code":"invalid","error":"unknown: nosuch"})"));
    auto r = run({binPath("provisr"), "status", "--api-url", l.url(), "--name", "nosuch"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("provisr: unknown: nosuch (HTTP 400)") != std::string::npos);
  }
  {
    Listener l(answerWith("HTTP/1.1 404 Not Found", R"({"error":"no such"})"));
    auto r = run({binPath("provisr"), "group-status", "--api-url", l.url(), "--group", "nosuch"});
    CHECK(r.exit_code == 4);
  }
  {
    Listener l("SSH-2.0-OpenSSH_9.2\r\n");
    auto r = run({binPath("provisr"), "status", "--api-url", l.url()});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("not reachable at " + l.url()) != std::string::npos);
    CHECK(r.err.find("not an HTTP answer") != std::string::npos);
  }
}

TEST_CASE("provisr hands an https URL to provisr-tls, and says so when it is missing", "[cli][http]") {
  using provisr::test::binPath;
  using provisr::test::run;
  REQUIRE(std::filesystem::exists(binPath("provisr-tls")));
  provisr::test::TempDir dir;
  const auto lone = dir.path() / "provisr";
  std::filesystem::copy_file(binPath("provisr"), lone);
  auto r = run({lone.string(), "status", "--api-url", "https://127.0.0.1:1/api"});
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK(r.err.find("needs TLS") != std::string::npos);
  CHECK(r.err.find(dir.str() + "/provisr-tls") != std::string::npos);
  // Beside provisr-tls, the same command reaches the TLS client (nothing listens: exit 3).
  auto handed = run({binPath("provisr"), "status", "--api-url", "https://127.0.0.1:1/api"});
  CHECK(handed.exit_code == 3);
  CHECK(handed.err.find("not reachable at https://127.0.0.1:1/api") != std::string::npos);
}

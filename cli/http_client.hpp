// The CLI's plain HTTP/1.1 client of the gateway: one request per TCP connection, no TLS (an
// https:// daemon is handed to provisr-tls, tls_handoff.hpp), no libraries beyond libc. The
// response reader is a byte-fed state machine so tests drive it without sockets.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace provisr::cli {

struct HttpResponse {
  int status = 0;     // 0 when the daemon could not be reached or its answer was not HTTP
  std::string body;
  std::string error;  // what went wrong when status == 0
};

namespace http {

struct Url {
  std::string scheme;       // "http" or "https"
  std::string host;         // a name or an address, IPv6 without its brackets
  std::string host_header;  // host[:port] as the URL wrote it, for the Host header
  std::uint16_t port = 0;
  std::string path;         // the base path, without a trailing slash ("/api", or "")
};

// "scheme://host[:port][/path]"; a URL without a scheme is http. nullopt (and `error` set) when
// it is not one this client can use.
std::optional<Url> parseUrl(std::string_view url, std::string* error);

struct Timeouts {
  std::chrono::milliseconds connect{2000};  // per address tried
  std::chrono::milliseconds read{60000};    // longest silence while the answer is awaited; 0 = none
  std::chrono::milliseconds write{10000};
};

// Decodes one HTTP/1.x response from the bytes of a connection: the status line, the headers,
// and a body framed by Content-Length, chunked transfer coding, or the end of the connection.
class ResponseReader {
 public:
  enum class State { kHead, kBody, kDone, kError };
  // With `on_body` set, body bytes are handed to it as they are decoded instead of collected;
  // it returns false to stop reading (the reader is then done).
  explicit ResponseReader(std::function<bool(std::string_view)> on_body = {});

  State feed(std::string_view data);
  // The peer closed the connection: ends a body that runs to the close, anything else unfinished
  // is an error.
  State finish();

  State state() const { return state_; }
  int status() const { return status_; }
  std::string& body() { return body_; }
  const std::string& error() const { return error_; }
  // Body bytes decoded so far, and the Content-Length announced (nullopt when none).
  std::size_t bodyBytes() const { return body_bytes_; }
  std::optional<std::size_t> contentLength() const { return content_length_; }

 private:
  enum class Framing { kNone, kLength, kChunked, kToClose };
  enum class Chunk { kSize, kData, kDataEnd, kTrailer };
  State fail(std::string message);
  State parseHead();
  State feedBody(std::string_view data);
  bool deliver(std::string_view bytes);

  std::function<bool(std::string_view)> on_body_;
  State state_ = State::kHead;
  Framing framing_ = Framing::kNone;
  Chunk chunk_ = Chunk::kSize;
  int status_ = 0;
  std::string head_;   // bytes of the head seen so far
  std::string line_;   // a partial chunk-size or trailer line
  std::string body_;
  std::string error_;
  std::size_t remaining_ = 0;  // bytes left in the body (kLength) or in the chunk (kData)
  std::size_t body_bytes_ = 0;
  std::optional<std::size_t> content_length_;
};

struct Request {
  std::string_view method = "GET";
  std::string_view target;  // path and query below the URL's base path
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

// Connects to `url` (each address of its host in turn), sends `req` with `Connection: close`
// (and Content-Length / Content-Type: application/json for a POST), and reads the answer.
HttpResponse perform(const Url& url, const Request& req, const Timeouts& timeouts,
                     const std::function<bool(std::string_view)>& on_body = {});

}  // namespace http
}  // namespace provisr::cli

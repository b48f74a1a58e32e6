// The plain HTTP/1.1 client of http_client.hpp: URL parsing, the response reader, and one
// request over a non-blocking socket with poll() deadlines.
#include "cli/http_client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

namespace provisr::cli::http {

namespace {

constexpr std::size_t kMaxHead = 64 * 1024;
constexpr std::size_t kMaxLine = 8 * 1024;
constexpr std::size_t kMaxBody = std::size_t{1} << 30;

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The first bytes of something that is not HTTP, printable, for an error message.
std::string preview(std::string_view bytes) {
  std::string out;
  for (char c : bytes.substr(0, 40)) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string describe(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace

std::optional<Url> parseUrl(std::string_view text, std::string* error) {
  auto fail = [&](std::string message) -> std::optional<Url> {
    if (error) *error = std::move(message);
    return std::nullopt;
  };
  Url url;
  std::string_view rest = text;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    std::string scheme(rest.substr(0, sep));
    for (auto& c : scheme) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (scheme != "http" && scheme != "https") return fail("unsupported URL scheme '" + scheme + "' (use http:// or https://)");
    url.scheme = scheme;
    rest.remove_prefix(sep + 3);
  } else {
    url.scheme = "http";
  }
  auto path_start = rest.find('/');
  std::string_view authority = rest.substr(0, path_start);
  std::string_view path = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  if (authority.find('@') != std::string_view::npos) return fail("user names in the URL are not supported: use --token");
  if (authority.empty()) return fail("no host in '" + std::string(text) + "'");
  url.host_header = std::string(authority);
  std::string_view port;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("unclosed '[' in '" + std::string(text) + "'");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return fail("unexpected text after ']' in '" + std::string(text) + "'");
      port = after.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    url.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    url.host = std::string(authority);
  }
  if (url.host.empty()) return fail("no host in '" + std::string(text) + "'");
  if (port.empty()) {
    url.port = url.scheme == "https" ? 443 : 80;
  } else {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
      return fail("bad port '" + std::string(port) + "' in '" + std::string(text) + "'");
    url.port = static_cast<std::uint16_t>(value);
  }
  url.path = std::string(path);
  if (auto q = url.path.find_first_of("?#"); q != std::string::npos) url.path.erase(q);
  while (!url.path.empty() && url.path.back() == '/') url.path.pop_back();
  return url;
}

ResponseReader::ResponseReader(std::function<bool(std::string_view)> on_body) : on_body_(std::move(on_body)) {}

ResponseReader::State ResponseReader::fail(std::string message) {
  error_ = std::move(message);
  state_ = State::kError;
  return state_;
}

bool ResponseReader::deliver(std::string_view bytes) {
  if (bytes.empty()) return true;
  body_bytes_ += bytes.size();
  if (on_body_) {
    if (!on_body_(bytes)) {
      state_ = State::kDone;
      return false;
    }
    return true;
  }
  if (body_.size() + bytes.size() > kMaxBody) {
    fail("the answer's body is larger than 1 GiB");
    return false;
  }
  body_.append(bytes);
  return true;
}

ResponseReader::State ResponseReader::feed(std::string_view data) {
  if (state_ == State::kHead) {
    // The head ends at the first empty line ("\n\n" or "\n\r\n"); the bytes after it are the
    // body's and are decoded from `data` where they are.
    auto before = [&](std::size_t i, std::size_t back) -> int {
      if (i >= back) return static_cast<unsigned char>(data[i - back]);
      const std::size_t from_end = back - i;
      return head_.size() >= from_end ? static_cast<unsigned char>(head_[head_.size() - from_end]) : -1;
    };
    std::size_t end = std::string_view::npos;
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (data[i] != '\n') continue;
      if (before(i, 1) == '\n' || (before(i, 1) == '\r' && before(i, 2) == '\n')) {
        end = i + 1;
        break;
      }
    }
    head_.append(data.substr(0, end));
    if (end == std::string_view::npos) {
      // A status line begins with "HTTP/": anything else is refused without waiting for more.
      constexpr std::string_view kWant = "HTTP/";
      const std::size_t n = std::min(head_.size(), kWant.size());
      if (std::string_view(head_).substr(0, n) != kWant.substr(0, n))
        return fail("not an HTTP answer: '" + preview(head_) + "'");
      if (head_.size() > kMaxHead) return fail("the answer's headers are longer than 64 KiB");
      return state_;
    }
    if (head_.size() > kMaxHead) return fail("the answer's headers are longer than 64 KiB");
    const std::string_view rest = data.substr(end);
    if (parseHead() == State::kError) return state_;
    if (state_ == State::kHead) {
      // An interim 1xx answer: the real one follows.
      head_.clear();
      return rest.empty() ? state_ : feed(rest);
    }
    if (state_ == State::kBody) return feedBody(rest);
    return state_;
  }
  if (state_ == State::kBody) return feedBody(data);
  return state_;
}

ResponseReader::State ResponseReader::parseHead() {
  std::string_view head(head_);
  auto eol = head.find('\n');
  std::string_view status_line = trim(head.substr(0, eol));
  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ' ||
      (status_line.size() > 12 && status_line[12] != ' '))
    return fail("not an HTTP answer: '" + preview(status_line) + "'");
  int code = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    char c = status_line[i];
    if (c < '0' || c > '9') return fail("not an HTTP answer: '" + preview(status_line) + "'");
    code = code * 10 + (c - '0');
  }
  if (code < 100) return fail("not an HTTP answer: '" + preview(status_line) + "'");
  bool chunked = false;
  std::optional<std::size_t> length;
  std::string_view rest = eol == std::string_view::npos ? std::string_view{} : head.substr(eol + 1);
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    line = trim(line);
    if (line.empty()) continue;
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return fail("a header line without ':' in the answer: '" + preview(line) + "'");
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "Content-Length")) {
      std::size_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || value.empty())
        return fail("a bad Content-Length in the answer: '" + preview(value) + "'");
      if (length && *length != n) return fail("two different Content-Length headers in the answer");
      length = n;
    } else if (iequals(name, "Transfer-Encoding")) {
      // The last coding decides: "gzip, chunked" is chunked, and this client asks for no gzip.
      auto comma = value.rfind(',');
      std::string_view last = trim(comma == std::string_view::npos ? value : value.substr(comma + 1));
      chunked = iequals(last, "chunked");
      if (!chunked) return fail("an answer in a transfer coding this client does not read: '" + preview(value) + "'");
    }
  }
  if (code < 200 && code != 101) {
    status_ = 0;
    return state_;  // interim answer: stay in kHead
  }
  status_ = code;
  if (code == 204 || code == 304 || code == 101) {
    state_ = State::kDone;
    return state_;
  }
  if (chunked) {
    framing_ = Framing::kChunked;
  } else if (length) {
    framing_ = Framing::kLength;
    content_length_ = length;
    remaining_ = *length;
    if (*length > kMaxBody) return fail("the answer's body is larger than 1 GiB");
    if (*length == 0) {
      state_ = State::kDone;
      return state_;
    }
  } else {
    framing_ = Framing::kToClose;
  }
  state_ = State::kBody;
  return state_;
}

ResponseReader::State ResponseReader::feedBody(std::string_view data) {
  while (state_ == State::kBody && !data.empty()) {
    switch (framing_) {
      case Framing::kToClose:
        deliver(data);
        return state_;
      case Framing::kLength: {
        std::size_t n = std::min(remaining_, data.size());
        remaining_ -= n;
        if (!deliver(data.substr(0, n))) return state_;
        data.remove_prefix(n);
        if (remaining_ == 0) state_ = State::kDone;
        return state_;
      }
      case Framing::kChunked:
        break;
      case Framing::kNone:
        state_ = State::kDone;
        return state_;
    }
    if (chunk_ == Chunk::kData) {
      std::size_t n = std::min(remaining_, data.size());
      remaining_ -= n;
      if (!deliver(data.substr(0, n))) return state_;
      data.remove_prefix(n);
      if (remaining_ == 0) chunk_ = Chunk::kDataEnd;
      continue;
    }
    // kSize, kDataEnd and kTrailer read lines.
    auto nl = data.find('\n');
    line_.append(data.substr(0, nl));
    if (line_.size() > kMaxLine) return fail("a chunk header or trailer longer than 8 KiB in the answer");
    if (nl == std::string_view::npos) return state_;
    data.remove_prefix(nl + 1);
    std::string_view line = line_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (chunk_ == Chunk::kDataEnd) {
      if (!line.empty()) return fail("a chunk of the answer is longer than its size says");
      chunk_ = Chunk::kSize;
    } else if (chunk_ == Chunk::kSize) {
      std::string_view hex = trim(line.substr(0, line.find(';')));
      std::size_t size = 0;
      auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), size, 16);
      if (hex.empty() || ec != std::errc{} || end != hex.data() + hex.size())
        return fail("a bad chunk size in the answer: '" + preview(line) + "'");
      if (size > kMaxBody - std::min(kMaxBody, body_bytes_)) return fail("the answer's body is larger than 1 GiB");
      if (size == 0) {
        chunk_ = Chunk::kTrailer;
      } else {
        remaining_ = size;
        chunk_ = Chunk::kData;
      }
    } else if (line.empty()) {  // kTrailer: an empty line ends the message
      state_ = State::kDone;
    }
    line_.clear();
  }
  return state_;
}

ResponseReader::State ResponseReader::finish() {
  if (state_ == State::kDone || state_ == State::kError) return state_;
  if (state_ == State::kHead) {
    if (head_.empty()) return fail("the connection closed without an answer");
    return fail("the connection closed in the middle of the answer's headers");
  }
  if (framing_ == Framing::kToClose) {
    state_ = State::kDone;
    return state_;
  }
  if (framing_ == Framing::kLength)
    return fail("the connection closed after " + std::to_string(body_bytes_) + " of " +
                std::to_string(*content_length_) + " bytes of the answer");
  return fail("the connection closed in the middle of a chunked answer (" + std::to_string(body_bytes_) +
              " bytes read)");
}

namespace {

using Clock = std::chrono::steady_clock;

// Waits for `events` on `fd` until `deadline` (none when nullopt); false on timeout.
bool waitFor(int fd, short events, std::optional<Clock::time_point> deadline) {
  for (;;) {
    int timeout = -1;
    if (deadline) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      timeout = static_cast<int>(std::clamp<long long>(left, 0, 1 << 30));
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, timeout);
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // the read or write that follows reports the error
  }
}

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Socket() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family = AF_INET;
};

// Numeric addresses need no resolver (and load no NSS module); names go through getaddrinfo.
std::vector<Address> resolve(const Url& url, std::string* error) {
  std::vector<Address> out;
  Address a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.addr);
  if (::inet_pton(AF_INET, url.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(url.port);
    a.len = sizeof(sockaddr_in);
    a.family = AF_INET;
    out.push_back(a);
    return out;
  }
  if (::inet_pton(AF_INET6, url.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(url.port);
    a.len = sizeof(sockaddr_in6);
    a.family = AF_INET6;
    out.push_back(a);
    return out;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(url.port);
  if (int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    *error = "cannot resolve '" + url.host + "': " + ::gai_strerror(rc);
    return out;
  }
  for (auto* p = res; p; p = p->ai_next) {
    if (p->ai_addrlen > sizeof(sockaddr_storage)) continue;
    Address r;
    std::memcpy(&r.addr, p->ai_addr, p->ai_addrlen);
    r.len = p->ai_addrlen;
    r.family = p->ai_family;
    out.push_back(r);
  }
  ::freeaddrinfo(res);
  if (out.empty()) *error = "cannot resolve '" + url.host + "': no address";
  return out;
}

Socket connectTo(const Url& url, std::chrono::milliseconds timeout, std::string* error) {
  std::string where = url.host_header;
  auto addrs = resolve(url, error);
  for (const auto& a : addrs) {
    Socket s(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (s.get() < 0) {
      *error = std::string("socket: ") + std::strerror(errno);
      continue;
    }
    int rc = ::connect(s.get(), reinterpret_cast<const sockaddr*>(&a.addr), a.len);
    if (rc != 0 && errno == EINPROGRESS) {
      if (!waitFor(s.get(), POLLOUT, Clock::now() + timeout)) {
        *error = "no connection to " + where + " within " + describe(timeout);
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc != 0) {
      *error = errno == ECONNREFUSED ? "connection refused by " + where
                                     : "cannot connect to " + where + ": " + std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    error->clear();
    return s;
  }
  return Socket();
}

bool sendAll(int fd, std::string_view data, std::chrono::milliseconds timeout, std::string* error) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd, POLLOUT, Clock::now() + timeout)) {
        *error = "the request could not be sent within " + describe(timeout);
        return false;
      }
      continue;
    }
    *error = std::string("sending the request failed: ") + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

HttpResponse perform(const Url& url, const Request& req, const Timeouts& timeouts,
                     const std::function<bool(std::string_view)>& on_body) {
  HttpResponse out;
  Socket s = connectTo(url, timeouts.connect, &out.error);
  if (s.get() < 0) return out;

  std::string text;
  text.reserve(256 + req.target.size() + req.body.size());
  text.append(req.method).append(" ").append(url.path).append(req.target).append(" HTTP/1.1\r\n");
  text.append("Host: ").append(url.host_header).append("\r\n");
  text.append("User-Agent: provisr-cli\r\nConnection: close\r\n");
  bool accept = false;
  for (const auto& [k, v] : req.headers) {
    text.append(k).append(": ").append(v).append("\r\n");
    accept = accept || iequals(k, "Accept");
  }
  if (!accept) text.append("Accept: */*\r\n");
  const bool post = req.method != "GET" && req.method != "HEAD";
  if (post || !req.body.empty()) {
    text.append("Content-Type: application/json\r\n");
    text.append("Content-Length: ").append(std::to_string(req.body.size())).append("\r\n");
  }
  text.append("\r\n").append(req.body);
  if (!sendAll(s.get(), text, timeouts.write, &out.error)) {
    out.error += " (" + url.host_header + ")";
    return out;
  }

  // A streamed answer goes to `on_body` only when it is a success; an error answer's body is
  // collected for the message.
  const ResponseReader* self = nullptr;
  std::function<bool(std::string_view)> sink;
  if (on_body) {
    sink = [&](std::string_view bytes) {
      if (self->status() < 200 || self->status() >= 300) {
        out.body.append(bytes);
        return true;
      }
      return on_body(bytes);
    };
  }
  ResponseReader reader(sink);
  self = &reader;
  // A stream that ends after a success head, however it ends, is over rather than failed.
  auto ended = [&](std::string error) {
    if (on_body && reader.status() >= 200 && reader.state() != ResponseReader::State::kHead) {
      out.status = reader.status();
      return out;
    }
    out.body.clear();
    out.error = std::move(error);
    return out;
  };
  char buf[64 * 1024];
  for (;;) {
    std::optional<Clock::time_point> deadline;
    if (timeouts.read.count() > 0) deadline = Clock::now() + timeouts.read;
    if (!waitFor(s.get(), POLLIN, deadline)) {
      std::string error = "no answer from " + url.host_header + " within " + describe(timeouts.read);
      if (reader.state() == ResponseReader::State::kBody) error += " (the answer stopped midway)";
      return ended(std::move(error));
    }
    ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) return ended("reading the answer from " + url.host_header + " failed: " + std::strerror(errno));
    auto st = n == 0 ? reader.finish() : reader.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    if (st == ResponseReader::State::kError) return ended(url.host_header + ": " + reader.error());
    if (st == ResponseReader::State::kDone) break;
  }
  out.status = reader.status();
  if (!on_body) out.body = std::move(reader.body());
  return out;
}

}  // namespace provisr::cli::http

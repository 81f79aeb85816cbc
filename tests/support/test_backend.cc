#include "tests/support/test_backend.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "tests/support/body_pattern.h"
#include "tests/support/net.h"

namespace portico::test {

struct TestBackend::Connection {
  int fd = -1;
  SSL* ssl = nullptr;  // BackendOptions::tls: every byte goes through it
  int id = 0;
  std::thread thread;
  bool done = false;
};

namespace {

// A connection's socket, plain or through TLS: blocking I/O either way.
struct Io {
  int fd = -1;
  SSL* ssl = nullptr;
};

ssize_t io_recv(const Io& io, char* buf, size_t cap) {
  if (!io.ssl) return ::recv(io.fd, buf, cap, 0);
  size_t n = 0;
  if (SSL_read_ex(io.ssl, buf, cap, &n) == 1) return static_cast<ssize_t>(n);
  return SSL_get_error(io.ssl, 0) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

bool send_all(const Io& io, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = 0;
    if (io.ssl) {
      size_t written = 0;
      n = SSL_write_ex(io.ssl, data.data(), data.size(), &written) == 1
              ? static_cast<ssize_t>(written)
              : -1;
    } else {
      n = ::send(io.fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
    }
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 413:
      return "Content Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

// One request being parsed; the parser pauses after each complete message so that responses are
// written in order, one at a time, like a simple origin does.
struct RequestParser {
  llhttp_t parser;
  llhttp_settings_t settings;
  Io io;
  bool send_100_continue = true;
  ReceivedRequest current;
  BodyHash hash;
  bool in_headers = true;
  HeaderCollector collector;
  bool keep_alive = false;
  bool upgrade = false;

  HeaderList& header_target() { return in_headers ? current.headers : current.trailers; }
};

RequestParser* self(llhttp_t* p) { return static_cast<RequestParser*>(p->data); }

int on_message_begin(llhttp_t* p) {
  auto* s = self(p);
  int id = s->current.connection_id;
  int index = s->current.index_on_connection;
  s->current = ReceivedRequest{};
  s->current.connection_id = id;
  s->current.index_on_connection = index;
  s->hash = BodyHash{};
  s->in_headers = true;
  s->collector.reset();
  return 0;
}

int on_url(llhttp_t* p, const char* at, size_t len) {
  self(p)->current.target.append(at, len);
  return 0;
}

int on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  s->collector.field_piece(std::string_view(at, len), s->header_target());
  return 0;
}

int on_header_value(llhttp_t* p, const char* at, size_t len) {
  self(p)->collector.value_piece(std::string_view(at, len));
  return 0;
}

int on_headers_complete(llhttp_t* p) {
  auto* s = self(p);
  s->collector.finish(s->header_target());
  s->in_headers = false;
  ReceivedRequest& r = s->current;
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  r.version = "HTTP/" + std::to_string(p->http_major) + "." + std::to_string(p->http_minor);
  r.chunked = (p->flags & F_CHUNKED) != 0;
  if (s->send_100_continue && p->http_minor >= 1 && iequals(r.header("expect"), "100-continue")) {
    send_all(s->io, "HTTP/1.1 100 Continue\r\n\r\n");
  }
  return 0;
}

int on_body(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  s->hash.update(std::string_view(at, len));
  ReceivedRequest& r = s->current;
  r.body_size += len;
  if (r.body.size() < ReceivedRequest::kMaxKeptBody) {
    r.body.append(at, std::min(len, ReceivedRequest::kMaxKeptBody - r.body.size()));
  }
  return 0;
}

int on_message_complete(llhttp_t* p) {
  auto* s = self(p);
  s->collector.finish(s->header_target());  // trailers
  s->current.body_hash = s->hash.value();
  s->keep_alive = llhttp_should_keep_alive(p) != 0;
  s->upgrade = p->upgrade != 0;
  return HPE_PAUSED;
}

}  // namespace

Response default_response(const ReceivedRequest& request) {
  Response r;
  r.headers = {{"Content-Type", "text/plain"}};
  r.body = "ok " + request.method + " " + request.target;
  return r;
}

Response echo_response(const ReceivedRequest& request) {
  Response r;
  std::string type = request.header("content-type");
  r.headers = {{"Content-Type", type.empty() ? "application/octet-stream" : type}};
  r.body = request.body;
  return r;
}

TestBackend::TestBackend(Handler handler, BackendOptions options)
    : handler_(std::move(handler)), options_(std::move(options)) {
  sockaddr_storage ss;
  unsigned len = fill_sockaddr(options_.host, 0, &ss);
  if (len == 0) throw std::invalid_argument("TestBackend: bad host " + options_.host);
  listen_fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t slen = len;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      ::listen(listen_fd_, 512) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &slen) != 0) {
    std::string err = strerror(errno);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    throw std::runtime_error("TestBackend: listen: " + err);
  }
  port_ = ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                        : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

TestBackend::~TestBackend() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  // Linux wakes a thread blocked in accept() when the listening socket is shut down.
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  {
    std::lock_guard lock(mutex_);
    for (auto& c : connections_) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);  // wakes recv/send on every connection
    }
  }
  for (auto& c : connections_) {
    if (c.thread.joinable()) c.thread.join();
  }
}

std::string TestBackend::address() const {
  return (options_.host.find(':') != std::string::npos ? "[" + options_.host + "]"
                                                       : options_.host) +
         ":" + std::to_string(port_);
}

void TestBackend::accept_loop() {
  for (;;) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    std::lock_guard lock(mutex_);
    if (stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE) continue;
      return;
    }
    // Join finished connection threads so that a long test does not accumulate them.
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (it->done) {
        it->thread.join();
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
    Connection& conn = connections_.emplace_back();
    conn.fd = fd;
    conn.id = ++accepted_;
    ++open_;
    raw_.emplace_back();
    conn.thread = std::thread([this, c = &conn] { serve(c); });
    changed_.notify_all();
  }
}

void TestBackend::record_raw(int id, const char* data, size_t len) {
  std::lock_guard lock(mutex_);
  std::string& raw = raw_[static_cast<size_t>(id - 1)];
  if (raw.size() < options_.max_raw_kept) {
    raw.append(data, std::min(len, options_.max_raw_kept - raw.size()));
  }
}

bool TestBackend::wait_stopping(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, delay, [this] { return stopping_; });
}

void TestBackend::hold(Connection* conn) {
  char buf[16384];
  for (;;) {
    ssize_t n = io_recv(Io{conn->fd, conn->ssl}, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the peer closed, or the destructor shut the socket down
    record_raw(conn->id, buf, static_cast<size_t>(n));
  }
}

void TestBackend::serve(Connection* conn) {
  RequestParser s;
  llhttp_settings_init(&s.settings);
  s.settings.on_message_begin = on_message_begin;
  s.settings.on_url = on_url;
  s.settings.on_header_field = on_header_field;
  s.settings.on_header_value = on_header_value;
  s.settings.on_headers_complete = on_headers_complete;
  s.settings.on_body = on_body;
  s.settings.on_message_complete = on_message_complete;
  llhttp_init(&s.parser, HTTP_REQUEST, &s.settings);
  s.parser.data = &s;
  if (options_.tls) {
    conn->ssl = SSL_new(options_.tls);
    SSL_set_fd(conn->ssl, conn->fd);
    const bool ok = SSL_accept(conn->ssl) == 1;
    const char* sni = SSL_get_servername(conn->ssl, TLSEXT_NAMETYPE_host_name);
    {
      std::lock_guard lock(mutex_);
      if (ok) {
        tls_server_names_.push_back(sni ? sni : "");
        if (SSL_session_reused(conn->ssl)) ++tls_resumed_;
      } else {
        ++tls_failures_;
      }
      changed_.notify_all();
    }
    if (!ok) {
      finish(conn);
      return;
    }
  }
  const Io io{conn->fd, conn->ssl};
  s.io = io;
  s.send_100_continue = options_.send_100_continue;
  s.current.connection_id = conn->id;

  bool open = true;
  bool lingering_close = true;
  bool close_notify = true;
  std::vector<char> buf(64 * 1024);
  while (open) {
    ssize_t n = io_recv(io, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      lingering_close = false;
      break;
    }
    record_raw(conn->id, buf.data(), static_cast<size_t>(n));
    const char* p = buf.data();
    size_t len = static_cast<size_t>(n);
    while (open && len > 0) {
      llhttp_errno_t err = llhttp_execute(&s.parser, p, len);
      if (err == HPE_OK) break;
      if (err != HPE_PAUSED) {
        std::string what =
            std::string(llhttp_errno_name(err)) + ": " + llhttp_get_error_reason(&s.parser);
        {
          std::lock_guard lock(mutex_);
          parse_errors_.push_back(what);
          changed_.notify_all();
        }
        send_all(io, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        open = false;
        break;
      }
      const char* pos = llhttp_get_error_pos(&s.parser);
      len -= static_cast<size_t>(pos - p);
      p = pos;
      llhttp_resume(&s.parser);

      ReceivedRequest request = s.current;
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(request);
        changed_.notify_all();
      }
      ++s.current.index_on_connection;
      Response response;
      open = respond(conn, request, s.keep_alive && !s.upgrade, &response);
      if (response.skip_close_notify) close_notify = false;
      if (s.upgrade) {
        // After a 101 the bytes are another protocol: just record them. Anything else ends the
        // connection, since the parser cannot go back to HTTP after an upgrade request.
        if (open || response.status == 101) hold(conn);
        open = false;
        lingering_close = false;
      }
    }
  }

  if (conn->ssl && close_notify) SSL_shutdown(conn->ssl);
  if (lingering_close) {
    // Close gracefully: a close with unread input sends RST, which can destroy the response still
    // in flight to the peer. So send FIN, drain for a bounded time, then close.
    ::shutdown(conn->fd, SHUT_WR);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{conn->fd, POLLIN, 0};
      if (::poll(&pfd, 1, 100) < 0 && errno != EINTR) break;
      if (pfd.revents == 0) {
        std::lock_guard lock(mutex_);
        if (stopping_) break;
        continue;
      }
      char drain[4096];
      if (::recv(conn->fd, drain, sizeof drain, 0) <= 0) break;
    }
  }
  finish(conn);
}

void TestBackend::finish(Connection* conn) {
  std::lock_guard lock(mutex_);
  if (conn->ssl) SSL_free(conn->ssl);
  conn->ssl = nullptr;
  ::close(conn->fd);
  conn->fd = -1;
  --open_;
  conn->done = true;
  changed_.notify_all();
}

bool TestBackend::respond(Connection* conn, const ReceivedRequest& request, bool keep_alive,
                          Response* out) {
  Response& r = *out;
  r = handler_(request);
  if (r.never_respond) {
    hold(conn);
    return false;
  }
  if (r.delay_before_headers.count() > 0 && wait_stopping(r.delay_before_headers)) return false;
  if (r.close_without_response) return false;
  if (!r.raw.empty()) {
    const bool corked = !r.raw_late.empty() && r.raw_late_delay.count() == 0;
    int on = 1, off = 0;
    if (corked) setsockopt(conn->fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    if (!send_all(Io{conn->fd, conn->ssl}, r.raw)) return false;
    if (!r.raw_late.empty()) {
      if (r.raw_late_delay.count() > 0 && wait_stopping(r.raw_late_delay)) return false;
      if (!send_all(Io{conn->fd, conn->ssl}, r.raw_late)) return false;
    }
    if (corked) setsockopt(conn->fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
    return keep_alive && !r.close_after;
  }

  bool bodiless = r.status / 100 == 1 || r.status == 204 || r.status == 304;
  bool head = request.method == "HEAD";
  uint64_t body_size = r.generated_body_size > 0 ? r.generated_body_size : r.body.size();
  bool close =
      !keep_alive || r.close_after || r.close_mid_body || r.framing == Response::kCloseDelimited;
  bool chunked = r.framing == Response::kChunked && !bodiless;

  std::string head_text =
      "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  for (const auto& [name, value] : r.headers) head_text += name + ": " + value + "\r\n";
  bool framed_by_handler =
      has_header(r.headers, "content-length") || has_header(r.headers, "transfer-encoding");
  if (!framed_by_handler && !bodiless) {
    if (r.framing == Response::kContentLength) {
      head_text += "Content-Length: " + std::to_string(body_size) + "\r\n";
    } else if (chunked) {
      head_text += "Transfer-Encoding: chunked\r\n";
    }
  }
  if (close && !has_header(r.headers, "connection")) head_text += "Connection: close\r\n";
  head_text += "\r\n";
  if (!send_all(Io{conn->fd, conn->ssl}, head_text)) return false;
  if (head || bodiless) return !close;

  uint64_t to_send = r.close_mid_body ? body_size / 2 : body_size;
  size_t piece = std::max<size_t>(r.piece_size, 1);
  std::string buf;
  for (uint64_t off = 0; off < to_send;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(piece, to_send - off));
    if (r.generated_body_size > 0) {
      buf.resize(n);
      pattern_fill(off, buf.data(), n);
    } else {
      buf.assign(r.body, static_cast<size_t>(off), n);
    }
    if (chunked) {
      char size_line[32];
      snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      buf.insert(0, size_line);
      buf += "\r\n";
    }
    if (!send_all(Io{conn->fd, conn->ssl}, buf)) return false;
    off += n;
    if (off < to_send && r.delay_between_pieces.count() > 0 &&
        wait_stopping(r.delay_between_pieces)) {
      return false;
    }
  }
  if (chunked && !r.close_mid_body && !send_all(Io{conn->fd, conn->ssl}, "0\r\n\r\n")) {
    return false;
  }
  return !close;
}

std::vector<ReceivedRequest> TestBackend::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

size_t TestBackend::request_count() const {
  std::lock_guard lock(mutex_);
  return requests_.size();
}

bool TestBackend::wait_for_requests(size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
}

int TestBackend::connections_accepted() const {
  std::lock_guard lock(mutex_);
  return accepted_;
}

int TestBackend::connections_open() const {
  std::lock_guard lock(mutex_);
  return open_;
}

bool TestBackend::wait_for_no_open_connections(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return open_ == 0; });
}

std::vector<std::string> TestBackend::raw_received() const {
  std::lock_guard lock(mutex_);
  return raw_;
}

std::vector<std::string> TestBackend::parse_errors() const {
  std::lock_guard lock(mutex_);
  return parse_errors_;
}

std::vector<std::string> TestBackend::tls_server_names() const {
  std::lock_guard lock(mutex_);
  return tls_server_names_;
}

int TestBackend::tls_failures() const {
  std::lock_guard lock(mutex_);
  return tls_failures_;
}

int TestBackend::tls_resumed() const {
  std::lock_guard lock(mutex_);
  return tls_resumed_;
}

}  // namespace portico::test

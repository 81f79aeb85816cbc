#include "proxy/probe.h"

#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "proxy/cidr.h"
#include "proxy/http_head.h"
#include "proxy/upstream_pool.h"
#include "proxy/ws_frames.h"
#include "tls/upstream_tls.h"

namespace portico {
namespace {

using Clock = std::chrono::steady_clock;

// Bounds the response head a probe reads: anything longer is not a backend we can talk to.
constexpr size_t kMaxHead = 64 * 1024;

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(Socket&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Socket& operator=(Socket&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd; false on timeout or poll error (`error` says which).
bool wait_fd(int fd, short events, Clock::time_point deadline, std::string* error) {
  while (true) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return true;
    if (rc == 0) {
      *error = "timed out";
      return false;
    }
    if (errno != EINTR) {
      *error = std::string("poll: ") + std::strerror(errno);
      return false;
    }
  }
}

// One connect, within the deadline; *error names the address when it fails.
Socket connect_one(const sockaddr_storage& addr, Clock::time_point deadline, std::string* error) {
  const std::string where = "connect " + address_text(addr) + ": ";
  Socket sock(::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (sock.fd() < 0) {
    *error = where + "socket: " + std::strerror(errno);
    return Socket();
  }
  const socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::connect(sock.fd(), reinterpret_cast<const sockaddr*>(&addr), len) != 0 &&
      errno != EINPROGRESS) {
    *error = where + std::strerror(errno);
    return Socket();
  }
  if (!wait_fd(sock.fd(), POLLOUT, deadline, error)) {
    *error = where + *error;
    return Socket();
  }
  int so_error = 0;
  socklen_t so_len = sizeof so_error;
  ::getsockopt(sock.fd(), SOL_SOCKET, SO_ERROR, &so_error, &so_len);
  if (so_error != 0) {
    *error = where + std::strerror(so_error);
    return Socket();
  }
  int one = 1;
  ::setsockopt(sock.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return sock;
}

// The backend's addresses in the order requests try them (backend_address_order), each after
// the one before failed and each with `timeout` of its own, as the proxy gives each address
// the route's connect_timeout. *connected names the one that answered, *earlier says why the
// ones before it did not.
Socket connect_to(const BackendAddress& backend, Clock::duration timeout, std::string* error,
                  std::string* connected, std::string* earlier) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = backend.host_is_ip ? AI_NUMERICHOST : 0;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(backend.port);
  if (int rc = ::getaddrinfo(backend.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    *error = std::string("cannot resolve ") + backend.host + ": " + ::gai_strerror(rc);
    return Socket();
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  const std::vector<sockaddr_storage> order = backend_address_order(list.get());
  if (order.empty()) {
    *error = "cannot resolve " + backend.host + ": no IPv4 or IPv6 address";
    return Socket();
  }
  std::string failures;
  for (const sockaddr_storage& addr : order) {
    std::string attempt_error;
    Socket sock = connect_one(addr, Clock::now() + timeout, &attempt_error);
    if (sock.fd() >= 0) {
      *connected = address_text(addr);
      *earlier = failures;
      return sock;
    }
    if (!failures.empty()) failures += "; ";
    failures += attempt_error;
  }
  *error = failures;
  return Socket();
}

// A connected socket, optionally with TLS over it; send() and recv() return what send(2) and
// recv(2) would (-1 with errno EAGAIN when the socket must become ready first), and *events
// says which readiness to wait for.
class Channel {
 public:
  Channel(Socket sock, SSL* ssl) : sock_(std::move(sock)), ssl_(ssl) {}
  ~Channel() {
    if (ssl_) SSL_free(ssl_);
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  int fd() const { return sock_.fd(); }

  ssize_t send(std::string_view data, short* events) {
    *events = POLLOUT;
    if (!ssl_) return ::send(sock_.fd(), data.data(), data.size(), MSG_NOSIGNAL);
    size_t n = 0;
    if (SSL_write_ex(ssl_, data.data(), data.size(), &n) == 1) return static_cast<ssize_t>(n);
    return tls_failure(-1, events);
  }
  ssize_t recv(char* buf, size_t cap, short* events) {
    *events = POLLIN;
    if (!ssl_) return ::recv(sock_.fd(), buf, cap, 0);
    size_t n = 0;
    if (SSL_read_ex(ssl_, buf, cap, &n) == 1) return static_cast<ssize_t>(n);
    return tls_failure(-1, events);
  }
  // The TLS handshake, within the deadline; false with *error set when it fails.
  bool handshake(Clock::time_point deadline, std::string* error) {
    for (;;) {
      ERR_clear_error();
      int rc = SSL_connect(ssl_);
      if (rc == 1) return true;
      short events = 0;
      if (tls_failure(rc, &events) == -1 && errno == EAGAIN) {
        if (!wait_fd(sock_.fd(), events, deadline, error)) {
          *error = "tls handshake: " + *error;
          return false;
        }
        continue;
      }
      std::string why = upstream_verify_failure(ssl_);
      *error = "tls handshake: " + (why.empty() ? openssl_error_text() : why);
      return false;
    }
  }

 private:
  // Maps an SSL failure onto errno: EAGAIN (wait for *events), 0 for close_notify (returns 0),
  // EPROTO otherwise.
  ssize_t tls_failure(int rc, short* events) {
    switch (SSL_get_error(ssl_, rc)) {
      case SSL_ERROR_WANT_READ:
        *events = POLLIN;
        errno = EAGAIN;
        return -1;
      case SSL_ERROR_WANT_WRITE:
        *events = POLLOUT;
        errno = EAGAIN;
        return -1;
      case SSL_ERROR_ZERO_RETURN:
        return 0;
      default:
        errno = EPROTO;
        return -1;
    }
  }

  Socket sock_;
  SSL* ssl_;
};

bool send_all(Channel& channel, std::string_view data, Clock::time_point deadline,
              std::string* error) {
  while (!data.empty()) {
    short events = 0;
    ssize_t n = channel.send(data, &events);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(channel.fd(), events, deadline, error)) return false;
    } else {
      *error = std::string("send: ") + std::strerror(errno);
      return false;
    }
  }
  return true;
}

struct ResponseHead {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string field, value;  // the header being parsed (llhttp may deliver it in pieces)
  bool complete = false;

  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (n.size() == name.size() && ::strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
    }
    return "";
  }
};

int on_field(llhttp_t* p, const char* at, size_t len) {
  static_cast<ResponseHead*>(p->data)->field.append(at, len);
  return 0;
}
int on_value(llhttp_t* p, const char* at, size_t len) {
  static_cast<ResponseHead*>(p->data)->value.append(at, len);
  return 0;
}
int on_value_complete(llhttp_t* p) {
  auto* head = static_cast<ResponseHead*>(p->data);
  head->headers.emplace_back(std::move(head->field), std::move(head->value));
  head->field.clear();
  head->value.clear();
  return 0;
}
int on_headers_complete(llhttp_t* p) {
  auto* head = static_cast<ResponseHead*>(p->data);
  head->status = p->status_code;
  head->complete = true;
  return HPE_PAUSED;  // the head is all a probe wants
}

// Reads until a complete, well-formed response head arrived.
bool read_head(Channel& channel, ResponseHead* head, Clock::time_point deadline,
               std::string* error) {
  llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_header_field = on_field;
  settings.on_header_value = on_value;
  settings.on_header_value_complete = on_value_complete;
  settings.on_headers_complete = on_headers_complete;
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parser.data = head;
  size_t total = 0;
  char buf[4096];
  while (!head->complete) {
    short events = 0;
    ssize_t n = channel.recv(buf, sizeof buf, &events);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(channel.fd(), events, deadline, error)) {
        *error = total == 0 ? "no response: " + *error : "incomplete response head: " + *error;
        return false;
      }
      continue;
    }
    if (n < 0) {
      *error = std::string("recv: ") + std::strerror(errno);
      return false;
    }
    if (n == 0) {
      *error = total == 0 ? "connection closed without a response"
                          : "connection closed in the middle of the response head";
      return false;
    }
    total += static_cast<size_t>(n);
    llhttp_errno_t rc = llhttp_execute(&parser, buf, static_cast<size_t>(n));
    if (rc != HPE_OK && rc != HPE_PAUSED) {
      *error = std::string("not a well-formed HTTP response: ") + parse_error_reason(&parser);
      return false;
    }
    if (!head->complete && total > kMaxHead) {
      *error = "response head longer than 64 KiB";
      return false;
    }
  }
  return true;
}

std::string random_ws_key() {
  unsigned char raw[16];
  RAND_bytes(raw, sizeof raw);
  unsigned char encoded[32];
  int n = EVP_EncodeBlock(encoded, raw, sizeof raw);
  return std::string(reinterpret_cast<char*>(encoded), static_cast<size_t>(n));
}

bool header_has_token(const std::string& value, std::string_view token) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string::npos) comma = value.size();
    std::string_view item(value.data() + start, comma - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item.size() == token.size() && ::strncasecmp(item.data(), token.data(), item.size()) == 0) {
      return true;
    }
    start = comma + 1;
  }
  return false;
}

}  // namespace

std::string probe_host_for(const std::string& route_host) {
  if (route_host.empty()) return "localhost";
  if (route_host.starts_with("*.")) return "probe" + route_host.substr(1);
  return route_host;
}

namespace {

// The probe over a connected socket: TLS when the backend is https://, then the request, within
// `timeout` from now.
ProbeResult probe_connected(const ProbeRequest& request, Socket sock, Clock::time_point start) {
  ProbeResult result;
  const auto deadline = Clock::now() + request.timeout;
  std::string error;
  SSL* ssl = nullptr;
  if (request.backend.scheme == "https") {
    ssl = SSL_new(request.tls);
    if (!ssl || !configure_upstream_ssl(ssl, request.backend.host, request.backend.host_is_ip) ||
        SSL_set_fd(ssl, sock.fd()) != 1) {
      if (ssl) SSL_free(ssl);
      result.detail = "tls: " + openssl_error_text();
      return result;
    }
  }
  Channel channel(std::move(sock), ssl);
  if (ssl && !channel.handshake(deadline, &error)) {
    result.detail = error;
    return result;
  }
  std::string key;
  std::string head = "GET " + request.path + " HTTP/1.1\r\nHost: " + request.host_header +
                     "\r\nUser-Agent: portico-probe/" PORTICO_VERSION "\r\n";
  if (request.websocket) {
    key = random_ws_key();
    head +=
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: " +
        key + "\r\n\r\n";
  } else {
    head += "Connection: close\r\n\r\n";
  }
  ResponseHead response;
  if (!send_all(channel, head, deadline, &error) ||
      !read_head(channel, &response, deadline, &error)) {
    result.detail = error;
    return result;
  }
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  const std::string timing = " time=" + std::to_string(ms) + "ms";
  if (!request.websocket) {
    result.pass = true;
    result.detail = "status=" + std::to_string(response.status) + timing;
    return result;
  }
  if (response.status != 101) {
    result.detail = "status=" + std::to_string(response.status) +
                    ": expected 101 Switching Protocols to a WebSocket handshake";
    return result;
  }
  if (!header_has_token(response.header("Upgrade"), "websocket")) {
    result.detail = "status=101 without \"Upgrade: websocket\"";
    return result;
  }
  const std::string accept = response.header("Sec-WebSocket-Accept");
  if (accept != ws_accept_for_key(key)) {
    result.detail = "status=101 with a wrong Sec-WebSocket-Accept \"" + accept + "\"";
    return result;
  }
  // A masked Close 1001 ("going away"), so the backend sees a clean end, not a dropped stream.
  unsigned char mask[4];
  RAND_bytes(mask, sizeof mask);
  const unsigned char code[2] = {0x03, 0xE9};
  std::string frame = {'\x88', '\x82'};
  frame.append(reinterpret_cast<char*>(mask), 4);
  for (int i = 0; i < 2; ++i) frame.push_back(static_cast<char>(code[i] ^ mask[i]));
  send_all(channel, frame, deadline, &error);
  result.pass = true;
  result.detail = "status=101 websocket accepted" + timing;
  return result;
}

}  // namespace

ProbeResult probe_backend(const ProbeRequest& request) {
  const auto start = Clock::now();
  if (request.backend.scheme == "https" && !request.tls) {
    return {false, "no TLS context for an https:// backend"};
  }
  std::string error, connected, earlier;
  Socket sock = connect_to(request.backend, request.timeout, &error, &connected, &earlier);
  if (sock.fd() < 0) return {false, error};
  ProbeResult result = probe_connected(request, std::move(sock), start);
  // Pass or fail, which address answered, and why the ones before it did not.
  result.detail += " address=" + connected;
  if (!earlier.empty()) result.detail += " earlier=\"" + earlier + "\"";
  return result;
}

}  // namespace portico

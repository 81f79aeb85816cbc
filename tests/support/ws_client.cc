#include "tests/support/ws_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tests/support/net.h"

namespace portico::test {

namespace {

constexpr uint64_t kMaxMessageBytes = 64 * 1024 * 1024;
constexpr size_t kMaxResponseHeadBytes = 64 * 1024;

std::string base64(const unsigned char* data, size_t len) {
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string expected_accept(const std::string& key) {
  const std::string input = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr);
  return base64(digest, digest_len);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The value of the first header named `name` in a response head, trimmed; nullopt if absent.
std::optional<std::string> header_value(std::string_view head, std::string_view name) {
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos + 2 < head.size()) {
    const size_t start = pos + 2;
    const size_t end = head.find("\r\n", start);
    const std::string_view line = head.substr(start, end - start);
    const size_t colon = line.find(':');
    if (colon != std::string_view::npos && iequals(line.substr(0, colon), name)) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
    pos = end;
  }
  return std::nullopt;
}

std::string openssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string& host) {
  sockaddr_storage ss;
  return fill_sockaddr(host, 0, &ss) != 0;
}

}  // namespace

std::unique_ptr<WsClient> WsClient::connect(const WsClientOptions& options) {
  std::unique_ptr<WsClient> client(new WsClient());
  client->timeout_ = options.timeout;
  client->surface_control_ = options.surface_control_frames;
  if (client->open(options)) {
    client->handshake(options, Clock::now() + options.timeout);
  }
  return client;
}

WsClient::~WsClient() {
  if (ws_ != nullptr) wslay_event_context_free(ws_);
  if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);  // one non-blocking attempt at close_notify; the peer may be gone
    SSL_free(ssl_);
  }
  if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  if (fd_ >= 0) ::close(fd_);
}

void WsClient::reset() {
  if (fd_ < 0) return;
  close_with_reset(fd_);
  fd_ = -1;
  if (ssl_ != nullptr) {
    SSL_free(ssl_);  // no close_notify: the socket is gone
    ssl_ = nullptr;
  }
}

bool WsClient::open(const WsClientOptions& options) {
  const auto deadline = Clock::now() + options.timeout;
  // Resolve names ("localhost") to literals for connect_tcp, trying each address in turn.
  std::vector<std::string> addresses;
  if (is_ip_literal(options.host)) {
    addresses.push_back(options.host);
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(options.host.c_str(), nullptr, &hints, &res) != 0) {
      error_ = "cannot resolve " + options.host;
      return false;
    }
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      char buf[NI_MAXHOST];
      if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST) ==
          0) {
        addresses.emplace_back(buf);
      }
    }
    freeaddrinfo(res);
  }
  for (const std::string& address : addresses) {
    std::string err;
    fd_ = connect_tcp(address, options.port, options.timeout, &err);
    if (fd_ >= 0) break;
    error_ += (error_.empty() ? "" : "; ") + address + ": " + err;
  }
  if (fd_ < 0) {
    if (error_.empty()) error_ = "no address for " + options.host;
    return false;
  }
  error_.clear();
  fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  if (!options.tls) return true;

  ssl_ctx_ = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_PEER, nullptr);
  if (options.max_tls_version != 0) {
    SSL_CTX_set_max_proto_version(ssl_ctx_, options.max_tls_version);
  }
  const bool loaded =
      options.ca_file.empty()
          ? SSL_CTX_set_default_verify_paths(ssl_ctx_) == 1
          : SSL_CTX_load_verify_locations(ssl_ctx_, options.ca_file.c_str(), nullptr) == 1;
  if (!loaded) {
    error_ = "cannot load CA file " + options.ca_file + ": " + openssl_errors();
    return false;
  }
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ssl_ctx_, kAlpn, sizeof kAlpn - 1);
  ssl_ = SSL_new(ssl_ctx_);
  SSL_set_fd(ssl_, fd_);
  if (is_ip_literal(options.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), options.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, options.host.c_str());  // SNI is for names only (RFC 6066 3)
    SSL_set1_host(ssl_, options.host.c_str());
  }
  for (;;) {
    const int r = SSL_connect(ssl_);
    if (r == 1) break;
    const int err = SSL_get_error(ssl_, r);
    short events = err == SSL_ERROR_WANT_READ ? POLLIN : err == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{fd_, events, 0};
    if (events == 0 || left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      error_ = events == 0 ? "TLS handshake failed: " + openssl_errors() + " (verify: " +
                                 X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")"
                           : "TLS handshake timed out";
      return false;
    }
  }
  const unsigned char* proto = nullptr;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(ssl_, &proto, &proto_len);
  alpn_.assign(reinterpret_cast<const char*>(proto), proto_len);
  return true;
}

bool WsClient::handshake(const WsClientOptions& options, Clock::time_point deadline) {
  unsigned char nonce[16];
  RAND_bytes(nonce, sizeof nonce);
  const std::string key = base64(nonce, sizeof nonce);
  std::string host =
      options.host.find(':') != std::string::npos ? "[" + options.host + "]" : options.host;
  if (options.port != (options.tls ? 443 : 80)) host += ":" + std::to_string(options.port);
  std::string request = "GET " + options.path + " HTTP/1.1\r\nHost: " + host +
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: " +
                        key + "\r\nSec-WebSocket-Version: 13\r\n";
  if (!options.origin.empty()) request += "Origin: " + options.origin + "\r\n";
  for (const auto& [name, value] : options.extra_headers) {
    request += name + ": " + value + "\r\n";
  }
  request += "\r\n";
  if (!write_all(request, deadline)) {
    error_ = "cannot send the upgrade request";
    return false;
  }

  size_t head_end;
  while ((head_end = rx_.find("\r\n\r\n")) == std::string::npos) {
    if (rx_.size() > kMaxResponseHeadBytes) {
      error_ = "response head too large";
      return false;
    }
    if (!read_some(deadline)) {
      response_head_ = rx_;
      error_ = eof_ ? "connection closed before a complete response head" : "no response head";
      return false;
    }
  }
  response_head_ = rx_.substr(0, head_end + 4);
  rx_pos_ = head_end + 4;  // anything after the head is WebSocket data (or a body)
  if (response_head_.compare(0, 5, "HTTP/") != 0 || response_head_.size() < 12) {
    error_ = "not an HTTP response";
    return false;
  }
  status_ = std::atoi(response_head_.c_str() + 9);
  if (status_ != 101) {
    error_ = "status " + std::to_string(status_);
    return false;
  }
  const auto upgrade = header_value(response_head_, "upgrade");
  const auto accept = header_value(response_head_, "sec-websocket-accept");
  if (!upgrade || !iequals(*upgrade, "websocket")) {
    error_ = "101 without Upgrade: websocket";
    return false;
  }
  if (!accept || *accept != expected_accept(key)) {
    error_ = "wrong Sec-WebSocket-Accept";
    return false;
  }

  static const wslay_event_callbacks callbacks = {on_recv, on_send, on_genmask, nullptr,
                                                  nullptr, nullptr, on_msg};
  wslay_event_context_client_init(&ws_, &callbacks, this);
  wslay_event_config_set_max_recv_msg_length(ws_, kMaxMessageBytes);
  ok_ = true;
  return true;
}

bool WsClient::write_all(std::string_view data, Clock::time_point deadline) {
  while (!data.empty()) {
    ssize_t n;
    short events = POLLOUT;
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int r = SSL_write(ssl_, data.data(), static_cast<int>(data.size()));
      n = r;
      if (r <= 0) {
        const int err = SSL_get_error(ssl_, r);
        if (err == SSL_ERROR_WANT_READ) {
          events = POLLIN;
        } else if (err != SSL_ERROR_WANT_WRITE) {
          io_error_ = true;
          return false;
        }
      }
    } else {
      n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        io_error_ = true;
        return false;
      }
    }
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    // Blocked: also take in what the peer sends, or an echo server writing back to us while we
    // write to it could fill both socket buffers and stall both sides.
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, static_cast<short>(events | POLLIN), 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) return false;
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) drain_readable();
    if (io_error_) return false;
  }
  return true;
}

void WsClient::drain_readable() {
  char buf[64 * 1024];
  for (;;) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int r = SSL_read(ssl_, buf, sizeof buf);
      if (r > 0) {
        rx_.append(buf, static_cast<size_t>(r));
        continue;
      }
      const int err = SSL_get_error(ssl_, r);
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
      // ZERO_RETURN is close_notify; SYSCALL/SSL cover a TCP close without it (OpenSSL 3 reports
      // "unexpected eof"), which is how an abruptly closed peer looks.
      eof_ = true;
      return;
    }
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      rx_.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    eof_ = true;  // FIN, or a reset: either way the peer is gone
    return;
  }
}

bool WsClient::read_some(Clock::time_point deadline) {
  for (;;) {
    const size_t before = rx_.size();
    drain_readable();
    if (rx_.size() > before) return true;
    if (eof_ || io_error_) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) == 0) return false;
  }
}

void WsClient::process_input() {
  if (ws_ == nullptr) return;
  if (rx_pos_ < rx_.size() && wslay_event_get_read_enabled(ws_)) {
    if (wslay_event_recv(ws_) != 0) io_error_ = true;
  }
  rx_.erase(0, rx_pos_);
  rx_pos_ = 0;
  flush_wslay();  // Pong for a Ping, the Close reply
}

bool WsClient::flush_wslay() {
  send_deadline_ = Clock::now() + timeout_;
  if (wslay_event_send(ws_) != 0) {
    io_error_ = true;
    return false;
  }
  return true;
}

bool WsClient::queue_and_send(uint8_t opcode, std::string_view data) {
  if (ws_ == nullptr) return false;
  const wslay_event_msg msg{opcode, reinterpret_cast<const uint8_t*>(data.data()), data.size()};
  if (wslay_event_queue_msg(ws_, &msg) != 0) return false;
  return flush_wslay();
}

bool WsClient::send_text(std::string_view text) { return queue_and_send(WSLAY_TEXT_FRAME, text); }

bool WsClient::send_binary(std::string_view data) {
  return queue_and_send(WSLAY_BINARY_FRAME, data);
}

bool WsClient::send_ping(std::string_view payload) { return queue_and_send(WSLAY_PING, payload); }

bool WsClient::send_raw(std::string_view bytes) {
  if (fd_ < 0) return false;
  return write_all(bytes, Clock::now() + timeout_);
}

bool WsClient::send_fragmented(uint8_t opcode, const std::vector<std::string>& fragments,
                               bool ping_between) {
  // Built by hand: wslay decides its own fragment boundaries and when to interleave control
  // frames, and a test needs both exact.
  if (ws_ == nullptr || fragments.empty()) return false;
  std::string wire;
  for (size_t i = 0; i < fragments.size(); ++i) {
    if (i > 0 && ping_between) wire += encode_frame(WSLAY_PING, true, "frag");
    wire += encode_frame(i == 0 ? opcode : static_cast<uint8_t>(WSLAY_CONTINUATION_FRAME),
                         i + 1 == fragments.size(), fragments[i]);
  }
  return send_raw(wire);
}

std::string WsClient::encode_frame(uint8_t opcode, bool fin, std::string_view payload, bool mask) {
  std::string out;
  out.push_back(static_cast<char>((fin ? 0x80 : 0) | (opcode & 0x0F)));
  const char mask_bit = mask ? static_cast<char>(0x80) : 0;
  const uint64_t len = payload.size();
  if (len < 126) {
    out.push_back(static_cast<char>(mask_bit | static_cast<char>(len)));
  } else if (len <= 0xFFFF) {
    out.push_back(static_cast<char>(mask_bit | 126));
    out.push_back(static_cast<char>(len >> 8));
    out.push_back(static_cast<char>(len));
  } else {
    out.push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(len >> shift));
  }
  unsigned char key[4] = {0, 0, 0, 0};
  if (mask) {
    RAND_bytes(key, sizeof key);
    out.append(reinterpret_cast<const char*>(key), 4);
  }
  const size_t start = out.size();
  out.append(payload);
  if (mask) {
    for (size_t i = 0; i < payload.size(); ++i) out[start + i] ^= static_cast<char>(key[i % 4]);
  }
  return out;
}

bool WsClient::wait_for(Clock::time_point deadline, const std::function<bool()>& done) {
  for (;;) {
    process_input();
    if (done()) return true;
    if (eof_ || io_error_ || !read_some(deadline)) {
      process_input();
      return done();
    }
  }
}

std::optional<WsMessage> WsClient::receive(std::chrono::milliseconds timeout) {
  if (!wait_for(Clock::now() + timeout, [this] { return !inbox_.empty(); })) return std::nullopt;
  WsMessage m = std::move(inbox_.front());
  inbox_.pop_front();
  return m;
}

std::string WsClient::receive_raw(size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (rx_.size() - rx_pos_ < n && read_some(deadline)) {
  }
  const size_t take = std::min(n, rx_.size() - rx_pos_);
  std::string out = rx_.substr(rx_pos_, take);
  rx_pos_ += take;
  return out;
}

bool WsClient::close(uint16_t code, std::string_view reason) {
  if (ws_ == nullptr) return false;
  if (!wslay_event_get_close_sent(ws_)) {
    wslay_event_queue_close(ws_, code, reinterpret_cast<const uint8_t*>(reason.data()),
                            reason.size());
    flush_wslay();
  }
  wait_for(Clock::now() + timeout_, [this] { return peer_close_code_ != 0; });
  return peer_close_code_ != 0 && wslay_event_get_close_sent(ws_);
}

bool WsClient::wait_peer_closed(std::chrono::milliseconds timeout) {
  return wait_for(Clock::now() + timeout, [this] { return peer_close_code_ != 0 || eof_; });
}

ssize_t WsClient::on_recv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int, void* user) {
  auto* c = static_cast<WsClient*>(user);
  const size_t n = std::min(len, c->rx_.size() - c->rx_pos_);
  if (n == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  std::memcpy(buf, c->rx_.data() + c->rx_pos_, n);
  c->rx_pos_ += n;
  return static_cast<ssize_t>(n);
}

ssize_t WsClient::on_send(wslay_event_context_ptr ctx, const uint8_t* data, size_t len, int,
                          void* user) {
  auto* c = static_cast<WsClient*>(user);
  if (!c->write_all(std::string_view(reinterpret_cast<const char*>(data), len),
                    c->send_deadline_)) {
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return static_cast<ssize_t>(len);
}

int WsClient::on_genmask(wslay_event_context_ptr, uint8_t* buf, size_t len, void*) {
  return RAND_bytes(buf, static_cast<int>(len)) == 1 ? 0 : -1;
}

void WsClient::on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user) {
  auto* c = static_cast<WsClient*>(user);
  std::string data(reinterpret_cast<const char*>(arg->msg), arg->msg_length);
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    if (c->peer_close_code_ == 0) {
      c->peer_close_code_ = arg->status_code != 0 ? arg->status_code : 1005;
      c->peer_close_reason_ = data.size() > 2 ? data.substr(2) : "";
    }
  } else if (wslay_is_ctrl_frame(arg->opcode) && !c->surface_control_) {
    return;
  }
  c->inbox_.push_back(WsMessage{arg->opcode, std::move(data)});
}

}  // namespace portico::test

#include "tests/support/raw_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tests/support/net.h"

namespace portico::test {

namespace {

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace

const char* to_string(CloseKind kind) {
  switch (kind) {
    case CloseKind::kOpen:
      return "open";
    case CloseKind::kCloseNotify:
      return "close_notify";
    case CloseKind::kEof:
      return "eof";
    case CloseKind::kReset:
      return "reset";
    case CloseKind::kError:
      return "error";
  }
  return "?";
}

RawClient::~RawClient() { close(); }

void RawClient::connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  fd_ = connect_tcp(host, port, timeout, &error_);
  if (fd_ >= 0) fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

bool RawClient::wait_fd(bool for_write, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno == EINTR) continue;
    return n > 0;
  }
}

long RawClient::read_some(char* buf, size_t len, bool* want_write) {
  *want_write = false;
  for (;;) {
    ssize_t n = ::recv(fd_, buf, len, 0);
    if (n > 0) return n;
    if (n == 0) {
      closed_ = CloseKind::kEof;
      return -1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    closed_ = errno == ECONNRESET ? CloseKind::kReset : CloseKind::kError;
    if (closed_ == CloseKind::kError) error_ = strerror(errno);
    return -1;
  }
}

long RawClient::write_some(const char* buf, size_t len, bool* want_read) {
  *want_read = false;
  for (;;) {
    ssize_t n = ::send(fd_, buf, len, MSG_NOSIGNAL);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -1;
  }
}

void RawClient::shutdown_transport() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool RawClient::send(std::string_view bytes, std::chrono::milliseconds timeout) {
  if (fd_ < 0) return false;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!bytes.empty()) {
    bool want_read = false;
    long n = write_some(bytes.data(), bytes.size(), &want_read);
    if (n < 0) return false;
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (!wait_fd(!want_read, deadline)) return false;
  }
  return true;
}

ReadResult RawClient::read_until(const std::function<bool(std::string_view)>& done,
                                 std::chrono::milliseconds timeout) {
  ReadResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    if (done && done(result.data)) {
      result.matched = true;
      return result;
    }
    if (fd_ < 0 || closed_ != CloseKind::kOpen) break;
    bool want_write = false;
    long n = read_some(buf, sizeof buf, &want_write);
    if (n > 0) {
      result.data.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0) continue;  // closed_ is set: one last look at the data, then stop
    if (!wait_fd(want_write, deadline)) break;
  }
  result.closed = closed_;
  return result;
}

ReadResult RawClient::read_until(std::string_view marker, std::chrono::milliseconds timeout) {
  size_t searched = 0;
  return read_until(
      [&](std::string_view data) {
        size_t start = searched >= marker.size() ? searched - marker.size() : 0;
        searched = data.size();
        return data.find(marker, start) != std::string_view::npos;
      },
      timeout);
}

ReadResult RawClient::read_all_until_close(std::chrono::milliseconds timeout) {
  return read_until(std::function<bool(std::string_view)>(), timeout);
}

void RawClient::shutdown_write() { shutdown_transport(); }

void RawClient::reset() {
  if (fd_ < 0) return;
  close_with_reset(fd_);
  fd_ = -1;
}

void RawClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

RawTcpClient::RawTcpClient(uint16_t port, std::string host, std::chrono::milliseconds timeout) {
  connect(host, port, timeout);
}

RawTlsClient::RawTlsClient(uint16_t port, const std::string& ca_file, const std::string& sni)
    : RawTlsClient(port, TlsClientOptions{.sni = sni, .ca_file = ca_file}) {}

RawTlsClient::RawTlsClient(uint16_t port, TlsClientOptions options) {
  connect(options.host, port, options.timeout);
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  std::string_view preamble = options.preamble;
  while (fd_ >= 0 && !preamble.empty()) {
    bool want_read = false;
    long n = RawClient::write_some(preamble.data(), preamble.size(), &want_read);
    if (n < 0 || (n == 0 && !wait_fd(/*for_write=*/true, deadline))) {
      error_ = "sending the preamble failed";
      return;
    }
    preamble.remove_prefix(static_cast<size_t>(n));
  }
  if (fd_ >= 0) handshake(options);
}

RawTlsClient::~RawTlsClient() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

void RawTlsClient::handshake(const TlsClientOptions& options) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_client_method());
  if (options.max_tls_version != 0) SSL_CTX_set_max_proto_version(ctx_, options.max_tls_version);
  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_, options.ca_file.c_str(), nullptr) != 1) {
      error_ = "cannot load CA " + options.ca_file + ": " + openssl_errors();
      return;
    }
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);
  }
  ssl_ = SSL_new(ctx_);
  SSL_set_fd(ssl_, fd_);
  SSL_set_msg_callback(ssl_, &RawTlsClient::on_tls_message);
  SSL_set_msg_callback_arg(ssl_, this);
  bool sni_is_ip = is_ip_literal(options.sni);
  // RFC 6066 §3: SNI carries host names only, never IP literals.
  if (!options.sni.empty() && !sni_is_ip) SSL_set_tlsext_host_name(ssl_, options.sni.c_str());
  if (!options.ca_file.empty() && options.verify_hostname && !options.sni.empty()) {
    if (sni_is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), options.sni.c_str());
    } else {
      SSL_set1_host(ssl_, options.sni.c_str());
    }
  }
  if (!options.alpn.empty()) {
    std::string wire;
    for (const auto& p : options.alpn) {
      wire += static_cast<char>(p.size());
      wire += p;
    }
    SSL_set_alpn_protos(ssl_, reinterpret_cast<const unsigned char*>(wire.data()),
                        static_cast<unsigned>(wire.size()));
  }
  auto deadline = std::chrono::steady_clock::now() + options.timeout;
  for (;;) {
    int rc = SSL_connect(ssl_);
    if (rc == 1) return;
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_fd(err == SSL_ERROR_WANT_WRITE, deadline)) {
        error_ = "TLS handshake timed out";
        return;
      }
      continue;
    }
    error_ = "TLS handshake failed: " + openssl_errors();
    if (err == SSL_ERROR_SYSCALL) error_ += std::string(" (") + strerror(errno) + ")";
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      error_ += std::string(" verify: ") + X509_verify_cert_error_string(verify);
    }
    return;
  }
}

// OpenSSL reports each received record's 5-byte header, then (TLS 1.3) its decrypted inner
// content type; the plaintext is the record less that type byte and the 16-byte AEAD tag.
void RawTlsClient::on_tls_message(int write_p, int, int content_type, const void* buf, size_t len,
                                  SSL*, void* arg) {
  auto* self = static_cast<RawTlsClient*>(arg);
  const auto* bytes = static_cast<const unsigned char*>(buf);
  if (write_p != 0) return;
  if (content_type == SSL3_RT_HEADER && len == SSL3_RT_HEADER_LENGTH) {
    self->record_length_ = static_cast<size_t>(bytes[3]) << 8 | bytes[4];
  } else if (content_type == SSL3_RT_INNER_CONTENT_TYPE && len == 1 &&
             bytes[0] == SSL3_RT_APPLICATION_DATA && self->record_length_ >= 17) {
    self->data_records_.push_back(self->record_length_ - 17);
  }
}

long RawTlsClient::read_some(char* buf, size_t len, bool* want_write) {
  *want_write = false;
  if (ssl_ == nullptr) return -1;
  size_t got = 0;
  ERR_clear_error();
  errno = 0;
  int rc = SSL_read_ex(ssl_, buf, len, &got);
  if (rc == 1) return static_cast<long>(got);
  int err = SSL_get_error(ssl_, rc);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return 0;
    case SSL_ERROR_WANT_WRITE:
      *want_write = true;
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      closed_ = CloseKind::kCloseNotify;
      return -1;
    case SSL_ERROR_SYSCALL:
      closed_ = errno == ECONNRESET ? CloseKind::kReset : CloseKind::kEof;
      return -1;
    default: {
      unsigned long e = ERR_peek_error();
      if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        closed_ = CloseKind::kEof;  // OpenSSL 3 reports a FIN without close_notify this way
      } else if (errno == ECONNRESET) {
        closed_ = CloseKind::kReset;
      } else {
        closed_ = CloseKind::kError;
        error_ = "TLS read: " + openssl_errors();
      }
      ERR_clear_error();
      return -1;
    }
  }
}

long RawTlsClient::write_some(const char* buf, size_t len, bool* want_read) {
  *want_read = false;
  if (ssl_ == nullptr) return -1;
  size_t written = 0;
  ERR_clear_error();
  int rc = SSL_write_ex(ssl_, buf, len, &written);
  if (rc == 1) return static_cast<long>(written);
  int err = SSL_get_error(ssl_, rc);
  if (err == SSL_ERROR_WANT_WRITE) return 0;
  if (err == SSL_ERROR_WANT_READ) {
    *want_read = true;
    return 0;
  }
  return -1;
}

void RawTlsClient::shutdown_transport() {
  if (ssl_ != nullptr && fd_ >= 0) SSL_shutdown(ssl_);  // sends close_notify
  RawClient::shutdown_transport();
}

std::string RawTlsClient::alpn() const {
  if (ssl_ == nullptr) return "";
  const unsigned char* data = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(ssl_, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

std::string RawTlsClient::tls_version() const {
  return ssl_ != nullptr ? SSL_get_version(ssl_) : "";
}

std::string RawTlsClient::peer_subject() const {
  if (ssl_ == nullptr) return "";
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return "";
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

long RawTlsClient::verify_result() const {
  return ssl_ != nullptr ? SSL_get_verify_result(ssl_) : -1;
}

}  // namespace portico::test

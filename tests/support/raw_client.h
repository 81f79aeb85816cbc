#pragma once

// Byte-level clients for protocol tests (pipelining, smuggling, slowloris, TLS close behaviour):
// they send exactly the bytes given and report exactly what came back, and how the peer closed.

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portico::test {

using namespace std::chrono_literals;

enum class CloseKind {
  kOpen,         // still open when the read timed out
  kCloseNotify,  // TLS: the peer sent close_notify (then FIN or not)
  kEof,          // FIN without close_notify (for TCP, the normal close)
  kReset,        // ECONNRESET
  kError,        // anything else (TLS protocol error, ...); see error()
};
const char* to_string(CloseKind kind);

struct ReadResult {
  std::string data;  // everything read by this call
  bool matched = false;
  CloseKind closed = CloseKind::kOpen;
};

class RawClient {
 public:
  virtual ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Connected (and, for TLS, handshake done)? If not, error() says why.
  bool ok() const { return fd_ >= 0 && error_.empty(); }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }

  // Sends all bytes; false if the connection failed or the timeout passed.
  bool send(std::string_view bytes, std::chrono::milliseconds timeout = 10s);
  // Reads until the bytes read by this call contain `marker` (or `done(bytes)` is true), the peer
  // closes, or the timeout passes. Returns all bytes read, including any past the marker.
  ReadResult read_until(std::string_view marker, std::chrono::milliseconds timeout = 10s);
  ReadResult read_until(const std::function<bool(std::string_view)>& done,
                        std::chrono::milliseconds timeout = 10s);
  // Reads until the peer closes (or the timeout passes: closed == kOpen).
  ReadResult read_all_until_close(std::chrono::milliseconds timeout = 10s);
  // Once a read saw the close, it is remembered here.
  CloseKind closed() const { return closed_; }

  // Half-close our sending side: TCP FIN; for TLS, close_notify then FIN.
  void shutdown_write();
  // Close with RST (SO_LINGER 0) instead of FIN.
  void reset();
  void close();

 protected:
  RawClient() = default;
  void connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout);
  bool wait_fd(bool for_write, std::chrono::steady_clock::time_point deadline);
  // Transport hooks: >0 bytes, 0 would block (want_write says which way), -1 closed/failed
  // (closed_ set).
  virtual long read_some(char* buf, size_t len, bool* want_write);
  virtual long write_some(const char* buf, size_t len, bool* want_read);
  virtual void shutdown_transport();

  int fd_ = -1;
  std::string error_;
  CloseKind closed_ = CloseKind::kOpen;
};

class RawTcpClient : public RawClient {
 public:
  explicit RawTcpClient(uint16_t port, std::string host = "127.0.0.1",
                        std::chrono::milliseconds timeout = 5s);
};

struct TlsClientOptions {
  std::string sni = "localhost";                 // empty: send no SNI
  std::string ca_file;                           // empty: do not verify the peer
  std::vector<std::string> alpn = {"http/1.1"};  // empty: offer no ALPN
  std::string host = "127.0.0.1";
  std::chrono::milliseconds timeout = 5s;  // connect + handshake
  // Verify that the certificate matches `sni` (or the IP if sni is an IP literal).
  bool verify_hostname = true;
  // Sent on the TCP connection before the handshake (a PROXY protocol header, for example).
  std::string preamble{};
  int max_tls_version = 0;  // e.g. TLS1_2_VERSION; 0: the newest both sides have
};

class RawTlsClient : public RawClient {
 public:
  RawTlsClient(uint16_t port, TlsClientOptions options);
  RawTlsClient(uint16_t port, const std::string& ca_file, const std::string& sni = "localhost");
  ~RawTlsClient() override;

  std::string alpn() const;          // negotiated protocol, "" if none
  std::string tls_version() const;   // "TLSv1.3"
  std::string peer_subject() const;  // the leaf's subject, one line
  long verify_result() const;        // X509_V_OK (0) when verified

  // The plaintext size of each application-data record received so far, in order (TLS 1.3
  // only: the inner content type tells them from session tickets).
  const std::vector<size_t>& data_records() const { return data_records_; }
  void clear_data_records() { data_records_.clear(); }

 protected:
  long read_some(char* buf, size_t len, bool* want_write) override;
  long write_some(const char* buf, size_t len, bool* want_read) override;
  void shutdown_transport() override;

 private:
  void handshake(const TlsClientOptions& options);

  static void on_tls_message(int write_p, int version, int content_type, const void* buf,
                             size_t len, SSL* ssl, void* arg);

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  size_t record_length_ = 0;  // of the record whose header came last
  std::vector<size_t> data_records_;
};

}  // namespace portico::test

#pragma once

// TestBackend: an in-process HTTP/1.1 origin for integration tests. It records every request
// exactly as it arrived (and the raw bytes, for smuggling tests) and answers with whatever the
// test's handler says, including the misbehaviours a proxy must survive: slow heads, bodies cut in
// the middle, close-delimited bodies, silence, and arbitrary raw bytes.
//
// Blocking sockets, one thread per connection: simple to read, and plenty for tests.

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_message.h"

namespace portico::test {

struct ReceivedRequest {
  std::string method, target, version;  // version: "HTTP/1.1"
  HeaderList headers;
  HeaderList trailers;  // chunked request trailers
  uint64_t body_size = 0;
  std::string body;        // the first kMaxKeptBody bytes
  uint64_t body_hash = 0;  // BodyHash of the whole body (see body_pattern.h)
  bool chunked = false;
  int connection_id = 0;        // 1, 2, ... in accept order
  int index_on_connection = 0;  // 0 for the first request on its connection

  static constexpr size_t kMaxKeptBody = 1 << 20;

  std::string header(std::string_view name) const { return header_value(headers, name); }
  bool has_header(std::string_view name) const { return test::has_header(headers, name); }
  std::vector<std::string> headers_named(std::string_view name) const {
    return header_values(headers, name);
  }
};

struct Response {
  int status = 200;
  // Sent as given, in order. Framing headers (Content-Length, Transfer-Encoding, Connection) are
  // added for `framing` unless the handler set them itself.
  HeaderList headers;
  std::string body;
  // If non-zero: send this many bytes of pattern_fill() instead of `body`, streamed in pieces.
  uint64_t generated_body_size = 0;
  enum Framing { kContentLength, kChunked, kCloseDelimited } framing = kContentLength;
  std::chrono::milliseconds delay_before_headers{0};
  std::chrono::milliseconds delay_between_pieces{0};  // slow streaming
  size_t piece_size = 64 * 1024;                      // write (and chunk) size of the body
  bool close_after = false;                           // "Connection: close", then close
  bool close_mid_body = false;  // send the head and half of the body, then close
  // Read the request, then keep the connection open and answer nothing until the backend stops
  // (or the peer closes it).
  bool never_respond = false;
  bool close_without_response = false;  // read the request, then close without a byte
  // Over TLS: end the connection without close_notify, as a cut on the path would.
  bool skip_close_notify = false;
  // If non-empty: written verbatim instead of a formatted response (the connection stays open
  // unless close_after).
  std::string raw;
  // With `raw`: then written verbatim too, `raw_late_delay` later, as a backend out of step
  // sends a body where none may follow. Without a delay both go in one TCP segment (over TLS:
  // two records in one segment).
  std::string raw_late;
  std::chrono::milliseconds raw_late_delay{0};
};

using Handler = std::function<Response(const ReceivedRequest&)>;

// 200 text/plain "ok METHOD TARGET".
Response default_response(const ReceivedRequest& request);
// 200 with the request's body (up to kMaxKeptBody) and Content-Type.
Response echo_response(const ReceivedRequest& request);
inline Handler echo_handler() { return echo_response; }

struct BackendOptions {
  // Answer "Expect: 100-continue" with an interim 100 before reading the body, as servers do.
  bool send_100_continue = true;
  // Per connection; what arrives beyond it is counted but not kept.
  size_t max_raw_kept = 8 << 20;
  std::string host = "127.0.0.1";  // or "::1"
  // If set: every connection is TLS (server side, this context; the caller keeps it alive).
  SSL_CTX* tls = nullptr;
};

class TestBackend {
 public:
  // The handler runs on connection threads, possibly several at once.
  explicit TestBackend(Handler handler = default_response, BackendOptions options = {});
  ~TestBackend();  // closes every connection (even held ones) and joins all threads
  TestBackend(const TestBackend&) = delete;
  TestBackend& operator=(const TestBackend&) = delete;

  uint16_t port() const { return port_; }
  // "127.0.0.1:PORT", as a route file wants it.
  std::string address() const;

  std::vector<ReceivedRequest> requests() const;
  size_t request_count() const;
  // Waits until at least n requests were received completely; false on timeout.
  bool wait_for_requests(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  int connections_accepted() const;
  int connections_open() const;
  // Waits until no connection is open (e.g. the proxy closed its idle upstream connections).
  bool wait_for_no_open_connections(std::chrono::milliseconds timeout);
  // Bytes received per connection, index = connection_id - 1 (first max_raw_kept bytes each).
  std::vector<std::string> raw_received() const;
  // Requests that failed to parse (the backend answered 400 and closed).
  std::vector<std::string> parse_errors() const;
  // With BackendOptions::tls: the SNI name of each completed handshake ("" without SNI), and
  // how many handshakes failed (e.g. the client refused the certificate).
  std::vector<std::string> tls_server_names() const;
  int tls_failures() const;
  int tls_resumed() const;  // completed handshakes that resumed a session

 private:
  struct Connection;
  void accept_loop();
  void serve(Connection* conn);
  bool respond(Connection* conn, const ReceivedRequest& request, bool keep_alive, Response* out);
  bool wait_stopping(std::chrono::milliseconds delay);  // true if stopping
  void hold(Connection* conn);
  void record_raw(int id, const char* data, size_t len);
  void finish(Connection* conn);  // closes the socket (and TLS), counts the connection gone

  Handler handler_;
  BackendOptions options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool stopping_ = false;
  std::vector<ReceivedRequest> requests_;
  std::vector<std::string> raw_;
  std::vector<std::string> parse_errors_;
  std::vector<std::string> tls_server_names_;
  int tls_failures_ = 0;
  int tls_resumed_ = 0;
  std::list<Connection> connections_;
  int accepted_ = 0;
  int open_ = 0;
};

}  // namespace portico::test

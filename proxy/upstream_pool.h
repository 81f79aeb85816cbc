#pragma once

// Connections to backends: connecting (with asynchronous name resolution), TLS to https://
// backends, and a per-worker pool of idle keep-alive connections keyed by backend, reused
// across clients.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "proxy/stream_writer.h"
#include "routing/route_table.h"
#include "tls/tls_stream.h"

struct addrinfo;

namespace portico {

class UpstreamPool;

// Of a backend name's addresses, the ones portico tries, in order, each after the one before
// it failed to connect: the IPv4 ones first (backends behind a proxy mostly listen on
// 127.0.0.1 or a private IPv4 address), then the others, each in the resolver's order, so that
// "localhost" reaches a backend listening on 127.0.0.1 or on ::1 only. At most
// kMaxBackendAddresses. `--check --probe` tries them in the same order.
constexpr size_t kMaxBackendAddresses = 16;
std::vector<sockaddr_storage> backend_address_order(const addrinfo* resolved);

class UpstreamConnection final : private StreamWriter::Owner {
 public:
  class Delegate {
   public:
    virtual void on_upstream_connected(UpstreamConnection& conn, int status) = 0;
    virtual void on_upstream_data(UpstreamConnection& conn, const char* data, size_t len) = 0;
    // The backend closed (UV_EOF) or the connection failed (another negative uv error).
    virtual void on_upstream_closed(UpstreamConnection& conn, int status) = 0;
    // The write queue fell below the low mark.
    virtual void on_upstream_drained(UpstreamConnection& conn) = 0;

   protected:
    ~Delegate() = default;
  };

  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  void set_delegate(Delegate* delegate) { delegate_ = delegate; }
  // Resolves (when the host is a name) and connects. With `tls` (https:// backends) the
  // connection then does a TLS handshake, verifying the backend's certificate for the host;
  // on_upstream_connected comes after it, and data in and out is plaintext from then on.
  void start(const BackendAddress& address, SSL_CTX* tls = nullptr);
  // What start() does with a name's addresses (backend_address_order): connects to each in
  // turn until one connects; the delegate hears once, of that one or of the last failure.
  void connect_in_order(std::vector<sockaddr_storage> addresses);
  // The connect deadline passed on the address being tried (the route's connect_timeout is
  // each address's, as in NGINX, where a name becomes one server per address): true when the
  // next address is tried now, and the caller gives it a deadline of its own; false when none
  // is left (or the name is still being resolved), and the connection failed.
  bool move_past_unanswered_address();
  // Sends plaintext (encrypted first on a TLS connection). 0, or a negative uv error.
  int write(const uv_buf_t* bufs, unsigned count);
  int write(const char* data, size_t len) {
    uv_buf_t buf = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
    return write(&buf, 1);
  }
  // Bytes accepted by write() and not yet handed to the kernel: what backpressure reads.
  size_t queued() const { return writer_.queued(); }
  bool above_high_water() const { return writer_.above_high_water(); }
  void read_start();
  void read_stop();
  bool reading() const { return reading_; }
  // True when bytes from the backend may follow what on_upstream_data was just given, without
  // waiting for the loop: a TLS connection holds ciphertext or records from its last read not
  // yet handed on (on_upstream_data sees one record at a time), or the last read filled its
  // whole buffer, after which libuv reads again at once, still inside this callback. A
  // connection put back in the pool then and taken by the next pipelined request would hand
  // that request bytes the backend sent before it was asked.
  bool has_unread_input() const {
    return last_read_filled_buffer_ || (tls_ && tls_->holds_input());
  }
  // Ends the connection. Its memory is freed once libuv has called back for everything pending.
  void close();

  const std::string& key() const { return key_; }
  // True when the connection served a request before the one it carries now (count_request()
  // is called as each request starts).
  bool reused() const { return requests_ > 1; }
  void count_request() { ++requests_; }
  uv_tcp_t* tcp() { return &tcp_; }
  // Why the TLS handshake with the backend failed (the certificate check's reason when that
  // was it); "" when it did not.
  const std::string& tls_failure() const { return tls_failure_; }
  // The addresses tried, in order, comma-separated; the last is the one connected or being
  // tried ("" before the name is resolved).
  std::string address() const;
  // Why each address that failed failed, in the same order, comma-separated uv error names
  // (ETIMEDOUT for one whose connect deadline passed); "" when none has.
  const std::string& connect_errors() const { return connect_errors_; }
  // The TCP connection of a TLS backend ended without close_notify: its end proves nothing (a
  // cut on the path looks the same), so it cannot end a close-delimited body.
  bool tls_cut() const { return tls_cut_; }

 private:
  friend class UpstreamPool;
  UpstreamConnection(uv_loop_t* loop, std::string key);
  ~UpstreamConnection() = default;

  void connect_to(const sockaddr* addr);
  void connect_failed(int status);
  void note_connect_error(int status);
  void try_next_address();
  static void on_closed_for_next_address(uv_handle_t* handle);
  void on_ciphertext(const char* data, size_t len);
  bool send_tls_output();
  void tls_failed();
  void fail(int status);
  void release_callback();
  void on_write_done(int status) override;

  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void on_connected(uv_connect_t* req, int status);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_closed(uv_handle_t* handle);

  uv_tcp_t tcp_;
  sockaddr_storage address_{};  // what connect_to was given last
  std::string passed_over_;     // the addresses tried before it, as text (only after a failure)
  std::string connect_errors_;  // why each one that failed did
  std::vector<sockaddr_storage> next_addresses_;  // still to try, in reverse order
  uv_getaddrinfo_t* resolving_ = nullptr;         // the name resolution in progress (heap), if any
  StreamWriter writer_;
  std::unique_ptr<TlsStream> tls_;  // https:// backends only
  std::string tls_failure_;
  Delegate* delegate_ = nullptr;
  std::string key_;
  uint64_t requests_ = 0;
  std::chrono::steady_clock::time_point idle_since_{};
  int pending_callbacks_ = 0;  // resolve/close callbacks still to come; freed at zero
  bool closing_ = false;
  bool reopening_ = false;  // tcp_ is closing to connect anew to the next address
  bool reading_ = false;
  bool tls_cut_ = false;
  bool last_read_filled_buffer_ = false;
};

class UpstreamPool final : private UpstreamConnection::Delegate {
 public:
  explicit UpstreamPool(uv_loop_t* loop, size_t max_idle_per_backend = 64,
                        std::chrono::seconds idle_timeout = std::chrono::seconds(60));
  ~UpstreamPool();

  // An idle connection to `key`, or nullptr. The caller becomes its delegate. `not_this` (a
  // connection released a moment ago) is passed over.
  UpstreamConnection* take_idle(const std::string& key,
                                const UpstreamConnection* not_this = nullptr);
  // A new, unconnected connection; the caller sets its delegate and calls start(), which reports
  // through on_upstream_connected (synchronously when the address is unusable).
  UpstreamConnection* create(std::string key);
  // Returns a connection whose exchange ended cleanly; it waits for reuse while watching for
  // the backend closing it.
  void release(UpstreamConnection* conn);
  // Closes every idle connection (shutdown); later releases close at once.
  void close_all();
  size_t idle_count() const;

 private:
  void on_upstream_connected(UpstreamConnection&, int) override {}
  void on_upstream_data(UpstreamConnection& conn, const char*, size_t) override;
  void on_upstream_closed(UpstreamConnection& conn, int) override;
  void on_upstream_drained(UpstreamConnection&) override {}
  void drop_idle(UpstreamConnection& conn);
  static void on_sweep(uv_timer_t* timer);
  static void on_timer_closed(uv_handle_t* handle);

  uv_loop_t* loop_;
  uv_timer_t* sweep_timer_;  // heap: its close callback may run after the pool is gone
  size_t max_idle_per_backend_;
  std::chrono::seconds idle_timeout_;
  bool closed_ = false;
  std::unordered_map<std::string, std::vector<UpstreamConnection*>> idle_;
};

}  // namespace portico

#pragma once

// One client connection: TLS to the client, HTTP/1.1 parsed with llhttp, and the exchange with
// the backend for the request in flight. It owns its uv handles, its SSL*, its buffers and its
// upstream lease, and it ends exactly once: every path goes through close_now(), and the last
// handle close callback frees it.

#include <llhttp.h>
#include <sys/socket.h>
#include <uv.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/cidr.h"
#include "proxy/header_rewrite.h"
#include "proxy/http_head.h"
#include "proxy/proxy_protocol.h"
#include "proxy/release_memory.h"
#include "proxy/stream_writer.h"
#include "proxy/upstream_pool.h"
#include "proxy/worker_context.h"
#include "proxy/ws_frames.h"
#include "tls/tls_stream.h"

namespace portico {

class ClientConnection final : private StreamWriter::Owner, private UpstreamConnection::Delegate {
 public:
  // Accepts one pending connection from `server` (a listening TCP handle).
  static void accept_from(WorkerContext& ctx, uv_stream_t* server);
  // A connection accepted outside libuv (the listener's queue drained at shutdown).
  static void adopt(WorkerContext& ctx, int fd);
  // At --max-connections: closes the oldest connection that waits for its client with nothing
  // in flight (silent since it connected, or idle between requests), as NGINX reuses such
  // connections, so that they cannot shut new clients out until their own timeouts. False when
  // there is none.
  static bool close_one_reusable(WorkerContext& ctx);

  // Graceful shutdown: an idle connection closes now; a busy one after its current response.
  void begin_shutdown();
  // Ends the connection at once (the drain time is over).
  void abort() { close_now("portico stopped before the exchange ended"); }

  ClientConnection* next_in_worker() const { return next_; }

 private:
  enum class Phase {
    kHandshake,   // TLS handshake in progress
    kIdle,        // waiting for the next request (keep-alive)
    kHead,        // a request head is arriving
    kConnecting,  // the request is routed; connecting to its backend
    kExchange,    // request sent or streaming; response streaming back
    kTunnel,      // after 101: WebSocket frames relayed both ways
    kClosing,     // final bytes flushed, lingering before the close
    kClosed,      // handles closing; waiting for their callbacks
  };
  enum class PauseReason { kNone, kHeadersComplete, kMessageComplete };

  explicit ClientConnection(WorkerContext& ctx);
  ~ClientConnection();
  void begin();  // a new connection's socket options, timer and first read

  // Reading and the plaintext path.
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  bool take_proxy_header(const char** data, size_t* len);
  void on_ciphertext(const char* data, size_t len);
  void on_plaintext(const char* data, size_t len);
  void process_input();
  void parse(const char* data, size_t len);
  void on_parser_paused();
  void update_reading();

  // The request and its exchange.
  void start_exchange();
  void connect_upstream();
  // The request head for the backend, into http_->upstream_head, with `host` as Host; it is
  // also forwarded (X-Forwarded-Host, Forwarded) when it is the client's.
  void build_upstream_head(std::string_view host, bool client_host);
  void on_upstream_ready();
  void send_request_body(const char* data, size_t len);
  void finish_exchange();
  void next_request();
  void release_idle_buffers(size_t keep = 0);
  void release_when_quiet();
  void reset_exchange();
  // `extra_headers`: whole lines, each ending in CRLF.
  void respond_error(int status, std::string_view why, std::string_view extra_headers = {});
  void log_access(std::string_view error);

  // Writing to the client.
  TlsStream::Status encrypt_for_client(const char* data, size_t len);
  void flush_to_client();
  void on_write_done(int status) override;

  // UpstreamConnection::Delegate
  void on_upstream_connected(UpstreamConnection& conn, int status) override;
  void on_upstream_data(UpstreamConnection& conn, const char* data, size_t len) override;
  void on_upstream_closed(UpstreamConnection& conn, int status) override;
  void on_upstream_drained(UpstreamConnection& conn) override;
  void upstream_failed(std::string_view why);
  void try_next_backend(bool timed_out);
  void drop_upstream(bool reusable);

  // The WebSocket tunnel (client_tunnel.cc).
  struct Tunnel;
  void enter_tunnel(const char* backend_bytes, size_t len);
  void tunnel_from_client(const char* data, size_t len);
  void tunnel_from_backend(const char* data, size_t len);
  void tunnel_send_close(uint16_t to_client, uint16_t to_backend, std::string_view why);
  void tunnel_backend_gone(int status);
  void tunnel_client_gone();
  static bool chunk_crlf_ok(uint8_t* left, const char* from, const char* end);
  void backend_sent_invalid_response(const char* reason);
  void tunnel_on_timer();
  void tunnel_finish(std::string_view why);
  void tunnel_after_close_frames();
  bool websocket_checks_pass(std::string_view host);
  void resume_parser();

  // Timers and the end of the connection.
  void arm_timer(std::chrono::milliseconds timeout);
  void fire_timer_by(uint64_t due_ms);
  static void on_timer(uv_timer_t* timer);
  void on_client_eof();
  void close_gracefully();    // close_notify, flush, FIN, linger, close
  void queue_close_notify();  // the alert goes out with the writer's next flush
  // The one place where handles are closed. An exchange or tunnel still without its access-log
  // line gets it here, with `why` as its error (or ended=).
  void close_now(std::string_view why = "connection closed");
  // True while an expired deadline waits for the client to take what portico holds for it
  // (see on_timer).
  bool waiting_on_client() const;
  // Bytes are queued for the client: the timer fires by the time --send-timeout would end the
  // wait for it (on_timer decides, from send_progress_ms_).
  void watch_for_stalled_client();
  bool reusable(uint64_t now) const;  // see close_one_reusable
  void handshake_abandoned(std::string_view how);
  void close_after_client_error(int status);  // a read or write on the client's socket failed
  static void on_handle_closed(uv_handle_t* handle);
  static void on_shutdown_done(uv_shutdown_t* req, int status);

  // llhttp callbacks (request parser, then response parser).
  static int on_request_message_begin(llhttp_t* p);
  static int on_request_url(llhttp_t* p, const char* at, size_t len);
  static int on_request_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_request_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_request_header_field_complete(llhttp_t* p);
  static int on_request_header_value_complete(llhttp_t* p);
  static int on_request_headers_complete(llhttp_t* p);
  static int on_request_body(llhttp_t* p, const char* at, size_t len);
  static int on_chunk_extension(llhttp_t* p, const char* at, size_t len);  // both parsers
  static int on_chunk_header(llhttp_t* p);                                 // both parsers
  static int on_request_message_complete(llhttp_t* p);
  static int on_response_status(llhttp_t* p, const char* at, size_t len);
  static int on_response_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_response_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_response_header_field_complete(llhttp_t* p);
  static int on_response_header_value_complete(llhttp_t* p);
  static int on_response_headers_complete(llhttp_t* p);
  static int on_response_body(llhttp_t* p, const char* at, size_t len);
  static int on_response_message_complete(llhttp_t* p);
  static const llhttp_settings_t& request_settings();
  static const llhttp_settings_t& response_settings();

  WorkerContext& ctx_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uint64_t deadline_ms_ = 0;  // when the current phase times out (loop time, see arm_timer)
  // When the client last took queued bytes (on_write_done), or when bytes were queued for it
  // with none queued before: the start of what --send-timeout bounds.
  uint64_t send_progress_ms_ = 0;
  uint64_t quiet_release_ms_ = 0;  // when buffers are given back if nothing moves; 0: not due
  uint64_t last_encrypt_ms_ = 0;   // when plaintext for the client was last encrypted
  int open_handles_ = 0;
  StreamWriter writer_;
  TlsStream tls_;
  IpAddress peer_{};
  std::string peer_address_;
  Phase phase_ = Phase::kHandshake;
  bool reading_ = false;
  bool shutting_down_ = false;
  bool processing_input_ = false;
  bool client_eof_ = false;  // the client half-closed (after a complete request, or in a tunnel)
  // A TLS byte arrived from the client (a PROXY protocol header is not one): until then the
  // connection is silent (see reusable()).
  bool client_sent_bytes_ = false;
  // When the connection last began to wait with nothing in flight (accepted, or idle between
  // requests), loop time: of the reusable ones, the one waiting longest is reused first.
  uint64_t reusable_since_ms_ = 0;
  bool shutdown_sent_ = false;
  bool answered_ = false;  // at least one exchange finished (see begin_shutdown)
  ClientConnection* prev_ = nullptr;
  ClientConnection* next_ = nullptr;
  // --proxy-protocol: the parser until the balancer's header is read, then null.
  std::unique_ptr<ProxyProtocolParser> proxy_header_;

  // Both parsers, both heads and what is built from them; freed when a tunnel opens.
  struct HttpState;
  std::unique_ptr<HttpState> http_;

  // Request side.
  bool parser_paused_ = false;
  PauseReason pause_reason_ = PauseReason::kNone;
  std::string pending_input_;  // plaintext received but not yet parsed (bounded by one read)
  std::string plain_out_;      // plaintext for the client, encrypted at flush
  const char* parse_begin_ = nullptr;  // the bytes llhttp (either parser) is parsing now
  const char* parse_end_ = nullptr;
  // The last byte each parser consumed before the bytes it is parsing now (see line_starts).
  char request_byte_before_ = '\n';
  // And the last one that was not SP or HTAB (value_span_is_not_fold), per parser.
  char request_non_blank_before_ = '\n';
  char response_non_blank_before_ = '\n';
  // llhttp 8.1 (not built in its strict mode) skips the two bytes after a chunk's data without
  // looking at them: how many of that CRLF are still to be checked (chunk_crlf_ok), per side.
  uint8_t chunk_crlf_left_ = 0;
  uint8_t response_chunk_crlf_left_ = 0;
  char response_byte_before_ = '\n';
  bool value_span_at_end_ = false;  // the last header value span ended at parse_end_
  int request_error_status_ = 0;    // set by callbacks that reject the request (431, 413)

  // The exchange in flight.
  std::shared_ptr<RoutingState> routing_;
  const Route* route_ = nullptr;
  size_t backend_index_ = 0;
  std::string upstream_key_;
  UpstreamConnection* upstream_ = nullptr;
  // The connection finish_exchange just gave back to the pool, while the next pipelined request
  // is started from inside it: never taken by that request (only compared, never used).
  const UpstreamConnection* just_released_upstream_ = nullptr;
  BodyFraming request_framing_ = BodyFraming::kNone;
  bool request_complete_ = false;
  bool exchange_started_ = false;
  bool exchange_done_ = false;
  bool access_logged_ = false;  // this exchange's access-log line is written
  bool client_keep_alive_ = true;
  bool expect_continue_ = false;
  bool retried_ = false;
  uint64_t request_body_bytes_ = 0;
  std::chrono::steady_clock::time_point request_start_{};

  // Response side.
  bool response_head_sent_ = false;
  bool response_complete_ = false;
  bool response_informational_ = false;
  BodyFraming client_framing_ = BodyFraming::kNone;
  uint64_t response_bytes_from_backend_ = 0;
  uint64_t bytes_to_client_ = 0;
  int status_sent_ = 0;
  bool upstream_paused_ = false;  // upstream reads stopped because the client is slow

  // WebSocket.
  bool websocket_ = false;   // the request in flight is a WebSocket opening handshake
  bool switching_ = false;   // the backend accepted it with 101
  bool ws_deflate_ = false;  // and agreed permessage-deflate: RSV1 marks compressed messages
  std::unique_ptr<Tunnel> tunnel_;
  bool entered_tunnel_ = false;  // counted in metrics.open_tunnels until the connection ends
};

// What HTTP needs and a WebSocket tunnel does not: the two llhttp parsers, the request and
// response heads, and the strings built from them for the exchange in flight. It is allocated
// with the connection and kept across keep-alive requests (nothing is allocated per request);
// enter_tunnel frees it, because an idle tunnel would otherwise carry some 650 bytes it never
// uses again (memory per idle wss connection, docs/performance.md S7).
struct ClientConnection::HttpState {
  llhttp_t request_parser;
  llhttp_t response_parser;
  HttpHead request;
  HttpHead response;
  std::vector<size_t> tried_backends;
  std::string_view sticky_cookie_in;  // balance=cookie: the value the client sent (in `request`)
  std::string set_cookie;             // balance=cookie: the Set-Cookie line to add, if any
  std::string normalized_path;        // the request's path, normalised (routing/route_table.h)
  std::string upstream_target;        // the path and query sent to the backend
  std::string upstream_head;
  std::string ws_accept;  // the Sec-WebSocket-Accept the backend must answer with
  // An HTTP/1.0 request without Host.
  bool host_absent = false;
  // The last backend tried did not connect in time: 504 when none is left.
  bool last_attempt_timed_out = false;
  // The response may carry no body (HEAD, 204, 304) but announced one: the backend connection
  // is not reused (on_response_headers_complete).
  bool response_announced_absent_body = false;
  // Bytes of the current chunk's extensions, per parser (on_chunk_extension).
  size_t request_chunk_extension_bytes = 0;
  size_t response_chunk_extension_bytes = 0;
  // Why on_response_headers_complete refused the head (llhttp replaces a callback's reason).
  const char* headers_refusal = nullptr;
};

// A WebSocket tunnel's state: frame tracking each way, keep-alive pings, the close codes, and
// what its access-log line names of the opening request (always a GET).
struct ClientConnection::Tunnel {
  Tunnel(uint64_t max_message, uint64_t now_ms)
      : from_client(WsDirection::kClientToServer, max_message),
        from_backend(WsDirection::kServerToClient, max_message),
        started_ms(now_ms),
        last_client_activity_ms(now_ms) {}

  WsFrameTracker from_client;
  WsFrameTracker from_backend;
  std::string host;                 // the request's Host header
  std::string target;               // the request-target as received
  std::string referer, user_agent;  // the request's, when the log format shows them
  uint64_t started_ms;
  uint64_t last_client_activity_ms;
  // Why portico sent its own Close frames (a string literal or a violation name; never empty),
  // empty until it does: then it waits for the peers' replies.
  std::string_view closing_reason;
  bool closing() const { return !closing_reason.empty(); }
  // Both endpoints' Close frames have passed (RFC 6455 section 7.1.2).
  bool close_handshake_done() const { return from_client.saw_close() && from_backend.saw_close(); }
  bool ping_outstanding = false;
  uint16_t close_to_client = 0;
  uint16_t close_to_backend = 0;
};

}  // namespace portico

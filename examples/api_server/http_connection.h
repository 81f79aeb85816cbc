#pragma once

// One client connection of the example API server: llhttp on the bytes read, responses in
// request order (pipelining), bounded buffers in both directions.
//
// Flow control, in one place (pump()): requests are parsed only while the output queue is below
// its high mark and no streamed body is in progress; bytes that arrive meanwhile wait in `pending_`
// and reading stops when that reaches its limit. A streamed body (GET /bytes/N, static files) is
// produced one block at a time, the next block only when the previous write completed.

#include <llhttp.h>
#include <uv.h>

#include <cstdint>
#include <string>

#include "examples/api_server/endpoints.h"

namespace portico::examples {

class HttpConnection;

// State shared by all connections of the (single-threaded) server.
struct ServerContext {
  std::string static_dir;
  bool quiet = false;
  char read_buffer[64 * 1024];      // every read lands here; what is not parsed at once is copied
  HttpConnection* first = nullptr;  // all live connections, for shutdown
};

class HttpConnection {
 public:
  // Accepts one pending connection from `listener`; the object frees itself when closed.
  static void accept_from(uv_stream_t* listener, ServerContext* context);
  // Ends the connection now (no more output); idempotent. Memory is freed in the close callbacks.
  void close();
  HttpConnection* next() const { return next_; }

 private:
  explicit HttpConnection(ServerContext* context);
  ~HttpConnection();

  // llhttp callbacks
  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, size_t len);
  static int on_message_complete(llhttp_t* p);
  // libuv callbacks
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write_done(uv_write_t* req, int status);
  static void on_shutdown_done(uv_shutdown_t* req, int status);
  static void on_linger_timeout(uv_timer_t* timer);
  static void on_handle_closed(uv_handle_t* h);

  bool blocked() const;
  size_t parse(const char* data, size_t len);
  void drain_pending();
  void handle_request();
  void start_response(ResponsePlan& plan, bool head);
  void write_error(int status);
  void fill_stream();
  void flush();
  void pump();
  void update_reading();
  void begin_shutdown();
  void log_request(int status, uint64_t length);
  bool count_header_bytes(size_t len);
  size_t pending_size() const { return pending_.size() - pending_offset_; }

  ServerContext* context_;
  HttpConnection* prev_ = nullptr;
  HttpConnection* next_ = nullptr;
  uv_tcp_t tcp_;
  uv_timer_t linger_timer_;
  uv_write_t write_req_;
  uv_shutdown_t shutdown_req_;
  int open_handles_ = 0;

  llhttp_t parser_;
  llhttp_settings_t settings_;
  // The request being parsed.
  std::string url_;
  // Reused across requests (strings keep their capacity): header_count_ entries are this request's.
  HeaderList headers_;
  size_t header_count_ = 0;
  bool building_header_ = false;
  bool last_was_value_ = false;
  size_t header_bytes_ = 0;
  bool keep_body_ = false;
  std::string body_;
  int error_status_ = 0;  // set by a callback that rejects the request (431, 413)
  bool keep_alive_ = true;

  std::string pending_;  // received, not yet parsed
  size_t pending_offset_ = 0;
  bool reading_ = false;
  bool peer_eof_ = false;

  std::string out_;       // being assembled
  std::string inflight_;  // owned by the write in progress (uv_write keeps the buffer)
  bool writing_ = false;

  bool streaming_ = false;
  ResponsePlan::Body stream_kind_ = ResponsePlan::Body::kInline;
  uint64_t stream_offset_ = 0;
  uint64_t stream_remaining_ = 0;
  int stream_fd_ = -1;

  bool close_after_response_ = false;
  bool shutting_down_ = false;
  bool closing_ = false;
};

}  // namespace portico::examples

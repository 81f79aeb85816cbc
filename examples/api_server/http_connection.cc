#include "examples/api_server/http_connection.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace portico::examples {

namespace {

// Limits: every buffer a client can fill is bounded.
constexpr size_t kMaxHeaderBytes = 64 * 1024;  // request line + headers; 431 above
constexpr size_t kMaxHeaders = 200;            // 431 above
constexpr uint64_t kMaxEchoBody = 16 << 20;    // POST /api/echo; 413 above
constexpr size_t kMaxPending = 64 * 1024;      // received but not parsed: reading stops above
constexpr size_t kOutputHighWater = 1 << 20;   // queued output: parsing and reading stop above
constexpr size_t kStreamBlock = 256 * 1024;    // one write of a streamed body
constexpr uint64_t kLingerMs = 2000;           // after our FIN, drain input this long at most

// The benchmark path: one preformatted response, copied into the output buffer with one append.
constexpr std::string_view kSmallResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n";

HttpConnection* self(llhttp_t* p) { return static_cast<HttpConnection*>(p->data); }

}  // namespace

HttpConnection::HttpConnection(ServerContext* context) : context_(context) {
  llhttp_settings_init(&settings_);
  settings_.on_message_begin = on_message_begin;
  settings_.on_url = on_url;
  settings_.on_header_field = on_header_field;
  settings_.on_header_value = on_header_value;
  settings_.on_headers_complete = on_headers_complete;
  settings_.on_body = on_body;
  settings_.on_message_complete = on_message_complete;
  llhttp_init(&parser_, HTTP_REQUEST, &settings_);
  parser_.data = this;
  tcp_.data = this;
  linger_timer_.data = this;
  write_req_.data = this;
  shutdown_req_.data = this;
  next_ = context_->first;
  if (next_ != nullptr) next_->prev_ = this;
  context_->first = this;
}

HttpConnection::~HttpConnection() {
  if (prev_ != nullptr) prev_->next_ = next_;
  if (next_ != nullptr) next_->prev_ = prev_;
  if (context_->first == this) context_->first = next_;
}

void HttpConnection::accept_from(uv_stream_t* listener, ServerContext* context) {
  auto* c = new HttpConnection(context);
  uv_tcp_init(listener->loop, &c->tcp_);
  uv_timer_init(listener->loop, &c->linger_timer_);
  c->open_handles_ = 2;
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
    c->close();
    return;
  }
  uv_tcp_nodelay(&c->tcp_, 1);  // responses are small and must not wait for Nagle
  c->update_reading();
}

void HttpConnection::close() {
  if (closing_) return;
  closing_ = true;
  if (stream_fd_ >= 0) ::close(stream_fd_);
  stream_fd_ = -1;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&linger_timer_), on_handle_closed);
}

void HttpConnection::on_handle_closed(uv_handle_t* h) {
  auto* c = static_cast<HttpConnection*>(h->data);
  if (--c->open_handles_ == 0) delete c;
}

// ---- parsing ----

int HttpConnection::on_message_begin(llhttp_t* p) {
  HttpConnection* c = self(p);
  c->url_.clear();
  c->header_count_ = 0;
  c->building_header_ = false;
  c->last_was_value_ = false;
  c->header_bytes_ = 0;
  c->keep_body_ = false;
  c->error_status_ = 0;
  if (c->body_.capacity() > (1 << 20)) c->body_ = std::string();  // do not keep a big echo's RAM
  c->body_.clear();
  return 0;
}

bool HttpConnection::count_header_bytes(size_t len) {
  header_bytes_ += len;
  if (header_bytes_ <= kMaxHeaderBytes) return true;
  error_status_ = 431;
  return false;
}

int HttpConnection::on_url(llhttp_t* p, const char* at, size_t len) {
  HttpConnection* c = self(p);
  if (!c->count_header_bytes(len)) return -1;
  c->url_.append(at, len);
  return 0;
}

int HttpConnection::on_header_field(llhttp_t* p, const char* at, size_t len) {
  HttpConnection* c = self(p);
  if (!c->count_header_bytes(len)) return -1;
  if (!c->building_header_ || c->last_was_value_) {  // a new header starts
    if (c->building_header_) ++c->header_count_;
    if (c->header_count_ >= kMaxHeaders) {
      c->error_status_ = 431;
      return -1;
    }
    c->building_header_ = true;
    c->last_was_value_ = false;
    if (c->header_count_ == c->headers_.size()) {
      c->headers_.emplace_back();
    } else {
      c->headers_[c->header_count_].first.clear();
      c->headers_[c->header_count_].second.clear();
    }
  }
  c->headers_[c->header_count_].first.append(at, len);
  return 0;
}

int HttpConnection::on_header_value(llhttp_t* p, const char* at, size_t len) {
  HttpConnection* c = self(p);
  if (!c->count_header_bytes(len)) return -1;
  if (!c->building_header_) return 0;  // cannot happen: llhttp sends a field first
  c->headers_[c->header_count_].second.append(at, len);
  c->last_was_value_ = true;
  return 0;
}

int HttpConnection::on_headers_complete(llhttp_t* p) {
  HttpConnection* c = self(p);
  if (c->building_header_) ++c->header_count_;
  c->building_header_ = false;
  std::string_view path = std::string_view(c->url_).substr(0, c->url_.find('?'));
  c->keep_body_ = p->method == HTTP_POST && path == "/api/echo";
  if (c->keep_body_ && (p->flags & F_CONTENT_LENGTH) && p->content_length > kMaxEchoBody) {
    c->error_status_ = 413;  // refuse before the client sends the body
    return -1;
  }
  for (size_t i = 0; i < c->header_count_; ++i) {
    const auto& [name, value] = c->headers_[i];
    if (strcasecmp(name.c_str(), "Expect") == 0 && strcasecmp(value.c_str(), "100-continue") == 0 &&
        p->http_minor == 1) {
      // Queued behind the responses to earlier pipelined requests, so the order holds.
      c->out_.append("HTTP/1.1 100 Continue\r\n\r\n");
    }
  }
  return 0;
}

int HttpConnection::on_body(llhttp_t* p, const char* at, size_t len) {
  HttpConnection* c = self(p);
  if (!c->keep_body_) return 0;
  if (c->body_.size() + len > kMaxEchoBody) {
    c->error_status_ = 413;
    return -1;
  }
  c->body_.append(at, len);
  return 0;
}

int HttpConnection::on_message_complete(llhttp_t* p) {
  HttpConnection* c = self(p);
  // After an Upgrade request the bytes are not HTTP any more; we do not upgrade, so we answer and
  // close.
  c->keep_alive_ = llhttp_should_keep_alive(p) != 0 && p->upgrade == 0;
  return HPE_PAUSED;  // one request at a time: handle_request() runs before the next is parsed
}

bool HttpConnection::blocked() const {
  return streaming_ || close_after_response_ || closing_ || shutting_down_ ||
         out_.size() + inflight_.size() >= kOutputHighWater;
}

size_t HttpConnection::parse(const char* data, size_t len) {
  size_t off = 0;
  while (off < len && !blocked()) {
    llhttp_errno_t err = llhttp_execute(&parser_, data + off, len - off);
    if (err == HPE_OK) return len;
    if (err == HPE_PAUSED) {
      off = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
      handle_request();
      continue;
    }
    // A malformed request (or one over a limit): answer it and close, since the framing of
    // whatever follows cannot be trusted.
    write_error(error_status_ != 0 ? error_status_ : 400);
    return len;
  }
  return off;
}

void HttpConnection::drain_pending() {
  while (pending_size() > 0 && !blocked()) {
    pending_offset_ += parse(pending_.data() + pending_offset_, pending_size());
  }
  if (pending_offset_ == pending_.size()) {
    pending_.clear();
    pending_offset_ = 0;
  } else if (pending_offset_ > kMaxPending) {
    pending_.erase(0, pending_offset_);
    pending_offset_ = 0;
  }
}

// ---- responses ----

void HttpConnection::handle_request() {
  if (!keep_alive_) close_after_response_ = true;
  if (parser_.method == HTTP_GET && keep_alive_ && parser_.http_minor == 1 && url_ == "/small") {
    out_.append(kSmallResponse);
    if (!context_->quiet) log_request(200, 13);
    return;
  }
  headers_.resize(header_count_);
  RequestView request{llhttp_method_name(static_cast<llhttp_method_t>(parser_.method)), url_,
                      headers_, body_};
  ResponsePlan plan = plan_response(request, context_->static_dir);
  start_response(plan, parser_.method == HTTP_HEAD);
}

void HttpConnection::write_error(int status) {
  close_after_response_ = true;
  ResponsePlan plan;
  plan.status = status;
  plan.content_type = "application/json";
  plan.body = std::string("{\"error\":\"") + reason_phrase(status) + "\"}\n";
  start_response(plan, false);
}

void HttpConnection::start_response(ResponsePlan& plan, bool head) {
  bool is_inline = plan.body_kind == ResponsePlan::Body::kInline;
  uint64_t length = is_inline ? plan.body.size() : plan.length;
  char line[160];
  int n =
      std::snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\nContent-Length: %llu\r\n", plan.status,
                    reason_phrase(plan.status), static_cast<unsigned long long>(length));
  out_.append(line, static_cast<size_t>(n));
  if (!plan.content_type.empty()) {
    out_.append("Content-Type: ").append(plan.content_type).append("\r\n");
  }
  for (const auto& [name, value] : plan.extra_headers) {
    out_.append(name).append(": ").append(value).append("\r\n");
  }
  if (close_after_response_) {
    out_.append("Connection: close\r\n");
  } else if (parser_.http_minor == 0) {
    out_.append("Connection: keep-alive\r\n");  // HTTP/1.0 keep-alive must be confirmed
  }
  out_.append("\r\n");
  if (!context_->quiet) log_request(plan.status, length);

  if (head) {
    if (plan.file_fd >= 0) ::close(plan.file_fd);
  } else if (is_inline) {
    out_.append(plan.body);
  } else {
    streaming_ = true;
    stream_kind_ = plan.body_kind;
    stream_offset_ = 0;
    stream_remaining_ = length;
    stream_fd_ = plan.file_fd;
    fill_stream();
  }
  plan.file_fd = -1;
}

void HttpConnection::fill_stream() {
  while (out_.size() < kStreamBlock && stream_remaining_ > 0) {
    size_t n =
        static_cast<size_t>(std::min<uint64_t>(kStreamBlock - out_.size(), stream_remaining_));
    if (stream_kind_ == ResponsePlan::Body::kRepeatedX) {
      out_.append(n, 'x');
    } else {
      // A blocking read, acceptable in an example: local files, 256 KiB at a time.
      size_t old = out_.size();
      out_.resize(old + n);
      ssize_t got = ::pread(stream_fd_, out_.data() + old, n, static_cast<off_t>(stream_offset_));
      if (got <= 0) {
        // The file shrank under us: the promised Content-Length cannot be kept, so end the
        // connection rather than let the client take the next response as body.
        close();
        return;
      }
      out_.resize(old + static_cast<size_t>(got));
      n = static_cast<size_t>(got);
    }
    stream_offset_ += n;
    stream_remaining_ -= n;
  }
  if (stream_remaining_ == 0) {
    streaming_ = false;
    if (stream_fd_ >= 0) ::close(stream_fd_);
    stream_fd_ = -1;
  }
}

void HttpConnection::log_request(int status, uint64_t length) {
  char line[512];
  const char* method = llhttp_method_name(static_cast<llhttp_method_t>(parser_.method));
  int n = std::snprintf(line, sizeof line, "api_server: %s %.300s %d length=%llu\n",
                        url_.empty() ? "-" : method, url_.empty() ? "-" : url_.c_str(), status,
                        static_cast<unsigned long long>(length));
  std::fwrite(line, 1, static_cast<size_t>(std::min<int>(n, sizeof line - 1)), stderr);
}

// ---- I/O ----

void HttpConnection::flush() {
  if (writing_ || out_.empty() || closing_) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (!streaming_) {
    // Most responses fit in the socket buffer: write now and skip a loop iteration.
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    int n = uv_try_write(stream, &buf, 1);
    if (n >= 0 && static_cast<size_t>(n) == out_.size()) {
      out_.clear();
      return;
    }
    if (n > 0) {
      out_.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && n != UV_EAGAIN) {
      close();
      return;
    }
  }
  inflight_.swap(out_);
  out_.clear();
  uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  if (uv_write(&write_req_, stream, &buf, 1, on_write_done) != 0) {
    close();
    return;
  }
  writing_ = true;
}

void HttpConnection::on_write_done(uv_write_t* req, int status) {
  auto* c = static_cast<HttpConnection*>(req->data);
  c->writing_ = false;
  c->inflight_.clear();
  if (c->closing_) return;  // UV_ECANCELED from close()
  if (status < 0) {
    c->close();
    return;
  }
  c->pump();
}

void HttpConnection::pump() {
  while (!closing_ && !shutting_down_) {
    drain_pending();
    if (streaming_) fill_stream();
    flush();
    if (closing_) return;
    if (writing_) {
      if (streaming_) fill_stream();  // have the next block ready when this write completes
      break;
    }
    // All output is written.
    if (close_after_response_ || (peer_eof_ && pending_size() == 0 && !streaming_)) {
      begin_shutdown();
      return;
    }
    if (!streaming_ && (pending_size() == 0 || blocked())) break;
  }
  update_reading();
}

void HttpConnection::update_reading() {
  if (closing_) return;
  bool want = !shutting_down_ && !peer_eof_ && pending_size() < kMaxPending &&
              out_.size() + inflight_.size() < kOutputHighWater;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want && !reading_) {
    reading_ = uv_read_start(stream, on_alloc, on_read) == 0;
  } else if (!want && reading_) {
    uv_read_stop(stream);
    reading_ = false;
  }
}

void HttpConnection::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<HttpConnection*>(h->data);
  *buf = uv_buf_init(c->context_->read_buffer, sizeof c->context_->read_buffer);
}

void HttpConnection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<HttpConnection*>(s->data);
  if (c->closing_ || nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) {
      c->close();
      return;
    }
    c->peer_eof_ = true;
    uv_read_stop(s);
    c->reading_ = false;
    if (c->shutting_down_) {
      c->close();  // lingering close done: the client saw our FIN and closed too
    } else {
      c->pump();  // finish answering what was received, then close
    }
    return;
  }
  if (c->shutting_down_) return;  // lingering: discard
  size_t len = static_cast<size_t>(nread);
  if (c->pending_size() == 0 && !c->blocked()) {
    size_t used = c->parse(buf->base, len);  // the common case: no copy
    if (used < len) c->pending_.append(buf->base + used, len - used);
  } else {
    c->pending_.append(buf->base, len);
  }
  c->pump();
}

void HttpConnection::begin_shutdown() {
  shutting_down_ = true;
  if (uv_shutdown(&shutdown_req_, reinterpret_cast<uv_stream_t*>(&tcp_), on_shutdown_done) != 0) {
    close();
  }
}

void HttpConnection::on_shutdown_done(uv_shutdown_t* req, int status) {
  auto* c = static_cast<HttpConnection*>(req->data);
  if (c->closing_) return;
  if (status < 0 || c->peer_eof_) {
    c->close();
    return;
  }
  // Lingering close: closing with unread input would send RST, which can destroy the response
  // still in flight to the client. Drain until the client closes, for a bounded time.
  if (!c->reading_) {
    c->reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp_), on_alloc, on_read) == 0;
  }
  uv_timer_start(&c->linger_timer_, on_linger_timeout, kLingerMs, 0);
}

void HttpConnection::on_linger_timeout(uv_timer_t* timer) {
  static_cast<HttpConnection*>(timer->data)->close();
}

}  // namespace portico::examples

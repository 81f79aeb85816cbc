#include "proxy/redirect_server.h"

#include "proxy/header_rewrite.h"
#include "proxy/log.h"

namespace portico {
namespace {
RedirectConnection* from_parser(llhttp_t* p) { return static_cast<RedirectConnection*>(p->data); }
}  // namespace

std::string https_redirect_location(std::string_view host_header, std::string_view target,
                                    uint16_t https_port) {
  std::string_view host, port;
  if (!split_host_port(host_header, &host, &port)) return "";
  if (target.starts_with("http://")) {
    // absolute-form: keep only its path and query.
    std::string_view rest = target.substr(7);
    size_t slash = rest.find('/');
    target = slash == std::string_view::npos ? "/" : rest.substr(slash);
  }
  if (target.empty() || target.front() != '/') return "";
  std::string location = "https://";
  location.append(host);
  if (https_port != 443) location.append(":").append(std::to_string(https_port));
  location.append(target);
  return location;
}

RedirectConnection::RedirectConnection(WorkerContext& ctx) : ctx_(ctx) {
  uv_tcp_init(ctx.loop, &tcp_);
  uv_timer_init(ctx.loop, &timer_);
  tcp_.data = this;
  timer_.data = this;
  writer_.init(reinterpret_cast<uv_stream_t*>(&tcp_), this);
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

void RedirectConnection::accept_from(WorkerContext& ctx, uv_stream_t* server) {
  auto* conn = new RedirectConnection(ctx);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&conn->tcp_)) != 0) {
    conn->close();
    return;
  }
  uv_tcp_nodelay(&conn->tcp_, 1);
  uv_timer_start(&conn->timer_, &RedirectConnection::on_timer,
                 static_cast<uint64_t>(ctx.config.header_timeout.count()), 0);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp_), &alloc_from_loop_buffer,
                &RedirectConnection::on_read);
}

void RedirectConnection::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &RedirectConnection::on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &RedirectConnection::on_closed);
}

void RedirectConnection::on_closed(uv_handle_t* handle) {
  auto* conn = static_cast<RedirectConnection*>(handle->data);
  if (--conn->open_handles_ == 0) delete conn;
}

void RedirectConnection::on_timer(uv_timer_t* timer) {
  static_cast<RedirectConnection*>(timer->data)->close();
}

void RedirectConnection::on_write_done(int status) {
  if (closing_) return;
  if (status < 0 || (close_after_write_ && writer_.queued() == 0)) close();
}

void RedirectConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* conn = static_cast<RedirectConnection*>(stream->data);
  if (conn->closing_ || conn->close_after_write_) return;
  if (nread < 0) {
    conn->close();
    return;
  }
  llhttp_errno_t err = llhttp_execute(&conn->parser_, buf->base, static_cast<size_t>(nread));
  if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    std::string response;
    build_simple_response(400, "400 Bad Request: malformed request\n", false, "", &response);
    conn->close_after_write_ = true;
    conn->writer_.write(response.data(), response.size());
    if (conn->writer_.queued() == 0) conn->close();
    return;
  }
  // Never let a client park bytes here: a slow reader stops being read.
  if (conn->writer_.queued() > kWriteHighWater) uv_read_stop(stream);
}

void RedirectConnection::answer() {
  const HeaderField* host = request_.find("host");
  std::string location;
  if (host && request_.count("host") == 1) {
    location = https_redirect_location(host->value, request_.target, ctx_.public_https_port);
  }
  std::string response;
  bool keep_alive = llhttp_should_keep_alive(&parser_) && !ctx_.shutting_down;
  int status = 400;
  if (location.empty()) {
    build_simple_response(400, "400 Bad Request: invalid Host header or target\n", false, "",
                          &response);
    keep_alive = false;
  } else {
    status = (request_.method == "GET" || request_.method == "HEAD") ? 301 : 308;
    std::string extra = "Location: " + location + "\r\n";
    std::string body =
        std::to_string(status) + " " + std::string(reason_phrase(status)) + ": " + location + "\n";
    if (request_.method == "HEAD") body.clear();
    build_simple_response(status, body, keep_alive, extra, &response);
  }
  if (ctx_.access_log.enabled()) {
    AccessLogEntry entry;
    entry.method = request_.method;
    entry.host = host ? std::string_view(host->value) : std::string_view();
    entry.target = request_.target;
    entry.route = "redirect";
    entry.status = status;
    entry.bytes_out = response.size();
    ctx_.access_log.write(entry);
  }
  if (!keep_alive) close_after_write_ = true;
  writer_.write(response.data(), response.size());
  if (close_after_write_ && writer_.queued() == 0) close();
  uv_timer_start(&timer_, &RedirectConnection::on_timer,
                 static_cast<uint64_t>(ctx_.config.keepalive_timeout.count()), 0);
}

int RedirectConnection::on_message_begin(llhttp_t* p) {
  RedirectConnection* c = from_parser(p);
  c->request_.clear();
  c->building_name_ = false;
  return 0;
}

int RedirectConnection::on_url(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  c->request_.bytes += len;
  if (c->request_.bytes > c->ctx_.config.max_header_bytes) return HPE_USER;
  c->request_.target.append(at, len);
  return 0;
}

int RedirectConnection::on_header_field(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  c->request_.bytes += len;
  if (c->request_.bytes > c->ctx_.config.max_header_bytes) return HPE_USER;
  if (!c->building_name_) {
    if (c->request_.headers.size() >= c->ctx_.config.max_header_count) return HPE_USER;
    c->request_.headers.emplace_back();
    c->building_name_ = true;
  }
  c->request_.headers.back().name.append(at, len);
  return 0;
}

int RedirectConnection::on_header_field_complete(llhttp_t* p) {
  from_parser(p)->building_name_ = false;
  return 0;
}

int RedirectConnection::on_header_value(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  c->request_.bytes += len;
  if (c->request_.bytes > c->ctx_.config.max_header_bytes) return HPE_USER;
  c->request_.headers.back().value.append(at, len);
  return 0;
}

int RedirectConnection::on_message_complete(llhttp_t* p) {
  RedirectConnection* c = from_parser(p);
  c->request_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  c->answer();
  return c->close_after_write_ ? HPE_PAUSED : 0;
}

const llhttp_settings_t& RedirectConnection::settings() {
  static const llhttp_settings_t instance = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &RedirectConnection::on_message_begin;
    s.on_url = &RedirectConnection::on_url;
    s.on_header_field = &RedirectConnection::on_header_field;
    s.on_header_field_complete = &RedirectConnection::on_header_field_complete;
    s.on_header_value = &RedirectConnection::on_header_value;
    s.on_message_complete = &RedirectConnection::on_message_complete;
    return s;
  }();
  return instance;
}

}  // namespace portico

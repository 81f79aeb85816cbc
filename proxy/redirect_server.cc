#include "proxy/redirect_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "proxy/header_rewrite.h"
#include "proxy/log.h"
#include "routing/route_table.h"

namespace portico {
namespace {
RedirectConnection* from_parser(llhttp_t* p) { return static_cast<RedirectConnection*>(p->data); }

// Challenge files hold a token and a key thumbprint (about 90 bytes); anything much larger is not
// one, and is not served.
constexpr size_t kMaxChallengeBytes = 4096;
// How long end_after_write() drops an unwanted body: 5 s of silence, 30 s in all (NGINX's
// lingering_timeout and lingering_time).
constexpr uint64_t kLingerQuietMs = 5000;
constexpr uint64_t kLingerMaxMs = 30000;
constexpr size_t kMaxTokenLength = 256;

// Reads a challenge file synchronously on the loop: it is under a page, from the page cache, a
// few times per certificate issuance. uv_fs would add a thread-pool round trip and a request
// object that must outlive this connection's close, for no measurable gain. O_NOFOLLOW and the
// regular-file check keep a planted symlink from pointing the answer anywhere else.
bool read_challenge(const std::string& path, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st;
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<size_t>(st.st_size) <= kMaxChallengeBytes;
  if (ok) {
    char buf[kMaxChallengeBytes];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ok = n >= 0;
    if (ok) out->assign(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return ok;
}
}  // namespace

std::string acme_webroot_problem(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    return dir + ": " + std::strerror(errno) + " (challenges get 404 until it exists)";
  }
  if (!S_ISDIR(st.st_mode)) return dir + ": not a directory (challenges get 404)";
  return "";
}

AcmeTarget acme_challenge_token(std::string_view target, std::string* token) {
  if (!target.starts_with(kAcmeChallengePrefix)) return AcmeTarget::kNotAcme;
  std::string_view name = target.substr(kAcmeChallengePrefix.size());
  if (size_t query = name.find('?'); query != std::string_view::npos) name = name.substr(0, query);
  if (name.empty() || name.size() > kMaxTokenLength) return AcmeTarget::kInvalid;
  for (char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return AcmeTarget::kInvalid;
  }
  token->assign(name);
  return AcmeTarget::kToken;
}

std::string https_redirect_location(std::string_view host_header, std::string_view target,
                                    uint16_t https_port) {
  std::string_view host, port;
  if (!split_host_port(host_header, &host, &port)) return "";
  // absolute-form: only for the authority in Host, as on the TLS port (RFC 9112 3.2.2 has the
  // target's win; two disagreeing names are refused rather than one picked); keep the path and
  // query.
  if (std::string_view authority, rest, scheme;
      split_absolute_form(target, &authority, &rest, &scheme)) {
    if (!same_authority(scheme, authority, host_header)) return "";
    target = rest;
  }
  if (target.empty() || target.front() != '/') return "";
  // A fragment is no part of a request target (RFC 9112 3.2), refused as on the TLS port.
  if (target.find('#') != std::string_view::npos) return "";
  // A path the TLS port would answer 400 (a control byte, a broken escape, ".." above the root)
  // gets its 400 here rather than a redirect to one; a query may not hold a control byte either,
  // which would reach the Location header raw.
  std::string normalized;
  const size_t question = target.find('?');
  if (normalize_path(target.substr(0, question), &normalized) != PathStatus::kOk) return "";
  std::string location = "https://";
  location.append(host);
  if (https_port != 443) location.append(":").append(std::to_string(https_port));
  // The path and query as sent, but for raw bytes above ASCII (a client that did not escape
  // UTF-8): written as the escapes a browser sends, as the TLS port forwards such a path, since
  // a URI in a Location cannot hold them.
  for (char c : target) {
    const auto byte = static_cast<unsigned char>(c);
    if (is_forbidden_target_byte(byte)) return "";
    if (byte >= 0x80) {
      append_percent_escape(&location, byte);
    } else {
      location.push_back(c);
    }
  }
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
  ctx.redirects.insert(this);
}

void RedirectConnection::close_all(WorkerContext& ctx) {
  std::vector<RedirectConnection*> open(ctx.redirects.begin(), ctx.redirects.end());
  for (RedirectConnection* conn : open) conn->close();
}

bool RedirectConnection::close_one_idle(WorkerContext& ctx) {
  for (RedirectConnection* conn : ctx.redirects) {
    if (!conn->mid_request_ && !conn->lingering_ && !conn->close_after_write_ &&
        conn->writer_.queued() == 0) {
      conn->close();
      return true;
    }
  }
  return false;
}

void RedirectConnection::accept_from(WorkerContext& ctx, uv_stream_t* server) {
  auto* conn = new RedirectConnection(ctx);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&conn->tcp_)) != 0) {
    conn->close();
    return;
  }
  uv_tcp_nodelay(&conn->tcp_, 1);
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&conn->tcp_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    conn->peer_address_ = address_text(peer);
  }
  uv_timer_start(&conn->timer_, &RedirectConnection::on_timer,
                 static_cast<uint64_t>(ctx.config.header_timeout.count()), 0);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp_), &alloc_from_loop_buffer,
                &RedirectConnection::on_read);
}

void RedirectConnection::close() {
  if (closing_) return;
  closing_ = true;
  ctx_.redirects.erase(this);
  writer_.flush_before_close();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &RedirectConnection::on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &RedirectConnection::on_closed);
  resume_accepting(ctx_);
}

void RedirectConnection::on_closed(uv_handle_t* handle) {
  auto* conn = static_cast<RedirectConnection*>(handle->data);
  if (--conn->open_handles_ == 0) delete conn;
}

void RedirectConnection::on_timer(uv_timer_t* timer) {
  auto* conn = static_cast<RedirectConnection*>(timer->data);
  // A head begun and not finished in time gets its 408, as on the TLS port (NGINX's
  // client_header_timeout); a connection with no request begun, one lingering after its answer
  // or one whose client does not take its answer ends silently.
  if (conn->mid_request_ && !conn->close_after_write_ && !conn->lingering_) {
    conn->refuse(408, "request head not received in time");
    return;
  }
  conn->close();
}

void RedirectConnection::on_write_done(int status) {
  if (closing_) return;
  if (status < 0) {
    close();
  } else if (close_after_write_ && writer_.queued() == 0) {
    end_after_write();
  } else if (read_paused_ && writer_.below_low_water()) {
    read_paused_ = false;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &alloc_from_loop_buffer,
                  &RedirectConnection::on_read);
  }
}

void RedirectConnection::end_after_write() {
  if (!body_follows_) {
    close();
    return;
  }
  if (lingering_) return;
  lingering_ = true;
  linger_until_ms_ = uv_now(ctx_.loop) + kLingerMaxMs;
  uv_timer_start(&timer_, &RedirectConnection::on_timer, kLingerQuietMs, 0);
}

void RedirectConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* conn = static_cast<RedirectConnection*>(stream->data);
  if (conn->closing_) return;
  if (conn->lingering_) {
    if (nread < 0) {
      conn->close();
    } else if (nread > 0) {
      const uint64_t now = uv_now(conn->ctx_.loop);
      if (now >= conn->linger_until_ms_) {
        conn->close();
      } else {
        uv_timer_start(&conn->timer_, &RedirectConnection::on_timer,
                       std::min(kLingerQuietMs, conn->linger_until_ms_ - now), 0);
      }
    }
    return;
  }
  if (conn->close_after_write_) return;
  if (nread < 0) {
    conn->close();
    return;
  }
  llhttp_errno_t err = llhttp_execute(&conn->parser_, buf->base, static_cast<size_t>(nread));
  if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
    log_info("http", "bad request client=", conn->peer_address_, " reason=\"",
             parse_error_reason(&conn->parser_), "\"");
    conn->refuse(400, "malformed request");
    flush_gathered_writes(stream->loop);
    return;
  }
  // Never let a client park bytes here: a slow reader stops being read until it has taken
  // most of its answers (on_write_done).
  if (conn->writer_.above_high_water()) {
    uv_read_stop(stream);
    conn->read_paused_ = true;
  }
  flush_gathered_writes(stream->loop);
}

bool RedirectConnection::answer_acme(std::string* response, int* status) {
  if (ctx_.config.acme_webroot.empty()) return false;
  if (request_.method != "GET" && request_.method != "HEAD") return false;
  std::string token;
  AcmeTarget kind = acme_challenge_token(request_.target, &token);
  if (kind == AcmeTarget::kNotAcme) return false;
  std::string body;
  const std::string path = ctx_.config.acme_webroot + std::string(kAcmeChallengePrefix) + token;
  if (kind == AcmeTarget::kToken && read_challenge(path, &body)) {
    *status = 200;
  } else {
    *status = 404;
    body = "404 Not Found: no such challenge\n";
  }
  log_info("acme", "challenge request status=", *status, " target=", Quoted{request_.target});
  build_simple_response(*status, body, false, {}, response);
  // HEAD: the same head, no body.
  if (request_.method == "HEAD") response->resize(response->size() - body.size());
  return true;
}

void RedirectConnection::refuse(int status, std::string_view why) {
  if (!mid_request_) {
    // llhttp failed before a request began: what the head holds is the last request's.
    request_.clear();
    request_start_ = std::chrono::steady_clock::now();
  }
  mid_request_ = false;
  std::string response;
  build_simple_response(status, str_cat(status, " ", reason_phrase(status), ": ", why, "\n"), false,
                        {}, &response);
  log_request(kRedirectRoute, status, response.size(), why);
  close_after_write_ = true;
  body_follows_ = false;  // the stream is not read further: nothing to wait for
  writer_.write(response.data(), response.size());
  if (writer_.queued() == 0) {
    close();
    return;
  }
  // A client that takes none of the answer is let go (the header timer may have run out).
  uv_timer_start(&timer_, &RedirectConnection::on_timer,
                 static_cast<uint64_t>(ctx_.config.send_timeout.count()), 0);
}

// Logged and counted like any request, under the route label `route` in the access log and
// in /metrics.
void RedirectConnection::log_request(std::string_view route, int status, size_t bytes_out,
                                     std::string_view error) {
  AccessLogEntry entry;
  entry.client = peer_address_;
  request_.version_major = static_cast<uint8_t>(parser_.http_major);
  request_.version_minor = static_cast<uint8_t>(parser_.http_minor);
  set_request_fields(&entry, request_);
  entry.route = route;
  entry.status = status;
  entry.bytes_out = bytes_out;
  entry.duration_ms = elapsed_ms(request_start_);
  entry.error = error;
  ctx_.metrics.count_request(entry);
  ctx_.access_log.write(entry);
}

void RedirectConnection::answer() {
  mid_request_ = false;
  answered_ = true;
  const HeaderField* host = request_.find("host");
  std::string location;
  std::string acme_response;
  int acme_status = 0;
  if (answer_acme(&acme_response, &acme_status)) {
    log_request(kAcmeRoute, acme_status, acme_response.size());
    // Close after: a validator makes one request, and nothing here is worth a kept connection.
    close_after_write_ = true;
    writer_.write(acme_response.data(), acme_response.size());
    if (writer_.queued() == 0) end_after_write();
    return;
  }
  if (host && request_.count("host") == 1) {
    location = https_redirect_location(host->value, request_.target, ctx_.public_https_port);
  }
  std::string response;
  // After an Upgrade request llhttp stays paused (what follows would be another protocol's):
  // the connection ends with the answer, as on the TLS side.
  // Nor after a body: the answer goes before it (RFC 9110 10.1.1: the head decides it, so an
  // Expect: 100-continue gets the final status instead of a 100), and the body is dropped.
  bool keep_alive = llhttp_should_keep_alive(&parser_) && !parser_.upgrade && !ctx_.shutting_down &&
                    !body_follows_;
  int status = 400;
  if (location.empty()) {
    build_simple_response(400, "400 Bad Request: invalid Host header or target\n", false, {},
                          &response);
    keep_alive = false;
  } else {
    status = (request_.method == "GET" || request_.method == "HEAD") ? 301 : 308;
    // No body: the Location header is the whole answer, as HAProxy, Caddy and Envoy send it.
    // Browsers and `curl -L` follow it; `curl -i` shows it.
    build_simple_response(status, "", keep_alive, {"Location: ", location, "\r\n"}, &response);
  }
  log_request(kRedirectRoute, status, response.size());
  if (!keep_alive) close_after_write_ = true;
  writer_.write(response.data(), response.size());
  if (close_after_write_ && writer_.queued() == 0) end_after_write();
  // The keep-alive wait, unless the connection is ending (end_after_write set its own timer).
  if (!lingering_ && !closing_) {
    uv_timer_start(&timer_, &RedirectConnection::on_timer,
                   static_cast<uint64_t>(ctx_.config.keepalive_timeout.count()), 0);
  }
}

int RedirectConnection::on_message_begin(llhttp_t* p) {
  RedirectConnection* c = from_parser(p);
  c->request_.clear();
  c->request_start_ = std::chrono::steady_clock::now();
  c->mid_request_ = true;
  // A later request's head gets --header-timeout from its first byte, as on the TLS port (the
  // keep-alive wait ended there); the first one's has run since the connection was accepted.
  if (c->answered_) {
    uv_timer_start(&c->timer_, &RedirectConnection::on_timer,
                   static_cast<uint64_t>(c->ctx_.config.header_timeout.count()), 0);
  }
  return 0;
}

int RedirectConnection::on_url(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  return c->request_.append_target(at, len, c->ctx_.config.max_header_bytes) ? 0 : HPE_USER;
}

int RedirectConnection::on_header_field(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  return c->request_.append_name(at, len, c->ctx_.config.max_header_bytes,
                                 c->ctx_.config.max_header_count)
             ? 0
             : HPE_USER;
}

int RedirectConnection::on_header_field_complete(llhttp_t* p) {
  return from_parser(p)->request_.end_name() ? 0 : HPE_USER;
}

int RedirectConnection::on_header_value(llhttp_t* p, const char* at, size_t len) {
  RedirectConnection* c = from_parser(p);
  return c->request_.append_value(at, len, c->ctx_.config.max_header_bytes) ? 0 : HPE_USER;
}

int RedirectConnection::on_header_value_complete(llhttp_t* p) {
  from_parser(p)->request_.end_value();
  return 0;
}

// The answer is decided by the head alone: it goes out now, not after a body.
int RedirectConnection::on_headers_complete(llhttp_t* p) {
  RedirectConnection* c = from_parser(p);
  c->request_.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  c->body_follows_ =
      (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  c->answer();
  return c->close_after_write_ ? HPE_PAUSED : 0;
}

int RedirectConnection::on_message_complete(llhttp_t*) { return 0; }

const llhttp_settings_t& RedirectConnection::settings() {
  static const llhttp_settings_t instance = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &RedirectConnection::on_message_begin;
    s.on_url = &RedirectConnection::on_url;
    s.on_header_field = &RedirectConnection::on_header_field;
    s.on_header_field_complete = &RedirectConnection::on_header_field_complete;
    s.on_header_value = &RedirectConnection::on_header_value;
    s.on_header_value_complete = &RedirectConnection::on_header_value_complete;
    s.on_headers_complete = &RedirectConnection::on_headers_complete;
    s.on_message_complete = &RedirectConnection::on_message_complete;
    return s;
  }();
  return instance;
}

}  // namespace portico

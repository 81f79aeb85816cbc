#include "proxy/client_connection.h"

#include <unistd.h>

#include <cstring>

#include "proxy/log.h"
#include "proxy/websocket_handshake.h"

namespace portico {
namespace {

// The request line in `data` begins (after blank lines) with a token and a space, and llhttp
// stopped at `error_at`, inside that token: a method name it does not know, not garbage.
bool is_unknown_method(std::string_view data, std::ptrdiff_t error_at) {
  size_t begin = 0;
  while (begin < data.size() && (data[begin] == '\r' || data[begin] == '\n')) ++begin;
  const size_t space = data.find(' ', begin);
  return space != std::string_view::npos && space > begin &&
         is_token(data.substr(begin, space - begin)) && error_at >= 0 &&
         static_cast<size_t>(error_at) <= space;
}

// A backend's response head (docs/troubleshooting.md, 502): its reason, names and values, and
// its field count; the messages below name both numbers.
constexpr size_t kMaxResponseHeadBytes = 64 * 1024;
constexpr size_t kMaxResponseHeaders = 200;
constexpr size_t kPlaintextFlushBytes = 16 * 1024;  // one full TLS record
constexpr auto kLingerTime = std::chrono::seconds(2);
// NGINX's code for a request whose connection ended before any answer began; never sent.
constexpr int kStatusClientClosedRequest = 499;
// A chunk's extensions (";name=value" after its size) mean nothing to portico, which re-chunks
// what it relays, and llhttp reads them without end: a peer could send one for ever, each byte
// re-arming the timeouts, and never reach the data. Bounded as Go's net/http bounds the chunk
// line.
constexpr size_t kMaxChunkExtensionBytes = 4096;
// A connection with no traffic for this long gives its buffers back (release_when_quiet). Long
// enough that a busy connection never does (50 keep-alive clients at 25k requests/s come back
// every 2 ms), short enough that idle memory is what an idle connection needs.
constexpr uint64_t kQuietReleaseMs = 1000;
// After this long with nothing sent the TLS records start small again (TlsStream's ramp).
constexpr uint64_t kRecordRampRestartMs = 1000;
// While portico stops, how long a connection that has not had its first answer may take to
// finish its handshake and send its request (see begin_shutdown).
constexpr std::chrono::milliseconds kFirstRequestGrace{2000};
constexpr std::string_view kStickyCookie = "portico_backend";

ClientConnection* from_parser(llhttp_t* p) { return static_cast<ClientConnection*>(p->data); }

// The last byte before `end`, back to `begin`, that is not SP or HTAB; `before` when none is.
char last_non_blank(const char* begin, const char* end, char before) {
  while (end > begin) {
    const char c = *--end;
    if (c != ' ' && c != '\t') return c;
  }
  return before;
}

// llhttp passes obs-fold (a continuation line starting with a space) on as a second span of
// the same value, or, after an empty value ("X:\r\n chunked"), as its first span. A value
// split by the end of a read also comes in two spans, but then the first one ends exactly at
// the end of the bytes being parsed; and a value's first span follows its colon, with only
// blanks between (`non_blank_before`: the last such byte of the reads before this one). RFC
// 9112 section 5.2 lets a proxy reject obs-fold, and a folded header is a classic smuggling
// vector. Returns false for a fold.
bool value_span_is_not_fold(HttpHead& head, bool* last_span_at_end, const char* at, size_t len,
                            const char* parse_begin, const char* parse_end, char non_blank_before) {
  if (head.in_value && !*last_span_at_end) return false;
  // (An empty value comes as an empty span where the next line starts.)
  if (!head.in_value && len > 0 && last_non_blank(parse_begin, at, non_blank_before) != ':') {
    return false;
  }
  head.in_value = true;
  *last_span_at_end = at + len == parse_end;
  return true;
}

// llhttp 8.1 takes any byte as the LF after the CR that ends an empty header value: it reads
// "X:\rY: 1" as X and a header with an empty name, and "X:\r:Content-Length: 5" as X and a
// Content-Length, where RFC 9112 section 2.2 calls the bare CR invalid. So each header line's
// first span must follow a LF: the byte before it in this read, or the last byte the parser
// consumed before this read began (`byte_before`).
bool line_starts(const char* at, const char* parse_begin, char byte_before) {
  return (at > parse_begin ? at[-1] : byte_before) == '\n';
}

// Where llhttp stopped in [data, data + len): the end, unless it paused or failed.
const char* consumed_end(const llhttp_t* parser, const char* data, size_t len, llhttp_errno_t err) {
  const char* end = err == HPE_OK ? data + len : llhttp_get_error_pos(parser);
  return end != nullptr && end > data ? end : data;
}

// The last byte llhttp consumed of [data, data + len).
char last_consumed_byte(const llhttp_t* parser, const char* data, size_t len, llhttp_errno_t err,
                        char before) {
  const char* end = consumed_end(parser, data, len, err);
  return end > data ? end[-1] : before;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Life cycle

ClientConnection::ClientConnection(WorkerContext& ctx)
    : ctx_(ctx), tls_(ctx.ssl_ctx.get(), /*server=*/true), http_(std::make_unique<HttpState>()) {
  uv_tcp_init(ctx.loop, &tcp_);
  uv_timer_init(ctx.loop, &timer_);
  tcp_.data = this;
  timer_.data = this;
  open_handles_ = 2;
  writer_.init(reinterpret_cast<uv_stream_t*>(&tcp_), this);
  llhttp_init(&http_->request_parser, HTTP_REQUEST, &request_settings());
  http_->request_parser.data = this;
  llhttp_init(&http_->response_parser, HTTP_RESPONSE, &response_settings());
  http_->response_parser.data = this;
  // Link into the worker's list for graceful shutdown.
  next_ = ctx.connections;
  if (next_) next_->prev_ = this;
  ctx.connections = this;
  ++ctx.connection_count;
  ++ctx.metrics.open_connections;
  ctx.heap_trimmer.connections_now(ctx.connection_count);
}

ClientConnection::~ClientConnection() {
  if (prev_) {
    prev_->next_ = next_;
  } else {
    ctx_.connections = next_;
  }
  if (next_) next_->prev_ = prev_;
  --ctx_.connection_count;
  --ctx_.metrics.open_connections;
  if (entered_tunnel_) --ctx_.metrics.open_tunnels;
  ctx_.heap_trimmer.connections_now(ctx_.connection_count);
  resume_accepting(ctx_);
}

void ClientConnection::accept_from(WorkerContext& ctx, uv_stream_t* server) {
  auto* conn = new ClientConnection(ctx);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&conn->tcp_)) != 0) {
    conn->close_now();
    return;
  }
  conn->begin();
}

void ClientConnection::adopt(WorkerContext& ctx, int fd) {
  auto* conn = new ClientConnection(ctx);
  if (uv_tcp_open(&conn->tcp_, fd) != 0) {
    ::close(fd);
    conn->close_now();
    return;
  }
  conn->begin();  // Worker::begin_shutdown then tells it, like every other connection
}

void ClientConnection::begin() {
  int len = sizeof peer_;
  uv_tcp_getpeername(&tcp_, &peer_.any, &len);
  peer_address_ = address_text(peer_.any);
  uv_tcp_nodelay(&tcp_, 1);
  if (ctx_.config.proxy_protocol) proxy_header_ = std::make_unique<ProxyProtocolParser>();
  reusable_since_ms_ = uv_now(ctx_.loop);
  arm_timer(ctx_.config.handshake_timeout);
  update_reading();
}

void ClientConnection::begin_shutdown() {
  shutting_down_ = true;
  if (phase_ == Phase::kTunnel) {
    tunnel_send_close(1001, 1001, "portico is shutting down");
    return;
  }
  // A connection that has not had an answer yet may be one that arrived while a new portico
  // took over the port (a restart): it gets its first answer, with Connection: close. The
  // handshake and header timeouts and the drain timeout bound how long it may take. A
  // keep-alive connection between requests is closed now; its client opens a new one.
  if (phase_ == Phase::kIdle && answered_) {
    close_gracefully();
  } else if (phase_ == Phase::kHandshake || phase_ == Phase::kIdle) {
    arm_timer(std::min(kFirstRequestGrace, ctx_.config.handshake_timeout));
  }
}

void ClientConnection::close_now(std::string_view why) {
  if (phase_ == Phase::kClosed) return;
  // Every request gets its line, also one the connection's end cut short (the client left, a
  // reset, the drain timeout): NGINX's 499 when no answer had begun, else the status sent.
  if (tunnel_) {
    tunnel_finish(why);
  } else if (exchange_started_ && !access_logged_ && !entered_tunnel_) {
    if (!response_head_sent_) status_sent_ = kStatusClientClosedRequest;
    log_access(why);
  }
  phase_ = Phase::kClosed;
  if (upstream_) drop_upstream(/*reusable=*/false);
  writer_.flush_before_close();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &ClientConnection::on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), &ClientConnection::on_handle_closed);
}

void ClientConnection::close_after_client_error(int status) {
  if (phase_ == Phase::kHandshake) handshake_abandoned(uv_err_name(status));
  close_now(str_cat("client connection error ", uv_err_name(status)));
}

// A client that began a handshake and then closed or reset the connection: one line and a
// count, as NGINX's "peer closed connection in SSL handshake". One that never sent a TLS byte
// (a port check, a balancer's TCP health check, with or without its PROXY header) is not
// worth either.
void ClientConnection::handshake_abandoned(std::string_view how) {
  if (!client_sent_bytes_) return;
  ctx_.metrics.count_handshake_failure("peer_closed");
  log_info("tls", "handshake failed client=", peer_address_, " reason=peer_closed detail=", how);
}

// Silent for this long since it connected: a client that means to talk has sent its
// ClientHello by then. (Younger ones may have bytes waiting that no read has looked at yet: a
// burst of connections is accepted before any of them is read.)
constexpr uint64_t kSilentForMs = 1000;

bool ClientConnection::reusable(uint64_t now) const {
  if (phase_ == Phase::kHandshake) {
    return !client_sent_bytes_ && now >= reusable_since_ms_ + kSilentForMs;
  }
  // Idle, and not even part of a TLS record of a next request received.
  return phase_ == Phase::kIdle && !upstream_ && !client_eof_ && !shutting_down_ &&
         pending_input_.empty() && plain_out_.empty() && writer_.queued() == 0 &&
         !tls_.holds_input() && !tls_.holds_partial_record();
}

bool ClientConnection::close_one_reusable(WorkerContext& ctx) {
  // The one that began waiting first, as NGINX drains its reusable connections (not the one
  // accepted first: a busy client, idle for a moment between requests, would go before
  // connections idle for seconds).
  const uint64_t now = uv_now(ctx.loop);
  ClientConnection* oldest = nullptr;
  for (ClientConnection* conn = ctx.connections; conn != nullptr; conn = conn->next_) {
    if (conn->reusable(now) &&
        (oldest == nullptr || conn->reusable_since_ms_ < oldest->reusable_since_ms_)) {
      oldest = conn;
    }
  }
  if (oldest == nullptr) return false;
  if (now >= ctx.reuse_logged_ms + 1000) {  // at most a line a second, as a crowd may be at it
    ctx.reuse_logged_ms = now;
    log_warn("listener",
             "connection limit reached, closing the longest-waiting idle connection"
             " max_connections=",
             ctx.config.connection_limit());
  }
  log_debug("listener", "closing idle connection for a newcomer client=", oldest->peer_address_,
            " phase=", oldest->phase_ == Phase::kHandshake ? "handshake" : "idle");
  // close_now() offers the gathered close_notify to the socket before it closes the descriptor
  // (at once: the newcomer is accepted right after).
  if (oldest->tls_.handshake_done()) oldest->queue_close_notify();
  oldest->close_now();
  return true;
}

void ClientConnection::on_handle_closed(uv_handle_t* handle) {
  auto* conn = static_cast<ClientConnection*>(handle->data);
  if (--conn->open_handles_ == 0) delete conn;
}

void ClientConnection::close_gracefully() {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
  if (upstream_) drop_upstream(/*reusable=*/false);
  flush_to_client();
  if (tls_.handshake_done()) queue_close_notify();
  phase_ = Phase::kClosing;
  arm_timer(kLingerTime);
  watch_for_stalled_client();
  update_reading();
  if (writer_.queued() == 0) on_write_done(0);
}

void ClientConnection::queue_close_notify() {
  tls_.shutdown();
  writer_.write_owned(std::move(tls_.output()));
  tls_.output().clear();
}

void ClientConnection::on_shutdown_done(uv_shutdown_t* req, int) { delete req; }

// ---------------------------------------------------------------------------------------------
// Reading

void ClientConnection::update_reading() {
  bool want = false;
  switch (phase_) {
    case Phase::kHandshake:
    case Phase::kClosing:  // lingering: read and discard until the client closes
      want = true;
      break;
    case Phase::kTunnel:
      want = !client_eof_ && !(upstream_ && upstream_->above_high_water());
      break;
    case Phase::kIdle:
    case Phase::kHead:
    case Phase::kConnecting:
    case Phase::kExchange:
      // Reading goes on while a request waits for its answer (stopping and restarting it for
      // every request costs two epoll_ctl calls); what arrives meanwhile is kept, up to one
      // read's worth, in pending_input_.
      want = !client_eof_ && pending_input_.size() < LoopBuffers::kReadSize &&
             !(upstream_ && upstream_->above_high_water()) && !writer_.above_high_water();
      break;
    case Phase::kClosed:
      return;
  }
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  if (want && !reading_) {
    reading_ = uv_read_start(stream, &alloc_from_loop_buffer, &ClientConnection::on_read) == 0;
  } else if (!want && reading_) {
    uv_read_stop(stream);
    reading_ = false;
  }
}

void ClientConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* conn = static_cast<ClientConnection*>(stream->data);
  if (nread < 0) {
    if (nread == UV_EOF) {
      conn->on_client_eof();
    } else {
      conn->close_after_client_error(static_cast<int>(nread));  // nothing more can reach it
    }
    return;
  }
  if (nread == 0) return;
  if (conn->phase_ == Phase::kClosing) return;  // lingering close: discard
  const char* data = buf->base;
  size_t len = static_cast<size_t>(nread);
  if (conn->proxy_header_ && !conn->take_proxy_header(&data, &len)) return;
  if (len > 0) conn->client_sent_bytes_ = true;
  conn->on_ciphertext(data, len);
  flush_gathered_writes(stream->loop);
}

// --proxy-protocol: the balancer's header comes before the client's first TLS byte, and names
// the client that every later check (trusted proxies, ip_hash, X-Forwarded-For, the access log)
// must see. Returns true with *data/*len narrowed to what followed the header in this read;
// false when nothing is left for TLS (the header is incomplete, or was refused and the
// connection closed).
bool ClientConnection::take_proxy_header(const char** data, size_t* len) {
  ProxyProtocolParser::Result result = proxy_header_->feed(*data, *len);
  if (result.status == ProxyProtocolParser::Status::kError) {
    log_info("proxy-protocol", "refused client=", peer_address_, " reason=", result.reason);
    close_now();
    return false;
  }
  if (result.status == ProxyProtocolParser::Status::kNeedMore) return false;
  const ProxyHeader& header = proxy_header_->header();
  if (!header.keep_peer) {
    // The header's source is an IPv4 or IPv6 address (keep_peer covers the rest).
    std::memcpy(&peer_, &header.source, sizeof peer_);
    peer_address_ = address_text(peer_.any);
  }
  log_debug("proxy-protocol", "header version=", header.version, " client=", peer_address_);
  proxy_header_.reset();
  *data += result.consumed;
  *len -= result.consumed;
  return *len > 0;
}

void ClientConnection::on_ciphertext(const char* data, size_t len) {
  tls_.set_input(data, len);
  if (!tls_.handshake_done()) {
    TlsStream::Status status = tls_.handshake();
    if (status == TlsStream::Status::kError) {
      ctx_.metrics.count_handshake_failure(
          tls_.peer_spoke_plaintext() ? std::string_view("plaintext_http") : tls_.error_reason());
      if (tls_.peer_spoke_plaintext()) {
        log_info("tls", "plain HTTP on the TLS port client=", peer_address_);
        // Say so in HTTP, which the client speaks (NGINX and Caddy do too), rather than with
        // a TLS alert it cannot read; then close without a reset that could destroy it.
        std::string answer;
        build_simple_response(400, "400 Bad Request: this port speaks HTTPS; use https://\n", false,
                              {}, &answer);
        writer_.write(answer.data(), answer.size());
        close_gracefully();
        return;
      }
      log_info("tls", "handshake failed client=", peer_address_, " reason=", tls_.error_reason());
      // Any alert OpenSSL produced goes out; then the connection ends.
      writer_.write_owned(std::move(tls_.output()));
      close_now();
      return;
    }
    flush_to_client();
    if (status != TlsStream::Status::kOk) return;
    ++ctx_.metrics.tls_handshakes;
    phase_ = Phase::kIdle;
    reusable_since_ms_ = uv_now(ctx_.loop);
    // The first request is awaited for --header-timeout, as NGINX's client_header_timeout;
    // --keepalive-timeout is the wait between requests (next_request).
    arm_timer(shutting_down_ ? kFirstRequestGrace : ctx_.config.header_timeout);
    release_idle_buffers();
  }
  char* plain = loop_buffers(ctx_.loop).plaintext;
  while (phase_ != Phase::kClosed && phase_ != Phase::kClosing) {
    size_t n = 0;
    TlsStream::Status status = tls_.read(plain, LoopBuffers::kReadSize, &n);
    if (status == TlsStream::Status::kOk) {
      on_plaintext(plain, n);
      if (!tls_.has_buffered_input()) break;
      continue;
    }
    if (status == TlsStream::Status::kWantRead) break;
    if (status == TlsStream::Status::kClosed) {
      on_client_eof();
      return;
    }
    log_debug("tls", "read failed client=", peer_address_, " reason=", tls_.error_reason());
    // The fatal alert that says why (RFC 8446 section 5: bad_record_mac, record_overflow, ...)
    // goes out before the close, as after a failed handshake.
    writer_.write_owned(std::move(tls_.output()));
    tls_.output().clear();
    close_now("client TLS error");
    return;
  }
  flush_to_client();
  update_reading();
}

void ClientConnection::on_plaintext(const char* data, size_t len) {
  if (phase_ == Phase::kTunnel) {
    tunnel_from_client(data, len);
    return;
  }
  if (parser_paused_ || !pending_input_.empty()) {
    pending_input_.append(data, len);
    return;
  }
  parse(data, len);
  process_input();
}

void ClientConnection::process_input() {
  // Re-entered from a callback inside parse(): the loop below carries on when that returns.
  if (processing_input_) return;
  processing_input_ = true;
  while (!parser_paused_ && !pending_input_.empty() && phase_ != Phase::kClosed &&
         phase_ != Phase::kClosing) {
    std::string input;
    input.swap(pending_input_);
    parse(input.data(), input.size());
  }
  processing_input_ = false;
}

void ClientConnection::parse(const char* data, size_t len) {
  if (chunk_crlf_left_ > 0 && !chunk_crlf_ok(&chunk_crlf_left_, data, data + len)) {
    log_info("http", "bad request client=", peer_address_,
             " reason=\"chunk data not followed by CRLF\"");
    respond_error(400, "malformed request");
    return;
  }
  parse_begin_ = data;
  parse_end_ = data + len;
  llhttp_errno_t err = llhttp_execute(&http_->request_parser, data, len);
  request_byte_before_ =
      last_consumed_byte(&http_->request_parser, data, len, err, request_byte_before_);
  request_non_blank_before_ = last_non_blank(
      data, consumed_end(&http_->request_parser, data, len, err), request_non_blank_before_);
  if (err == HPE_OK) return;
  if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
    const char* pos = llhttp_get_error_pos(&http_->request_parser);
    if (pos < data + len) pending_input_.insert(0, pos, static_cast<size_t>(data + len - pos));
    parser_paused_ = true;
    on_parser_paused();
    return;
  }
  if (err == HPE_USER && request_error_status_ != 0) {
    respond_error(request_error_status_, parse_error_reason(&http_->request_parser));
    return;
  }
  // A well-formed method llhttp does not know (BAN, QUERY): 501, which says so (RFC 9110
  // 15.6.2), rather than 400 as if the request were garbage. It is not forwarded: llhttp cannot
  // frame what follows.
  if (err == HPE_INVALID_METHOD &&
      is_unknown_method(std::string_view(data, len),
                        llhttp_get_error_pos(&http_->request_parser) - data)) {
    log_info("http", "method not implemented client=", peer_address_);
    respond_error(501, "method not implemented");
    return;
  }
  // A malformed or ambiguous request: answer 400 and close; nothing is forwarded.
  log_info("http", "bad request client=", peer_address_, " reason=\"",
           parse_error_reason(&http_->request_parser), "\"");
  // When the body's framing breaks mid-stream, the backend already has part of it:
  // respond_error() drops that connection (the backend never sees a complete request) and,
  // unless the backend's answer has begun, the client still gets its 400.
  respond_error(400, "malformed request");
}

void ClientConnection::on_parser_paused() {
  PauseReason reason = pause_reason_;
  pause_reason_ = PauseReason::kNone;
  if (reason == PauseReason::kHeadersComplete) {
    start_exchange();
  } else if (reason == PauseReason::kMessageComplete) {
    if (exchange_done_) {
      next_request();
    } else if (!exchange_started_) {
      start_exchange();
    }
  }
}

void ClientConnection::on_client_eof() {
  if (phase_ == Phase::kTunnel) {
    tunnel_client_gone();
    return;
  }
  if (phase_ == Phase::kIdle && tls_.handshake_done()) {
    // A close_notify (or a FIN) between requests: answer with close_notify of our own, as
    // RFC 8446 section 6.1 asks, so the client can tell our close from a cut. close_now()
    // offers the gathered alert to the socket before it closes.
    queue_close_notify();
    close_now();
    return;
  }
  if (phase_ == Phase::kHandshake) handshake_abandoned("eof");
  if (phase_ == Phase::kClosing || phase_ == Phase::kIdle || phase_ == Phase::kHandshake) {
    close_now();
    return;
  }
  if (request_complete_ && !client_eof_) {
    // A half-close after a complete request (some clients shut down their sending side once
    // the request is out): the answer still goes back, then the connection ends.
    client_eof_ = true;
    update_reading();
    return;
  }
  // The client left while its request was in flight.
  log_debug("http", "client closed mid-request client=", peer_address_);
  close_now("client closed the connection");
}

// ---------------------------------------------------------------------------------------------
// The request

void ClientConnection::start_exchange() {
  exchange_started_ = true;
  routing_ = ctx_.routing;
  if (http_->request.version_major > 1) {  // (0.9 has no Host: the 400 below)
    respond_error(505, "only HTTP/1.x is served on this port");
    return;
  }
  // RFC 9112 section 3.2: an HTTP/1.1 request carries exactly one Host. HTTP/1.0 may carry
  // none (old health checkers do): host-less routes serve it, as NGINX's default server does.
  const HeaderField* host_field = http_->request.find("host");
  const size_t host_count = http_->request.count("host");
  http_->host_absent =
      host_count == 0 && http_->request.version_major == 1 && http_->request.version_minor == 0;
  if (!http_->host_absent && (host_count != 1 || host_field->value.empty())) {
    respond_error(400, "missing or repeated Host header");
    return;
  }
  std::string_view host = host_field ? host_field->value : std::string_view();
  std::string_view target = http_->request.target;
  // absolute-form (RFC 9112 3.2.2): its authority is the host. With a Host header as well, the
  // two must name the same authority: one picked over the other would let a client route by
  // one name past a backend or log that reads the other.
  if (std::string_view authority, rest, scheme;
      split_absolute_form(target, &authority, &rest, &scheme)) {
    if (http_->host_absent) {
      host = authority;
      http_->host_absent = false;
    } else if (!same_authority(scheme, authority, host)) {
      respond_error(400, "absolute-form target names another host than Host");
      return;
    }
    target = rest;
  }
  // An invalid Host gets 400. It is matched against host routes and forwarded in Host,
  // X-Forwarded-Host and Forwarded, where a quote or a comma would let the client write a
  // Forwarded element of its own (for=...).
  if (std::string_view name, port; !http_->host_absent && !split_host_port(host, &name, &port)) {
    respond_error(400, "invalid Host header");
    return;
  }
  if (http_->request.method == "CONNECT") {
    // RFC 9110 section 15.5.6: a 405 lists what the resource supports. Portico relays every
    // other method and cannot know which the backend takes, so it lists the standard ones.
    respond_error(405, "CONNECT is not supported",
                  "Allow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n");
    return;
  }
  if (target.empty() || target.front() != '/') {
    respond_error(400, "request target must be a path");
    return;
  }
  // RFC 9112 3.2: a fragment is the client's own and never sent; '#' in a query is not a
  // query character either (RFC 3986 3.4). A backend may take it as the end of the target or
  // as part of it: refused, as it is in the path, rather than passed on.
  if (target.find('#') != std::string_view::npos) {
    respond_error(400, "fragment in the request target");
    return;
  }
  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question);
  // llhttp lets HTAB and FF through in a target: forwarded, a backend that splits its request
  // line on any blank would read another target and version than portico did.
  if (std::any_of(query.begin(), query.end(),
                  [](char c) { return is_forbidden_target_byte(static_cast<unsigned char>(c)); })) {
    respond_error(400, "control character in the query");
    return;
  }
  const PathStatus path_status = normalize_path(raw_path, &http_->normalized_path);
  if (path_status != PathStatus::kOk) {
    respond_error(
        400, path_status == PathStatus::kEscapesRoot ? "path escapes the root" : "malformed path");
    return;
  }
  route_ = routing_->table->match(host, http_->normalized_path);
  if (!route_) {
    respond_error(404, "no route for this host and path");
    return;
  }
  if (http_->request.find("transfer-encoding")) {
    // Only a single, plain "chunked" is unambiguous, and HTTP/1.0 has no chunked coding at all
    // (RFC 9112 section 6.1).
    if (!has_only_chunked_coding(http_->request) || http_->request.version_minor == 0) {
      respond_error(400, "Transfer-Encoding other than a single chunked");
      return;
    }
  }
  // A backend that reads the length into a signed 64-bit number (most do) would see a negative
  // one: no body, and the body's bytes read as its next request.
  if ((http_->request_parser.flags & F_CONTENT_LENGTH) &&
      http_->request_parser.content_length > uint64_t{INT64_MAX}) {
    respond_error(400, "Content-Length too large");
    return;
  }
  if (http_->request_parser.flags & F_CHUNKED) {
    request_framing_ = BodyFraming::kChunked;
  } else if ((http_->request_parser.flags & F_CONTENT_LENGTH) &&
             http_->request_parser.content_length > 0) {
    request_framing_ = BodyFraming::kContentLength;
  } else {
    request_framing_ = BodyFraming::kNone;
  }
  if (route_->options.max_body != 0 && request_framing_ == BodyFraming::kContentLength &&
      http_->request_parser.content_length > route_->options.max_body) {
    respond_error(413, "request body larger than the route's max_body");
    return;
  }
  client_keep_alive_ = llhttp_should_keep_alive(&http_->request_parser) != 0;
  if (http_->request_parser.upgrade && is_websocket_upgrade(http_->request)) {
    if (!websocket_checks_pass(host)) return;
    websocket_ = true;
  } else if (route_->options.upgrade == UpgradePolicy::kOnly) {
    // RFC 9110 section 15.5.22: a 426 names the protocol to upgrade to (and, as any message
    // with Upgrade, lists it in Connection: section 7.8).
    respond_error(426, "this route carries WebSocket connections only",
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n");
    return;
  } else if (http_->request_parser.upgrade) {
    // Other protocols (h2c, ...) are not relayed: the request goes through as plain HTTP
    // without its Upgrade, and the connection ends after the answer.
    client_keep_alive_ = false;
  }
  const HeaderField* expect = http_->request.find("expect");
  // RFC 9110 10.1.1: an HTTP/1.0 request's 100-continue is ignored (it may not get a 1xx).
  expect_continue_ = expect && iequals(expect->value, "100-continue") &&
                     request_framing_ != BodyFraming::kNone && http_->request.version_minor >= 1;

  if (route_->options.balance == BalancePolicy::kCookie) {
    http_->sticky_cookie_in = cookie_value(http_->request, kStickyCookie);
  }
  std::string& upstream_target = http_->upstream_target;
  upstream_target.clear();
  append_upstream_path(*route_, http_->normalized_path, &upstream_target);
  upstream_target.append(query);
  // Without a Host the head names the backend, which connect_upstream() chooses.
  if (!http_->host_absent) build_upstream_head(host, true);
  connect_upstream();
}

void ClientConnection::build_upstream_head(std::string_view host, bool client_host) {
  bool trusted = false;
  for (const Cidr& cidr : ctx_.config.trusted_proxies)
    trusted = trusted || cidr.contains(peer_.any);
  UpstreamRequest upstream_request;
  upstream_request.head = &http_->request;
  upstream_request.target = http_->upstream_target;
  upstream_request.host = host;
  upstream_request.forward_host = client_host;
  upstream_request.client_address = peer_address_;
  upstream_request.client_trusted = trusted;
  upstream_request.upgrade = websocket_;
  upstream_request.framing = request_framing_;
  upstream_request.content_length = http_->request_parser.content_length;
  http_->upstream_head.clear();
  build_upstream_request_head(upstream_request, &http_->upstream_head);
}

void ClientConnection::connect_upstream() {
  BackendSelector& selector = routing_->selector_for(*route_);
  auto now = std::chrono::steady_clock::now();
  std::optional<size_t> index =
      selector.choose(now, peer_address_, http_->sticky_cookie_in, http_->tried_backends);
  if (!index) {
    // As NGINX: 504 when the last backend tried did not connect (or finish its TLS
    // handshake) in time, 502 when it failed.
    if (http_->last_attempt_timed_out) {
      respond_error(504, "no backend could be reached in time");
    } else {
      respond_error(502, http_->tried_backends.empty() ? "every backend of the route is down"
                                                       : "no backend could be reached");
    }
    return;
  }
  backend_index_ = *index;
  http_->tried_backends.push_back(backend_index_);
  http_->set_cookie.clear();
  if (route_->options.balance == BalancePolicy::kCookie) {
    // Pin the client to this backend (socket.io long-polling needs every request of a session
    // on the same server), unless its cookie already says so.
    std::string value = BackendSelector::sticky_cookie_value(backend_index_);
    if (value != http_->sticky_cookie_in) {
      http_->set_cookie =
          str_cat("Set-Cookie: ", kStickyCookie, "=", value, "; Path=", route_->prefix,
                  "; HttpOnly; Secure; SameSite=Lax\r\n");
    }
  }
  const BackendAddress& backend = route_->backends[backend_index_];
  // No Host from the client: the backend's own address, as NGINX ($proxy_host) and Go's
  // client send, and no X-Forwarded-Host, since the client named none.
  if (http_->host_absent) build_upstream_head(backend.authority(), false);
  SSL_CTX* tls = backend.scheme == "https" ? routing_->upstream_tls_for(*route_) : nullptr;
  upstream_key_ = backend.label();
  // Pooled connections are reused only under the same trust: the client context (its CA
  // bundle, this configuration's) is part of the pool key for TLS backends.
  std::string pool_key = upstream_key_;
  if (tls) pool_key += str_cat("#", reinterpret_cast<uintptr_t>(tls));
  selector.connection_opened(backend_index_);
  if (!retried_) {
    if (UpstreamConnection* idle = ctx_.pool.take_idle(pool_key, just_released_upstream_)) {
      upstream_ = idle;
      upstream_->set_delegate(this);
      on_upstream_ready();
      return;
    }
  }
  phase_ = Phase::kConnecting;
  arm_timer(route_->options.connect_timeout);
  upstream_ = ctx_.pool.create(std::move(pool_key));
  upstream_->set_delegate(this);
  upstream_->start(backend, tls);
}

// The backend failed this request before a byte of answer (a refused or failed connect, a new
// connection closed unanswered): it is marked down and the request goes to a backend of the
// route not tried yet, or gets 502 when none is left.
void ClientConnection::try_next_backend(bool timed_out) {
  http_->last_attempt_timed_out = timed_out;
  routing_->selector_for(*route_).mark_down(backend_index_, std::chrono::steady_clock::now());
  drop_upstream(false);
  connect_upstream();
}

void ClientConnection::on_upstream_connected(UpstreamConnection& conn, int status) {
  if (status < 0) {
    if (!conn.tls_failure().empty()) {
      log_warn("upstream", "tls handshake failed backend=", upstream_key_, " reason=\"",
               conn.tls_failure(), "\"");
      ctx_.metrics.count_backend_error(upstream_key_, BackendErrorKind::kTls);
    } else {
      log_warn("upstream", "connect failed backend=", upstream_key_, " address=", conn.address(),
               " error=",
               conn.connect_errors().empty() ? uv_err_name(status)
                                             : std::string_view(conn.connect_errors()));
      ctx_.metrics.count_backend_error(upstream_key_, BackendErrorKind::kConnect);
    }
    try_next_backend(false);  // nothing was sent: safe for any method
    return;
  }
  routing_->selector_for(*route_).mark_up(backend_index_);
  on_upstream_ready();
}

void ClientConnection::on_upstream_ready() {
  phase_ = Phase::kExchange;
  arm_timer(route_->options.read_timeout);
  llhttp_init(&http_->response_parser, HTTP_RESPONSE, &response_settings());
  http_->response_parser.data = this;
  http_->response.clear();
  http_->response_chunk_extension_bytes = 0;
  response_chunk_crlf_left_ = 0;
  http_->headers_refusal = nullptr;
  upstream_->count_request();
  upstream_->read_start();
  if (upstream_->write(http_->upstream_head.data(), http_->upstream_head.size()) != 0) {
    ctx_.metrics.count_backend_error(upstream_key_, BackendErrorKind::kClosed);
    upstream_failed("write to backend failed");
    return;
  }
  if (expect_continue_ && request_body_bytes_ == 0) {
    constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    plain_out_.append(kContinue);
    bytes_to_client_ += kContinue.size();  // sent to the client: in bytes_out as NGINX counts
    expect_continue_ = false;              // once, also when a retry brings the request here again
    flush_to_client();
  }
  // Let the body through now that it has somewhere to go. (A complete request stays paused:
  // the next pipelined request waits for this response.)
  if (!request_complete_) {
    resume_parser();
    process_input();
  }
  update_reading();
}

void ClientConnection::send_request_body(const char* data, size_t len) {
  request_body_bytes_ += len;
  if (!upstream_) return;
  // The backend's read_timeout counts from the last byte it was sent: a slow upload is not a
  // slow backend. (arm_timer only moves a deadline; the timer itself is rarely restarted.)
  if (!response_head_sent_) arm_timer(route_->options.read_timeout);
  if (request_framing_ == BodyFraming::kChunked) {
    char size_line[20];
    size_t n = chunk_header(len, size_line);
    uv_buf_t bufs[3] = {uv_buf_init(size_line, static_cast<unsigned>(n)),
                        uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len)),
                        uv_buf_init(const_cast<char*>("\r\n"), 2)};
    upstream_->write(bufs, 3);
  } else {
    upstream_->write(data, len);
  }
}

void ClientConnection::on_upstream_drained(UpstreamConnection&) {
  if (phase_ == Phase::kTunnel && client_eof_) {
    if (upstream_ && upstream_->queued() == 0) {
      tunnel_finish("client closed");
      close_now();
    }
    return;
  }
  update_reading();
}

void ClientConnection::on_upstream_data(UpstreamConnection& conn, const char* data, size_t len) {
  if (phase_ == Phase::kTunnel) {
    tunnel_from_backend(data, len);
    return;
  }
  arm_timer(route_->options.read_timeout);
  response_bytes_from_backend_ += len;
  if (response_chunk_crlf_left_ > 0 &&
      !chunk_crlf_ok(&response_chunk_crlf_left_, data, data + len)) {
    backend_sent_invalid_response("chunk data not followed by CRLF");
    return;
  }
  parse_begin_ = data;
  parse_end_ = data + len;
  llhttp_errno_t err = llhttp_execute(&http_->response_parser, data, len);
  response_byte_before_ =
      last_consumed_byte(&http_->response_parser, data, len, err, response_byte_before_);
  response_non_blank_before_ = last_non_blank(
      data, consumed_end(&http_->response_parser, data, len, err), response_non_blank_before_);
  if (err == HPE_PAUSED_UPGRADE && switching_) {
    const char* rest = llhttp_get_error_pos(&http_->response_parser);
    enter_tunnel(rest, static_cast<size_t>(data + len - rest));
    return;
  }
  if (err != HPE_OK && !(err == HPE_PAUSED && response_complete_)) {
    // A refusal from on_headers_complete reaches llhttp as "User callback error": say which.
    backend_sent_invalid_response(err == HPE_CB_HEADERS_COMPLETE && http_->headers_refusal
                                      ? http_->headers_refusal
                                      : parse_error_reason(&http_->response_parser));
    return;
  }
  if (response_complete_) {
    // Bytes after the response mean the backend is out of step: never reuse it. From a TLS
    // backend they may sit in the next record of the same read, which would otherwise be
    // handed to whichever exchange takes the connection next.
    bool trailing =
        (err == HPE_PAUSED && llhttp_get_error_pos(&http_->response_parser) < data + len) ||
        conn.has_unread_input();
    if (trailing) drop_upstream(false);
    finish_exchange();
    return;
  }
  flush_to_client();
  if (writer_.above_high_water() && upstream_) {
    upstream_->read_stop();
    upstream_paused_ = true;
    watch_for_stalled_client();
  }
}

void ClientConnection::backend_sent_invalid_response(const char* reason) {
  log_warn("upstream", "invalid response backend=", upstream_key_, " reason=\"", reason, "\"");
  ctx_.metrics.count_backend_error(upstream_key_, BackendErrorKind::kInvalidResponse);
  if (!response_head_sent_) {
    drop_upstream(false);
    respond_error(502, "invalid response from backend");
  } else {
    flush_to_client();
    close_now("invalid response from backend");
  }
}

void ClientConnection::on_upstream_closed(UpstreamConnection& conn, int status) {
  if (phase_ == Phase::kTunnel) {
    tunnel_backend_gone(status);
    return;
  }
  if (status == UV_EOF && response_bytes_from_backend_ > 0 && !response_complete_ &&
      !conn.tls_cut() && llhttp_message_needs_eof(&http_->response_parser)) {
    // A close-delimited body ends here.
    if (llhttp_finish(&http_->response_parser) == HPE_OK || response_complete_) {
      drop_upstream(false);
      finish_exchange();
      return;
    }
  }
  const char* why = status != UV_EOF ? uv_err_name(status)
                    : conn.tls_cut() ? "backend closed TLS without close_notify"
                                     : "backend closed the connection";
  // Only a request that may be sent twice is (RFC 9110 section 9.2.2; NGINX does not resend a
  // POST either): the backend may have read it before it closed. And only one without a body:
  // portico streams a body and does not keep it, so a resend could not repeat it, and its
  // parser, running again once the head had gone, would hand the new connection body bytes
  // before the head (a PUT whose body is a request of its own) or, for an empty chunked body,
  // the head without its last chunk.
  const bool may_resend = response_bytes_from_backend_ == 0 &&
                          request_framing_ == BodyFraming::kNone &&
                          is_idempotent(http_->request.method);
  if (may_resend && conn.reused() && !retried_) {
    // A kept-alive connection the backend had already closed: the request most likely never
    // reached it. Once, on a new connection.
    retried_ = true;
    drop_upstream(false);
    http_->tried_backends.clear();
    connect_upstream();
    return;
  }
  ctx_.metrics.count_backend_error(upstream_key_, BackendErrorKind::kClosed);
  if (response_bytes_from_backend_ == 0 && !conn.reused()) {
    // A new connection closed (or reset) before a byte of answer: this backend failed the
    // request, as after a failed connect (NGINX's proxy_next_upstream error). It is marked down
    // whether or not the request may go on to the next backend (NGINX counts the failure
    // either way), so that the requests after it are not sent there too.
    if (may_resend) {
      log_warn("upstream", "exchange failed backend=", upstream_key_, " error=\"", why, "\"");
      try_next_backend(false);
      return;
    }
    routing_->selector_for(*route_).mark_down(backend_index_, std::chrono::steady_clock::now());
  }
  upstream_failed(why);
}

void ClientConnection::upstream_failed(std::string_view why) {
  log_warn("upstream", "exchange failed backend=", upstream_key_, " error=\"", why, "\"");
  drop_upstream(false);
  if (!response_head_sent_) {
    respond_error(502, why);
    return;
  }
  // Part of the response is out: the client must see a truncated message, not a complete one.
  flush_to_client();
  log_access(why);
  close_now();
}

void ClientConnection::drop_upstream(bool reusable) {
  if (!upstream_) return;
  if (route_ && routing_) routing_->selector_for(*route_).connection_closed(backend_index_);
  UpstreamConnection* conn = upstream_;
  upstream_ = nullptr;
  upstream_paused_ = false;
  if (reusable) {
    ctx_.pool.release(conn);
  } else {
    conn->close();
  }
}

void ClientConnection::finish_exchange() {
  flush_to_client();
  log_access("");
  exchange_done_ = true;
  bool upstream_reusable = request_complete_ && llhttp_should_keep_alive(&http_->response_parser) &&
                           !http_->response_announced_absent_body && !ctx_.shutting_down;
  // A response that ended exactly where a read ended may still be followed by bytes on their
  // way (a backend out of step that sent a second answer with it): in the pool, the next poll
  // reads them and drops the connection, but a pipelined request taking it now, before any
  // poll, would get them as its answer. So that request takes another connection.
  const UpstreamConnection* released = upstream_reusable ? upstream_ : nullptr;
  drop_upstream(upstream_reusable);
  // A client that half-closed still gets answers to the requests it pipelined before (NGINX
  // works through them too); once none is left, the connection ends.
  if (!request_complete_ || !client_keep_alive_ || shutting_down_ ||
      (client_eof_ && pending_input_.empty())) {
    close_gracefully();
    return;
  }
  just_released_upstream_ = released;
  next_request();
  just_released_upstream_ = nullptr;
  if (client_eof_ && (phase_ == Phase::kIdle || phase_ == Phase::kHead)) {
    close_gracefully();  // what was left is no whole request, and nothing more will come
    return;
  }
  update_reading();
}

void ClientConnection::next_request() {
  // A client that has come back for a second request is likely to keep coming: from that
  // request on its buffers stay until it is quiet. After the first one they go at once, as most
  // connections that wait after one request wait long (the 10,000-connection test and a
  // browser's spare one).
  const bool came_back = answered_;
  answered_ = true;
  reset_exchange();
  phase_ = Phase::kIdle;
  reusable_since_ms_ = uv_now(ctx_.loop);
  arm_timer(ctx_.config.keepalive_timeout);
  watch_for_stalled_client();  // the end of the answer may still be on its way
  resume_parser();
  process_input();
  if (phase_ != Phase::kIdle) return;
  if (came_back) {
    release_when_quiet();
  } else {
    release_idle_buffers();
  }
}

// Buffers keep their capacity between uses, which is right while data flows; a connection that
// goes idle gives back everything, OpenSSL's record buffers included, so that thousands of idle
// connections cost little. That happens at once after the handshake, after the first request
// and when a tunnel opens (and OpenSSL frees its own whenever they are empty). A connection that
// came back for another request, or a tunnel relaying messages, keeps them all
// (TlsStream::keep_buffers) until kQuietReleaseMs pass without traffic (release_when_quiet), so
// that it allocates nothing per request or message. While a tunnel is busy only large buffers
// of portico's own are given back (`keep`).
void ClientConnection::release_idle_buffers(size_t keep) {
  if (plain_out_.empty() && plain_out_.capacity() > keep) release_memory(plain_out_);
  if (tls_.output().empty() && tls_.output().capacity() > keep) release_memory(tls_.output());
  if (pending_input_.empty() && pending_input_.capacity() > keep) release_memory(pending_input_);
  if (keep == 0) {
    // A TLS 1.3 connection's records are protected by portico's own few hundred bytes from
    // here on, and OpenSSL's state (most of an idle connection's memory) goes: see TlsStream.
    // Not while a request is in flight: the hand-over waits for the connection's next pause.
    if ((phase_ == Phase::kIdle || phase_ == Phase::kTunnel) && !tls_.records_handed_over() &&
        tls_.hand_over_records()) {
      ++ctx_.metrics.tls_handovers;
    }
    tls_.release_buffers();
  }
}

// Called each time a request ends or a tunnel relays something. The connection's one timer need
// only be due by the release time: nearly always it already is (set for the previous release
// time), and firing early, on_timer finds the later time and waits on. So a busy connection
// moves no timer here.
void ClientConnection::release_when_quiet() {
  tls_.keep_buffers();
  quiet_release_ms_ = uv_now(ctx_.loop) + kQuietReleaseMs;
  fire_timer_by(quiet_release_ms_);
}

void ClientConnection::resume_parser() {
  if (!parser_paused_) return;
  // After an Upgrade request llhttp waits in its own pause; when no tunnel follows (an error
  // answer or a non-101 response), HTTP carries on.
  if (llhttp_get_errno(&http_->request_parser) == HPE_PAUSED_UPGRADE) {
    llhttp_resume_after_upgrade(&http_->request_parser);
  } else {
    llhttp_resume(&http_->request_parser);
  }
  parser_paused_ = false;
}

void ClientConnection::reset_exchange() {
  http_->request.clear();
  http_->request_chunk_extension_bytes = 0;
  http_->response_chunk_extension_bytes = 0;
  routing_.reset();
  route_ = nullptr;
  http_->tried_backends.clear();
  upstream_key_.clear();  // else an answer of portico's own would name the last one's backend
  http_->last_attempt_timed_out = false;
  http_->host_absent = false;
  http_->response_announced_absent_body = false;
  http_->upstream_head.clear();
  request_framing_ = BodyFraming::kNone;
  request_complete_ = false;
  exchange_started_ = false;
  exchange_done_ = false;
  access_logged_ = false;
  expect_continue_ = false;
  retried_ = false;
  request_body_bytes_ = 0;
  request_error_status_ = 0;
  http_->response.clear();
  response_head_sent_ = false;
  response_complete_ = false;
  response_informational_ = false;
  client_framing_ = BodyFraming::kNone;
  response_bytes_from_backend_ = 0;
  bytes_to_client_ = 0;
  status_sent_ = 0;
  websocket_ = false;
  switching_ = false;
  ws_deflate_ = false;
  chunk_crlf_left_ = 0;
  response_chunk_crlf_left_ = 0;
  http_->sticky_cookie_in = {};
  http_->set_cookie.clear();
  http_->ws_accept.clear();
}

// Portico's own answers: a small plain-text body and an access-log line. The connection stays
// open only when the request is fully read and was well-formed.
void ClientConnection::respond_error(int status, std::string_view why,
                                     std::string_view extra_headers) {
  if (upstream_) drop_upstream(false);
  if (response_head_sent_ && !exchange_done_) {
    // The backend's answer is already on its way: the client can only see it cut short.
    log_access(why);
    close_now();
    return;
  }
  if (request_start_ == std::chrono::steady_clock::time_point{}) {
    request_start_ = std::chrono::steady_clock::now();
  }
  bool body_pending =
      !request_complete_ && (http_->request_parser.flags & (F_CHUNKED | F_CONTENT_LENGTH)) &&
      !(http_->request_parser.content_length == 0 && !(http_->request_parser.flags & F_CHUNKED));
  // After 400, 431, 408 or 501 the parser cannot frame what follows (it stopped mid-head, or
  // in an error state that stays): the connection closes.
  bool keep_alive = status != 400 && status != 431 && status != 408 && status != 501 &&
                    !body_pending && llhttp_should_keep_alive(&http_->request_parser) &&
                    !shutting_down_;
  std::string body = str_cat(status, " ", reason_phrase(status), ": ", why, "\n");
  size_t before = plain_out_.size();
  build_simple_response(status, body, keep_alive, {ctx_.response_headers, extra_headers},
                        &plain_out_, http_->request.method == "HEAD");
  bytes_to_client_ += plain_out_.size() - before;
  status_sent_ = status;
  response_head_sent_ = true;
  log_access(why);
  exchange_done_ = true;
  flush_to_client();
  if (!keep_alive) {
    close_gracefully();
    return;
  }
  if (request_complete_) {
    next_request();
    update_reading();
    return;
  }
  // Finish reading this (bodiless) request; on_parser_paused() then moves to the next one.
  phase_ = Phase::kExchange;
  resume_parser();
  process_input();
  update_reading();
}

void ClientConnection::log_access(std::string_view error) {
  AccessLogEntry entry;
  entry.client = peer_address_;
  set_request_fields(&entry, http_->request);
  entry.route = route_ ? std::string_view(route_->prefix) : std::string_view("-");
  if (route_) entry.route_host = route_->host;
  entry.backend = upstream_key_.empty() ? std::string_view("-") : std::string_view(upstream_key_);
  entry.status = status_sent_;
  entry.bytes_in = request_body_bytes_;
  entry.bytes_out = bytes_to_client_;
  entry.duration_ms = elapsed_ms(request_start_);
  entry.error = error;
  ctx_.metrics.count_request(entry);
  ctx_.access_log.write(entry);
  access_logged_ = true;
}

// ---------------------------------------------------------------------------------------------
// Writing to the client

// Every byte for the client is encrypted here, so that a quiet connection's next response (or
// WebSocket message) starts with small records.
TlsStream::Status ClientConnection::encrypt_for_client(const char* data, size_t len) {
  const uint64_t now = uv_now(ctx_.loop);
  if (now - last_encrypt_ms_ >= kRecordRampRestartMs) tls_.restart_record_ramp();
  last_encrypt_ms_ = now;
  return tls_.write(data, len);
}

void ClientConnection::flush_to_client() {
  if (!plain_out_.empty() && phase_ != Phase::kClosed) {
    if (encrypt_for_client(plain_out_.data(), plain_out_.size()) != TlsStream::Status::kOk) {
      plain_out_.clear();
      close_now();
      return;
    }
    plain_out_.clear();
  }
  if (!tls_.output().empty() && phase_ != Phase::kClosed) {
    if (writer_.queued() == 0) send_progress_ms_ = uv_now(ctx_.loop);  // a new wait begins
    if (int rc = writer_.write_owned(std::move(tls_.output())); rc != 0) {
      tls_.output().clear();
      close_after_client_error(rc);
      return;
    }
    tls_.output().clear();
  }
}

void ClientConnection::on_write_done(int status) {
  if (phase_ == Phase::kClosed) return;
  if (status < 0) {
    close_after_client_error(status);
    return;
  }
  const uint64_t now = uv_now(ctx_.loop);
  send_progress_ms_ = now;
  if (phase_ == Phase::kClosing) {
    if (writer_.queued() == 0 && !reading_) {
      close_now();
    } else if (writer_.queued() == 0 && !shutdown_sent_) {
      shutdown_sent_ = true;
      // Everything is out: send FIN and linger (reading, discarding) until the client closes
      // or the linger timer fires, so that unread request bytes cannot turn into an RST that
      // destroys the answer before the client read it. The linger counts from here: a slow
      // client may have taken longer than it to receive the answer.
      auto* req = new uv_shutdown_t;
      if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp_),
                      &ClientConnection::on_shutdown_done) != 0) {
        delete req;
        close_now();
        return;
      }
      arm_timer(kLingerTime);
    }
    return;
  }
  if (upstream_paused_ && upstream_ && writer_.below_low_water()) {
    upstream_paused_ = false;
    upstream_->read_start();
    // The backend's silence counts from now: it was not read while the client was slow.
    arm_timer(route_->options.read_timeout);
  }
  // A keep-alive wait that ran out while the answer was still going out ends now it is out.
  if (phase_ == Phase::kIdle && writer_.queued() == 0 && now >= deadline_ms_) fire_timer_by(now);
  update_reading();
}

bool ClientConnection::waiting_on_client() const {
  if (writer_.queued() == 0) return false;
  switch (phase_) {
    case Phase::kIdle:
    case Phase::kClosing:
      return true;
    case Phase::kExchange:
      return upstream_paused_;  // the backend is not read because the client is slow
    case Phase::kTunnel:
      // The same, until a close handshake has begun: from then on its own short wait
      // (kCloseHandshakeMs) ends the tunnel, whether or not the client reads.
      return upstream_paused_ && !tunnel_->closing() && !tunnel_->close_handshake_done();
    default:
      return false;
  }
}

void ClientConnection::watch_for_stalled_client() {
  if (writer_.queued() == 0) return;
  fire_timer_by(send_progress_ms_ + static_cast<uint64_t>(ctx_.config.send_timeout.count()));
}

// ---------------------------------------------------------------------------------------------
// Timers

// A connection sets its deadline several times per request (head, backend answer, keep-alive),
// nearly always to a later time, and moving a uv timer costs a removal from and an insertion
// into the loop's timer heap. So the uv timer is moved only when the new deadline is sooner
// than the time it is set for; firing early, on_timer sets it again for what is left.
void ClientConnection::arm_timer(std::chrono::milliseconds timeout) {
  deadline_ms_ = uv_now(ctx_.loop) + static_cast<uint64_t>(timeout.count());
  fire_timer_by(deadline_ms_);
}

// The timer fires no later than `due_ms` (loop time). One due sooner is left alone: on_timer
// then finds nothing due yet and sets the timer for the earliest of what is pending.
void ClientConnection::fire_timer_by(uint64_t due_ms) {
  const uint64_t now = uv_now(ctx_.loop);
  if (uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_)) &&
      now + uv_timer_get_due_in(&timer_) <= due_ms) {
    return;
  }
  uv_timer_start(&timer_, &ClientConnection::on_timer, due_ms > now ? due_ms - now : 0, 0);
}

void ClientConnection::on_timer(uv_timer_t* timer) {
  auto* conn = static_cast<ClientConnection*>(timer->data);
  const uint64_t now = uv_now(conn->ctx_.loop);
  if (conn->quiet_release_ms_ != 0 && now >= conn->quiet_release_ms_) {
    conn->quiet_release_ms_ = 0;
    conn->release_idle_buffers();  // only buffers with nothing in them
  }
  if (conn->waiting_on_client()) {
    // Bytes for the client are still queued: closing an idle or closing connection now would
    // drop the end of its answer, and the backend of an exchange or a tunnel is silent only
    // because portico stopped reading it. So the phase's deadline waits while the client takes
    // bytes, and the connection ends when it takes none for --send-timeout (NGINX's
    // send_timeout), counted from its last progress, whatever the phase's deadline.
    const uint64_t stalled_at =
        conn->send_progress_ms_ + static_cast<uint64_t>(conn->ctx_.config.send_timeout.count());
    if (now < stalled_at) {
      conn->fire_timer_by(stalled_at);
      if (conn->quiet_release_ms_ != 0) conn->fire_timer_by(conn->quiet_release_ms_);
      return;
    }
    log_info(conn->phase_ == Phase::kTunnel ? "websocket" : "http",
             "client stopped reading client=", conn->peer_address_,
             " unsent=", conn->writer_.queued());
    conn->close_now("client stopped reading");
    return;
  }
  if (now < conn->deadline_ms_) {
    conn->fire_timer_by(conn->deadline_ms_);
    if (conn->quiet_release_ms_ != 0) conn->fire_timer_by(conn->quiet_release_ms_);
    return;
  }
  switch (conn->phase_) {
    case Phase::kHandshake:
      if (conn->proxy_header_) {
        log_info("proxy-protocol", "refused client=", conn->peer_address_, " reason=timeout");
      } else {
        if (!conn->shutting_down_) {  // the stop's short grace is not the client's failure
          conn->ctx_.metrics.count_handshake_failure("timeout");
          log_info("tls", "handshake failed client=", conn->peer_address_, " reason=timeout");
        }
      }
      conn->close_now();
      break;
    case Phase::kIdle:
      conn->close_gracefully();
      break;
    case Phase::kHead:
      conn->respond_error(408, "request head not received in time");
      break;
    case Phase::kConnecting:
      if (conn->upstream_ && conn->upstream_->move_past_unanswered_address()) {
        conn->arm_timer(conn->route_->options.connect_timeout);  // the next address's own
        break;
      }
      log_warn("upstream", "connect timed out backend=", conn->upstream_key_,
               " address=", conn->upstream_ ? conn->upstream_->address() : std::string(),
               " error=", conn->upstream_ ? conn->upstream_->connect_errors() : std::string());
      conn->ctx_.metrics.count_backend_error(conn->upstream_key_, BackendErrorKind::kTimeout);
      conn->try_next_backend(true);
      break;
    case Phase::kExchange:
      if (!conn->request_complete_ && !conn->response_head_sent_ &&
          !(conn->upstream_ && conn->upstream_->above_high_water())) {
        // The backend was taking the body and the client stopped sending it (NGINX's
        // client_body_timeout): the client's fault, not the backend's.
        log_info("http", "request body stalled client=", conn->peer_address_);
        conn->respond_error(408, "request body not received in time");
        break;
      }
      conn->ctx_.metrics.count_backend_error(conn->upstream_key_, BackendErrorKind::kTimeout);
      if (!conn->response_head_sent_) {
        log_warn("upstream", "response timed out backend=", conn->upstream_key_);
        conn->respond_error(504, "backend did not answer in time");
      } else {
        conn->upstream_failed("backend stalled mid-response");
      }
      break;
    case Phase::kTunnel:
      conn->tunnel_on_timer();
      break;
    case Phase::kClosing:
      conn->close_now();
      break;
    case Phase::kClosed:
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// llhttp callbacks: the request

int ClientConnection::on_request_message_begin(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  c->http_->request.clear();
  c->phase_ = Phase::kHead;
  c->request_start_ = std::chrono::steady_clock::now();
  // A later request's head gets --header-timeout from its first byte (the keep-alive wait
  // ended there). The first one's has run since the handshake, and covers the wait and the
  // head together, as NGINX's client_header_timeout: re-arming it here would let a client
  // that waits and then dribbles hold the connection for twice as long.
  if (c->answered_) {
    c->arm_timer(c->ctx_.config.header_timeout);
    c->tls_.keep_buffers();  // it came back: see next_request
  }
  return 0;
}

int ClientConnection::on_request_url(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if (!c->http_->request.append_target(at, len, c->ctx_.config.max_header_bytes)) {
    c->request_error_status_ = 414;
    llhttp_set_error_reason(p, "request target too long");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::on_request_header_field(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if (!c->http_->request.building_name &&
      !line_starts(at, c->parse_begin_, c->request_byte_before_)) {
    c->request_error_status_ = 400;
    llhttp_set_error_reason(p, "bare CR in the request head");
    return HPE_USER;
  }
  if (!c->http_->request.append_name(at, len, c->ctx_.config.max_header_bytes,
                                     c->ctx_.config.max_header_count)) {
    c->request_error_status_ = 431;
    llhttp_set_error_reason(p, "request head too large");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::on_request_header_field_complete(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  if (!c->http_->request.end_name()) {
    c->request_error_status_ = 400;
    llhttp_set_error_reason(p, "invalid header name");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::on_request_header_value_complete(llhttp_t* p) {
  from_parser(p)->http_->request.end_value();
  return 0;
}

int ClientConnection::on_request_header_value(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if (!value_span_is_not_fold(c->http_->request, &c->value_span_at_end_, at, len, c->parse_begin_,
                              c->parse_end_, c->request_non_blank_before_)) {
    c->request_error_status_ = 400;
    llhttp_set_error_reason(p, "obs-fold in header value");
    return HPE_USER;
  }
  if (!c->http_->request.append_value(at, len, c->ctx_.config.max_header_bytes)) {
    c->request_error_status_ = 431;
    llhttp_set_error_reason(p, "request head too large");
    return HPE_USER;
  }
  return 0;
}

int ClientConnection::on_request_headers_complete(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  c->http_->request.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  c->http_->request.version_major = p->http_major;
  c->http_->request.version_minor = p->http_minor;
  // A request with a body pauses here, so that the body waits until the backend is connected.
  // A bodiless one runs on to message complete (llhttp needs no more bytes for that, but it
  // would need some to leave a pause), and the exchange starts there.
  bool has_body =
      (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  if (!has_body) return 0;
  c->pause_reason_ = PauseReason::kHeadersComplete;
  return HPE_PAUSED;
}

// Checks the bytes after a chunk's data, as far as they have arrived, against the CRLF that
// must follow it (RFC 9112 section 7.1): llhttp skips them unseen, so "5\r\nhelloXX0\r\n\r\n"
// would pass for a complete body.
bool ClientConnection::chunk_crlf_ok(uint8_t* left, const char* from, const char* end) {
  static constexpr char kCrlf[] = "\r\n";
  for (; *left > 0 && from < end; ++from, --*left) {
    if (*from != kCrlf[2 - *left]) return false;
  }
  return true;
}

int ClientConnection::on_request_body(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if ((p->flags & F_CHUNKED) && p->content_length == 0) {  // this chunk's data ends here
    c->chunk_crlf_left_ = 2;
    if (!chunk_crlf_ok(&c->chunk_crlf_left_, at + len, c->parse_end_)) {
      c->request_error_status_ = 400;
      llhttp_set_error_reason(p, "chunk data not followed by CRLF");
      return HPE_USER;
    }
  }
  uint64_t max_body = c->route_ ? c->route_->options.max_body : 0;
  if (max_body != 0 && c->request_body_bytes_ + len > max_body) {
    // A chunked body has no length up front: the limit is enforced as it streams.
    c->request_error_status_ = 413;
    llhttp_set_error_reason(p, "request body larger than the route's max_body");
    return HPE_USER;
  }
  c->send_request_body(at, len);
  return 0;
}

int ClientConnection::on_chunk_extension(llhttp_t* p, const char*, size_t len) {
  ClientConnection* c = from_parser(p);
  const bool request = p == &c->http_->request_parser;
  size_t& seen =
      request ? c->http_->request_chunk_extension_bytes : c->http_->response_chunk_extension_bytes;
  seen += len + 1;  // + the ';' or '=' before it: ";;;;" calls back with nothing
  if (seen <= kMaxChunkExtensionBytes) return 0;
  if (request) c->request_error_status_ = 400;
  llhttp_set_error_reason(p, "chunk extensions too long");
  return HPE_USER;
}

int ClientConnection::on_chunk_header(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  (p == &c->http_->request_parser ? c->http_->request_chunk_extension_bytes
                                  : c->http_->response_chunk_extension_bytes) = 0;
  return 0;
}

int ClientConnection::on_request_message_complete(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  c->request_complete_ = true;
  if (c->request_framing_ == BodyFraming::kChunked && c->upstream_) {
    c->upstream_->write("0\r\n\r\n", 5);
  }
  c->pause_reason_ = PauseReason::kMessageComplete;
  // An upgrade request makes llhttp pause by itself (HPE_PAUSED_UPGRADE).
  return p->upgrade ? 0 : HPE_PAUSED;
}

const llhttp_settings_t& ClientConnection::request_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = &ClientConnection::on_request_message_begin;
    s.on_url = &ClientConnection::on_request_url;
    s.on_header_field = &ClientConnection::on_request_header_field;
    s.on_header_field_complete = &ClientConnection::on_request_header_field_complete;
    s.on_header_value = &ClientConnection::on_request_header_value;
    s.on_header_value_complete = &ClientConnection::on_request_header_value_complete;
    s.on_headers_complete = &ClientConnection::on_request_headers_complete;
    s.on_body = &ClientConnection::on_request_body;
    s.on_chunk_extension_name = &ClientConnection::on_chunk_extension;
    s.on_chunk_extension_value = &ClientConnection::on_chunk_extension;
    s.on_chunk_header = &ClientConnection::on_chunk_header;
    s.on_message_complete = &ClientConnection::on_request_message_complete;
    return s;
  }();
  return settings;
}

// ---------------------------------------------------------------------------------------------
// llhttp callbacks: the response

int ClientConnection::on_response_status(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  // RFC 9112 section 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ). It is relayed.
  for (size_t i = 0; i < len; ++i) {
    const unsigned char b = static_cast<unsigned char>(at[i]);
    if ((b < 0x20 && b != '\t') || b == 0x7F) {
      llhttp_set_error_reason(p, "control character in the reason phrase");
      return HPE_USER;
    }
  }
  if (c->http_->response.append_reason(at, len, kMaxResponseHeadBytes)) return 0;
  llhttp_set_error_reason(p, "response head larger than 64 KiB");
  return HPE_USER;
}

int ClientConnection::on_response_header_field(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if (!c->http_->response.building_name &&
      !line_starts(at, c->parse_begin_, c->response_byte_before_)) {
    llhttp_set_error_reason(p, "bare CR in the response head");
    return HPE_USER;
  }
  if (c->http_->response.append_name(at, len, kMaxResponseHeadBytes, kMaxResponseHeaders)) {
    return 0;
  }
  llhttp_set_error_reason(p, c->http_->response.headers.size() >= kMaxResponseHeaders
                                 ? "more than 200 header fields in the response"
                                 : "response head larger than 64 KiB");
  return HPE_USER;
}

int ClientConnection::on_response_header_field_complete(llhttp_t* p) {
  if (from_parser(p)->http_->response.end_name()) return 0;
  llhttp_set_error_reason(p, "invalid header name in response");
  return HPE_USER;
}

int ClientConnection::on_response_header_value(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if (!value_span_is_not_fold(c->http_->response, &c->value_span_at_end_, at, len, c->parse_begin_,
                              c->parse_end_, c->response_non_blank_before_)) {
    llhttp_set_error_reason(p, "obs-fold in response header value");
    return HPE_USER;
  }
  if (c->http_->response.append_value(at, len, kMaxResponseHeadBytes)) return 0;
  llhttp_set_error_reason(p, "response head larger than 64 KiB");
  return HPE_USER;
}

int ClientConnection::on_response_header_value_complete(llhttp_t* p) {
  from_parser(p)->http_->response.end_value();
  return 0;
}

int ClientConnection::on_response_headers_complete(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  int status = llhttp_get_status_code(p);
  // llhttp reads "007" as 7 and an empty code (two spaces) as 0: a status is 3 digits, 100 to
  // 599 (RFC 9110 section 15), and portico writes it again as a number.
  if (status < 100 || status > 599) {
    c->http_->headers_refusal = "invalid status code";
    return -1;
  }
  // "HTTP/2.0 200" on an HTTP/1.1 connection is no answer portico can relay as HTTP/1.1 (a
  // request other than 1.x gets 505 the same way).
  if (p->http_major != 1) {
    c->http_->headers_refusal = "HTTP version other than 1.x";
    return -1;
  }
  // A length no file or stream has (above 2^63 - 1, NGINX's limit too): no client could tell a
  // complete answer from a cut one.
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > uint64_t{INT64_MAX}) {
    c->http_->headers_refusal = "Content-Length too large";
    return -1;
  }
  // Transfer codings other than a single chunked (gzip, chunked; identity; ...) would reach
  // the client as undecoded bytes once portico re-frames the body (NGINX answers 502 too).
  if (c->http_->response.find("transfer-encoding") &&
      !has_only_chunked_coding(c->http_->response)) {
    c->http_->headers_refusal = "Transfer-Encoding other than a single chunked";
    return -1;
  }
  if (status >= 100 && status < 200 && status != 101) {
    // Interim answers (100 Continue, 103 Early Hints) are portico's to give, not relayed. Like
    // every 1xx they end at their blank line whatever length they claim (RFC 9112 section 6.3):
    // 1 tells llhttp so, where it would otherwise read a claimed body.
    c->response_informational_ = true;
    return 1;
  }
  if (status == 101) {
    // Only a WebSocket handshake may switch, and only with the answer its key calls for and
    // both Upgrade: websocket and Connection: Upgrade (RFC 6455 section 4.1: else the client
    // fails the connection; llhttp, too, reads on as HTTP after a 101 without them).
    const HeaderField* accept = c->http_->response.find("sec-websocket-accept");
    if (!c->websocket_ || !accept || accept->value != c->http_->ws_accept ||
        c->http_->response.count("sec-websocket-accept") != 1 ||
        !is_websocket_upgrade(c->http_->response)) {
      c->http_->headers_refusal = c->websocket_ ? "invalid 101 Switching Protocols from backend"
                                                : "101 Switching Protocols to a request that "
                                                  "asked for no upgrade";
      return -1;
    }
    c->switching_ = true;
    c->ws_deflate_ = ws_extension_negotiated(c->http_->response, "permessage-deflate");
  }
  c->http_->response.status = status;
  c->http_->response.version_major = p->http_major;
  c->http_->response.version_minor = p->http_minor;
  ClientResponse response;
  response.head = &c->http_->response;
  response.extra_headers = c->http_->set_cookie;
  response.site_headers = c->ctx_.response_headers;
  response.head_request = c->http_->request.method == "HEAD";
  response.client_http11 =
      c->http_->request.version_major == 1 && c->http_->request.version_minor >= 1;
  response.keep_alive = c->client_keep_alive_ && c->request_complete_ && !c->shutting_down_;
  if (p->flags & F_CHUNKED) {
    response.framing = BodyFraming::kChunked;
  } else if (p->flags & F_CONTENT_LENGTH) {
    response.framing = BodyFraming::kContentLength;
    response.content_length = p->content_length;
  } else if (llhttp_message_needs_eof(p)) {
    response.framing = BodyFraming::kCloseDelimited;
  } else {
    response.framing = BodyFraming::kNone;
  }
  if (!response.keep_alive) c->client_keep_alive_ = false;
  size_t before = c->plain_out_.size();
  c->client_framing_ = build_client_response_head(response, &c->plain_out_);
  if (c->client_framing_ == BodyFraming::kCloseDelimited) c->client_keep_alive_ = false;
  c->bytes_to_client_ += c->plain_out_.size() - before;
  c->response_head_sent_ = true;
  c->status_sent_ = status;
  // llhttp cannot know that a response to HEAD has no body: 1 tells it to skip one. A 101, 204
  // or 304 has none either (status_has_no_content), but llhttp reads one when the backend claims
  // a length: bytes that would reach the client after a head that said there were none (a 101's
  // would bypass the frame checks). What follows the blank line is the tunnel's after a 101, and
  // for a 204 or 304 the backend is out of step: it is not reused (on_upstream_data).
  const bool no_body = response.head_request || status_has_no_content(status);
  // A HEAD answer's length is the GET's, a 304's may be the representation's, and a 204 may not
  // give one (RFC 9110 8.6). A backend that sends that body anyway (a framework that does not
  // special-case HEAD) sends it after portico took the answer as complete, and would have it
  // read as the answer to the next request on the connection, another client's perhaps: after
  // an answer that announced a body it may not carry, the connection is not reused.
  c->http_->response_announced_absent_body =
      no_body &&
      ((p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0));
  return no_body ? 1 : 0;
}

int ClientConnection::on_response_body(llhttp_t* p, const char* at, size_t len) {
  ClientConnection* c = from_parser(p);
  if ((p->flags & F_CHUNKED) && p->content_length == 0) {  // this chunk's data ends here
    c->response_chunk_crlf_left_ = 2;
    if (!chunk_crlf_ok(&c->response_chunk_crlf_left_, at + len, c->parse_end_)) {
      llhttp_set_error_reason(p, "chunk data not followed by CRLF");
      return HPE_USER;
    }
  }
  if (c->client_framing_ == BodyFraming::kChunked) {
    char size_line[20];
    size_t n = chunk_header(len, size_line);
    c->plain_out_.append(size_line, n);
    c->plain_out_.append(at, len);
    c->plain_out_.append("\r\n");
    c->bytes_to_client_ += n + len + 2;
  } else {
    c->plain_out_.append(at, len);
    c->bytes_to_client_ += len;
  }
  if (c->plain_out_.size() >= kPlaintextFlushBytes) c->flush_to_client();
  return 0;
}

int ClientConnection::on_response_message_complete(llhttp_t* p) {
  ClientConnection* c = from_parser(p);
  if (c->switching_) return 0;  // llhttp pauses with HPE_PAUSED_UPGRADE
  if (c->response_informational_) {
    c->response_informational_ = false;
    c->http_->response.clear();
    return 0;
  }
  if (c->client_framing_ == BodyFraming::kChunked) {
    c->plain_out_.append("0\r\n\r\n");
    c->bytes_to_client_ += 5;
  }
  c->response_complete_ = true;
  return HPE_PAUSED;
}

const llhttp_settings_t& ClientConnection::response_settings() {
  static const llhttp_settings_t settings = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_status = &ClientConnection::on_response_status;
    s.on_header_field = &ClientConnection::on_response_header_field;
    s.on_header_field_complete = &ClientConnection::on_response_header_field_complete;
    s.on_header_value = &ClientConnection::on_response_header_value;
    s.on_header_value_complete = &ClientConnection::on_response_header_value_complete;
    s.on_headers_complete = &ClientConnection::on_response_headers_complete;
    s.on_body = &ClientConnection::on_response_body;
    s.on_chunk_extension_name = &ClientConnection::on_chunk_extension;
    s.on_chunk_extension_value = &ClientConnection::on_chunk_extension;
    s.on_chunk_header = &ClientConnection::on_chunk_header;
    s.on_message_complete = &ClientConnection::on_response_message_complete;
    return s;
  }();
  return settings;
}

}  // namespace portico

// The WebSocket half of ClientConnection: after the backend's 101, frames are relayed both ways
// without unmasking, copying or reassembling payloads. WsFrameTracker follows the frame headers
// so that portico can close at a frame boundary, enforce the message size limit, reject frames
// masked the wrong way, and keep idle tunnels alive with pings.

#include <openssl/rand.h>

#include "proxy/client_connection.h"
#include "proxy/log.h"
#include "proxy/websocket_handshake.h"

namespace portico {
namespace {

// How long portico waits for the peers' Close replies after it sent its own.
constexpr uint64_t kCloseHandshakeMs = 3000;

// What a busy tunnel keeps of its buffers between messages (see release_idle_buffers).
constexpr size_t kBusyTunnelBufferKeep = 2048;

uint32_t random_mask() {
  uint32_t key = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&key), sizeof key);
  return key;
}

}  // namespace

bool ClientConnection::websocket_checks_pass(std::string_view host) {
  if (route_->options.upgrade == UpgradePolicy::kNever) {
    respond_error(403, "WebSocket upgrades are not allowed on this route");
    return false;
  }
  std::string why;
  if (int status = check_websocket_request(http_->request, &why); status != 0) {
    respond_error(status, why);
    return false;
  }
  const HeaderField* origin = http_->request.find("origin");
  if (origin && !websocket_origin_allowed(origin->value, host, route_->options.origins)) {
    log_warn("websocket", "refused origin=", Quoted{origin->value}, " host=", host,
             " route=", route_->prefix, " client=", peer_address_);
    respond_error(403, "WebSocket origin not allowed");
    return false;
  }
  http_->ws_accept = ws_accept_for_key(http_->request.find("sec-websocket-key")->value);
  return true;
}

void ClientConnection::enter_tunnel(const char* backend_bytes, size_t len) {
  phase_ = Phase::kTunnel;
  entered_tunnel_ = true;
  ++ctx_.metrics.open_tunnels;
  tunnel_ = std::make_unique<Tunnel>(route_->options.max_ws_message, uv_now(ctx_.loop));
  if (ws_deflate_) {
    tunnel_->from_client.allow_rsv1(true);
    tunnel_->from_backend.allow_rsv1(true);
  }
  flush_to_client();  // the 101
  // The handshake is over: of the HTTP state only what the tunnel's access-log line names stays.
  if (const HeaderField* host = http_->request.find("host")) tunnel_->host = host->value;
  tunnel_->target = http_->request.target;
  if (ctx_.access_log.logs_request_headers()) {
    AccessLogEntry request_fields;
    set_request_fields(&request_fields, http_->request);
    tunnel_->referer = request_fields.referer;
    tunnel_->user_agent = request_fields.user_agent;
  }
  http_.reset();
  release_idle_buffers();
  if (len > 0) tunnel_from_backend(backend_bytes, len);
  if (phase_ != Phase::kTunnel) return;
  if (!pending_input_.empty()) {
    std::string early;
    early.swap(pending_input_);
    tunnel_from_client(early.data(), early.size());
    if (phase_ != Phase::kTunnel) return;
  }
  release_memory(pending_input_);
  parser_paused_ = false;
  arm_timer(route_->options.ws_idle);
  update_reading();
}

void ClientConnection::tunnel_from_client(const char* data, size_t len) {
  Tunnel& t = *tunnel_;
  t.last_client_activity_ms = uv_now(ctx_.loop);
  t.ping_outstanding = false;
  release_when_quiet();
  const bool was_closed = t.close_handshake_done();
  size_t ok = t.from_client.feed(reinterpret_cast<const uint8_t*>(data), len);
  // Once portico has sent its own Close, the client's frames (its Close reply) end here.
  if (ok > 0 && upstream_ && !t.closing()) upstream_->write(data, ok);
  if (t.from_client.violation() != WsViolation::kNone) {
    if (!t.closing()) {  // once: the client's later bytes are dropped, not logged again
      log_info("websocket",
               "client broke the protocol violation=", ws_violation_name(t.from_client.violation()),
               " client=", peer_address_);
    }
    tunnel_send_close(t.from_client.close_code_for_violation(), 1001,
                      ws_violation_name(t.from_client.violation()));
    return;
  }
  if (!was_closed) tunnel_after_close_frames();
}

void ClientConnection::tunnel_from_backend(const char* data, size_t len) {
  if (client_eof_) return;  // the client has gone, and portico's close_notify is out
  Tunnel& t = *tunnel_;
  const bool was_closed = t.close_handshake_done();
  size_t ok = t.from_backend.feed(reinterpret_cast<const uint8_t*>(data), len);
  if (ok > 0 && !t.closing()) {
    if (encrypt_for_client(data, ok) != TlsStream::Status::kOk) {
      close_now();
      return;
    }
    flush_to_client();
    if (phase_ == Phase::kClosed) return;
    release_idle_buffers(kBusyTunnelBufferKeep);
    release_when_quiet();
  }
  if (t.from_backend.violation() != WsViolation::kNone) {
    if (!t.closing()) {
      log_warn("websocket", "backend broke the protocol violation=",
               ws_violation_name(t.from_backend.violation()), " backend=", upstream_key_);
    }
    tunnel_send_close(1011, t.from_backend.close_code_for_violation(),
                      ws_violation_name(t.from_backend.violation()));
    return;
  }
  if (writer_.above_high_water() && upstream_) {
    upstream_->read_stop();
    upstream_paused_ = true;
    watch_for_stalled_client();
  }
  if (!was_closed) tunnel_after_close_frames();
}

// Both Close frames have passed (RFC 6455 section 7.1.2: the closing handshake is complete).
// When portico began it, the tunnel ends at once. Otherwise the backend, the server, should
// now close the TCP connection (section 7.1.1); it gets kCloseHandshakeMs to do so (and to
// take a Close reply still queued for it), with no more pings to the client, and then the
// tunnel ends anyway.
void ClientConnection::tunnel_after_close_frames() {
  Tunnel& t = *tunnel_;
  if (t.closing()) {
    if (t.from_client.saw_close() && (t.from_backend.saw_close() || !upstream_)) {
      tunnel_finish("close handshake done");
      close_gracefully();
    }
    return;
  }
  if (t.close_handshake_done()) arm_timer(std::chrono::milliseconds(kCloseHandshakeMs));
}

// Portico ends the tunnel itself: a Close frame to each side that has not closed yet (only at a
// frame boundary, where a frame of ours cannot corrupt theirs), then a bounded wait for replies.
void ClientConnection::tunnel_send_close(uint16_t to_client, uint16_t to_backend,
                                         std::string_view why) {
  Tunnel& t = *tunnel_;
  if (t.closing()) return;
  t.closing_reason = why.empty() ? std::string_view("portico closed the tunnel") : why;
  // A side gets no Close of portico's mid-frame (it would corrupt the frame) nor after a Close
  // of its own peer's (nothing may follow that); close_to_* record only what was sent. From
  // here on neither side's frames are relayed (closing()).
  uint8_t frame[kWsMaxControlFrameBytes];
  if (to_client != 0 && t.from_backend.at_frame_boundary() && !t.from_backend.saw_close()) {
    size_t n = ws_build_close_frame(frame, to_client, "", /*mask=*/false, 0);
    encrypt_for_client(reinterpret_cast<const char*>(frame), n);
    flush_to_client();
    t.close_to_client = to_client;
  }
  if (to_backend != 0 && upstream_ && t.from_client.at_frame_boundary() &&
      !t.from_client.saw_close()) {
    // Frames towards a server must be masked: portico is the client on that side.
    size_t n = ws_build_close_frame(frame, to_backend, "", /*mask=*/true, random_mask());
    upstream_->write(reinterpret_cast<const char*>(frame), n);
    t.close_to_backend = to_backend;
  }
  log_info("websocket", "closing tunnel reason=\"", why, "\" close_to_client=", t.close_to_client,
           " close_to_backend=", t.close_to_backend, " client=", peer_address_);
  if (phase_ == Phase::kTunnel) arm_timer(std::chrono::milliseconds(kCloseHandshakeMs));
}

void ClientConnection::tunnel_backend_gone(int status) {
  Tunnel& t = *tunnel_;
  drop_upstream(false);
  // Not while portico is closing: its Close went out already, or the client's stream stopped
  // mid-frame (the tracker read on past what was relayed).
  if (!t.closing() && !t.from_backend.saw_close() && t.from_backend.at_frame_boundary()) {
    // 1001: the backend went away; 1011: it failed.
    uint16_t code = status == UV_EOF ? 1001 : 1011;
    uint8_t frame[kWsMaxControlFrameBytes];
    size_t n = ws_build_close_frame(frame, code, "", /*mask=*/false, 0);
    encrypt_for_client(reinterpret_cast<const char*>(frame), n);
    t.close_to_client = code;
  }
  tunnel_finish(status == UV_EOF ? std::string("backend closed")
                                 : str_cat("backend connection error ", uv_err_name(status)));
  close_gracefully();
}

// The client has closed its side. What it sent before still goes to the backend (its Close
// frame is often the last of it), as NGINX does: the tunnel ends once the backend has taken
// those bytes (on_upstream_drained), or after kCloseHandshakeMs if it does not read. Closing at
// once would discard them with the upstream connection.
void ClientConnection::tunnel_client_gone() {
  client_eof_ = true;
  update_reading();
  // A close_notify is answered with ours (RFC 8446 section 6.1), as between requests; nothing
  // of the backend's may follow it (tunnel_from_backend).
  queue_close_notify();
  if (upstream_ && upstream_->queued() > 0) {
    arm_timer(std::chrono::milliseconds(kCloseHandshakeMs));
    return;
  }
  // The backend gets its FIN as the upstream connection closes.
  tunnel_finish("client closed");
  close_now();
}

void ClientConnection::tunnel_on_timer() {
  Tunnel& t = *tunnel_;
  if (client_eof_) {
    tunnel_finish("client closed, backend not reading");
    close_now();
    return;
  }
  if (t.closing()) {
    tunnel_finish("close handshake timed out");
    close_now();
    return;
  }
  if (t.close_handshake_done()) {
    // The backend kept its connection open after the closing handshake.
    tunnel_finish("close handshake done");
    close_gracefully();
    return;
  }
  uint64_t now = uv_now(ctx_.loop);
  uint64_t idle_limit = static_cast<uint64_t>(route_->options.ws_idle.count());
  uint64_t idle = now - t.last_client_activity_ms;
  if (idle < idle_limit) {
    arm_timer(std::chrono::milliseconds(idle_limit - idle));
    return;
  }
  release_idle_buffers();  // quiet for a whole ws_idle period
  if (t.from_client.saw_close() || t.from_backend.saw_close()) {
    // One side's Close went unanswered for a whole ws_idle period. No ping: nothing may follow
    // a Close but the reply.
    log_info("websocket", "close frame not answered client=", peer_address_);
    tunnel_finish("close handshake timed out");
    close_gracefully();
    return;
  }
  if (t.ping_outstanding) {
    // A whole ws_idle period after the ping, nothing came back: the client is gone.
    log_info("websocket", "client did not answer ping client=", peer_address_);
    tunnel_send_close(1001, 1001, "client did not answer ping");
    return;
  }
  if (t.from_backend.at_frame_boundary()) {
    uint8_t frame[kWsMaxControlFrameBytes];
    size_t n = ws_build_ping_frame(frame, "portico", /*mask=*/false, 0);
    encrypt_for_client(reinterpret_cast<const char*>(frame), n);
    flush_to_client();
    t.ping_outstanding = true;
    t.last_client_activity_ms = now;  // the pong deadline counts from the ping
  }
  arm_timer(route_->options.ws_idle);
}

void ClientConnection::tunnel_finish(std::string_view why) {
  if (!tunnel_) return;
  Tunnel& t = *tunnel_;
  AccessLogEntry entry;
  entry.client = peer_address_;
  entry.method = "GET";  // check_websocket_request admits no other
  entry.host = t.host;
  entry.target = t.target;
  entry.protocol = "HTTP/1.1";  // an upgrade needs it (RFC 6455 4.1)
  entry.referer = t.referer;
  entry.user_agent = t.user_agent;
  entry.route = route_ ? std::string_view(route_->prefix) : std::string_view("-");
  if (route_) entry.route_host = route_->host;
  entry.backend = upstream_key_;
  entry.status = 101;
  entry.bytes_in = t.from_client.bytes();
  // The 101 head (what the exchange sent before the tunnel) and every frame after it.
  entry.bytes_out = bytes_to_client_ + t.from_backend.bytes();
  entry.duration_ms = static_cast<double>(uv_now(ctx_.loop) - t.started_ms);
  // When portico began the close, its reason is how the tunnel ended; the close handshake
  // (or the backend's FIN) that follows is only the way out.
  entry.ended = t.closing() ? t.closing_reason : why;
  entry.tunnel = true;
  entry.messages_in = t.from_client.messages();
  entry.messages_out = t.from_backend.messages();
  entry.close_from_client = t.from_client.close_code();
  entry.close_from_backend = t.from_backend.close_code();
  entry.close_to_client = t.close_to_client;
  entry.close_to_backend = t.close_to_backend;
  ctx_.metrics.count_request(entry);
  ctx_.access_log.write(entry);
  tunnel_.reset();
}

}  // namespace portico

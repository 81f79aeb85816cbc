// ws_server: the WebSocket example backend (libuv + llhttp + wslay).
//
//   ws_server [--listen ADDR] --port N [--quiet] [--close-after-ms N]
//
// Any request path upgrades. A path ending in "/chat" is a broadcast room: every data message is
// sent to all connected chat clients, the sender included. Every other path echoes each message
// back with the same opcode. A plain GET answers 200 "websocket endpoint\n" (and "/health" answers
// "ok\n"), so the server doubles as a health-probe target. It is the echo backend of the
// benchmarks, so the data path copies each message once (into wslay's queue) and nothing else.

#include <llhttp.h>
#include <sys/resource.h>
#include <uv.h>
#include <wslay/wslay.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "handshake.h"

namespace {

constexpr size_t kReadBufferBytes = 256 * 1024;
// Backpressure marks on what a connection still has to write (our buffers plus wslay's queue).
constexpr size_t kWriteHighMark = 1024 * 1024;
constexpr size_t kWriteLowMark = 256 * 1024;
constexpr uint64_t kMaxMessageBytes = 16 * 1024 * 1024;
// A chat member that lets this much broadcast traffic pile up is dropped rather than buffered.
constexpr size_t kMaxChatBacklog = 64 * 1024 * 1024;
constexpr size_t kMaxRequestHeadBytes = 16 * 1024;
constexpr uint64_t kShutdownGraceMs = 1000;
// How long a connection whose Close was not answered keeps draining input (see linger()).
constexpr uint64_t kLingerMs = 2000;

struct Options {
  std::string listen = "127.0.0.1";
  int port = -1;
  bool quiet = false;
  uint64_t close_after_ms = 0;
};

Options g_opts;
uv_loop_t* g_loop = nullptr;
uv_tcp_t g_listener;
uv_signal_t g_sigint;
uv_signal_t g_sigterm;
uv_timer_t g_shutdown_timer;
bool g_shutting_down = false;
char g_read_buffer[kReadBufferBytes];

struct Connection;
std::unordered_set<Connection*> g_connections;
std::unordered_set<Connection*> g_chat;

void maybe_finish_shutdown();

using ws_server::accept_for_key;
using ws_server::has_token;
using ws_server::iequals;
using ws_server::key_is_valid;

// One client connection: HTTP/1.1 until the upgrade, then a wslay server context. It owns its
// handles; close() is its one way out and the last close callback deletes it.
struct Connection {
  uv_tcp_t tcp;
  uv_timer_t timer;  // --close-after-ms
  uv_write_t write_req;
  uv_shutdown_t shutdown_req;
  bool timer_started = false;
  int open_handles = 1;
  bool closing = false;
  bool reading = false;
  bool close_after_write = false;
  bool lingering = false;

  llhttp_t parser;
  std::string url;
  std::string field;
  std::string value;
  std::string upgrade;
  std::string connection_hdr;
  std::string key;
  std::string version;
  size_t head_bytes = 0;
  bool chat = false;

  wslay_event_context_ptr ws = nullptr;
  // Bytes handed to us by uv_read that wslay has not consumed yet (points into g_read_buffer).
  const uint8_t* rd = nullptr;
  size_t rd_len = 0;
  // Double buffering: `out` collects, `inflight` is owned by uv_write until its callback.
  std::string out;
  std::string inflight;

  ~Connection() {
    if (ws != nullptr) wslay_event_context_free(ws);
  }

  size_t pending_bytes() const {
    return out.size() + inflight.size() + (ws ? wslay_event_get_queued_msg_length(ws) : 0);
  }

  void log(const char* event) const {
    if (!g_opts.quiet) {
      std::fprintf(stderr, "info ws_server: %s path=%s mode=%s\n", event, url.c_str(),
                   ws == nullptr ? "http"
                   : chat        ? "chat"
                                 : "echo");
    }
  }

  void close() {
    if (closing) return;
    closing = true;
    g_connections.erase(this);
    g_chat.erase(this);
    auto on_closed = [](uv_handle_t* h) {
      auto* c = static_cast<Connection*>(h->data);
      if (--c->open_handles == 0) delete c;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
    if (timer_started) {
      uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_closed);
    }
    maybe_finish_shutdown();
  }

  void flush() {
    if (closing || !inflight.empty() || out.empty()) return;
    inflight.swap(out);
    uv_buf_t buf = uv_buf_init(inflight.data(), static_cast<unsigned>(inflight.size()));
    write_req.data = this;
    const int rc = uv_write(&write_req, reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1,
                            [](uv_write_t* req, int status) {
                              static_cast<Connection*>(req->data)->on_written(status);
                            });
    if (rc != 0) {
      inflight.clear();
      close();
    }
  }

  void on_written(int status) {
    inflight.clear();
    if (closing) return;
    if (status != 0) {
      close();
      return;
    }
    if (ws != nullptr) {
      pump();
    } else {
      flush();
      if (close_after_write && out.empty() && inflight.empty()) close();
    }
  }

  void start_reading() {
    if (reading || closing) return;
    reading = true;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          *buf = uv_buf_init(g_read_buffer, sizeof g_read_buffer);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          static_cast<Connection*>(s->data)->on_read(n, buf);
        });
  }

  void stop_reading() {
    if (!reading) return;
    reading = false;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
  }

  void on_read(ssize_t n, const uv_buf_t* buf) {
    if (n == 0) return;
    if (n < 0) {
      // EOF or reset. A WebSocket peer that vanishes without a Close gets no Close either.
      close();
      return;
    }
    if (lingering) return;  // discarded: we are only waiting for the peer's EOF
    const auto* data = reinterpret_cast<const uint8_t*>(buf->base);
    if (ws == nullptr) {
      on_http_bytes(data, static_cast<size_t>(n));
    } else {
      on_ws_bytes(data, static_cast<size_t>(n));
    }
  }

  // ---- WebSocket phase ----

  void on_ws_bytes(const uint8_t* data, size_t len) {
    rd = data;
    rd_len = len;
    // wslay reads until our recv callback says WOULDBLOCK, so the buffer is drained here (bytes
    // after a received Close are dropped, as RFC 6455 5.5.1 allows).
    if (wslay_event_recv(ws) != 0) {
      close();
      return;
    }
    rd = nullptr;
    rd_len = 0;
    pump();
  }

  // Moves wslay's queue into our write buffer, writes, applies backpressure and ends the
  // connection once the close handshake is over.
  void pump() {
    if (closing) return;
    if (wslay_event_send(ws) != 0) {
      close();
      return;
    }
    flush();
    if (closing) return;
    if (!wslay_event_want_read(ws) && !wslay_event_want_write(ws) && out.empty() &&
        inflight.empty()) {
      if (wslay_event_get_close_received(ws)) {
        // Both Close frames are through. RFC 6455 7.1.1: the server closes the TCP connection
        // first.
        log("closed");
        close();
      } else {
        linger();
      }
      return;
    }
    const size_t pending = pending_bytes();
    if (pending > kWriteHighMark) {
      stop_reading();
    } else if (pending < kWriteLowMark && wslay_event_want_read(ws)) {
      start_reading();
    }
  }

  // Queues a message and moves it into `out` at once. wslay sends queued control frames before
  // queued data messages, so a Close answered in the same read would otherwise overtake (and
  // cancel) the echoes of the messages before it. wslay_event_send only touches the sending side
  // of the context, so it is safe to call from inside wslay_event_recv's callback.
  // We sent a Close for an error (wslay stops reading then) and the peer may still be sending,
  // e.g. the rest of a too-big message. Closing now would make the kernel answer that data with
  // a reset, which can destroy our Close frame in the peer's receive buffer before it reads it.
  // So: send FIN, discard input until the peer's EOF, and give up after kLingerMs.
  void linger() {
    if (lingering) return;
    lingering = true;
    log("lingering");
    if (uv_shutdown(&shutdown_req, reinterpret_cast<uv_stream_t*>(&tcp),
                    [](uv_shutdown_t*, int) {}) != 0) {
      close();
      return;
    }
    if (!timer_started) {
      uv_timer_init(g_loop, &timer);
      timer.data = this;
      timer_started = true;
      ++open_handles;
    }
    uv_timer_start(
        &timer, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->close(); }, kLingerMs, 0);
    start_reading();
  }

  void queue_message(uint8_t opcode, const uint8_t* msg, size_t len) {
    wslay_event_msg m{opcode, msg, len};
    if (wslay_event_queue_msg(ws, &m) == 0) wslay_event_send(ws);
  }

  static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int, void* user) {
    auto* c = static_cast<Connection*>(user);
    if (c->rd_len == 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    const size_t n = len < c->rd_len ? len : c->rd_len;
    std::memcpy(buf, c->rd, n);
    c->rd += n;
    c->rd_len -= n;
    return static_cast<ssize_t>(n);
  }

  static ssize_t ws_send(wslay_event_context_ptr, const uint8_t* data, size_t len, int,
                         void* user) {
    // Always accepted (see queue_message); memory is bounded by not reading while `out` is above
    // the high mark, so at most one read's worth of echoes (or one message) is added past it.
    auto* c = static_cast<Connection*>(user);
    c->out.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  static void ws_on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg,
                        void* user) {
    auto* c = static_cast<Connection*>(user);
    // Control frames are wslay's: it answers Ping with Pong and Close with the same code.
    if (wslay_is_ctrl_frame(arg->opcode)) return;
    if (!c->chat) {
      c->queue_message(arg->opcode, arg->msg, arg->msg_length);
      return;
    }
    // A copy: closing a member erases it from g_chat. Closed members stay allocated until their
    // close callbacks run, so the pointers remain valid for this loop.
    const std::vector<Connection*> members(g_chat.begin(), g_chat.end());
    for (Connection* peer : members) {
      if (peer->closing || !wslay_event_get_write_enabled(peer->ws)) continue;
      if (peer->pending_bytes() > kMaxChatBacklog) {
        peer->close();  // a reader too slow for the room is dropped, not buffered without end
        continue;
      }
      peer->queue_message(arg->opcode, arg->msg, arg->msg_length);
      if (peer != c) peer->pump();  // the sender is pumped when its own read is done
    }
  }

  void start_websocket(const uint8_t* rest, size_t rest_len) {
    static const wslay_event_callbacks callbacks = {ws_recv, ws_send, nullptr,  nullptr,
                                                    nullptr, nullptr, ws_on_msg};
    wslay_event_context_server_init(&ws, &callbacks, this);
    wslay_event_config_set_max_recv_msg_length(ws, kMaxMessageBytes);
    if (chat) g_chat.insert(this);
    log("upgraded");
    if (g_opts.close_after_ms > 0) {
      uv_timer_init(g_loop, &timer);
      timer.data = this;
      timer_started = true;
      ++open_handles;
      uv_timer_start(
          &timer, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->close(); },
          g_opts.close_after_ms, 0);
    }
    if (rest_len > 0) {
      on_ws_bytes(rest, rest_len);
    } else {
      pump();
    }
  }

  // ---- HTTP phase ----

  void respond(int status, const char* reason, std::string_view body, bool keep_alive) {
    out += "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    out += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    if (status == 426) out += "Sec-WebSocket-Version: 13\r\n";
    if (!keep_alive) out += "Connection: close\r\n";
    out += "\r\n";
    out += body;
    if (!keep_alive) {
      close_after_write = true;
      stop_reading();
    }
    flush();
  }

  void on_http_bytes(const uint8_t* data, size_t len) {
    if (close_after_write) return;
    const auto* begin = reinterpret_cast<const char*>(data);
    const llhttp_errno_t err = llhttp_execute(&parser, begin, len);
    if (err == HPE_OK) return;
    if (err == HPE_PAUSED_UPGRADE) {
      const char* pos = llhttp_get_error_pos(&parser);
      const size_t used = pos != nullptr ? static_cast<size_t>(pos - begin) : len;
      on_upgrade_request(data + used, len - used);
      return;
    }
    if (err == HPE_PAUSED || err == HPE_USER) {
      return;  // a callback already answered: a final response, or a request head too large
    }
    respond(400, "Bad Request", "bad request\n", false);
  }

  void on_upgrade_request(const uint8_t* rest, size_t rest_len) {
    if (!has_token(upgrade, "websocket") || parser.method != HTTP_GET) {
      respond(400, "Bad Request", "bad websocket upgrade\n", false);
      return;
    }
    if (version != "13") {
      respond(426, "Upgrade Required", "unsupported websocket version\n", false);
      return;
    }
    if (!key_is_valid(key)) {
      respond(400, "Bad Request", "bad Sec-WebSocket-Key\n", false);
      return;
    }
    const std::string_view path = std::string_view(url).substr(0, url.find('?'));
    chat = path.size() >= 5 && path.substr(path.size() - 5) == "/chat";
    out +=
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        accept_for_key(key) + "\r\n\r\n";
    start_websocket(rest, rest_len);
  }

  static Connection* of(llhttp_t* p) { return static_cast<Connection*>(p->data); }

  static int on_url(llhttp_t* p, const char* at, size_t len) {
    return of(p)->add_head_bytes(len) ? (of(p)->url.append(at, len), 0) : -1;
  }
  static int on_field(llhttp_t* p, const char* at, size_t len) {
    return of(p)->add_head_bytes(len) ? (of(p)->field.append(at, len), 0) : -1;
  }
  static int on_value(llhttp_t* p, const char* at, size_t len) {
    return of(p)->add_head_bytes(len) ? (of(p)->value.append(at, len), 0) : -1;
  }
  static int on_value_complete(llhttp_t* p) {
    Connection* c = of(p);
    if (iequals(c->field, "upgrade")) c->upgrade = c->value;
    if (iequals(c->field, "connection")) c->connection_hdr = c->value;
    if (iequals(c->field, "sec-websocket-key")) c->key = c->value;
    if (iequals(c->field, "sec-websocket-version")) c->version = c->value;
    c->field.clear();
    c->value.clear();
    return 0;
  }
  static int on_message_begin(llhttp_t* p) {
    Connection* c = of(p);
    c->url.clear();
    c->upgrade.clear();
    c->connection_hdr.clear();
    c->key.clear();
    c->version.clear();
    c->head_bytes = 0;
    return 0;
  }
  static int on_message_complete(llhttp_t* p) {
    Connection* c = of(p);
    if (llhttp_get_upgrade(p) && has_token(c->connection_hdr, "upgrade")) {
      return 0;  // llhttp pauses with HPE_PAUSED_UPGRADE; on_upgrade_request takes over
    }
    const std::string_view path = std::string_view(c->url).substr(0, c->url.find('?'));
    const bool keep_alive = llhttp_should_keep_alive(p) != 0 && !llhttp_get_upgrade(p);
    if (path == "/health") {
      c->respond(200, "OK", "ok\n", keep_alive);
    } else {
      c->respond(200, "OK", "websocket endpoint\n", keep_alive);
    }
    return keep_alive ? 0 : HPE_PAUSED;
  }

  bool add_head_bytes(size_t n) {
    head_bytes += n;
    if (head_bytes <= kMaxRequestHeadBytes) return true;
    respond(431, "Request Header Fields Too Large", "request head too large\n", false);
    return false;
  }

  void start() {
    static llhttp_settings_t settings = [] {
      llhttp_settings_t s;
      llhttp_settings_init(&s);
      s.on_message_begin = on_message_begin;
      s.on_url = on_url;
      s.on_header_field = on_field;
      s.on_header_value = on_value;
      s.on_header_value_complete = on_value_complete;
      s.on_message_complete = on_message_complete;
      return s;
    }();
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
    uv_tcp_nodelay(&tcp, 1);
    start_reading();
  }
};

void maybe_finish_shutdown() {
  if (g_shutting_down && g_connections.empty()) uv_stop(g_loop);
}

void on_signal(uv_signal_t*, int) {
  if (g_shutting_down) return;
  g_shutting_down = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&g_listener), nullptr);
  // Copy: closing a connection erases it from the set.
  const std::unordered_set<Connection*> conns = g_connections;
  for (Connection* c : conns) {
    if (c->ws != nullptr && wslay_event_get_write_enabled(c->ws)) {
      // RFC 6455 7.4.1: 1001, the endpoint is going away.
      wslay_event_queue_close(c->ws, 1001, reinterpret_cast<const uint8_t*>("shutdown"), 8);
      c->pump();
    } else {
      c->close();
    }
  }
  uv_timer_start(
      &g_shutdown_timer, [](uv_timer_t*) { uv_stop(g_loop); }, kShutdownGraceMs, 0);
  maybe_finish_shutdown();
}

void on_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* c = new Connection();
  uv_tcp_init(g_loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    c->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
    return;
  }
  g_connections.insert(c);
  c->start();
}

void raise_fd_limit() {
  // 5,000 concurrent connections need more descriptors than the usual soft limit of 1024.
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int usage(const char* argv0) {
  std::fprintf(
      stderr,
      "usage: %s [--listen ADDR] --port N [--quiet] [--close-after-ms N]\n"
      "  --listen ADDR       address to bind (default 127.0.0.1)\n"
      "  --port N            port to bind; 0 picks a free one (printed at start)\n"
      "  --quiet             no per-connection log lines\n"
      "  --close-after-ms N  drop each connection N ms after its upgrade, without a Close\n",
      argv0);
  return 2;
}

bool parse_number(const char* s, uint64_t max, uint64_t* out) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s, &end, 10);
  if (end == s || *end != '\0' || v > max || s[0] == '-') return false;
  *out = v;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const bool has_value = i + 1 < argc;
    uint64_t n = 0;
    if (arg == "--listen" && has_value) {
      g_opts.listen = argv[++i];
    } else if (arg == "--port" && has_value && parse_number(argv[i + 1], 65535, &n)) {
      g_opts.port = static_cast<int>(n);
      ++i;
    } else if (arg == "--close-after-ms" && has_value && parse_number(argv[i + 1], 1u << 30, &n)) {
      g_opts.close_after_ms = n;
      ++i;
    } else if (arg == "--quiet") {
      g_opts.quiet = true;
    } else {
      return usage(argv[0]);
    }
  }
  if (g_opts.port < 0) return usage(argv[0]);

  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  g_loop = uv_default_loop();
  // Before the "listening" line: a test may signal as soon as it reads it.
  uv_signal_init(g_loop, &g_sigint);
  uv_signal_init(g_loop, &g_sigterm);
  uv_signal_start(&g_sigint, on_signal, SIGINT);
  uv_signal_start(&g_sigterm, on_signal, SIGTERM);
  uv_timer_init(g_loop, &g_shutdown_timer);

  sockaddr_storage addr{};
  if (uv_ip4_addr(g_opts.listen.c_str(), g_opts.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(g_opts.listen.c_str(), g_opts.port, reinterpret_cast<sockaddr_in6*>(&addr)) !=
          0) {
    std::fprintf(stderr, "error ws_server: bad listen address %s\n", g_opts.listen.c_str());
    return 2;
  }
  uv_tcp_init(g_loop, &g_listener);
  int rc = uv_tcp_bind(&g_listener, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&g_listener), 4096, on_connection);
  }
  if (rc != 0) {
    std::fprintf(stderr, "error ws_server: cannot listen on %s:%d: %s\n", g_opts.listen.c_str(),
                 g_opts.port, uv_strerror(rc));
    return 1;
  }
  sockaddr_storage bound{};
  int bound_len = sizeof bound;
  uv_tcp_getsockname(&g_listener, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  const int port =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  std::printf("ws_server listening on %s:%d\n", g_opts.listen.c_str(), port);
  std::fflush(stdout);

  uv_run(g_loop, UV_RUN_DEFAULT);
  // Reached only by shutdown: connections still open are dropped with the process.
  return 0;
}

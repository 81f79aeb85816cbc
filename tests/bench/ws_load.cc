// ws_load: the WebSocket load client of the benchmark suite (tests/bench/run.sh).
//
//   ws_load echo --host H --port N [--tls] [--sni NAME] [--path P] --connections C --size BYTES
//                --duration SECONDS
//   ws_load hold --host H --port N [--tls] [--sni NAME] [--path P] --connections N
//                --hold-seconds S
//
// echo: opens C connections, then each keeps exactly one binary message of BYTES in flight and
// measures its round trip (send queued -> echo fully received). Prints one line:
//   result mode=echo connections=C size=B seconds=S messages=M msgs_per_s=R mb_per_s=X
//          p50_us=A p99_us=B errors=E failed=F
// (mb_per_s counts payload bytes one way, MB = 10^6 bytes; failed = connections that never
// opened; errors = echoes that differ from the message sent, in opcode, length or any byte,
// and connections lost during the run.)
//
// handshake: plain HTTPS, no WebSocket: C connection slots, each repeatedly opens a new TLS
// connection (a full handshake: no session is ever reused), sends "GET PATH" with "Connection:
// close", reads the response to the end and starts over. Prints
//   result mode=handshake connections=C seconds=S requests=N per_s=R p50_us=A p99_us=B errors=E
// (latency = TCP connect to the end of the response; errors = attempts that failed).
//
// hold: opens N connections (at most --concurrency handshakes at a time; with --http each sends
// one keep-alive GET PATH instead of a WebSocket upgrade and is held once answered 200), prints
// "ready OPEN failed=F" when every attempt has finished, then holds them idle until S seconds pass
// or stdin closes, and closes them. Used to measure the proxy's memory per idle connection.
//
// One thread, one libuv loop. TLS runs through memory BIOs (no session reuse: every connection
// is a full handshake). Frames are built and parsed by wslay in client mode (masked frames).

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <uv.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr size_t kReadBufferBytes = 256 * 1024;
constexpr size_t kMaxResponseHead = 16 * 1024;
// Fixed key: the proxies and the backend only check its shape (RFC 6455 4.1); its accept value
// is precomputed so the client does no SHA-1 per connection.
constexpr const char* kWsKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char* kWsAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

enum class Mode { kEcho, kHold, kHandshake };

struct Options {
  Mode mode = Mode::kEcho;
  std::string host = "127.0.0.1";
  int port = -1;
  bool tls = false;
  std::string sni = "localhost";
  std::string path = "/ws";
  int connections = 1;
  size_t size = 64;
  double duration = 5;
  double hold_seconds = 60;
  bool http = false;      // hold: one keep-alive GET per connection instead of a WebSocket upgrade
  int concurrency = 128;  // connection attempts in progress at once
  double connect_timeout = 60;  // seconds for the whole opening phase
};

Options g_opts;
uv_loop_t* g_loop = nullptr;
SSL_CTX* g_ssl_ctx = nullptr;
char g_read_buffer[kReadBufferBytes];
std::string g_payload;
uint64_t g_rng = 0x9e3779b97f4a7c15ull;

// Phase bookkeeping.
int g_started = 0;      // connection attempts begun
int g_in_progress = 0;  // attempts not yet open or failed
int g_open = 0;         // connections that completed the upgrade
int g_failed = 0;       // attempts that failed before the upgrade
int g_lost = 0;         // open connections that ended before we ended them
uint64_t g_errors = 0;  // echoes that differ from what was sent
bool g_measuring = false;
bool g_stopping = false;
uint64_t g_messages = 0;
std::vector<uint64_t> g_latencies_ns;
int g_error_reports = 0;

uv_timer_t g_phase_timer;  // connect timeout, then the duration / hold timer
uv_pipe_t g_stdin;
bool g_stdin_open = false;

void on_phase_done();
void finish();

void report_error(const char* what, const std::string& detail) {
  if (g_error_reports++ < 5) std::fprintf(stderr, "ws_load: %s: %s\n", what, detail.c_str());
}

uint64_t next_random() {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return g_rng;
}

struct Connection {
  enum class State { kConnecting, kTls, kUpgrade, kOpen, kClosed };

  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  State state = State::kConnecting;
  SSL* ssl = nullptr;
  BIO* rbio = nullptr;  // network -> OpenSSL (owned by ssl)
  BIO* wbio = nullptr;  // OpenSSL -> network (owned by ssl)
  wslay_event_context_ptr ws = nullptr;

  std::string head;             // response head while upgrading
  const uint8_t* rd = nullptr;  // plaintext wslay has not consumed yet
  size_t rd_len = 0;
  std::string plain_out;  // plaintext waiting for SSL_write (TLS) or the socket
  std::string net_out;    // bytes waiting for uv_write
  std::string inflight;   // bytes owned by uv_write until its callback
  bool writing = false;
  uint64_t sent_at = 0;
  bool awaiting_echo = false;
  bool got_ok = false;  // handshake mode: the response began with a 200 status line

  ~Connection() {
    if (ws != nullptr) wslay_event_context_free(ws);
    if (ssl != nullptr) SSL_free(ssl);
  }
};

std::vector<Connection*> g_conns;

void close_connection(Connection* c, bool failed, const char* why, const std::string& detail);
void handshake_done(Connection* c);

void on_write(uv_write_t* req, int status);

void flush_net(Connection* c) {
  if (c->writing || c->state == Connection::State::kClosed) return;
  if (c->ssl != nullptr && !c->plain_out.empty() && SSL_is_init_finished(c->ssl)) {
    int n = SSL_write(c->ssl, c->plain_out.data(), static_cast<int>(c->plain_out.size()));
    if (n <= 0) {
      close_connection(c, c->state != Connection::State::kOpen, "SSL_write", "failed");
      return;
    }
    c->plain_out.erase(0, static_cast<size_t>(n));
  } else if (c->ssl == nullptr && !c->plain_out.empty()) {
    if (c->net_out.empty()) {
      c->net_out.swap(c->plain_out);
    } else {
      c->net_out += c->plain_out;
      c->plain_out.clear();
    }
  }
  if (c->wbio != nullptr) {
    size_t pending = BIO_ctrl_pending(c->wbio);
    if (pending > 0) {
      size_t old = c->net_out.size();
      c->net_out.resize(old + pending);
      int n = BIO_read(c->wbio, c->net_out.data() + old, static_cast<int>(pending));
      c->net_out.resize(old + static_cast<size_t>(std::max(n, 0)));
    }
  }
  if (c->net_out.empty()) return;
  c->inflight.swap(c->net_out);
  c->net_out.clear();
  uv_buf_t buf = uv_buf_init(c->inflight.data(), static_cast<unsigned>(c->inflight.size()));
  c->writing = true;
  int rc = uv_write(&c->write_req, reinterpret_cast<uv_stream_t*>(&c->tcp), &buf, 1, on_write);
  if (rc != 0) {
    c->writing = false;
    close_connection(c, c->state != Connection::State::kOpen, "uv_write", uv_strerror(rc));
  }
}

void on_write(uv_write_t* req, int status) {
  Connection* c = static_cast<Connection*>(req->data);
  c->writing = false;
  c->inflight.clear();
  if (status != 0) {
    close_connection(c, c->state != Connection::State::kOpen, "write", uv_strerror(status));
    return;
  }
  flush_net(c);
}

void send_message(Connection* c) {
  wslay_event_msg msg{WSLAY_BINARY_FRAME, reinterpret_cast<const uint8_t*>(g_payload.data()),
                      g_payload.size()};
  if (wslay_event_queue_msg(c->ws, &msg) != 0) {
    close_connection(c, false, "wslay_event_queue_msg", "failed");
    return;
  }
  c->sent_at = uv_hrtime();
  c->awaiting_echo = true;
}

ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int, void* user) {
  Connection* c = static_cast<Connection*>(user);
  if (c->rd_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = std::min(len, c->rd_len);
  std::memcpy(buf, c->rd, n);
  c->rd += n;
  c->rd_len -= n;
  return static_cast<ssize_t>(n);
}

ssize_t ws_send(wslay_event_context_ptr, const uint8_t* data, size_t len, int, void* user) {
  Connection* c = static_cast<Connection*>(user);
  c->plain_out.append(reinterpret_cast<const char*>(data), len);
  return static_cast<ssize_t>(len);
}

int ws_genmask(wslay_event_context_ptr, uint8_t* buf, size_t len, void*) {
  while (len > 0) {
    uint64_t r = next_random();
    size_t n = std::min(len, sizeof r);
    std::memcpy(buf, &r, n);
    buf += n;
    len -= n;
  }
  return 0;
}

void ws_on_msg(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user) {
  Connection* c = static_cast<Connection*>(user);
  if (wslay_is_ctrl_frame(arg->opcode)) return;  // wslay answers pings and closes itself
  if (!c->awaiting_echo) return;
  c->awaiting_echo = false;
  if (!g_measuring) return;
  // A proxy that damaged a message must not be counted as fast: compare every byte (at S6's
  // 64 KiB and a few thousand echoes a second, a memcmp is noise beside the TLS work).
  if (arg->opcode != WSLAY_BINARY_FRAME || arg->msg_length != g_payload.size() ||
      std::memcmp(arg->msg, g_payload.data(), g_payload.size()) != 0) {
    ++g_errors;
  } else {
    ++g_messages;
    g_latencies_ns.push_back(uv_hrtime() - c->sent_at);
  }
  send_message(c);
}

void start_ws(Connection* c) {
  static const wslay_event_callbacks callbacks = {ws_recv, ws_send, ws_genmask, nullptr,
                                                  nullptr, nullptr, ws_on_msg};
  if (wslay_event_context_client_init(&c->ws, &callbacks, c) != 0) {
    close_connection(c, true, "wslay", "context init failed");
    return;
  }
  c->state = Connection::State::kOpen;
  --g_in_progress;
  ++g_open;
}

void feed_ws(Connection* c, const char* data, size_t len) {
  c->rd = reinterpret_cast<const uint8_t*>(data);
  c->rd_len = len;
  if (wslay_event_recv(c->ws) != 0) {
    close_connection(c, false, "wslay_event_recv", "protocol error");
    return;
  }
  if (wslay_event_get_close_received(c->ws)) {
    close_connection(c, false, "connection", "closed by peer");
    return;
  }
  if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
    close_connection(c, false, "wslay_event_send", "failed");
  }
}

void send_upgrade(Connection* c) {
  c->state = Connection::State::kUpgrade;
  if (g_opts.http) {
    c->plain_out += "GET " + g_opts.path + " HTTP/1.1\r\nHost: " + g_opts.sni + "\r\n\r\n";
    return;
  }
  if (g_opts.mode == Mode::kHandshake) {
    c->plain_out +=
        "GET " + g_opts.path + " HTTP/1.1\r\nHost: " + g_opts.sni + "\r\nConnection: close\r\n\r\n";
    return;
  }
  c->plain_out += "GET " + g_opts.path + " HTTP/1.1\r\nHost: " + g_opts.sni +
                  "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + kWsKey +
                  "\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

// Plaintext from the peer: the upgrade response first, then WebSocket frames.
void on_plaintext(Connection* c, const char* data, size_t len) {
  if (c->state == Connection::State::kOpen) {
    if (!g_opts.http) feed_ws(c, data, len);  // --http: the rest of the body, not kept
    return;
  }
  if (c->state != Connection::State::kUpgrade) return;
  if (g_opts.mode == Mode::kHandshake) {
    // Keep only the start of the response: the status line is all that is checked.
    if (c->head.size() < 16) c->head.append(data, std::min(len, 16 - c->head.size()));
    c->got_ok = c->head.starts_with("HTTP/1.1 200");
    return;
  }
  c->head.append(data, len);
  size_t end = c->head.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c->head.size() > kMaxResponseHead) close_connection(c, true, "upgrade", "head too big");
    return;
  }
  std::string_view head(c->head.data(), end);
  if (g_opts.http) {
    // A kept-alive HTTPS connection after one answered request: held from here on.
    if (!head.starts_with("HTTP/1.1 200")) {
      close_connection(c, true, "request", std::string(head.substr(0, head.find('\r'))));
      return;
    }
    c->head = std::string();
    c->state = Connection::State::kOpen;
    --g_in_progress;
    ++g_open;
    on_phase_done();
    return;
  }
  if (!head.starts_with("HTTP/1.1 101") || head.find(kWsAccept) == std::string_view::npos) {
    close_connection(c, true, "upgrade refused", std::string(head.substr(0, head.find('\r'))));
    return;
  }
  std::string rest = c->head.substr(end + 4);
  c->head = std::string();
  start_ws(c);
  if (c->state == Connection::State::kOpen && !rest.empty()) feed_ws(c, rest.data(), rest.size());
  if (c->state == Connection::State::kOpen && g_measuring) send_message(c);
  on_phase_done();
}

void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  *buf = uv_buf_init(g_read_buffer, sizeof g_read_buffer);
}

void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  Connection* c = static_cast<Connection*>(stream->data);
  if (nread < 0) {
    if (g_opts.mode == Mode::kHandshake && nread == UV_EOF) {
      handshake_done(c);
      return;
    }
    close_connection(c, c->state != Connection::State::kOpen, "read",
                     nread == UV_EOF ? "connection closed" : uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  if (c->ssl == nullptr) {
    on_plaintext(c, buf->base, static_cast<size_t>(nread));
  } else {
    BIO_write(c->rbio, buf->base, static_cast<int>(nread));
    if (c->state == Connection::State::kTls) {
      int rc = SSL_do_handshake(c->ssl);
      if (rc != 1) {
        int err = SSL_get_error(c->ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
          char msg[256];
          ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
          close_connection(c, true, "TLS handshake", msg);
          return;
        }
        flush_net(c);
        return;
      }
      send_upgrade(c);
    }
    // One plaintext chunk at a time; c may close inside on_plaintext.
    static char plain[kReadBufferBytes];
    while (c->state == Connection::State::kUpgrade || c->state == Connection::State::kOpen) {
      int n = SSL_read(c->ssl, plain, sizeof plain);
      if (n <= 0) {
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ) break;
        if (g_opts.mode == Mode::kHandshake && err == SSL_ERROR_ZERO_RETURN) {
          handshake_done(c);
          return;
        }
        close_connection(c, c->state != Connection::State::kOpen, "SSL_read",
                         err == SSL_ERROR_ZERO_RETURN ? "close_notify" : "error");
        return;
      }
      on_plaintext(c, plain, static_cast<size_t>(n));
    }
  }
  if (c->state != Connection::State::kClosed) flush_net(c);
}

// Handshake mode: the server closed after its response; count it and start the next one.
void handshake_done(Connection* c) {
  if (g_measuring) {
    if (c->got_ok) {
      ++g_messages;
      g_latencies_ns.push_back(uv_hrtime() - c->sent_at);
    } else {
      ++g_errors;
      report_error("response", c->head.empty() ? "none" : c->head);
    }
  }
  close_connection(c, false, "", "");
}

void on_connect(uv_connect_t* req, int status) {
  Connection* c = static_cast<Connection*>(req->data);
  if (c->state == Connection::State::kClosed) return;
  if (status != 0) {
    close_connection(c, true, "connect", uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp), on_alloc, on_read);
  if (g_opts.tls) {
    c->state = Connection::State::kTls;
    c->ssl = SSL_new(g_ssl_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_tlsext_host_name(c->ssl, g_opts.sni.c_str());
    SSL_set_connect_state(c->ssl);
    SSL_do_handshake(c->ssl);
  } else {
    send_upgrade(c);
  }
  flush_net(c);
}

void start_connection() {
  Connection* c = new Connection();
  c->sent_at = uv_hrtime();
  g_conns.push_back(c);
  ++g_started;
  ++g_in_progress;
  uv_tcp_init(g_loop, &c->tcp);
  c->tcp.data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  sockaddr_in addr;
  uv_ip4_addr(g_opts.host.c_str(), g_opts.port, &addr);
  int rc = uv_tcp_connect(&c->connect_req, &c->tcp, reinterpret_cast<const sockaddr*>(&addr),
                          on_connect);
  if (rc != 0) close_connection(c, true, "connect", uv_strerror(rc));
}

void start_more() {
  while (!g_stopping && g_started < g_opts.connections && g_in_progress < g_opts.concurrency) {
    start_connection();
  }
}

void close_connection(Connection* c, bool failed, const char* why, const std::string& detail) {
  if (c->state == Connection::State::kClosed) return;
  bool was_open = c->state == Connection::State::kOpen;
  c->state = Connection::State::kClosed;
  if (g_opts.mode == Mode::kHandshake) {
    // A slot never ends while measuring: a failed or finished connection is replaced.
    if (failed && g_measuring) {
      ++g_errors;
      report_error(why, detail);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
    std::erase(g_conns, c);
    if (g_measuring) start_connection();
    return;
  }
  if (!g_stopping) {
    if (failed || !was_open) {
      ++g_failed;
      --g_in_progress;
    } else {
      ++g_lost;
      --g_open;
    }
    report_error(why, detail);
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
           [](uv_handle_t* h) { delete static_cast<Connection*>(h->data); });
  std::erase(g_conns, c);
  if (!g_stopping && !was_open) on_phase_done();
}

double percentile_us(std::vector<uint64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

uint64_t g_measure_start = 0;

void on_measure_end(uv_timer_t*) {
  g_measuring = false;
  double seconds = static_cast<double>(uv_hrtime() - g_measure_start) / 1e9;
  if (g_opts.mode == Mode::kHandshake) {
    std::printf("result mode=handshake connections=%d seconds=%.3f requests=%" PRIu64
                " per_s=%.1f p50_us=%.1f p99_us=%.1f errors=%" PRIu64 "\n",
                g_opts.connections, seconds, g_messages, static_cast<double>(g_messages) / seconds,
                percentile_us(g_latencies_ns, 0.50), percentile_us(g_latencies_ns, 0.99), g_errors);
    std::fflush(stdout);
    finish();
    return;
  }
  double rate = static_cast<double>(g_messages) / seconds;
  double mb = rate * static_cast<double>(g_payload.size()) / 1e6;
  double p50 = percentile_us(g_latencies_ns, 0.50);
  double p99 = percentile_us(g_latencies_ns, 0.99);
  std::printf("result mode=echo connections=%d size=%zu seconds=%.3f messages=%" PRIu64
              " msgs_per_s=%.1f mb_per_s=%.2f p50_us=%.1f p99_us=%.1f errors=%" PRIu64
              " failed=%d\n",
              g_opts.connections, g_payload.size(), seconds, g_messages, rate, mb, p50, p99,
              g_errors + static_cast<uint64_t>(g_lost), g_failed);
  std::fflush(stdout);
  finish();
}

void on_hold_end(uv_timer_t*) { finish(); }

void on_stdin_read(uv_stream_t*, ssize_t nread, const uv_buf_t*) {
  if (nread < 0) finish();
}

void on_connect_timeout(uv_timer_t*) {
  report_error("opening", "timed out; going on with the connections that opened");
  for (Connection* c : std::vector<Connection*>(g_conns)) {
    if (c->state != Connection::State::kOpen) close_connection(c, true, "opening", "timed out");
  }
  g_started = g_opts.connections;  // start no more
  on_phase_done();
}

// Called whenever an attempt finishes; starts more, and moves on once every attempt is done.
void on_phase_done() {
  if (g_stopping || g_measuring || g_measure_start != 0) return;
  start_more();
  if (g_started < g_opts.connections || g_in_progress > 0) return;
  uv_timer_stop(&g_phase_timer);
  if (g_opts.mode == Mode::kHold) {
    std::printf("ready %d failed=%d\n", g_open, g_failed);
    std::fflush(stdout);
    g_measure_start = uv_hrtime();
    uv_timer_start(&g_phase_timer, on_hold_end, static_cast<uint64_t>(g_opts.hold_seconds * 1000),
                   0);
    if (uv_guess_handle(0) == UV_NAMED_PIPE || uv_guess_handle(0) == UV_TTY) {
      if (uv_pipe_init(g_loop, &g_stdin, 0) == 0 && uv_pipe_open(&g_stdin, 0) == 0) {
        g_stdin_open = true;
        uv_read_start(reinterpret_cast<uv_stream_t*>(&g_stdin), on_alloc, on_stdin_read);
      }
    }
    return;
  }
  if (g_open == 0) {
    std::printf(
        "result mode=echo connections=%d size=%zu seconds=0 messages=0 msgs_per_s=0 "
        "mb_per_s=0 p50_us=0 p99_us=0 errors=0 failed=%d\n",
        g_opts.connections, g_payload.size(), g_failed);
    finish();
    return;
  }
  g_latencies_ns.reserve(1 << 20);
  g_measuring = true;
  g_measure_start = uv_hrtime();
  for (Connection* c : g_conns) {
    if (c->state == Connection::State::kOpen) {
      send_message(c);
      if (c->state == Connection::State::kOpen && wslay_event_send(c->ws) == 0) flush_net(c);
    }
  }
  uv_timer_start(&g_phase_timer, on_measure_end, static_cast<uint64_t>(g_opts.duration * 1000), 0);
}

void finish() {
  if (g_stopping) return;
  g_stopping = true;
  g_measuring = false;
  uv_timer_stop(&g_phase_timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&g_phase_timer), nullptr);
  if (g_stdin_open) uv_close(reinterpret_cast<uv_handle_t*>(&g_stdin), nullptr);
  for (Connection* c : std::vector<Connection*>(g_conns)) close_connection(c, false, "", "");
}

[[noreturn]] void usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "ws_load: %s\n", error);
  std::fputs(
      "usage: ws_load echo --port N [--host H] [--tls] [--sni NAME] [--path P]\n"
      "                    --connections C --size BYTES --duration SECONDS\n"
      "       ws_load hold --port N [--host H] [--tls] [--sni NAME] [--path P]\n"
      "                    --connections N --hold-seconds S [--concurrency K] [--http]\n"
      "       ws_load handshake --port N --tls [--host H] [--sni NAME] [--path P]\n"
      "                    --connections C --duration SECONDS\n",
      stderr);
  std::exit(2);
}

double number(const char* flag, const char* text, double min, double max) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    std::string msg = std::string(flag) + ": bad value \"" + text + "\"";
    usage(msg.c_str());
  }
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  if (argc < 2) usage(nullptr);
  std::string_view mode = argv[1];
  if (mode == "echo") {
    o.mode = Mode::kEcho;
  } else if (mode == "hold") {
    o.mode = Mode::kHold;
  } else if (mode == "handshake") {
    o.mode = Mode::kHandshake;
  } else {
    usage("the first argument is the mode: echo, handshake or hold");
  }
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) usage((std::string(a) + " needs a value").c_str());
      return argv[++i];
    };
    if (a == "--host") {
      o.host = value();
    } else if (a == "--port") {
      o.port = static_cast<int>(number("--port", value(), 1, 65535));
    } else if (a == "--tls") {
      o.tls = true;
    } else if (a == "--sni") {
      o.sni = value();
    } else if (a == "--path") {
      o.path = value();
    } else if (a == "--connections") {
      o.connections = static_cast<int>(number("--connections", value(), 1, 1000000));
    } else if (a == "--size") {
      o.size = static_cast<size_t>(number("--size", value(), 1, 64 << 20));
    } else if (a == "--duration") {
      o.duration = number("--duration", value(), 0.1, 86400);
    } else if (a == "--http") {
      o.http = true;
    } else if (a == "--hold-seconds") {
      o.hold_seconds = number("--hold-seconds", value(), 0, 86400);
    } else if (a == "--concurrency") {
      o.concurrency = static_cast<int>(number("--concurrency", value(), 1, 100000));
    } else if (a == "--connect-timeout") {
      o.connect_timeout = number("--connect-timeout", value(), 1, 3600);
    } else {
      usage((std::string("unknown option ") + std::string(a)).c_str());
    }
  }
  if (o.port < 0) usage("--port is required");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  g_opts = parse(argc, argv);
  // Thousands of sockets: take the hard limit (run.sh raises the shell's too).
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  signal(SIGPIPE, SIG_IGN);
  // Not one repeated byte: a pattern that does not repeat every few bytes, so that bytes
  // moved within a message or a frame boundary in the wrong place do not compare equal.
  g_payload.resize(g_opts.size);
  for (size_t i = 0; i < g_payload.size(); ++i)
    g_payload[i] = static_cast<char>((i * 7 + i / 251) % 251);
  g_rng ^= uv_hrtime();

  if (g_opts.tls) {
    g_ssl_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(g_ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(g_ssl_ctx, SSL_VERIFY_NONE, nullptr);  // benchmark: self-signed cert
    SSL_CTX_set_session_cache_mode(g_ssl_ctx, SSL_SESS_CACHE_OFF);
    // Our own write buffer already batches; OpenSSL need not keep 34 KiB per idle connection.
    SSL_CTX_set_mode(g_ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
  }

  g_loop = uv_default_loop();
  uv_timer_init(g_loop, &g_phase_timer);
  if (g_opts.mode == Mode::kHandshake) {
    if (g_opts.path == "/ws") g_opts.path = "/small";
    g_latencies_ns.reserve(1 << 20);
    g_measuring = true;
    g_measure_start = uv_hrtime();
    for (int i = 0; i < g_opts.connections; ++i) start_connection();
    uv_timer_start(&g_phase_timer, on_measure_end, static_cast<uint64_t>(g_opts.duration * 1000),
                   0);
    uv_run(g_loop, UV_RUN_DEFAULT);
    uv_loop_close(g_loop);
    if (g_ssl_ctx != nullptr) SSL_CTX_free(g_ssl_ctx);
    return 0;
  }
  uv_timer_start(&g_phase_timer, on_connect_timeout,
                 static_cast<uint64_t>(g_opts.connect_timeout * 1000), 0);
  start_more();
  uv_run(g_loop, UV_RUN_DEFAULT);
  uv_loop_close(g_loop);
  if (g_ssl_ctx != nullptr) SSL_CTX_free(g_ssl_ctx);
  if (g_opts.mode == Mode::kEcho && g_failed > 0) return 1;
  return 0;
}

#include "proxy/admin_server.h"

#include <arpa/inet.h>
#include <llhttp.h>

#include <algorithm>
#include <string_view>

#include "proxy/http_head.h"
#include "proxy/log.h"
#include "proxy/status_page.h"
#include "proxy/stream_writer.h"
#include "proxy/tcp_listener.h"

namespace portico {
namespace {

constexpr uint64_t kAdminTimeoutMs = 10'000;
constexpr size_t kMaxAdminHeadBytes = 8 * 1024;
// A scraper and a health checker need one or two at a time. The admin listener's connections
// are not in --max-connections: this cap keeps them within the file descriptors main.cc sets
// aside (kReserved), so that idle connections to it cannot starve the TLS listener.
constexpr size_t kMaxAdminConnections = 16;

const std::vector<Cidr>& loopback_ranges() {
  static const std::vector<Cidr> ranges = {*Cidr::parse("127.0.0.0/8"), *Cidr::parse("::1")};
  return ranges;
}

bool is_port(std::string_view text) {
  return !text.empty() && text.size() <= 5 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool admin_client_is_loopback(const sockaddr_storage& peer) {
  for (const Cidr& cidr : loopback_ranges()) {
    if (cidr.contains(peer)) return true;
  }
  return false;
}

bool admin_client_allowed(const sockaddr_storage& peer, const std::vector<Cidr>& allow) {
  if (admin_client_is_loopback(peer)) return true;
  for (const Cidr& cidr : allow) {
    if (cidr.contains(peer)) return true;
  }
  return false;
}

bool admin_host_allowed(std::string_view host) {
  if (host.empty()) return true;
  std::string name;
  int family = AF_INET;
  if (host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    name = host.substr(1, close - 1);
    host.remove_prefix(close + 1);
    family = AF_INET6;
  } else {
    size_t colon = host.find(':');
    name = host.substr(0, colon);
    host.remove_prefix(colon == std::string_view::npos ? host.size() : colon);
  }
  // ":" with an empty port is allowed (RFC 3986 3.2.3), and so is "localhost." (the root).
  if (!host.empty() && !(host.front() == ':' && (host.size() == 1 || is_port(host.substr(1))))) {
    return false;
  }
  if (family == AF_INET && (iequals(name, "localhost") || iequals(name, "localhost."))) return true;
  in6_addr address;
  return inet_pton(family, name.c_str(), &address) == 1;
}

bool LogLimiter::allow(uint64_t now_ms, uint64_t* unlogged) {
  if (logged_ && now_ms < next_ms_) {
    ++unlogged_;
    return false;
  }
  logged_ = true;
  next_ms_ = now_ms + 1000;
  *unlogged = unlogged_;
  unlogged_ = 0;
  return true;
}

// One admin client. It owns its two handles and frees itself in the last close callback.
struct AdminServer::Connection {
  explicit Connection(AdminServer* s) : server(s) {
    uv_tcp_init(s->loop_, &tcp);
    uv_timer_init(s->loop_, &timer);
    tcp.data = timer.data = write_req.data = this;
    llhttp_settings_init(&settings);
    settings.on_url = &Connection::on_url;
    settings.on_header_field = &Connection::on_header_field;
    settings.on_header_value = &Connection::on_header_value;
    settings.on_header_value_complete = &Connection::on_header_value_complete;
    settings.on_headers_complete = &Connection::on_headers_complete;
    settings.on_message_complete = &Connection::on_message_complete;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
    next = s->connections_;
    if (next) next->prev = this;
    s->connections_ = this;
    ++s->open_connections_;
  }

  void close() {
    if (closing) return;
    closing = true;
    if (prev) {
      prev->next = next;
    } else if (server) {
      server->connections_ = next;
    }
    if (next) next->prev = prev;
    if (server) --server->open_connections_;
    server = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), &Connection::on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), &Connection::on_closed);
  }

  static void on_closed(uv_handle_t* handle) {
    auto* c = static_cast<Connection*>(handle->data);
    if (--c->open_handles == 0) delete c;
  }

  static void on_timeout(uv_timer_t* timer) { static_cast<Connection*>(timer->data)->close(); }

  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
    auto* c = static_cast<Connection*>(stream->data);
    if (nread < 0) {
      c->close();
      return;
    }
    if (nread == 0 || c->responded) return;
    c->parse(buf->base, static_cast<size_t>(nread));
  }

  void parse(const char* data, size_t len) {
    llhttp_errno_t err = llhttp_execute(&parser, data, len);
    if (!head_measured) {
      // Every byte up to the head's empty line counts against the limit, whitespace included
      // (on_headers_complete pauses the parser there, so the body is not counted), or up to
      // the byte that made the head malformed.
      const char* head_end = err == HPE_OK ? data + len : llhttp_get_error_pos(&parser);
      head_bytes += static_cast<size_t>(head_end - data);
      if (head_bytes > kMaxAdminHeadBytes || url_too_long) {
        respond(url_too_long ? 414 : 431, "text/plain", "request head too large\n");
        return;
      }
      if (head_complete) {
        head_measured = true;
        llhttp_resume(&parser);
        err = llhttp_execute(&parser, head_end, static_cast<size_t>(data + len - head_end));
      }
    }
    if (err == HPE_PAUSED) return;  // answered
    if (err != HPE_OK) respond(400, "text/plain", "bad request\n");
  }

  static int on_url(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<Connection*>(p->data);
    c->url.append(at, len);
    // The TLS port's answer to a target above its head limit (RFC 9110 section 15.5.15).
    c->url_too_long = c->url.size() > kMaxAdminHeadBytes;
    return c->url_too_long ? -1 : 0;
  }

  // A header's name and value may come in pieces, split across reads.
  static int on_header_field(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<Connection*>(p->data);
    c->header_name.append(at, std::min(len, kMaxAdminHeadBytes - c->header_name.size()));
    return 0;
  }

  static int on_header_value(llhttp_t* p, const char* at, size_t len) {
    auto* c = static_cast<Connection*>(p->data);
    c->header_value.append(at, std::min(len, kMaxAdminHeadBytes - c->header_value.size()));
    return 0;
  }

  static int on_header_value_complete(llhttp_t* p) {
    auto* c = static_cast<Connection*>(p->data);
    if (iequals(c->header_name, "host")) {
      if (c->host_seen) return -1;  // two Hosts: 400 (RFC 9112 section 3.2)
      c->host_seen = true;
      // Without the whitespace around it, which is not part of a field value (RFC 9110 5.5).
      std::string_view value = c->header_value;
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
        value.remove_suffix(1);
      }
      c->host = value;
    }
    c->header_name.clear();
    c->header_value.clear();
    return 0;
  }

  static int on_headers_complete(llhttp_t* p) {
    static_cast<Connection*>(p->data)->head_complete = true;
    return HPE_PAUSED;  // for parse() to measure the head
  }

  static int on_message_complete(llhttp_t* p) {
    auto* c = static_cast<Connection*>(p->data);
    // HEAD as GET without the body: RFC 9110 section 9.1 asks every server for both.
    c->head_only = p->method == HTTP_HEAD;
    c->answer(p->method == HTTP_GET || p->method == HTTP_HEAD);
    return HPE_PAUSED;
  }

  void answer(bool get) {
    if (!server) return;
    // A query string does not change what is asked for (a health checker may add one).
    url.resize(std::min(url.size(), url.find('?')));
    if (from_loopback && !admin_host_allowed(host)) {
      respond(421, "text/plain",
              "the admin listener answers only a Host that is an IP address or localhost\n");
    } else if (!get) {
      respond(405, "text/plain", "only GET and HEAD\n");
    } else if (url == "/metrics") {
      respond(200, "text/plain; version=0.0.4; charset=utf-8", server->render_metrics_());
    } else if (url == "/healthz") {
      respond(200, "text/plain", "ok\n");
    } else if (url == "/") {
      respond(200, "text/html; charset=utf-8", status_page_html());
    } else if (url == "/status.json") {
      respond(200, "application/json", server->render_status_());
    } else {
      respond(404, "text/plain", "not found\n");
    }
  }

  void respond(int status, std::string_view type, std::string_view body) {
    if (responded || closing) return;
    responded = true;
    const char* reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 414 ? "URI Too Long"
                         : status == 421 ? "Misdirected Request"
                         : status == 431 ? "Request Header Fields Too Large"
                                         : "Bad Request";
    out = str_cat("HTTP/1.1 ", status, " ", reason, "\r\nContent-Type: ", type,
                  "\r\nContent-Length: ", body.size(), status == 405 ? "\r\nAllow: GET, HEAD" : "",
                  "\r\nConnection: close\r\n\r\n");
    if (!head_only) out.append(body);
    uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    if (uv_write(&write_req, reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1,
                 &Connection::on_written) != 0) {
      close();
    }
  }

  // One request per connection: once the answer is out, the connection ends.
  static void on_written(uv_write_t* req, int) { static_cast<Connection*>(req->data)->close(); }

  AdminServer* server;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t write_req;
  int open_handles = 2;
  llhttp_settings_t settings;
  llhttp_t parser;
  std::string url;
  bool url_too_long = false;
  size_t head_bytes = 0;
  bool head_complete = false;  // on_headers_complete ran
  bool head_measured = false;  // and parse() has counted the head's bytes
  std::string header_name;     // the header being read
  std::string header_value;
  std::string host;
  bool host_seen = false;
  std::string out;  // the response; uv_write keeps pointing at it until on_written
  bool responded = false;
  bool head_only = false;     // a HEAD request: the head of the GET answer, no body
  bool from_loopback = true;  // Host is checked for loopback clients (admin_host_allowed)
  bool closing = false;
  Connection* prev = nullptr;
  Connection* next = nullptr;
};

AdminServer::AdminServer(uv_loop_t* loop, std::vector<Cidr> allow,
                         std::function<std::string()> render_metrics,
                         std::function<std::string()> render_status)
    : loop_(loop),
      allow_(std::move(allow)),
      render_metrics_(std::move(render_metrics)),
      render_status_(std::move(render_status)) {
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listener_open_ = true;
}

AdminServer::~AdminServer() = default;

bool AdminServer::listen(const std::string& address, uint16_t port, std::string* error) {
  if (!listen_tcp(&listener_, address, port, 64, &on_connection, "--admin", error)) return false;
  log_listening(&listener_, "admin");
  return true;
}

void AdminServer::close() {
  if (listener_open_) {
    listener_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  }
  while (connections_) connections_->close();
}

void AdminServer::on_connection(uv_stream_t* listener, int status) {
  auto* server = static_cast<AdminServer*>(listener->data);
  if (status < 0) return;
  auto* conn = new Connection(server);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&conn->tcp)) != 0) {
    conn->close();
    return;
  }
  // Decided here, before a byte is read, so that a peer that may not be served holds no file
  // descriptor past this loop iteration.
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&conn->tcp, reinterpret_cast<sockaddr*>(&peer), &len) != 0) {
    conn->close();  // the client reset before the accept: nobody to name in a log line
    return;
  }
  uint64_t unlogged = 0;
  if (!admin_client_allowed(peer, server->allow_)) {
    conn->close();
    if (server->refused_log_.allow(uv_now(server->loop_), &unlogged)) {
      log_info("admin", "refused client=", address_text(peer), " unlogged_refusals=", unlogged);
    }
    return;
  }
  conn->from_loopback = admin_client_is_loopback(peer);
  if (server->open_connections_ > kMaxAdminConnections) {
    // The connection that has waited longest without sending a byte gives way (the list runs
    // from the newest), so that idle connections cannot lock a health checker out; only when
    // every one is busy is the newcomer refused.
    Connection* silent = nullptr;
    for (Connection* c = conn->next; c != nullptr; c = c->next) {
      if (c->head_bytes == 0 && !c->responded) silent = c;
    }
    Connection* closed = silent != nullptr ? silent : conn;
    closed->close();
    if (server->over_limit_log_.allow(uv_now(server->loop_), &unlogged)) {
      log_warn("admin",
               silent != nullptr ? "closed the longest-silent connection to make room"
                                 : "closed a connection over the limit",
               " client=", address_text(peer), " limit=", kMaxAdminConnections,
               " unlogged_closes=", unlogged);
    }
    if (closed == conn) return;
  }
  uv_timer_start(&conn->timer, &Connection::on_timeout, kAdminTimeoutMs, 0);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&conn->tcp), &alloc_from_loop_buffer,
                &Connection::on_read);
}

}  // namespace portico

#pragma once

// The admin listener (--admin): plain HTTP on the worker's loop, GET /metrics (Prometheus text
// format) and GET /healthz. One request per connection, small bounded buffers, and a short
// timeout: it is for a scraper and a health checker, not for the internet, so only loopback
// clients (and --admin-allow ranges) are served: anyone else is closed as soon as accepted.

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/cidr.h"

namespace portico {

// Loopback (127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6) or one of `allow`.
bool admin_client_allowed(const sockaddr_storage& peer, const std::vector<Cidr>& allow);

// Loopback only (127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6).
bool admin_client_is_loopback(const sockaddr_storage& peer);

// A Host header the admin listener answers from a loopback client: an IP literal or
// `localhost`, with or without a port, or empty. A DNS name is refused (421) so that a web page
// cannot read the listener through a name it rebinds to 127.0.0.1 (DNS rebinding): the
// browser would send that name as Host. Clients admitted by --admin-allow (a Prometheus
// scraping `portico:9100` in a compose network) may use any name: the operator chose them.
bool admin_host_allowed(std::string_view host);

// At most one log line a second for an event a peer can repeat at will (a refused connection),
// so that a flood cannot fill the log; the line says how many went unlogged before it.
class LogLimiter {
 public:
  // True when a line may be written at `now_ms`; then *unlogged is the number of events since
  // the last line that were not logged.
  bool allow(uint64_t now_ms, uint64_t* unlogged);

 private:
  uint64_t next_ms_ = 0;
  uint64_t unlogged_ = 0;
  bool logged_ = false;
};

class AdminServer {
 public:
  // `render_metrics` produces the /metrics body when a scrape arrives, `render_status` the
  // /status.json that the status page (GET /) polls.
  AdminServer(uv_loop_t* loop, std::vector<Cidr> allow, std::function<std::string()> render_metrics,
              std::function<std::string()> render_status);
  ~AdminServer();  // close() must have run and the loop must have run its close callbacks
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds ADDR:PORT (port 0 picks one). On failure returns false with a one-line reason.
  bool listen(const std::string& address, uint16_t port, std::string* error);
  // Closes the listener and every open admin connection.
  void close();

 private:
  struct Connection;
  static void on_connection(uv_stream_t* server, int status);

  uv_loop_t* loop_;
  std::vector<Cidr> allow_;
  std::function<std::string()> render_metrics_;
  std::function<std::string()> render_status_;
  uv_tcp_t listener_;
  bool listener_open_ = false;
  Connection* connections_ = nullptr;  // open ones, to close them with the server
  size_t open_connections_ = 0;        // the length of that list
  LogLimiter refused_log_;
  LogLimiter over_limit_log_;
};

}  // namespace portico

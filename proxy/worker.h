#pragma once

// A worker: one libuv loop, its listeners, and the connections they accept. Everything a
// connection touches lives on this loop, so workers share nothing mutable.

#include <uv.h>

#include <memory>
#include <string>

#include "proxy/stream_writer.h"
#include "proxy/worker_context.h"

namespace portico {

class Worker {
 public:
  Worker(const Config& config, const AccessLog& access_log, std::shared_ptr<SSL_CTX> ssl_ctx,
         std::shared_ptr<const RouteTable> routes);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds the TLS listener and, unless --http-port 0, the redirect listener. On failure returns
  // false with a one-line reason.
  bool listen(std::string* error);
  // Handles SIGTERM/SIGINT (graceful stop; a second one exits at once) and SIGHUP (reload the
  // route file) on this loop.
  void handle_signals(const std::string& routes_path);
  // Runs until a graceful shutdown has closed everything.
  int run();

  void begin_shutdown();
  void reload_routes();

 private:
  bool bind_listener(uv_tcp_t* handle, uint16_t port, uv_connection_cb on_connection,
                     const char* kind, std::string* error);
  static void on_https_connection(uv_stream_t* server, int status);
  static void on_http_connection(uv_stream_t* server, int status);
  static void on_signal(uv_signal_t* handle, int signum);
  static void on_drain_timeout(uv_timer_t* timer);

  uv_loop_t loop_;
  LoopBuffers buffers_;
  std::unique_ptr<WorkerContext> ctx_;
  uv_tcp_t https_listener_;
  uv_tcp_t http_listener_;
  bool http_listening_ = false;
  uv_signal_t sigterm_, sigint_, sighup_;
  bool signals_ = false;
  uv_timer_t drain_timer_;
  std::string routes_path_;
};

}  // namespace portico

#pragma once

// A worker: one libuv loop, its listeners, and the connections they accept. Everything a
// connection touches lives on this loop, so workers share nothing mutable.

#include <uv.h>

#include <memory>
#include <string>

#include "proxy/admin_server.h"
#include "proxy/config_loader.h"
#include "proxy/reloader.h"
#include "proxy/stream_writer.h"
#include "proxy/worker_context.h"

namespace portico {

class Worker {
 public:
  Worker(const Config& config, const AccessLog& access_log, const ConfigSnapshot& initial);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds the TLS listener and, unless --http-port 0, the redirect listener. On failure returns
  // false with a one-line reason.
  bool listen(std::string* error);
  // Handles SIGTERM/SIGINT (graceful stop; a second one exits at once) and SIGHUP (reload now,
  // once watch_configuration has been called) on this loop.
  void handle_signals();
  // Reloads on SIGHUP and whenever the route file or a certificate/key file changes on disk (see
  // reloader.h). `initial` and `inputs` are what the worker started with.
  void watch_configuration(std::shared_ptr<const ConfigSnapshot> initial, ConfigInputs inputs);
  // Runs until a graceful shutdown has closed everything.
  int run();

  void begin_shutdown();
  // Serves new requests with the snapshot's routes and new handshakes with its certificate.
  // Requests in flight keep the RoutingState they started with, TLS connections keep their SSL
  // (which holds its own SSL_CTX reference), and tunnels are not touched. Must run on this
  // worker's loop.
  void apply_configuration(const ConfigSnapshot& snapshot);

 private:
  bool bind_listener(uv_tcp_t* handle, uint16_t port, uv_connection_cb on_connection,
                     std::string* error);
  void log_listening(uv_tcp_t* handle, const char* kind);
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
  // Watching runs on this loop while there is one worker; with several it moves to the main
  // thread and apply_configuration is posted to each worker (see reloader.h).
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<AdminServer> admin_;  // --admin
};

}  // namespace portico

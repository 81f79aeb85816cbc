#pragma once

// A worker: one libuv loop on its own thread, its listeners, and the connections they accept.
// Everything a connection touches lives on this loop, so workers share nothing mutable. With
// --workers N, each worker has its own SO_REUSEPORT listening sockets on the same ports (the
// kernel spreads connections among them); the first, the lead, also handles signals, watches
// the configuration and serves --admin, and hands reloads and the stop to the others through
// post_configuration and post_shutdown, the only calls made from another thread.

#include <uv.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/admin_server.h"
#include "proxy/config_loader.h"
#include "proxy/reloader.h"
#include "proxy/stream_writer.h"
#include "proxy/worker_context.h"

namespace portico {

// Closes every handle still open on `loop` and runs the loop until their close callbacks have
// run: the end of a worker's shutdown (and of a test's loop), after which uv_loop_close succeeds.
void close_every_handle(uv_loop_t* loop);

class Worker {
 public:
  Worker(const Config& config, const AccessLog& access_log, const ConfigSnapshot& initial);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Binds the TLS listener and, unless --http-port 0, the redirect listener, and --admin; logs
  // the "listening" lines. On failure returns false with a one-line reason.
  bool listen(std::string* error);
  // A further worker: the same ports as the lead's (bound, so --https-port 0 works), no admin,
  // nothing logged.
  bool listen_like(const Worker& lead, std::string* error);
  // The lead's fan-out: the other workers, for reloads, the stop and /metrics.
  void set_peers(std::vector<Worker*> peers) { peers_ = std::move(peers); }
  // Thread-safe, from any thread: runs apply_configuration / begin_shutdown on this loop.
  void post_configuration(std::shared_ptr<const ConfigSnapshot> snapshot);
  void post_shutdown();
  // A further worker copies its counters here every second for the lead's /metrics.
  void publish_metrics_every_second();
  Metrics published_metrics() const;
  // Handles SIGTERM/SIGINT/SIGQUIT (graceful stop; a second one exits at once), SIGHUP (reload now,
  // once watch_configuration has been called; ignored while stopping) and SIGUSR1 (reopen the
  // access log file) on this loop.
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
  // `first_in_process`: the lead's bind, which says when another process shares the port.
  bool bind_listener(uv_tcp_t* handle, uint16_t port, uv_connection_cb on_connection,
                     bool first_in_process, std::string* error);
  void log_listening(uv_tcp_t* handle, const char* kind);
  static void on_https_connection(uv_stream_t* server, int status);
  static void on_http_connection(uv_stream_t* server, int status);
  static void on_signal(uv_signal_t* handle, int signum);
  static void on_drain_timeout(uv_timer_t* timer);
  static void on_posted(uv_async_t* handle);
  static void on_publish(uv_timer_t* timer);
  static void on_room_check(uv_timer_t* timer);
  // The lead's counters live, the others' as they published them (at most a second old).
  Metrics metrics_total() const;
  std::string render_metrics() const;

  uv_loop_t loop_;
  LoopBuffers buffers_;
  std::unique_ptr<WorkerContext> ctx_;
  uv_tcp_t https_listener_;
  uv_tcp_t http_listener_;
  bool http_listening_ = false;
  uv_signal_t sigterm_, sigint_, sigquit_, sighup_, sigusr1_;
  bool signals_ = false;
  uv_timer_t drain_timer_;
  // Watching runs on this loop while there is one worker; with several it moves to the main
  // thread and apply_configuration is posted to each worker (see reloader.h).
  std::unique_ptr<Reloader> reloader_;
  std::unique_ptr<AdminServer> admin_;  // --admin
  std::vector<Worker*> peers_;          // the lead's: every other worker

  // Work handed over from another thread, run by on_posted on this loop.
  uv_async_t posted_;
  std::mutex posted_mutex_;
  bool posted_open_ = true;  // false once begin_shutdown closed posted_ (under posted_mutex_)
  std::shared_ptr<const ConfigSnapshot> posted_snapshot_;
  bool posted_stop_ = false;

  uv_timer_t publish_timer_;
  // While the TLS listener waits at --max-connections: looks now and then for a connection
  // that has become reusable since (ClientConnection::close_one_reusable).
  uv_timer_t room_timer_;
  mutable std::mutex published_mutex_;
  Metrics published_;
};

}  // namespace portico

#include "proxy/worker.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <utility>

#include "proxy/cidr.h"
#include "proxy/client_connection.h"
#include "proxy/heap_usage.h"
#include "proxy/log.h"
#include "proxy/redirect_server.h"
#include "proxy/status_page.h"
#include "proxy/tcp_listener.h"

namespace portico {

void close_every_handle(uv_loop_t* loop) {
  uv_walk(
      loop,
      [](uv_handle_t* handle, void*) {
        if (!uv_is_closing(handle)) uv_close(handle, nullptr);
      },
      nullptr);
  uv_run(loop, UV_RUN_DEFAULT);
}

namespace {
constexpr auto kDrainTimeout = std::chrono::seconds(10);
// How often a listener waiting at --max-connections looks for a connection to reuse.
constexpr uint64_t kRoomCheckMs = 200;

// Whether one more TLS connection may be accepted now. At the limit an idle port-80
// connection gives its place (and not to a port-80 newcomer waiting at the limit: that
// listener stays paused meanwhile); else a TLS connection silent since it connected, or idle
// between requests, so that such a crowd cannot keep newcomers waiting for its own timeouts
// (10 s, 75 s). A descriptor given up is closed at once; its memory goes with the close
// callbacks, a moment later.
bool room_for_tls(WorkerContext& ctx) {
  if (ctx.open_connections() < ctx.config.connection_limit()) return true;
  uv_stream_t* redirect_waiting = std::exchange(ctx.redirect_accept_paused, nullptr);
  const bool room = RedirectConnection::close_one_idle(ctx);
  ctx.redirect_accept_paused = redirect_waiting;
  return room || ClientConnection::close_one_reusable(ctx);
}

// Accepts the connection libuv held back when the TLS listener paused at the limit; polling
// the listener resumes.
void accept_waiting_tls(WorkerContext& ctx) {
  uv_stream_t* listener = std::exchange(ctx.accept_paused, nullptr);
  if (listener == nullptr) return;
  uv_timer_stop(ctx.room_timer);
  log_info("listener", "accepting again connections=", ctx.open_connections());
  ClientConnection::accept_from(ctx, listener);
}
}  // namespace

Worker::Worker(const Config& config, const AccessLog& access_log, const ConfigSnapshot& initial) {
  uv_loop_init(&loop_);
  loop_.data = &buffers_;
  buffers_.batch.start(&loop_);
  buffers_.write_high_water = config.max_buffer;
  ctx_ = std::make_unique<WorkerContext>(&loop_, config, access_log);
  apply_configuration(initial);
  uv_tcp_init(&loop_, &https_listener_);
  https_listener_.data = this;
  uv_tcp_init(&loop_, &http_listener_);
  http_listener_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  uv_async_init(&loop_, &posted_, &Worker::on_posted);
  posted_.data = this;
  uv_timer_init(&loop_, &publish_timer_);
  publish_timer_.data = this;
  uv_timer_init(&loop_, &room_timer_);
  room_timer_.data = this;
  ctx_->room_timer = &room_timer_;
}

Worker::~Worker() {
  {
    std::lock_guard lock(posted_mutex_);
    posted_open_ = false;
  }
  // Connections first (they reference the context), then every other handle; the loop then
  // runs their close callbacks, and only after that does the context go. Nothing is accepted
  // again meanwhile (resume_accepting).
  ctx_->shutting_down = true;
  for (ClientConnection* conn = ctx_->connections; conn;) {
    ClientConnection* next = conn->next_in_worker();
    conn->abort();
    conn = next;
  }
  RedirectConnection::close_all(*ctx_);
  ctx_->pool.close_all();
  if (reloader_) reloader_->close();
  if (admin_) admin_->close();
  close_every_handle(&loop_);
  ctx_.reset();
  uv_loop_close(&loop_);
}

bool Worker::bind_listener(uv_tcp_t* handle, uint16_t port, uv_connection_cb on_connection,
                           bool first_in_process, std::string* error) {
  const bool https = handle == &https_listener_;
  const char* flag = https ? "--https-port" : "--http-port";
  // Sharing the port is how a restart refuses nothing (docs/operations.md), and it is as
  // silent when a second portico is started by mistake: new connections would go to either
  // configuration. So it is said, before this process's own sockets are there to be seen.
  // (Asked by the lead only: the other workers share the lead's port by design.)
  const bool shared = first_in_process && port_has_listener(ctx_->config.listen_address, port);
  if (!listen_tcp(handle, ctx_->config.listen_address, port, 1024, on_connection, flag, error,
                  /*reuse_port=*/true)) {
    return false;
  }
  if (shared) {
    log_warn("listener", "port shared with another process flag=", flag, " port=", port,
             " detail=\"it listens there too (SO_REUSEPORT): new connections go to either"
             " until one stops; expected during a restart, else stop the other\"");
  }
  return true;
}

void Worker::log_listening(uv_tcp_t* handle, const char* kind) {
  uint16_t port = portico::log_listening(handle, kind);
  if (handle == &https_listener_) ctx_->public_https_port = port;
}

bool Worker::listen(std::string* error) {
  if (!bind_listener(&https_listener_, ctx_->config.https_port, &Worker::on_https_connection, true,
                     error)) {
    return false;
  }
  if (ctx_->config.http_port != 0) {
    if (!bind_listener(&http_listener_, ctx_->config.http_port, &Worker::on_http_connection, true,
                       error)) {
      return false;
    }
    http_listening_ = true;
  }
  if (!ctx_->config.admin_address.empty()) {
    auto started = std::chrono::steady_clock::now();
    admin_ = std::make_unique<AdminServer>(
        &loop_, ctx_->config.admin_allow, [this] { return render_metrics(); },
        [this, started] {
          std::chrono::duration<double> uptime = std::chrono::steady_clock::now() - started;
          return render_status_json(make_status_snapshot(*ctx_, metrics_total(), uptime.count()));
        });
    if (!admin_->listen(ctx_->config.admin_address, ctx_->config.admin_port, error)) return false;
  }
  // Nothing is served before the loop runs, and nothing is announced before every bind worked.
  log_listening(&https_listener_, "https");
  if (http_listening_) log_listening(&http_listener_, "http");
  return true;
}

bool Worker::listen_like(const Worker& lead, std::string* error) {
  const uint16_t https_port = lead.ctx_->public_https_port;
  if (!bind_listener(&https_listener_, https_port, &Worker::on_https_connection, false, error)) {
    return false;
  }
  ctx_->public_https_port = https_port;
  if (lead.http_listening_) {
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(&lead.http_listener_, reinterpret_cast<sockaddr*>(&bound), &len);
    if (!bind_listener(&http_listener_, address_port(bound), &Worker::on_http_connection, false,
                       error)) {
      return false;
    }
    http_listening_ = true;
  }
  return true;
}

// The lead's /metrics: its own counters live, the others' as they published them (at most a
// second old): reading another loop's counters directly would race with it.
Metrics Worker::metrics_total() const {
  Metrics total = ctx_->metrics;
  for (const Worker* peer : peers_) total.add(peer->published_metrics());
  return total;
}

std::string Worker::render_metrics() const {
  Metrics total = metrics_total();
  total.heap_bytes = heap_bytes_in_use();
  return render_prometheus(total);
}

void Worker::publish_metrics_every_second() {
  uv_timer_start(&publish_timer_, &Worker::on_publish, 1000, 1000);
  uv_unref(reinterpret_cast<uv_handle_t*>(&publish_timer_));
}

void Worker::on_publish(uv_timer_t* timer) {
  auto* worker = static_cast<Worker*>(timer->data);
  std::lock_guard lock(worker->published_mutex_);
  worker->published_ = worker->ctx_->metrics;
}

Metrics Worker::published_metrics() const {
  std::lock_guard lock(published_mutex_);
  return published_;
}

void Worker::post_configuration(std::shared_ptr<const ConfigSnapshot> snapshot) {
  std::lock_guard lock(posted_mutex_);
  if (!posted_open_) return;
  posted_snapshot_ = std::move(snapshot);
  uv_async_send(&posted_);
}

void Worker::post_shutdown() {
  std::lock_guard lock(posted_mutex_);
  if (!posted_open_) return;
  posted_stop_ = true;
  uv_async_send(&posted_);
}

void Worker::on_posted(uv_async_t* handle) {
  auto* worker = static_cast<Worker*>(handle->data);
  std::shared_ptr<const ConfigSnapshot> snapshot;
  bool stop = false;
  {
    std::lock_guard lock(worker->posted_mutex_);
    snapshot = std::move(worker->posted_snapshot_);
    stop = worker->posted_stop_;
  }
  if (snapshot && !worker->ctx_->shutting_down) worker->apply_configuration(*snapshot);
  if (stop && !worker->ctx_->shutting_down) worker->begin_shutdown();
}

void Worker::on_https_connection(uv_stream_t* server, int status) {
  auto* worker = static_cast<Worker*>(server->data);
  if (status < 0) {
    log_warn("listener", "accept failed error=", uv_err_name(status));
    return;
  }
  WorkerContext& ctx = *worker->ctx_;
  if (!room_for_tls(ctx)) {
    // Not accepting pauses the listener (worker_context.h); a connection's end resumes it,
    // and so does one that becomes reusable meanwhile (on_room_check).
    if (!ctx.accept_paused) {
      log_warn("listener", "connection limit reached, new connections wait max_connections=",
               ctx.config.connection_limit());
      uv_timer_start(ctx.room_timer, &Worker::on_room_check, kRoomCheckMs, kRoomCheckMs);
    }
    ctx.accept_paused = server;
    return;
  }
  ClientConnection::accept_from(ctx, server);
}

void Worker::on_room_check(uv_timer_t* timer) {
  WorkerContext& ctx = *static_cast<Worker*>(timer->data)->ctx_;
  if (ctx.accept_paused == nullptr || ctx.shutting_down) {
    uv_timer_stop(timer);
    return;
  }
  if (room_for_tls(ctx)) accept_waiting_tls(ctx);
}

void Worker::on_http_connection(uv_stream_t* server, int status) {
  auto* worker = static_cast<Worker*>(server->data);
  if (status < 0) {
    log_warn("listener", "accept failed error=", uv_err_name(status));
    return;
  }
  WorkerContext& ctx = *worker->ctx_;
  if (ctx.open_connections() >= ctx.config.connection_limit()) {
    if (!ctx.redirect_accept_paused) {
      log_warn("listener", "connection limit reached, new port-80 connections wait",
               " max_connections=", ctx.config.connection_limit());
    }
    ctx.redirect_accept_paused = server;
    return;
  }
  RedirectConnection::accept_from(ctx, server);
}

void resume_accepting(WorkerContext& ctx) {
  if (ctx.shutting_down) return;
  // The TLS listener first: it is what the port-80 one sends everyone to.
  if (ctx.open_connections() < ctx.config.connection_limit()) accept_waiting_tls(ctx);
  if (ctx.redirect_accept_paused && ctx.open_connections() < ctx.config.connection_limit()) {
    uv_stream_t* listener = ctx.redirect_accept_paused;
    ctx.redirect_accept_paused = nullptr;
    log_info("listener",
             "accepting port-80 connections again connections=", ctx.open_connections());
    RedirectConnection::accept_from(ctx, listener);
  }
}

namespace {

// A second stop signal while draining: exit at once. A plain handler, not the lead loop's,
// because that loop may already have ended while other workers drain.
void exit_on_second_stop_signal(int) {
  static const char kLine[] = "warn portico: second stop signal: exiting now\n";
  (void)!::write(STDERR_FILENO, kLine, sizeof kLine - 1);
  ::_exit(1);
}

}  // namespace

void Worker::handle_signals() {
  signals_ = true;
  // SIGQUIT too: NGINX's graceful stop (its SIGTERM is the fast one), whose default action
  // here would kill portico at once, with a core dump, cutting every request in flight.
  for (auto [handle, signum] : {std::pair{&sigterm_, SIGTERM},
                                {&sigint_, SIGINT},
                                {&sigquit_, SIGQUIT},
                                {&sighup_, SIGHUP},
                                {&sigusr1_, SIGUSR1}}) {
    uv_signal_init(&loop_, handle);
    handle->data = this;
    uv_signal_start(handle, &Worker::on_signal, signum);
  }
}

void Worker::on_signal(uv_signal_t* handle, int signum) {
  auto* worker = static_cast<Worker*>(handle->data);
  if (signum == SIGUSR1) {
    // NGINX's signal for logrotate's postrotate: the access log file is opened again.
    std::string error;
    if (worker->ctx_->access_log.reopen(&error)) {
      log_info("portico", "access log reopened");
    } else {
      log_error("portico", "access log not reopened, still writing the old file: ", error);
    }
    return;
  }
  if (signum == SIGHUP) {
    // While draining there is nothing to reload, and the old process of a restart must not die
    // of a certbot hook's HUP (NGINX ignores it then too).
    if (worker->ctx_->shutting_down) {
      log_info("portico", "SIGHUP ignored: stopping");
    } else if (worker->reloader_) {
      worker->reloader_->reload_now("SIGHUP");
    }
    return;
  }
  log_info("portico", "stopping signal=",
           signum == SIGTERM  ? "SIGTERM"
           : signum == SIGINT ? "SIGINT"
                              : "SIGQUIT");
  struct sigaction second {};
  second.sa_handler = &exit_on_second_stop_signal;
  for (int stop_signal : {SIGTERM, SIGINT, SIGQUIT}) sigaction(stop_signal, &second, nullptr);
  worker->begin_shutdown();
  for (Worker* peer : worker->peers_) peer->post_shutdown();
}

void Worker::begin_shutdown() {
  ctx_->shutting_down = true;
  {
    // Nothing more can be handed over; the open async handle would keep the loop alive.
    std::lock_guard lock(posted_mutex_);
    posted_open_ = false;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&posted_), nullptr);
  uv_timer_stop(&publish_timer_);
  uv_timer_stop(&room_timer_);
  // Connections the kernel has already queued on the TLS listener would be reset when it
  // closes. During a restart (a new portico on the same port, SO_REUSEPORT) those are clients
  // that did nothing wrong: take them first and answer them (ClientConnection::begin_shutdown).
  // What arrives between this and the close is the kernel's to move to the new listener
  // (net.ipv4.tcp_migrate_req=1) or reset; docs/operations.md says so.
  if (uv_stream_t* paused = ctx_->accept_paused) {
    ctx_->accept_paused = nullptr;
    ClientConnection::accept_from(*ctx_, paused);  // the socket libuv held back at the limit
  }
  int listen_fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&https_listener_), &listen_fd) == 0) {
    for (;;) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      ClientConnection::adopt(*ctx_, fd);
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&https_listener_), nullptr);
  if (http_listening_) uv_close(reinterpret_cast<uv_handle_t*>(&http_listener_), nullptr);
  ctx_->redirect_accept_paused = nullptr;
  RedirectConnection::close_all(*ctx_);
  ctx_->pool.close_all();
  if (reloader_) reloader_->close();
  if (admin_) admin_->close();
  for (ClientConnection* conn = ctx_->connections; conn;) {
    ClientConnection* next = conn->next_in_worker();
    conn->begin_shutdown();
    conn = next;
  }
  // Let the loop end once the last connection is gone; the timer only bounds the wait.
  // The signal handles stay (a closed one would give its signal back its default action,
  // which ends the process), unreferenced.
  if (signals_) {
    for (uv_signal_t* handle : {&sigterm_, &sigint_, &sigquit_, &sighup_, &sigusr1_}) {
      uv_unref(reinterpret_cast<uv_handle_t*>(handle));
    }
  }
  uv_timer_start(&drain_timer_, &Worker::on_drain_timeout,
                 std::chrono::duration_cast<std::chrono::milliseconds>(kDrainTimeout).count(), 0);
  uv_unref(reinterpret_cast<uv_handle_t*>(&drain_timer_));
}

void Worker::on_drain_timeout(uv_timer_t* timer) {
  auto* worker = static_cast<Worker*>(timer->data);
  log_warn("portico", "drain timeout: closing connections=", worker->ctx_->connection_count);
  // Each gets its access-log line now, before the "stopped" line.
  for (ClientConnection* conn = worker->ctx_->connections; conn;) {
    ClientConnection* next = conn->next_in_worker();
    conn->abort();
    conn = next;
  }
  uv_stop(&worker->loop_);
}

void Worker::watch_configuration(std::shared_ptr<const ConfigSnapshot> initial,
                                 ConfigInputs inputs) {
  if (reloader_) return;
  reloader_ =
      std::make_unique<Reloader>(&loop_, ctx_->config, std::move(initial), std::move(inputs),
                                 [this](std::shared_ptr<const ConfigSnapshot> snapshot) {
                                   apply_configuration(*snapshot);
                                   for (Worker* peer : peers_) peer->post_configuration(snapshot);
                                 });
  reloader_->start();
}

void Worker::apply_configuration(const ConfigSnapshot& snapshot) {
  ctx_->set_routes(snapshot.routes, snapshot.upstream_tls);
  ctx_->ssl_ctx = snapshot.ssl_ctx;
}

int Worker::run() { return uv_run(&loop_, UV_RUN_DEFAULT); }

}  // namespace portico

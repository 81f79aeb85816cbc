#pragma once

// What every connection on one worker's loop shares. One per worker thread; nothing in it is
// touched by another thread (a reload hands over a new table through the worker's async).

#include <uv.h>

#include <memory>
#include <unordered_set>
#include <vector>

#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/heap_trim.h"
#include "proxy/metrics.h"
#include "proxy/upstream_pool.h"
#include "routing/backend_selector.h"
#include "routing/route_table.h"
#include "tls/tls_context.h"

namespace portico {

class ClientConnection;
class RedirectConnection;

// A route table with this worker's balancing state for it. Requests hold the RoutingState they
// started with, so a reload never pulls a table (or its selectors) from under them.
struct RoutingState {
  RoutingState(std::shared_ptr<const RouteTable> t, std::vector<std::shared_ptr<SSL_CTX>> tls)
      : table(std::move(t)), upstream_tls(std::move(tls)) {
    for (const Route& route : table->routes()) {
      selectors.emplace_back(route.options.balance, route.backends.size());
    }
    upstream_tls.resize(table->routes().size());
  }
  size_t index_of(const Route& route) const {
    return static_cast<size_t>(&route - table->routes().data());
  }
  BackendSelector& selector_for(const Route& route) { return selectors[index_of(route)]; }
  // The client TLS context for the route's https:// backends (null when it has none).
  SSL_CTX* upstream_tls_for(const Route& route) const {
    return upstream_tls[index_of(route)].get();
  }
  std::shared_ptr<const RouteTable> table;
  std::vector<BackendSelector> selectors;              // one per route
  std::vector<std::shared_ptr<SSL_CTX>> upstream_tls;  // one per route (ConfigSnapshot's)
};

struct WorkerContext {
  WorkerContext(uv_loop_t* loop, const Config& config, const AccessLog& access_log)
      : loop(loop),
        config(config),
        access_log(access_log),
        pool(loop),
        heap_trimmer(loop),
        response_headers(site_response_headers(config)) {}

  // Installs a new route table: requests already running keep the one they started with.
  void set_routes(std::shared_ptr<const RouteTable> table,
                  std::vector<std::shared_ptr<SSL_CTX>> upstream_tls) {
    routing = std::make_shared<RoutingState>(std::move(table), std::move(upstream_tls));
    metrics.forget_all_but(*routing->table);
  }

  uv_loop_t* loop;
  const Config& config;
  const AccessLog& access_log;
  std::shared_ptr<SSL_CTX> ssl_ctx;
  std::shared_ptr<RoutingState> routing;
  UpstreamPool pool;
  HeapTrimmer heap_trimmer;  // told of every connection opened or closed
  bool shutting_down = false;
  uint16_t public_https_port = 443;  // the bound TLS port, for redirect Locations
  // "Name: value\r\n" lines added to every HTTPS response, portico's own answers included
  // (Strict-Transport-Security when --hsts is on). Set before the loop runs.
  std::string response_headers;

  // Counters for /metrics (--admin); kept whether or not anyone scrapes them.
  Metrics metrics;

  // Every open client connection, for graceful shutdown.
  ClientConnection* connections = nullptr;
  // Every open connection of the redirect listener: closed when the worker stops.
  std::unordered_set<RedirectConnection*> redirects;
  // Both listeners' connections share --max-connections (each is a file descriptor), so
  // that a crowd on port 80 cannot run the process out of them under the TLS listener.
  size_t open_connections() const { return connection_count + redirects.size(); }
  // The redirect listener, while it waits at the limit as the TLS one does (below).
  uv_stream_t* redirect_accept_paused = nullptr;
  size_t connection_count = 0;
  // At --max-connections the TLS listener's connection callback does not accept: libuv then
  // keeps the one socket it accepted and stops polling the listener, so newcomers wait in the
  // kernel's listen queue. This is that listener until a connection ends and accepting resumes.
  uv_stream_t* accept_paused = nullptr;
  // When the TLS listener last said it closes idle connections to make room (loop time).
  uint64_t reuse_logged_ms = 0;
  // The worker's timer that looks for room while accept_paused (Worker::on_room_check).
  uv_timer_t* room_timer = nullptr;
};

// After a connection of either listener ended: accepts again on a listener that waits at the
// limit, if there is room now (worker.cc).
void resume_accepting(WorkerContext& ctx);

}  // namespace portico

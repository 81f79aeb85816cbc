#pragma once

// The admin status page (GET / on --admin): a self-contained HTML page (no external assets)
// that polls /status.json and shows routes, backends with their up/down state, open connections
// and tunnels, request rates and error counts. The JSON comes from a snapshot of a worker's
// state, rendered by pure functions.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "proxy/metrics.h"

namespace portico {

struct WorkerContext;

struct StatusBackend {
  std::string address;
  bool down = false;
  uint32_t active = 0;  // connections leased right now
};

struct StatusRoute {
  std::string pattern;  // host + prefix, as in the route file
  std::vector<StatusBackend> backends;
  uint64_t requests = 0;
  uint64_t server_errors = 0;  // 5xx answers
};

struct StatusSnapshot {
  std::string version;
  double uptime_seconds = 0;
  int64_t open_connections = 0;
  int64_t open_tunnels = 0;
  uint64_t requests = 0;
  uint64_t server_errors = 0;
  uint64_t client_errors = 0;
  uint64_t tls_handshakes = 0;
  uint64_t tls_handshake_failures = 0;
  uint64_t backend_errors = 0;
  std::vector<StatusRoute> routes;
};

// `totals` are the process's counters (every worker's, as /metrics sums them); the backends'
// up/down state and open connections are `ctx`'s worker's view (each worker keeps its own).
StatusSnapshot make_status_snapshot(const WorkerContext& ctx, const Metrics& totals,
                                    double uptime_seconds);
std::string render_status_json(const StatusSnapshot& snapshot);
const std::string& status_page_html();

}  // namespace portico

#pragma once

// Per-worker counters for /metrics. Plain integers: a worker's connections all run on its one
// loop, so nothing here is shared between threads. With several workers, the scrape sums their
// Metrics (add()) before rendering, which is why every member is a sum or a per-label map.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/access_log.h"
#include "routing/route_table.h"

namespace portico {

// The route label of the port-80 redirect listener's requests, in the access log and in
// portico_requests_total (no route prefix can be it: prefixes start with '/' or a host, and
// neither label has either).
inline constexpr std::string_view kRedirectRoute = "redirect";
// The same for the ACME challenges it answers (--acme-webroot).
inline constexpr std::string_view kAcmeRoute = "acme";

// A route as its metrics label names it: its host (when it has one) and prefix, as the route
// file writes it. Two routes never share one: a host has no '/', a prefix starts with one.
std::string route_label(const Route& route);

enum class BackendErrorKind { kConnect, kTls, kTimeout, kInvalidResponse, kClosed };
const char* backend_error_kind_name(BackendErrorKind kind);

struct Metrics {
  // Upper bounds of portico_request_duration_seconds, in seconds (Prometheus' defaults).
  static constexpr std::array<double, 11> kDurationBuckets = {.005, .01, .025, .05, .1, .25,
                                                              .5,   1,   2.5,  5,   10};

  struct RouteStats {
    std::array<uint64_t, 5> by_class{};                       // 1xx .. 5xx
    std::array<uint64_t, kDurationBuckets.size()> buckets{};  // not cumulative; render sums
    uint64_t timed = 0;                                       // the histogram's count
    double seconds = 0;                                       // the histogram's sum
  };

  // Gauges.
  int64_t open_connections = 0;
  int64_t open_tunnels = 0;
  // Process-wide, not per worker: set by whoever renders (heap_bytes_in_use()); add() leaves it.
  uint64_t heap_bytes = 0;
  // Counters.
  uint64_t tls_handshakes = 0;  // completed
  uint64_t tls_handovers = 0;   // TLS 1.3 connections whose records portico protects itself
  std::map<std::string, uint64_t, std::less<>> tls_handshake_failures;  // by reason
  std::map<std::pair<std::string, BackendErrorKind>, uint64_t> backend_errors;
  // By route_label() ("api.example.com/v1", "/static/"); "-" for none, and kRedirectRoute,
  // kAcmeRoute.
  std::map<std::string, RouteStats, std::less<>> routes;
  uint64_t bytes_received = 0;  // request bodies and client-to-backend tunnel bytes
  uint64_t bytes_sent = 0;      // responses (head and body) and backend-to-client tunnel bytes
  // Every request answered since start, by status class (1xx .. 5xx): unlike `routes`, not
  // forgotten when a reload drops a route, so the status page's totals never go down.
  std::array<uint64_t, 5> answered_by_class{};

  // One finished request or tunnel, from its access-log entry (under its route_host and route).
  // A tunnel's lifetime is not a request latency: it is counted (1xx) but kept out of the
  // duration histogram.
  void count_request(const AccessLogEntry& entry);
  // OpenSSL's reason text or portico's own ("plaintext_http", "timeout").
  void count_handshake_failure(std::string_view reason);
  void count_backend_error(std::string_view backend, BackendErrorKind kind);

  void add(const Metrics& other);
  // Drops the series of routes and backends `table` no longer names, at a reload: a route file
  // whose prefixes change over time would otherwise grow the maps (and every scrape) for ever.
  void forget_all_but(const RouteTable& table);
};

// Prometheus text exposition format 0.0.4.
std::string render_prometheus(const Metrics& metrics);

}  // namespace portico

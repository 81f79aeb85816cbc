#include "proxy/metrics.h"

#include <cstdio>
#include <cstring>
#include <unordered_set>

namespace portico {
namespace {

// Label values: backslash, double quote and newline are escaped (exposition format 0.0.4).
void append_label(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append("=\"");
  for (char c : value) {
    if (c == '\\') {
      out.append("\\\\");
    } else if (c == '"') {
      out.append("\\\"");
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_number(std::string& out, double value) {
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%.15g", value);
  out.append(buf, static_cast<size_t>(n));
}

void append_header(std::string& out, const char* name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// A family with one unlabelled sample.
template <typename Number>
void append_single(std::string& out, const char* name, const char* type, const char* help,
                   Number value) {
  append_header(out, name, type, help);
  out.append(name).append(" ").append(std::to_string(value)).append("\n");
}

}  // namespace

const char* backend_error_kind_name(BackendErrorKind kind) {
  switch (kind) {
    case BackendErrorKind::kConnect:
      return "connect";
    case BackendErrorKind::kTls:
      return "tls";
    case BackendErrorKind::kTimeout:
      return "timeout";
    case BackendErrorKind::kInvalidResponse:
      return "invalid_response";
    case BackendErrorKind::kClosed:
      return "closed";
  }
  return "unknown";
}

std::string route_label(const Route& route) { return route.host + route.prefix; }

void Metrics::count_request(const AccessLogEntry& entry) {
  // The label of a host route is built on the stack: once its route has an entry, a request
  // allocates nothing here.
  std::string_view label = entry.route;
  char joined[512];
  std::string long_label;
  if (!entry.route_host.empty()) {
    const size_t size = entry.route_host.size() + entry.route.size();
    if (size <= sizeof joined) {
      std::memcpy(joined, entry.route_host.data(), entry.route_host.size());
      std::memcpy(joined + entry.route_host.size(), entry.route.data(), entry.route.size());
      label = std::string_view(joined, size);
    } else {
      long_label.append(entry.route_host).append(entry.route);
      label = long_label;
    }
  }
  auto it = routes.find(label);
  if (it == routes.end()) it = routes.emplace(std::string(label), RouteStats{}).first;
  RouteStats& stats = it->second;
  int status_class = entry.status / 100;
  if (status_class >= 1 && status_class <= 5) {
    ++stats.by_class[status_class - 1];
    ++answered_by_class[status_class - 1];
  }
  bytes_received += entry.bytes_in;
  bytes_sent += entry.bytes_out;
  if (entry.tunnel) return;
  double seconds = entry.duration_ms / 1000.0;
  ++stats.timed;
  stats.seconds += seconds;
  for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
    if (seconds <= kDurationBuckets[i]) {
      ++stats.buckets[i];
      break;
    }
  }
}

void Metrics::count_handshake_failure(std::string_view reason) {
  auto it = tls_handshake_failures.find(reason);
  if (it == tls_handshake_failures.end()) {
    it = tls_handshake_failures.emplace(std::string(reason), 0).first;
  }
  ++it->second;
}

void Metrics::count_backend_error(std::string_view backend, BackendErrorKind kind) {
  ++backend_errors[{std::string(backend), kind}];
}

void Metrics::forget_all_but(const RouteTable& table) {
  // Sets of the new table's names, so that the work is linear in routes plus entries: a scan of
  // the routes for every entry stalled a worker for seconds with 20,000 routes.
  std::unordered_set<std::string> route_labels;
  std::unordered_set<std::string> backend_labels;
  route_labels.reserve(table.routes().size());
  for (const Route& route : table.routes()) {
    route_labels.insert(route_label(route));
    for (const BackendAddress& backend : route.backends) backend_labels.insert(backend.label());
  }
  std::erase_if(routes, [&](const auto& entry) {
    if (entry.first == "-" || entry.first == kRedirectRoute || entry.first == kAcmeRoute) {
      return false;  // not routes: always kept
    }
    return !route_labels.contains(entry.first);
  });
  std::erase_if(backend_errors,
                [&](const auto& entry) { return !backend_labels.contains(entry.first.first); });
}

void Metrics::add(const Metrics& other) {
  open_connections += other.open_connections;
  open_tunnels += other.open_tunnels;
  tls_handshakes += other.tls_handshakes;
  tls_handovers += other.tls_handovers;
  for (const auto& [reason, n] : other.tls_handshake_failures) {
    tls_handshake_failures[reason] += n;
  }
  for (const auto& [key, n] : other.backend_errors) backend_errors[key] += n;
  for (const auto& [route, s] : other.routes) {
    RouteStats& mine = routes[route];
    for (size_t i = 0; i < s.by_class.size(); ++i) mine.by_class[i] += s.by_class[i];
    for (size_t i = 0; i < s.buckets.size(); ++i) mine.buckets[i] += s.buckets[i];
    mine.timed += s.timed;
    mine.seconds += s.seconds;
  }
  bytes_received += other.bytes_received;
  bytes_sent += other.bytes_sent;
  for (size_t i = 0; i < answered_by_class.size(); ++i) {
    answered_by_class[i] += other.answered_by_class[i];
  }
}

std::string render_prometheus(const Metrics& m) {
  std::string out;
  out.reserve(4096);
  static const char* const kClasses[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

  append_header(out, "portico_requests_total", "counter",
                "Requests answered (and WebSocket tunnels ended, as 1xx), by route and status "
                "class.");
  for (const auto& [route, s] : m.routes) {
    for (size_t i = 0; i < s.by_class.size(); ++i) {
      if (s.by_class[i] == 0) continue;
      out.append("portico_requests_total{");
      append_label(out, "route", route);
      out.push_back(',');
      append_label(out, "status_class", kClasses[i]);
      out.append("} ").append(std::to_string(s.by_class[i])).append("\n");
    }
  }

  append_header(out, "portico_request_duration_seconds", "histogram",
                "Time from the first byte of a request to the end of its response.");
  for (const auto& [route, s] : m.routes) {
    if (s.timed == 0) continue;
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= s.buckets.size(); ++i) {
      out.append("portico_request_duration_seconds_bucket{");
      append_label(out, "route", route);
      out.append(",le=\"");
      if (i < s.buckets.size()) {
        cumulative += s.buckets[i];
        append_number(out, Metrics::kDurationBuckets[i]);
      } else {
        cumulative = s.timed;
        out.append("+Inf");
      }
      out.append("\"} ").append(std::to_string(cumulative)).append("\n");
    }
    out.append("portico_request_duration_seconds_sum{");
    append_label(out, "route", route);
    out.append("} ");
    append_number(out, s.seconds);
    out.append("\nportico_request_duration_seconds_count{");
    append_label(out, "route", route);
    out.append("} ").append(std::to_string(s.timed)).append("\n");
  }

  append_single(out, "portico_open_connections", "gauge", "Client connections open now.",
                m.open_connections);
  append_single(out, "portico_open_tunnels", "gauge", "WebSocket tunnels open now.",
                m.open_tunnels);
  append_single(out, "portico_heap_bytes", "gauge",
                "Memory the process has allocated and not freed (all workers, OpenSSL included).",
                m.heap_bytes);

  append_single(out, "portico_tls_handshakes_total", "counter", "TLS handshakes completed.",
                m.tls_handshakes);
  append_single(out, "portico_tls_handovers_total", "counter",
                "TLS 1.3 connections whose records portico took over from OpenSSL.",
                m.tls_handovers);
  append_header(out, "portico_tls_handshake_failures_total", "counter",
                "TLS handshakes that failed or timed out, by reason.");
  for (const auto& [reason, n] : m.tls_handshake_failures) {
    out.append("portico_tls_handshake_failures_total{");
    append_label(out, "reason", reason);
    out.append("} ").append(std::to_string(n)).append("\n");
  }

  append_header(out, "portico_backend_errors_total", "counter",
                "Failed exchanges with a backend, by backend and kind.");
  for (const auto& [key, n] : m.backend_errors) {
    out.append("portico_backend_errors_total{");
    append_label(out, "backend", key.first);
    out.push_back(',');
    append_label(out, "kind", backend_error_kind_name(key.second));
    out.append("} ").append(std::to_string(n)).append("\n");
  }

  append_single(out, "portico_bytes_received_total", "counter",
                "Request body and tunnel bytes received from clients.", m.bytes_received);
  append_single(out, "portico_bytes_sent_total", "counter",
                "Response and tunnel bytes sent to clients.", m.bytes_sent);
  return out;
}

}  // namespace portico

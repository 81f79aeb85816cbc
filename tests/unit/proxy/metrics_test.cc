// Metrics and render_prometheus (exposition format 0.0.4), the admin listener's access rule, and
// the operations flags.

#include "proxy/metrics.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/admin_server.h"
#include "proxy/config.h"

namespace portico {
namespace {

AccessLogEntry request(std::string_view route, int status, double ms) {
  AccessLogEntry e;
  e.route = route;
  e.status = status;
  e.duration_ms = ms;
  e.bytes_in = 10;
  e.bytes_out = 100;
  return e;
}

TEST_CASE("metrics: an empty worker renders every family", "[metrics]") {
  CHECK(render_prometheus(Metrics{}) ==
        "# HELP portico_requests_total Requests answered (and WebSocket tunnels ended, as 1xx), "
        "by route and status class.\n"
        "# TYPE portico_requests_total counter\n"
        "# HELP portico_request_duration_seconds Time from the first byte of a request to the "
        "end of its response.\n"
        "# TYPE portico_request_duration_seconds histogram\n"
        "# HELP portico_open_connections Client connections open now.\n"
        "# TYPE portico_open_connections gauge\n"
        "portico_open_connections 0\n"
        "# HELP portico_open_tunnels WebSocket tunnels open now.\n"
        "# TYPE portico_open_tunnels gauge\n"
        "portico_open_tunnels 0\n"
        "# HELP portico_heap_bytes Memory the process has allocated and not freed (all workers, "
        "OpenSSL included).\n"
        "# TYPE portico_heap_bytes gauge\n"
        "portico_heap_bytes 0\n"
        "# HELP portico_tls_handshakes_total TLS handshakes completed.\n"
        "# TYPE portico_tls_handshakes_total counter\n"
        "portico_tls_handshakes_total 0\n"
        "# HELP portico_tls_handovers_total TLS 1.3 connections whose records portico took "
        "over from OpenSSL.\n"
        "# TYPE portico_tls_handovers_total counter\n"
        "portico_tls_handovers_total 0\n"
        "# HELP portico_tls_handshake_failures_total TLS handshakes that failed or timed out, by "
        "reason.\n"
        "# TYPE portico_tls_handshake_failures_total counter\n"
        "# HELP portico_backend_errors_total Failed exchanges with a backend, by backend and "
        "kind.\n"
        "# TYPE portico_backend_errors_total counter\n"
        "# HELP portico_bytes_received_total Request body and tunnel bytes received from "
        "clients.\n"
        "# TYPE portico_bytes_received_total counter\n"
        "portico_bytes_received_total 0\n"
        "# HELP portico_bytes_sent_total Response and tunnel bytes sent to clients.\n"
        "# TYPE portico_bytes_sent_total counter\n"
        "portico_bytes_sent_total 0\n");
}

TEST_CASE("metrics: requests, histogram, errors, and summing workers", "[metrics]") {
  Metrics m;
  m.count_request(request("/api/", 200, 3));      // <= .005
  m.count_request(request("/api/", 204, 5));      // exactly on .005
  m.count_request(request("/api/", 404, 700));    // <= 1
  m.count_request(request("/api/", 502, 20000));  // +Inf only
  AccessLogEntry tunnel = request("/ws", 101, 60000);
  tunnel.tunnel = true;
  m.count_request(tunnel);
  m.count_handshake_failure("plaintext_http");
  m.count_handshake_failure("plaintext_http");
  m.count_backend_error("127.0.0.1:3000", BackendErrorKind::kConnect);
  m.count_backend_error("127.0.0.1:3000", BackendErrorKind::kInvalidResponse);
  m.tls_handshakes = 7;
  m.open_connections = 2;
  m.open_tunnels = 1;

  Metrics other;
  other.count_request(request("/api/", 200, 30));
  other.count_backend_error("127.0.0.1:3000", BackendErrorKind::kConnect);
  other.count_handshake_failure("no \"shared\" cipher");
  other.open_connections = 1;
  m.add(other);

  std::string text = render_prometheus(m);
  auto has = [&](const std::string& line) {
    INFO(text);
    CHECK(text.find(line + "\n") != std::string::npos);
  };
  has("portico_requests_total{route=\"/api/\",status_class=\"2xx\"} 3");
  has("portico_requests_total{route=\"/api/\",status_class=\"4xx\"} 1");
  has("portico_requests_total{route=\"/api/\",status_class=\"5xx\"} 1");
  has("portico_requests_total{route=\"/ws\",status_class=\"1xx\"} 1");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"0.005\"} 2");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"0.01\"} 2");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"0.025\"} 2");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"0.05\"} 3");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"1\"} 4");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"10\"} 4");
  has("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"+Inf\"} 5");
  has("portico_request_duration_seconds_sum{route=\"/api/\"} 20.738");
  has("portico_request_duration_seconds_count{route=\"/api/\"} 5");
  CHECK(text.find("portico_request_duration_seconds_count{route=\"/ws\"}") == std::string::npos);
  has("portico_open_connections 3");
  has("portico_open_tunnels 1");
  has("portico_tls_handshakes_total 7");
  has("portico_tls_handshake_failures_total{reason=\"plaintext_http\"} 2");
  has("portico_tls_handshake_failures_total{reason=\"no \\\"shared\\\" cipher\"} 1");
  has("portico_backend_errors_total{backend=\"127.0.0.1:3000\",kind=\"connect\"} 2");
  has("portico_backend_errors_total{backend=\"127.0.0.1:3000\",kind=\"invalid_response\"} 1");
  has("portico_bytes_received_total 60");
  has("portico_bytes_sent_total 600");
}

sockaddr_storage addr(const char* text) {
  sockaddr_storage a{};
  if (std::string_view(text).find(':') != std::string_view::npos) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&a);
    in6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &in6->sin6_addr);
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&a);
    in->sin_family = AF_INET;
    inet_pton(AF_INET, text, &in->sin_addr);
  }
  return a;
}

TEST_CASE("admin: loopback always, others only through --admin-allow", "[admin]") {
  std::vector<Cidr> none;
  CHECK(admin_client_allowed(addr("127.0.0.1"), none));
  CHECK(admin_client_allowed(addr("127.255.0.9"), none));
  CHECK(admin_client_allowed(addr("::1"), none));
  CHECK(admin_client_allowed(addr("::ffff:127.0.0.1"), none));
  CHECK_FALSE(admin_client_allowed(addr("10.0.0.5"), none));
  CHECK_FALSE(admin_client_allowed(addr("::ffff:10.0.0.5"), none));
  CHECK_FALSE(admin_client_allowed(addr("2001:db8::1"), none));
  CHECK_FALSE(admin_client_allowed(addr("128.0.0.1"), none));
  std::string error;
  auto allow = parse_cidr_list("10.0.0.0/8,2001:db8::/32", &error);
  REQUIRE(allow);
  CHECK(admin_client_allowed(addr("10.0.0.5"), *allow));
  CHECK(admin_client_allowed(addr("::ffff:10.0.0.5"), *allow));
  CHECK(admin_client_allowed(addr("2001:db8::1"), *allow));
  CHECK(admin_client_allowed(addr("127.0.0.1"), *allow));
  CHECK_FALSE(admin_client_allowed(addr("11.0.0.1"), *allow));
  CHECK_FALSE(admin_client_allowed(addr("2001:db9::1"), *allow));
}

TEST_CASE("admin: a refusal is logged at most once a second, with the count not logged",
          "[admin]") {
  LogLimiter limiter;
  uint64_t unlogged = 99;
  CHECK(limiter.allow(5, &unlogged));  // the first at once
  CHECK(unlogged == 0);
  CHECK_FALSE(limiter.allow(5, &unlogged));
  CHECK_FALSE(limiter.allow(1004, &unlogged));
  CHECK(limiter.allow(1005, &unlogged));
  CHECK(unlogged == 2);
  CHECK_FALSE(limiter.allow(2004, &unlogged));
  CHECK(limiter.allow(60'000, &unlogged));
  CHECK(unlogged == 1);
}

ConfigResult parse_ops(std::vector<std::string> extra) {
  std::vector<std::string> args = {"portico", "--routes", "r", "--cert", "c", "--key", "k"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

TEST_CASE("config: operations flags", "[metrics]") {
  ConfigResult r = parse_ops({});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK_FALSE(r.config.proxy_protocol);
  CHECK(r.config.log_format == AccessLogFormat::kKv);
  CHECK(r.config.admin_address.empty());

  r = parse_ops({"--proxy-protocol", "--log-format", "json", "--admin", "127.0.0.1:9100",
                 "--admin-allow", "10.0.0.0/8"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.proxy_protocol);
  CHECK(r.config.log_format == AccessLogFormat::kJson);
  CHECK(r.config.admin_address == "127.0.0.1");
  CHECK(r.config.admin_port == 9100);
  CHECK(r.config.admin_allow.size() == 1);

  r = parse_ops({"--admin=[::1]:0"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.admin_address == "::1");
  CHECK(r.config.admin_port == 0);

  struct Bad {
    std::vector<std::string> args;
    std::string error;
  };
  for (const Bad& bad : std::vector<Bad>{
           {{"--log-format", "xml"}, "--log-format: expected kv, combined or json, got \"xml\""},
           {{"--log-format"}, "--log-format needs kv, combined or json"},
           {{"--admin", "9100"},
            "--admin: expected ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100), got \"9100\""},
           {{"--admin", "::1:9100"},
            "--admin: expected ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100), got \"::1:9100\""},
           {{"--admin", "127.0.0.1:70000"},
            "--admin: expected ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100), got "
            "\"127.0.0.1:70000\""},
           {{"--admin", "127.0.0.1:1", "--admin-allow", "nope"},
            "--admin-allow: not an address or CIDR range: \"nope\""},
           {{"--admin-allow", "10.0.0.0/8"}, "--admin-allow needs --admin"},
       }) {
    ConfigResult b = parse_ops(bad.args);
    REQUIRE(b.action == ConfigResult::Action::kError);
    CHECK(b.error == bad.error);
  }
}

TEST_CASE("metrics: a reload forgets the routes and backends it dropped", "[metrics]") {
  Metrics m;
  AccessLogEntry entry;
  entry.status = 200;
  for (const char* route : {"/api/", "/old/", "-", "redirect"}) {
    entry.route = route;
    m.count_request(entry);
  }
  m.count_backend_error("127.0.0.1:3000", BackendErrorKind::kConnect);
  m.count_backend_error("127.0.0.1:9999", BackendErrorKind::kConnect);
  m.count_backend_error("https://10.0.0.1:443", BackendErrorKind::kTls);
  RouteParseResult parsed = RouteTable::parse(
      "/api/ http://127.0.0.1:3000 https://10.0.0.1\n/new/ http://127.0.0.1:4000\n", "r.conf");
  REQUIRE(parsed.table);
  m.forget_all_but(*parsed.table);
  CHECK(m.routes.count("/api/") == 1);
  CHECK(m.routes.count("-") == 1);         // no route matched: always kept
  CHECK(m.routes.count("redirect") == 1);  // the redirect listener's: always kept
  // The process-wide totals keep the forgotten route's requests (the status page's total).
  CHECK(m.answered_by_class[1] == 4);
  CHECK(m.routes.count("/old/") == 0);
  CHECK(m.backend_errors.size() == 2);
  CHECK(m.backend_errors.count({"127.0.0.1:9999", BackendErrorKind::kConnect}) == 0);
  CHECK(m.backend_errors.count({"https://10.0.0.1:443", BackendErrorKind::kTls}) == 1);
}

TEST_CASE("metrics: host routes that share a prefix are counted apart", "[metrics]") {
  Metrics m;
  AccessLogEntry entry;
  entry.status = 200;
  entry.route = "/";
  for (const char* host : {"a.test", "a.test", "a.test", "b.test", ""}) {
    entry.route_host = host;
    m.count_request(entry);
  }
  // A label longer than the stack buffer count_request builds it in.
  const std::string long_host(600, 'h');
  entry.route_host = long_host;
  m.count_request(entry);
  entry.route_host = "*.c.test";
  entry.route = "/api/";
  entry.status = 503;
  m.count_request(entry);

  std::string text = render_prometheus(m);
  INFO(text);
  for (const std::string& line : {
           std::string("portico_requests_total{route=\"a.test/\",status_class=\"2xx\"} 3"),
           std::string("portico_requests_total{route=\"b.test/\",status_class=\"2xx\"} 1"),
           std::string("portico_requests_total{route=\"/\",status_class=\"2xx\"} 1"),
           "portico_requests_total{route=\"" + long_host + "/\",status_class=\"2xx\"} 1",
           std::string("portico_requests_total{route=\"*.c.test/api/\",status_class=\"5xx\"} 1"),
           std::string("portico_request_duration_seconds_count{route=\"a.test/\"} 3"),
       }) {
    CHECK(text.find("\n" + line + "\n") != std::string::npos);
  }
}

TEST_CASE("metrics: a reload forgets host routes by host and prefix", "[metrics]") {
  Metrics m;
  AccessLogEntry entry;
  entry.status = 200;
  for (auto [host, prefix] : std::vector<std::pair<const char*, const char*>>{
           {"a.test", "/"}, {"b.test", "/"}, {"", "/"}, {"a.test", "/api/"}, {"*.c.test", "/"}}) {
    entry.route_host = host;
    entry.route = prefix;
    m.count_request(entry);
  }
  RouteParseResult parsed = RouteTable::parse(
      "a.test/ http://127.0.0.1:3000\n/ http://127.0.0.1:3000\nc.test/api/ "
      "http://127.0.0.1:3000\n*.c.test/ http://127.0.0.1:3000\n",
      "r.conf");
  REQUIRE(parsed.table);
  m.forget_all_but(*parsed.table);
  CHECK(m.routes.count("a.test/") == 1);
  CHECK(m.routes.count("/") == 1);
  CHECK(m.routes.count("*.c.test/") == 1);
  CHECK(m.routes.count("b.test/") == 0);      // its host is gone, though "/" is still a prefix
  CHECK(m.routes.count("a.test/api/") == 0);  // "/api/" now only under another host
  CHECK(m.routes.size() == 3);
}

TEST_CASE("admin: the Host header the admin listener answers", "[admin]") {
  for (const char* host :
       {"", "127.0.0.1", "127.0.0.1:9100", "10.1.2.3:80", "[::1]", "[::1]:9100", "localhost",
        "LocalHost:9100", "[2001:db8::1]:9100", "127.0.0.1:", "localhost.", "localhost.:9100"}) {
    INFO(host);
    CHECK(admin_host_allowed(host));
  }
  for (const char* host : {"evil.example", "evil.example:9100", "localhost.evil.example",
                           "127.0.0.1.nip.io", "::1", "[::1", "[::1]x", "127.0.0.1:x",
                           "localhost..", "localhost:123456", "[localhost]", "0x7f.1", "127.1"}) {
    INFO(host);
    CHECK_FALSE(admin_host_allowed(host));
  }
}

}  // namespace
}  // namespace portico

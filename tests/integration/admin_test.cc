// --admin: /metrics after a known sequence of requests, handshakes and a tunnel, /healthz, and
// the admin listener's own answers and limits. (A client outside loopback is played by
// connecting to this machine's own non-loopback address, when it has one.) Also --log-format
// end to end.

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "tests/support/example_server.h"
#include "tests/support/net.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"
#include "tests/support/ws_client.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

std::string tls_get(uint16_t port, const std::string& ca, const std::string& path,
                    const std::string& host = "localhost") {
  RawTlsClient client(port, ca);
  INFO(client.error());  // a rare CI failure here left no reason behind
  REQUIRE(client.ok());
  client.send("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
  return client.read_all_until_close().data;
}

// The whole answer of the admin listener to `request` (bytes as given), from `from`.
std::string admin_ask(PorticoProcess& portico, const std::string& request,
                      const std::string& from = "127.0.0.1") {
  RawTcpClient client(portico.admin_port(), from);
  INFO(client.error());
  REQUIRE(client.ok());
  client.send(request);
  return client.read_all_until_close(5s).data;
}

// An IPv4 address of this machine that is not loopback ("" when it has none). A connection to
// it from here comes from it: the admin listener sees a client outside loopback.
std::string local_non_loopback_ipv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i != nullptr && found.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        (i->ifa_flags & IFF_LOOPBACK) != 0 || (i->ifa_flags & IFF_UP) == 0) {
      continue;
    }
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    found = text;
  }
  freeifaddrs(list);
  return found;
}

}  // namespace

TEST_CASE("admin: /metrics counts a known sequence exactly", "[admin]") {
  TestBackend backend;
  WsServer ws;
  ClosedPort closed_holder;
  const uint16_t closed_port = closed_holder.port();
  const std::string down = "127.0.0.1:" + std::to_string(closed_port);
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir,
                         "/api/ http://" + backend.address() + "\n/down/ http://" + down +
                             "\n/ws http://" + ws.address() + "\n",
                         cert, {"--admin", "127.0.0.1:0"});

  for (int i = 0; i < 3; ++i) {
    CHECK(tls_get(portico.https_port(), cert.ca_cert, "/api/x").starts_with("HTTP/1.1 200"));
  }
  CHECK(tls_get(portico.https_port(), cert.ca_cert, "/nothing").starts_with("HTTP/1.1 404"));
  CHECK(tls_get(portico.https_port(), cert.ca_cert, "/down/").starts_with("HTTP/1.1 502"));
  {
    RawTcpClient plain(portico.https_port());
    plain.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    plain.read_all_until_close(5s);
  }
  // The redirect listener's answers are requests too (route "redirect", as in the access log).
  for (int i = 0; i < 2; ++i) {
    RawTcpClient redirect(portico.http_port());
    REQUIRE(redirect.send("GET /r HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
    CHECK(redirect.read_all_until_close(5s).data.starts_with("HTTP/1.1 301"));
  }
  WsClientOptions options;
  options.port = portico.https_port();
  options.ca_file = cert.ca_cert;
  options.path = "/ws";
  auto tunnel = WsClient::connect(options);
  REQUIRE(tunnel->ok());
  REQUIRE(tunnel->send_text("hello"));
  REQUIRE(tunnel->receive(5s));

  // Connections closed by the client a moment ago may still be on their way out: wait for the
  // gauge to settle (the tunnel's is the one left), then check everything at once.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = portico.admin_get("/metrics");
    if (metrics.find("\nportico_open_connections 1\n") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  INFO(metrics);
  CHECK(metrics.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(metrics.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  for (const std::string& line : {
           std::string("portico_requests_total{route=\"/api/\",status_class=\"2xx\"} 3"),
           std::string("portico_requests_total{route=\"-\",status_class=\"4xx\"} 1"),
           std::string("portico_requests_total{route=\"/down/\",status_class=\"5xx\"} 1"),
           std::string("portico_requests_total{route=\"redirect\",status_class=\"3xx\"} 2"),
           std::string("portico_request_duration_seconds_count{route=\"/api/\"} 3"),
           std::string("portico_request_duration_seconds_bucket{route=\"/api/\",le=\"+Inf\"} 3"),
           std::string("portico_open_connections 1"),
           std::string("portico_open_tunnels 1"),
           std::string("portico_tls_handshakes_total 6"),
           std::string("portico_tls_handshake_failures_total{reason=\"plaintext_http\"} 1"),
           "portico_backend_errors_total{backend=\"" + down + "\",kind=\"connect\"} 1",
       }) {
    CHECK(metrics.find("\n" + line + "\n") != std::string::npos);
  }
  CHECK(metrics.find("status_class=\"1xx\"") == std::string::npos);  // the tunnel is still open

  // Once the tunnel ends it is counted as a 1xx, and the gauges go back to zero.
  CHECK(tunnel->close(1000));
  tunnel.reset();
  for (int i = 0; i < 100; ++i) {
    metrics = portico.admin_get("/metrics");
    if (metrics.find("\nportico_open_tunnels 0\n") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);
  }
  CHECK(metrics.find("\nportico_requests_total{route=\"/ws\",status_class=\"1xx\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("\nportico_open_tunnels 0\n") != std::string::npos);
}

TEST_CASE("admin: /healthz, unknown paths and methods", "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  std::string health = portico.admin_get("/healthz");
  CHECK(health.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(health.ends_with("\r\n\r\nok\n"));
  CHECK(portico.admin_get("/nope").starts_with("HTTP/1.1 404"));
  // A query string does not change the path (a load balancer's check may add one).
  CHECK(portico.admin_get("/healthz?from=lb").starts_with("HTTP/1.1 200 OK\r\n"));
  std::string post = portico.admin_get("/metrics", "POST");
  CHECK(post.starts_with("HTTP/1.1 405"));
  CHECK(post.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
  // HEAD: the GET answer's head, its length, no body (RFC 9110 9.1, 9.3.2).
  std::string head = portico.admin_get("/healthz", "HEAD");
  CHECK(head.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(head.find("Content-Length: 3\r\n") != std::string::npos);
  CHECK(head.ends_with("\r\n\r\n"));
  CHECK(portico.admin_get("/metrics HTTP/1.1\r\nX: \x01", "GET").starts_with("HTTP/1.1 400"));
  // The admin listener serves nothing of the proxy's.
  CHECK(backend.request_count() == 0);
}

TEST_CASE("admin: the status page and its JSON", "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  ClosedPort closed;
  uint16_t dead = closed.port();
  PorticoProcess portico(
      dir, "/ http://" + backend.address() + " http://127.0.0.1:" + std::to_string(dead) + "\n",
      cert, {"--admin", "127.0.0.1:0"});
  // Two requests: one of them meets the dead backend first, which is then marked down.
  for (int i = 0; i < 2; ++i) {
    CHECK(tls_get(portico.https_port(), cert.ca_cert, "/x").starts_with("HTTP/1.1 200"));
  }
  std::string page = portico.admin_get("/");
  CHECK(page.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(page.find("Content-Type: text/html") != std::string::npos);
  CHECK(page.find("fetch('status.json'") != std::string::npos);
  std::string json = portico.admin_get("/status.json");
  INFO(json);
  CHECK(json.find("Content-Type: application/json") != std::string::npos);
  CHECK(json.find("\"requests\":2,") != std::string::npos);
  CHECK(json.find("{\"address\":\"http://" + backend.address() + "\",\"state\":\"up\"") !=
        std::string::npos);
  CHECK(json.find("{\"address\":\"http://127.0.0.1:" + std::to_string(dead) +
                  "\",\"state\":\"down\"") != std::string::npos);
}

TEST_CASE("access log: --log-format json and combined", "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  {
    PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                           {"--log-format", "json"});
    CHECK(tls_get(portico.https_port(), cert.ca_cert, "/j?q=1").starts_with("HTTP/1.1 200"));
    portico.process().wait_for_output(
        std::regex(
            R"re(\{"time":"\d{4}-\d\d-\d\dT[^"]+Z","client":"127\.0\.0\.1","method":"GET",)re"
            R"re("host":"localhost","path":"/j\?q=1","protocol":"HTTP/1\.1",)re"),
        5s);
  }
  {
    PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                           {"--log-format", "combined"});
    CHECK(tls_get(portico.https_port(), cert.ca_cert, "/c").starts_with("HTTP/1.1 200"));
    portico.process().wait_for_output(
        std::regex(R"re(127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] )re"
                   R"re("GET /c HTTP/1\.1" 200 \d+ "-" "-" \d+\.\d{3})re"),
        5s);
    // The redirect listener's lines are complete too.
    CommandResult redirected = curl({"-o", "/dev/null", "-A", "RedirectAgent/1", "-e",
                                     "https://ref.example/", portico.http_url("/r?x=1")});
    CHECK(redirected.exit_code == 0);
    portico.process().wait_for_output(
        std::regex(
            R"re("GET /r\?x=1 HTTP/1\.1" 301 \d+ "https://ref.example/" "RedirectAgent/1")re"),
        5s);
  }
}

TEST_CASE("admin: host routes that share a prefix are counted apart", "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  const std::string to = " http://" + backend.address() + "\n";
  PorticoProcess portico(dir, "a.test/" + to + "b.test/" + to + "/" + to, cert,
                         {"--admin", "127.0.0.1:0"});
  for (int i = 0; i < 3; ++i) {
    CHECK(tls_get(portico.https_port(), cert.ca_cert, "/x", "a.test").starts_with("HTTP/1.1 200"));
  }
  CHECK(tls_get(portico.https_port(), cert.ca_cert, "/y").starts_with("HTTP/1.1 200"));

  std::string json = portico.admin_get("/status.json");
  INFO(json);
  CHECK(json.find("{\"pattern\":\"a.test/\",\"requests\":3,") != std::string::npos);
  CHECK(json.find("{\"pattern\":\"b.test/\",\"requests\":0,") != std::string::npos);
  CHECK(json.find("{\"pattern\":\"/\",\"requests\":1,") != std::string::npos);
  std::string metrics = portico.admin_get("/metrics");
  INFO(metrics);
  CHECK(metrics.find("\nportico_requests_total{route=\"a.test/\",status_class=\"2xx\"} 3\n") !=
        std::string::npos);
  CHECK(metrics.find("\nportico_requests_total{route=\"/\",status_class=\"2xx\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("route=\"b.test/\"") == std::string::npos);
}

TEST_CASE("admin: a client outside the allowed ranges is closed at accept, logged once a second",
          "[admin]") {
  const std::string address = local_non_loopback_ipv4();
  if (address.empty()) {
    WARN("this machine has no non-loopback IPv4 address to play a remote client from");
    return;
  }
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: " + address + "\r\n\r\n";
  {
    PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                           {"--admin", "0.0.0.0:0"});
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) {
      RawTcpClient client(portico.admin_port(), address);
      REQUIRE(client.ok());
      client.send(request);  // may fail: the connection may be closed already
      ReadResult answer = client.read_all_until_close(5s);
      CHECK(answer.data.empty());  // not even a 403: nothing is read from it
      CHECK(answer.closed != CloseKind::kOpen);
    }
    portico.process().wait_for_output("info admin: refused client=" + address + " ");
    // At most one line a second (the first one at once): a flood cannot fill the log.
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start)
            .count();
    const std::string log = portico.stderr_text();
    INFO(log);
    CHECK(count_of(log, "admin: refused client=") <= static_cast<size_t>(seconds) + 1);
  }
  // Listed in --admin-allow, the same client is served.
  PorticoProcess allowed(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "0.0.0.0:0", "--admin-allow", address + "/32"});
  CHECK(admin_ask(allowed, request, address).starts_with("HTTP/1.1 200 OK\r\n"));
  // And may name the listener by a DNS name, as a scraper in a compose network does (the Host
  // check against DNS rebinding is for loopback clients, whose browser a page could use).
  CHECK(admin_ask(allowed, "GET /healthz HTTP/1.1\r\nHost: portico:9100\r\n\r\n", address)
            .starts_with("HTTP/1.1 200 OK\r\n"));
}

TEST_CASE("admin: at most 16 connections, and a newcomer takes the longest-silent one's place",
          "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  std::vector<std::unique_ptr<RawTcpClient>> held;
  for (int i = 0; i < 16; ++i) {
    held.push_back(std::make_unique<RawTcpClient>(portico.admin_port()));
    REQUIRE(held.back()->ok());
  }
  // The first has begun a request (busy); the second is the longest-silent one.
  REQUIRE(held[0]->send("GET /healthz HTTP/1.1\r\n"));
  std::this_thread::sleep_for(300ms);
  // A health check is served although sixteen are open: the silent second gave way.
  CHECK(portico.admin_get("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
  ReadResult gave_way = held[1]->read_all_until_close(5s);
  CHECK(gave_way.closed != CloseKind::kOpen);
  CHECK(gave_way.data.empty());
  portico.process().wait_for_output(
      "warn admin: closed the longest-silent connection to make room client=127.0.0.1 limit=16 ");
  // The busy one was kept.
  REQUIRE(held[0]->send("Host: localhost\r\n\r\n"));
  CHECK(held[0]->read_all_until_close(5s).data.starts_with("HTTP/1.1 200 OK\r\n"));
  // When every one of the sixteen is busy, the newcomer is the one closed.
  held.clear();
  std::this_thread::sleep_for(300ms);  // their closes reach portico
  for (int i = 0; i < 16; ++i) {
    held.push_back(std::make_unique<RawTcpClient>(portico.admin_port()));
    REQUIRE(held.back()->ok());
    REQUIRE(held.back()->send("GET /healthz HTTP/1.1\r\n"));
  }
  std::this_thread::sleep_for(1100ms);  // and the once-a-second log line may come again
  RawTcpClient over(portico.admin_port());
  REQUIRE(over.ok());
  ReadResult closed = over.read_all_until_close(5s);  // idle, it would be kept 10 s
  CHECK(closed.closed != CloseKind::kOpen);
  CHECK(closed.data.empty());
  portico.process().wait_for_output(
      "warn admin: closed a connection over the limit client=127.0.0.1 limit=16 ");
}

TEST_CASE("admin: every byte of the head counts against 8 KiB, and a long target is 414",
          "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  const std::string start = "GET /healthz HTTP/1.1\r\nHost: localhost\r\n";
  // Whitespace is bytes too: before a value, and before the request line.
  CHECK(admin_ask(portico, start + "X:" + std::string(9000, ' ') + "a\r\n\r\n")
            .starts_with("HTTP/1.1 431 "));
  CHECK(admin_ask(portico, std::string(9000, '\n') + start + "\r\n").starts_with("HTTP/1.1 431 "));
  CHECK(admin_ask(portico, start + "X:" + std::string(7000, ' ') + "a\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK\r\n"));
  // The same head in pieces: the count goes on across reads.
  {
    RawTcpClient client(portico.admin_port());
    REQUIRE(client.ok());
    REQUIRE(client.send(start));
    // The answer may come before the last pieces are sent: their send may fail.
    for (int i = 0; i < 10; ++i) {
      client.send("X-" + std::to_string(i) + ": " + std::string(900, 'v') + "\r\n");
    }
    client.send("\r\n");
    CHECK(client.read_all_until_close(5s).data.starts_with("HTTP/1.1 431 "));
  }
  // As on the TLS port, a target above the limit is 414.
  CHECK(admin_ask(portico,
                  "GET /healthz?" + std::string(9000, 'q') + " HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .starts_with("HTTP/1.1 414 URI Too Long\r\n"));
  // A body is not head: a POST with 9000 body bytes gets its 405.
  CHECK(admin_ask(portico,
                  "POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9000\r\n\r\n" +
                      std::string(9000, 'b'))
            .starts_with("HTTP/1.1 405 "));
}

TEST_CASE("admin: only an IP address or localhost as Host, against DNS rebinding", "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  const std::string port = std::to_string(portico.admin_port());
  // What a browser sends for a page of a name that an attacker rebinds to 127.0.0.1.
  std::string rebound =
      admin_ask(portico, "GET /status.json HTTP/1.1\r\nHost: rebind.example:" + port + "\r\n\r\n");
  CHECK(rebound.starts_with("HTTP/1.1 421 Misdirected Request\r\n"));
  CHECK(rebound.find("\r\n\r\nthe admin listener answers only a Host that is an IP address or "
                     "localhost\n") != std::string::npos);
  CHECK(rebound.find("routes") == std::string::npos);
  for (const std::string& host : {"127.0.0.1:" + port, "localhost:" + port, std::string("[::1]")}) {
    INFO(host);
    CHECK(admin_ask(portico, "GET /status.json HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
              .starts_with("HTTP/1.1 200 OK\r\n"));
  }
  CHECK(admin_ask(portico, "GET /healthz HTTP/1.1\r\nHost: \t127.0.0.1 \t\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(admin_ask(portico, "GET /healthz HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(admin_ask(portico, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
            .starts_with("HTTP/1.1 400 "));
}

TEST_CASE("admin: a client that resets before it is accepted is closed without a log line",
          "[admin]") {
  TestBackend backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  const uint16_t port = portico.admin_port();
  // Stopped, portico accepts nothing: the connection sends its request and is reset while it
  // waits in the backlog. Accepted then, it has no peer address, but the request can be read.
  REQUIRE(portico.process().signal(SIGSTOP));
  {
    RawTcpClient client(port);
    REQUIRE(client.ok());
    REQUIRE(client.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    client.reset();
  }
  REQUIRE(portico.process().signal(SIGCONT));
  CHECK(portico.admin_get("/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
  // An access-log line written after the reset connection's turn: what is before it is in.
  CHECK(tls_get(portico.https_port(), cert.ca_cert, "/marker").starts_with("HTTP/1.1 200"));
  portico.process().wait_for_output("path=/marker");
  CHECK(portico.stderr_text().find("admin: refused") == std::string::npos);
}

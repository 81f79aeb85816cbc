// --proxy-protocol: a PROXY v1 or v2 header on the raw TCP connection, then the TLS handshake on
// the same socket. The address in the header is the client the backend and the log hear about.

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/portico_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

const std::string kV2Sig("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

std::string be16(size_t v) {
  return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

std::string v2_tcp6(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  in6_addr s{}, d{};
  inet_pton(AF_INET6, src, &s);
  inet_pton(AF_INET6, dst, &d);
  std::string body = std::string(reinterpret_cast<const char*>(&s), 16) +
                     std::string(reinterpret_cast<const char*>(&d), 16) + be16(sport) + be16(dport);
  return kV2Sig + "\x21\x21" + be16(body.size()) + body;
}

std::string v2_tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  in_addr s{}, d{};
  inet_pton(AF_INET, src, &s);
  inet_pton(AF_INET, dst, &d);
  // A TLV (PP2_TYPE_AUTHORITY) that portico must skip.
  std::string tlv = std::string("\x02\x00\x0b", 3) + "example.com";
  std::string body = std::string(reinterpret_cast<const char*>(&s), 4) +
                     std::string(reinterpret_cast<const char*>(&d), 4) + be16(sport) + be16(dport) +
                     tlv;
  return kV2Sig + "\x21\x11" + be16(body.size()) + body;
}

struct Setup {
  explicit Setup(std::vector<std::string> extra = {"--proxy-protocol"})
      : cert(make_test_cert(dir)),
        portico(dir, "/ http://" + backend.address() + "\n", cert, std::move(extra)) {}

  // Sends `preamble`, does the handshake, and makes one request; returns the response bytes
  // ("" when the handshake failed).
  std::string request_after(const std::string& preamble) {
    TlsClientOptions options;
    options.ca_file = cert.ca_cert;
    options.preamble = preamble;
    RawTlsClient client(portico.https_port(), options);
    if (!client.ok()) return "";
    client.send("GET /who HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    return client.read_all_until_close().data;
  }

  TestBackend backend;
  TempDir dir;
  TestCert cert;
  PorticoProcess portico;
};

}  // namespace

TEST_CASE("PROXY v1: the backend sees the client named in the header", "[proxy-protocol]") {
  Setup setup;
  std::string response = setup.request_after("PROXY TCP4 203.0.113.7 127.0.0.1 56324 443\r\n");
  CHECK(response.starts_with("HTTP/1.1 200"));
  REQUIRE(setup.backend.wait_for_requests(1));
  ReceivedRequest request = setup.backend.requests()[0];
  CHECK(request.header("x-forwarded-for") == "203.0.113.7");
  CHECK(request.header("forwarded").find("for=203.0.113.7") != std::string::npos);
  setup.portico.process().wait_for_output("info access: client=203.0.113.7 ", 5s);
}

TEST_CASE("PROXY v2: IPv4 with a TLV and IPv6, and LOCAL keeps the real peer", "[proxy-protocol]") {
  Setup setup;
  CHECK(setup.request_after(v2_tcp4("198.51.100.9", "127.0.0.1", 40000, 443))
            .starts_with("HTTP/1.1 200"));
  CHECK(setup.request_after(v2_tcp6("2001:db8::7", "2001:db8::1", 40001, 443))
            .starts_with("HTTP/1.1 200"));
  CHECK(
      setup.request_after(kV2Sig + std::string("\x20\x00\x00\x00", 4)).starts_with("HTTP/1.1 200"));
  REQUIRE(setup.backend.wait_for_requests(3));
  auto requests = setup.backend.requests();
  CHECK(requests[0].header("x-forwarded-for") == "198.51.100.9");
  CHECK(requests[1].header("x-forwarded-for") == "2001:db8::7");
  CHECK(requests[1].header("forwarded").find("for=\"[2001:db8::7]\"") != std::string::npos);
  CHECK(requests[2].header("x-forwarded-for") == "127.0.0.1");
}

TEST_CASE("PROXY: a malformed header or none in time closes the connection", "[proxy-protocol]") {
  Setup setup({"--proxy-protocol", "--handshake-timeout", "500ms"});
  CHECK(setup.request_after("PROXY TCP4 999.0.0.1 127.0.0.1 1 443\r\n").empty());
  setup.portico.process().wait_for_output(
      "info proxy-protocol: refused client=127.0.0.1 reason=bad_source_address", 5s);
  CHECK(setup.request_after(kV2Sig + std::string("\x21\x12\x00\x0c", 4) + std::string(12, '\0'))
            .empty());
  setup.portico.process().wait_for_output("reason=v2_not_stream", 5s);
  // A client that skips the header: its ClientHello is not a PROXY header.
  CHECK(setup.request_after("").empty());
  setup.portico.process().wait_for_output("reason=not_proxy_protocol", 5s);
  // Silence: the handshake timeout ends it.
  RawTcpClient silent(setup.portico.https_port());
  REQUIRE(silent.ok());
  ReadResult r = silent.read_all_until_close(5s);
  CHECK(r.closed != CloseKind::kOpen);
  CHECK(r.data.empty());
  setup.portico.process().wait_for_output("reason=timeout", 5s);
  CHECK(setup.backend.request_count() == 0);
  CHECK(setup.backend.connections_accepted() == 0);
  // A balancer's health check sends its header and closes: no TLS byte, so no failed
  // handshake to log or count (as for a TCP check without the protocol).
  const std::string before = setup.portico.stderr_text();
  {
    RawTcpClient check(setup.portico.https_port());
    REQUIRE(check.send("PROXY TCP4 203.0.113.7 127.0.0.1 56324 443\r\n"));
    check.shutdown_write();
    CHECK(check.read_all_until_close(5s).closed != CloseKind::kOpen);
  }
  std::this_thread::sleep_for(200ms);
  CHECK(setup.portico.stderr_text().substr(before.size()).find("handshake failed") ==
        std::string::npos);
}

TEST_CASE("without --proxy-protocol a PROXY header is a failed handshake", "[proxy-protocol]") {
  Setup setup(std::vector<std::string>{});
  CHECK(setup.request_after("PROXY TCP4 203.0.113.7 127.0.0.1 56324 443\r\n").empty());
  CHECK(setup.backend.connections_accepted() == 0);
  // And a plain client still works.
  CHECK(setup.request_after("").starts_with("HTTP/1.1 200"));
}

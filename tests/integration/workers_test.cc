// --workers N: N loops on N threads, each with its own SO_REUSEPORT sockets on the same ports.
// Shown here: both loops accept (more connections are served than one worker's limit allows),
// a reload reaches every worker, /metrics sums the workers, and SIGTERM stops them all (exit 0,
// checked by PorticoProcess).

#include <catch2/catch.hpp>
#include <csignal>
#include <memory>
#include <regex>
#include <thread>
#include <vector>

#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

Handler named(std::string name) {
  return [name](const ReceivedRequest&) {
    Response r;
    r.body = name;
    return r;
  };
}

std::string tls_get(uint16_t port, const std::string& ca, const std::string& path) {
  RawTlsClient client(port, ca);
  if (!client.ok()) return "connect failed: " + client.error();
  client.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  return client.read_all_until_close().data;
}

}  // namespace

TEST_CASE("workers: two loops share the port, reloads reach both, metrics add up", "[workers]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend first(named("first")), second(named("second"));
  // 30 connections per worker at most: 40 held connections can only all be served when both
  // workers accept. The kernel spreads connections over the two sockets by a hash of the
  // addresses, so one of them gets more than 30 of 40 about once in 1,700 runs.
  PorticoProcess portico(dir, "/ http://" + first.address() + "\n", cert,
                         {"--workers", "2", "--max-connections", "30", "--admin", "127.0.0.1:0"});
  portico.admin_port();  // listening
  CHECK(portico.process().try_wait_for_output("ready version=", 10s));
  CHECK(portico.stderr_text().find(" workers=2") != std::string::npos);

  std::vector<std::unique_ptr<RawTlsClient>> held;
  for (int i = 0; i < 40; ++i) {
    TlsClientOptions options;
    options.ca_file = cert.ca_cert;
    options.timeout = 10s;
    held.push_back(std::make_unique<RawTlsClient>(portico.https_port(), options));
    INFO("connection " << i << ": " << held.back()->error() << "\n" << portico.stderr_text());
    REQUIRE(held.back()->ok());
    REQUIRE(held.back()->send("GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    REQUIRE(held.back()->read_until("first", 10s).matched);
  }
  held.clear();

  // A reload goes to every worker: every new connection, whichever loop takes it, reaches the
  // new backend.
  dir.write_file("routes.conf", "/ http://" + second.address() + "\n");
  portico.process().signal(SIGHUP);
  portico.process().wait_for_output(std::regex("configuration reloaded"), 10s);
  // The lead applied it; give the other loop its turn to run the posted snapshot.
  std::this_thread::sleep_for(200ms);
  for (int i = 0; i < 20; ++i) {
    std::string answer = tls_get(portico.https_port(), cert.ca_cert, "/after");
    INFO(answer);
    CHECK(answer.ends_with("second"));
  }
  CHECK(second.request_count() == 20);

  // /metrics: the lead's counters plus the other worker's (published every second).
  std::this_thread::sleep_for(1500ms);
  std::string metrics = portico.admin_get("/metrics");
  INFO(metrics);
  CHECK(metrics.find("portico_requests_total{route=\"/\",status_class=\"2xx\"} 60\n") !=
        std::string::npos);
  // /status.json counts the whole process too.
  std::string status = portico.admin_get("/status.json");
  INFO(status);
  CHECK(status.find("\"requests\":60,") != std::string::npos);
}

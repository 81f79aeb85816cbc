// Hostile clients and failing backends: slowloris, abandoned handshakes, a backend that
// restarts, a graceful stop with work in flight.

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include "tests/support/http_message.h"
#include "tests/support/net.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

size_t open_fds(pid_t pid) {
  size_t n = 0;
  std::string path = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* dir = opendir(path.c_str())) {
    while (readdir(dir)) ++n;
    closedir(dir);
  }
  return n;
}

}  // namespace

TEST_CASE("slowloris: dribbling clients are cut off while others are served", "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--header-timeout", "1500ms"});
  std::vector<std::unique_ptr<RawTlsClient>> dribblers;
  for (int i = 0; i < 300; ++i) {
    auto client = std::make_unique<RawTlsClient>(portico.https_port(), cert.ca_cert);
    REQUIRE(client->ok());
    REQUIRE(client->send("GET /slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: "));
    dribblers.push_back(std::move(client));
  }
  // Keep dribbling one byte per connection now and then: never finishing the head.
  auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    for (auto& client : dribblers) client->send("a", 100ms);
    // A normal client is still answered meanwhile.
    CommandResult normal = curl({"--cacert", cert.ca_cert, portico.url("/normal")});
    CHECK(normal.stdout == "ok GET /normal");
    std::this_thread::sleep_for(200ms);
  }
  // Every dribbler was answered 408 and closed, however slowly it was sending.
  size_t answered = 0;
  for (auto& client : dribblers) {
    ReadResult read = client->read_all_until_close(5s);
    if (read.data.rfind("HTTP/1.1 408", 0) == 0 && read.closed != CloseKind::kOpen) ++answered;
  }
  CHECK(answered == dribblers.size());
  CHECK(backend.request_count() >= 1);
  for (const ReceivedRequest& r : backend.requests()) CHECK(r.target == "/normal");
}

// The connection's one timer is moved only when a deadline comes sooner; a later one (keep-alive
// after a short head timeout) is picked up when the timer fires early. Both halves are checked:
// the early firing must not end the connection, and the later deadline must.
TEST_CASE("keep-alive: an idle connection outlives the head timeout and closes after its own",
          "[hardening][timeouts]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--header-timeout", "300ms", "--keepalive-timeout", "1500ms"});
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  INFO(client.error());
  REQUIRE(client.ok());
  REQUIRE(client.send("GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  CHECK(client.read_until("ok GET /one").matched);
  // Idle for longer than the head timeout the request armed, shorter than the keep-alive one.
  std::this_thread::sleep_for(800ms);
  REQUIRE(client.send("GET /two HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  CHECK(client.read_until("ok GET /two").matched);
  // Idle again: portico ends the connection once the keep-alive timeout passes, answering
  // nothing (no 408: there is no request to answer).
  ReadResult rest = client.read_all_until_close(10s);
  CHECK(rest.closed != CloseKind::kOpen);
  CHECK(rest.data.empty());
  CHECK(backend.request_count() == 2);
}

TEST_CASE("a new connection's first request is awaited for the head timeout, not keep-alive's",
          "[hardening][timeouts]") {
  // NGINX's client_header_timeout covers the first request, the wait and the head together;
  // keepalive_timeout the waits between requests.
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                         {"--header-timeout", "3s", "--keepalive-timeout", "60s"});
  // A connection that never sends one ends, silently, at the head timeout.
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.ok());
  ReadResult rest = client.read_all_until_close(10s);  // well before keep-alive's 60 s
  CHECK(rest.closed != CloseKind::kOpen);
  CHECK(rest.data.empty());
  // A client that waits most of it and then dribbles its head gets the 408 when the timeout
  // after the handshake runs out, not a fresh timeout from its first byte.
  RawTlsClient slow(portico.https_port(), cert.ca_cert);
  REQUIRE(slow.ok());
  const auto connected = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(2500ms);
  const std::string head = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
  std::string answer;
  for (size_t i = 0; answer.empty() && i < 40; ++i) {
    if (!slow.send(std::string(1, head[i % head.size()]))) break;
    answer = slow.read_until("\r\n\r\n", 200ms).data;
  }
  CHECK(answer.rfind("HTTP/1.1 408", 0) == 0);
  // At 3 s after the handshake, not at 2.5 + 3 s.
  CHECK(std::chrono::steady_clock::now() - connected < 4500ms);
}

TEST_CASE("1,000 connections dropped mid-handshake leave nothing behind", "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  pid_t pid = portico.process().pid();
  size_t fds_before = open_fds(pid);
  // A TLS record header and the start of a ClientHello, then the connection goes away: half
  // with a FIN, half with an RST.
  const std::string partial_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  for (int i = 0; i < 1000; ++i) {
    RawTcpClient client(portico.https_port());
    REQUIRE(client.ok());
    client.send(partial_hello);
    if (i % 2 == 0) {
      client.reset();
    } else {
      client.close();
    }
  }
  CommandResult after = curl({"--cacert", cert.ca_cert, portico.url("/after")});
  CHECK(after.stdout == "ok GET /after");
  // Every abandoned connection is closed: the descriptor count comes back down.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (open_fds(pid) > fds_before + 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  INFO("fds before " << fds_before << ", after " << open_fds(pid));
  CHECK(open_fds(pid) <= fds_before + 4);
}

TEST_CASE("a backend that restarts is used again as soon as it is back", "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  uint16_t port = free_port();
  std::vector<std::string> argv = {PORTICO_BUILD_DIR "/examples/api_server", "--port",
                                   std::to_string(port), "--quiet"};
  PorticoProcess portico(dir, "/ http://127.0.0.1:" + std::to_string(port) + "\n", cert);
  auto get = [&] {
    return curl({"--cacert", cert.ca_cert, "-o", "/dev/null", "-w", "%{http_code}",
                 portico.url("/small")})
        .stdout;
  };
  {
    Process backend(argv);
    backend.wait_for_output("listening on", 10s, Stream::kStdout);
    CHECK(get() == "200");
    backend.signal(SIGTERM);
    backend.wait_exit(10s);
  }
  CHECK(get() == "502");  // down: refused at once
  Process backend(argv);
  backend.wait_for_output("listening on", 10s, Stream::kStdout);
  CHECK(get() == "200");  // back: no back-off for a route's only backend
}

TEST_CASE("SIGTERM: what is still in flight at the 10 s drain deadline is cut and logged",
          "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend([](const ReceivedRequest&) {
    Response r;
    r.never_respond = true;
    return r;
  });
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.send("GET /forever HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  REQUIRE(backend.wait_for_requests(1, 5s));
  portico.process().signal(SIGTERM);
  portico.process().wait_for_output(
      std::regex(R"(info access: .*path=/forever .*status=499 .*)"
                 R"(error=portico_stopped_before_the_exchange_ended\ninfo portico: stopped\n)"),
      15s);
  CHECK(client.read_all_until_close(5s).closed != CloseKind::kOpen);
  auto status = portico.process().wait_exit(5s);
  REQUIRE(status);
  CHECK(status->exited_ok());
}

TEST_CASE("SIGQUIT stops gracefully, as NGINX's does: the request in flight is answered",
          "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend([](const ReceivedRequest&) {
    Response r;
    r.delay_before_headers = 500ms;
    r.body = "finished";
    return r;
  });
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.send("GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  REQUIRE(backend.wait_for_requests(1, 5s));
  portico.process().signal(SIGQUIT);
  ReadResult answer = client.read_all_until_close(5s);
  CHECK(answer.data.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(answer.data.find("Connection: close") != std::string::npos);
  CHECK(answer.data.find("\r\n\r\nfinished") != std::string::npos);
  auto status = portico.process().wait_exit(5s);
  REQUIRE(status);
  CHECK(status->exited_ok());
  CHECK(portico.process().stderr_text().find("stopping signal=SIGQUIT") != std::string::npos);
}

TEST_CASE("SIGTERM: open redirect-listener connections do not hold the stop",
          "[hardening][redirect]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  // One idle keep-alive connection, and one whose client reads none of the answers it asked
  // for, so that they wait in portico's queue.
  RawTcpClient idle(portico.http_port());
  REQUIRE(idle.send("GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"));
  REQUIRE(idle.read_until("\r\n\r\n", 5s).matched);
  RawTcpClient flooding(portico.http_port());
  std::string requests;
  for (int i = 0; i < 100000; ++i) requests += "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n";
  REQUIRE(flooding.send(requests, 20s));
  std::this_thread::sleep_for(500ms);
  const auto signalled = std::chrono::steady_clock::now();
  portico.process().signal(SIGTERM);
  auto status = portico.process().wait_exit(15s);
  REQUIRE(status);
  CHECK(status->exited_ok());  // under ASan: no leak report either
  // Nothing in flight on the TLS port: no reason to wait for the 10 s drain deadline.
  CHECK(std::chrono::steady_clock::now() - signalled < 5s);
  CHECK(portico.process().stderr_text().find("drain timeout") == std::string::npos);
}

TEST_CASE("a second stop signal exits at once with status 1, with several workers too",
          "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend([](const ReceivedRequest&) {
    Response r;
    r.never_respond = true;
    return r;
  });
  size_t requests = 0;
  for (const char* workers : {"1", "2"}) {
    INFO("workers " << workers);
    PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert,
                           {"--workers", workers});
    portico.expect_nonzero_exit();
    // One request held open: its worker drains for 10 s; with two workers the lead may have
    // nothing to drain and its loop ends first.
    RawTlsClient client(portico.https_port(), cert.ca_cert);
    REQUIRE(client.send("GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    REQUIRE(backend.wait_for_requests(++requests, 5s));
    portico.process().signal(SIGTERM);
    REQUIRE(portico.process().try_wait_for_output("stopping signal=SIGTERM", 5s));
    std::this_thread::sleep_for(300ms);
    portico.process().signal(SIGTERM);
    auto status = portico.process().wait_exit(5s);  // well before the 10 s drain deadline
    REQUIRE(status);
    CHECK(status->describe() == "exit 1");
    CHECK(portico.process().stderr_text().find("second stop signal: exiting now") !=
          std::string::npos);
  }
}

TEST_CASE("SIGUSR1 reopens the access log file, as logrotate expects", "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  const std::string log = dir.file("access.log");
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert, {"--access-log", log});
  auto get = [&](const std::string& path) {
    return curl({"--cacert", cert.ca_cert, "-o", "/dev/null", "-w", "%{http_code}",
                 portico.url(path)})
        .stdout;
  };
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  REQUIRE(get("/before") == "200");
  REQUIRE(std::rename(log.c_str(), (log + ".1").c_str()) == 0);
  portico.process().signal(SIGUSR1);
  REQUIRE(portico.process().try_wait_for_output("access log reopened", 5s));
  REQUIRE(get("/after") == "200");
  CHECK(read(log + ".1").find("path=/before") != std::string::npos);
  CHECK(read(log + ".1").find("path=/after") == std::string::npos);
  CHECK(read(log).find("path=/after") != std::string::npos);
}

TEST_CASE("SIGTERM: requests in flight finish, new connections are refused, exit 0",
          "[hardening]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend([](const ReceivedRequest&) {
    Response r;
    r.body = "slow but complete";
    r.delay_before_headers = 1500ms;
    return r;
  });
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  auto in_flight = std::async(std::launch::async, [&] {
    return curl({"--cacert", cert.ca_cert, portico.url("/slow")});
  });
  REQUIRE(backend.wait_for_requests(1, 5s));
  portico.process().signal(SIGTERM);
  REQUIRE(portico.process().try_wait_for_output("stopping signal=SIGTERM", 5s));
  // A certbot hook's HUP and logrotate's USR1 reaching the draining process (a restart's old
  // one) must not end it with the signals' default action.
  portico.process().signal(SIGHUP);
  portico.process().signal(SIGUSR1);
  CHECK(portico.process().try_wait_for_output("SIGHUP ignored: stopping", 5s));
  // The listener is closed: a new connection is refused.
  CommandResult refused = curl({"--cacert", cert.ca_cert, portico.url("/late")});
  CHECK(refused.exit_code == 7);
  CommandResult finished = in_flight.get();
  CHECK(finished.exit_code == 0);
  CHECK(finished.stdout == "slow but complete");
  auto status = portico.process().wait_exit(15s);
  REQUIRE(status);
  CHECK(status->exited_ok());
}

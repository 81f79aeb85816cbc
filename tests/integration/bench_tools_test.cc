// The benchmark suite's own clients (tests/bench/), run briefly through a real portico in front
// of the example backends: the figures in docs/performance.md are only as good as these tools,
// so each is checked to do the work it reports and to count what went wrong as wrong.

#include <catch2/catch.hpp>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/raw_ws_backend.h"
#include "tests/support/example_server.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"
#include "tests/support/ws_client.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

const std::string kBin = std::string(PORTICO_BUILD_DIR) + "/bin/";

// The integer KEY=N in a tool's "result ..." line; fails the test if the line or key is missing.
uint64_t result_field(const CommandResult& run, const std::string& key) {
  std::smatch line;
  REQUIRE(std::regex_search(run.stdout, line, std::regex("result [^\n]*")));
  std::smatch value;
  const std::string text = line[0].str();
  REQUIRE(std::regex_search(text, value, std::regex(" " + key + "=([0-9]+)")));
  return std::stoull(value[1]);
}

std::vector<std::string> ws_load_echo(uint16_t port, int connections, size_t size,
                                      const std::string& seconds) {
  return {kBin + "ws_load",
          "echo",
          "--host",
          "127.0.0.1",
          "--port",
          std::to_string(port),
          "--tls",
          "--sni",
          "localhost",
          "--path",
          "/ws",
          "--connections",
          std::to_string(connections),
          "--size",
          std::to_string(size),
          "--duration",
          seconds};
}

}  // namespace

TEST_CASE("bench tools: ws_load echoes small and large messages through portico without errors",
          "[bench]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  WsServer ws;
  PorticoProcess portico(dir, "/ws http://" + ws.address() + "\n", cert, {"--http-port", "0"});
  for (const size_t size : {size_t{64}, size_t{65536}}) {
    CommandResult run = run_command(ws_load_echo(portico.https_port(), 4, size, "1"), "", 60s);
    INFO("size " << size << ": " << run.describe());
    CHECK(run.exit_code == 0);
    CHECK(result_field(run, "messages") > 0);
    CHECK(result_field(run, "errors") == 0);
    CHECK(result_field(run, "failed") == 0);
    CHECK(result_field(run, "size") == size);
  }
}

TEST_CASE("bench tools: ws_load counts an echo whose bytes differ as an error, not a message",
          "[bench]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  RawWsBackend backend;
  PorticoProcess portico(dir, "/ws http://" + backend.address() + "\n", cert, {"--http-port", "0"});
  Process load(ws_load_echo(portico.https_port(), 1, 64, "2"));
  REQUIRE(backend.wait_upgraded(10s));
  // ws_load sends its first message as soon as the tunnel is open; answer it with a message of
  // the right length and opcode whose bytes are not the ones sent.
  std::this_thread::sleep_for(500ms);
  backend.send_raw(WsClient::encode_frame(2, true, std::string(64, 'y'), /*mask=*/false));
  OutputMatch result = load.wait_for_output(
      std::regex(R"(result mode=echo .* messages=(\d+) .* errors=(\d+) failed=(\d+))"), 30s,
      Stream::kStdout);
  CHECK(std::stoi(result[1]) == 0);
  CHECK(std::stoi(result[2]) >= 1);
  CHECK(std::stoi(result[3]) == 0);
}

TEST_CASE("bench tools: ws_load handshake opens a new TLS connection per request", "[bench]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  ExampleServer api("api_server");
  PorticoProcess portico(dir, "/ http://" + api.address() + "\n", cert,
                         {"--http-port", "0", "--admin", "127.0.0.1:0", "--access-log", "off"});
  CommandResult run =
      run_command({kBin + "ws_load", "handshake", "--host", "127.0.0.1", "--port",
                   std::to_string(portico.https_port()), "--tls", "--sni", "localhost", "--path",
                   "/small", "--connections", "4", "--duration", "1"},
                  "", 60s);
  INFO(run.describe());
  const uint64_t requests = result_field(run, "requests");
  CHECK(requests > 0);
  CHECK(result_field(run, "errors") == 0);
  // Each request was a TLS connection of its own that portico completed a handshake for.
  std::smatch m;
  const std::string metrics = portico.admin_get("/metrics");
  REQUIRE(std::regex_search(metrics, m, std::regex(R"(\nportico_tls_handshakes_total (\d+)\n)")));
  CHECK(std::stoull(m[1]) >= requests);
}

TEST_CASE("bench tools: first_byte stops at the first body byte of a large response", "[bench]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  ExampleServer api("api_server");
  PorticoProcess portico(dir, "/ http://" + api.address() + "\n", cert, {"--http-port", "0"});
  CommandResult run = run_command(
      {kBin + "first_byte", "--host", "127.0.0.1", "--port", std::to_string(portico.https_port()),
       "--sni", "localhost", "--path", "/bytes/1048576", "--rate", "1250000", "--trials", "3"},
      "", 60s);
  INFO(run.describe());
  CHECK(run.exit_code == 0);
  CHECK(result_field(run, "trials") == 3);
  // It stops at the first body byte: far less than the 1 MiB body has to arrive. (How much
  // does arrive depends on how the pacing's sleeps land, so no tighter bound here: the record
  // sizes themselves are tested in tls_test.cc, the figure is the benchmark's.)
  const uint64_t bytes = result_field(run, "max_bytes");
  CHECK(bytes > 0);
  CHECK(bytes < 256 * 1024);
}

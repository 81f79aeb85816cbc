// The example API server (examples/api_server), which the demo and the benchmarks depend on:
// started as a real process on an ephemeral port and exercised with curl and raw sockets.

#include <signal.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "tests/support/http_message.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"

namespace portico::test {
namespace {

const char kApiServer[] = PORTICO_BUILD_DIR "/examples/api_server";

struct ApiServer {
  std::unique_ptr<Process> process;
  uint16_t port = 0;

  explicit ApiServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {kApiServer, "--port", "0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<Process>(argv);
    auto m = process->wait_for_output(std::regex(R"(api_server listening on \S+:(\d+)\n)"), 10s,
                                      Stream::kStdout);
    port = static_cast<uint16_t>(std::stoi(m[1]));
  }
  // SIGTERM must end it with status 0 (under ASan, also: no leak, no error report).
  void stop_and_check() {
    REQUIRE(process->signal(SIGTERM));
    auto status = process->wait_exit(10s);
    REQUIRE(status);
    INFO(process->stderr_text());
    CHECK(status->exited_ok());
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
};

TEST_CASE("api_server answers its endpoints", "[examples]") {
  ApiServer server;

  auto hello = curl("-H", "X-Forwarded-Proto: https", "-H", "X-Forwarded-For: 192.0.2.7",
                    server.url("/api/hello?x=1"));
  REQUIRE(hello.exit_code == 0);
  CHECK_THAT(hello.stdout, Catch::StartsWith("{\"message\":\"hello from the API\",\"time\":\""));
  CHECK_THAT(hello.stdout, Catch::Matches(R"(.*"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ".*\n)"));
  CHECK_THAT(hello.stdout, Catch::Contains("\"forwarded_proto\":\"https\""));
  CHECK_THAT(hello.stdout, Catch::Contains("\"forwarded_for\":\"192.0.2.7\""));
  CHECK_THAT(hello.stdout,
             Catch::Contains("\"host\":\"127.0.0.1:" + std::to_string(server.port) + "\""));
  CHECK_THAT(hello.stdout, Catch::Contains("\"path\":\"/api/hello?x=1\""));
  auto plain = curl(server.url("/api/hello"));
  CHECK_THAT(plain.stdout, Catch::Contains("\"forwarded_proto\":null"));

  auto headers = curl("-H", "X-Twice: 1", "-H", "x-twice: 2", "-H", "X-Quote: a\"b",
                      server.url("/api/headers"));
  CHECK_THAT(headers.stdout, Catch::Contains("\"X-Twice\":[\"1\",\"2\"]"));
  CHECK_THAT(headers.stdout, Catch::Contains("\"X-Quote\":\"a\\\"b\""));

  auto bytes =
      curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}", server.url("/bytes/1048576"));
  REQUIRE(bytes.exit_code == 0);
  CHECK(bytes.stdout == "200 1048576");
  auto too_many = curl("-o", "/dev/null", "-w", "%{http_code}", server.url("/bytes/1073741825"));
  CHECK(too_many.stdout == "400");

  std::string body(300000, 'b');
  body += "end";
  TempDir dir;
  std::string file = dir.write_file("body", body);
  auto echo = curl("--data-binary", "@" + file, "-H", "Content-Type: application/x-test", "-D",
                   dir.file("head"), server.url("/api/echo"));
  REQUIRE(echo.exit_code == 0);
  CHECK(echo.stdout == body);
  auto chunked_echo = curl("--data-binary", "@" + file, "-H", "Transfer-Encoding: chunked",
                           server.url("/api/echo"));
  CHECK(chunked_echo.stdout == body);

  auto small = curl("-i", server.url("/small"));
  CHECK(small.stdout ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n");
  auto missing = curl("-w", " %{http_code}", server.url("/nothing"));
  CHECK(missing.stdout == "{\"error\":\"not found\",\"path\":\"/nothing\"}\n 404");
  auto wrong_method =
      curl("-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}", server.url("/api/hello"));
  CHECK(wrong_method.stdout == "405");

  server.process->wait_for_output("GET /api/hello?x=1 200", 5s);
  server.stop_and_check();
}

TEST_CASE("api_server answers pipelined requests in order", "[examples]") {
  ApiServer server({"--quiet"});
  RawTcpClient client(server.port);
  REQUIRE(client.ok());
  std::string requests;
  for (int i = 0; i < 50; ++i) requests += "GET /small HTTP/1.1\r\nHost: x\r\n\r\n";
  requests +=
      "HEAD /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /bytes/200000 HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /api/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
      "POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
      "GET /api/hello HTTP/1.1\r\nHost: pipelined\r\nConnection: close\r\n\r\n"
      "GET /small HTTP/1.1\r\nHost: x\r\n\r\n";  // after Connection: close: never answered
  // Sent in small pieces too, so that requests straddle reads.
  for (size_t off = 0; off < requests.size(); off += 1000) {
    REQUIRE(client.send(std::string_view(requests).substr(off, 1000)));
  }
  auto got = client.read_all_until_close(20s);
  CHECK(got.closed == CloseKind::kEof);
  std::vector<std::string> methods(50, "GET");
  methods.insert(methods.end(), {"HEAD", "GET", "POST", "POST", "GET"});
  auto responses = parse_http_responses(got.data, methods);
  REQUIRE(responses.size() == 55);
  for (int i = 0; i < 50; ++i) CHECK(responses[i].body == "hello, world\n");
  CHECK(responses[50].header("content-length") == "100");
  CHECK(responses[50].body.empty());
  CHECK(responses[51].body == std::string(200000, 'x'));
  CHECK(responses[52].body == "abcdefg");
  CHECK(responses[53].body == "hello");
  CHECK_THAT(responses[54].body, Catch::Contains("\"host\":\"pipelined\""));
  CHECK(responses[54].header("connection") == "close");
  for (const auto& r : responses) {
    CHECK(r.complete);
    CHECK(r.error.empty());
  }
  server.stop_and_check();
}

TEST_CASE("api_server bounds its memory for a client that does not read", "[examples]") {
  ApiServer server({"--quiet"});
  RawTcpClient client(server.port);
  REQUIRE(client.send("GET /bytes/1073741824 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = client.read_until("xxxxxxxx", 5s);
  REQUIRE(first.matched);
  // Let it fill the socket buffers; a server without backpressure would now hold the GiB.
  std::this_thread::sleep_for(500ms);
  long rss = rss_kib(server.process->pid());
  CHECK(rss > 0);
  CHECK(rss < 64 * 1024);
  client.reset();
  // Still serving after the aborted transfer.
  auto small = curl(server.url("/small"));
  CHECK(small.stdout == "hello, world\n");
  server.stop_and_check();
}

TEST_CASE("api_server serves static files without path traversal", "[examples]") {
  TempDir dir;
  dir.write_file("site/index.html", "<h1>portico</h1>");
  dir.write_file("site/app.js", "console.log(1)");
  dir.write_file("site/img/logo.svg", "<svg/>");
  dir.write_file("secret.txt", "do not serve");
  ApiServer server({"--static", dir.file("site")});

  auto index = curl("-D", "-", server.url("/"));
  CHECK_THAT(index.stdout, Catch::Contains("Content-Type: text/html; charset=utf-8"));
  CHECK_THAT(index.stdout, Catch::EndsWith("\r\n\r\n<h1>portico</h1>"));
  auto js = curl("-D", "-", server.url("/app.js"));
  CHECK_THAT(js.stdout, Catch::Contains("Content-Type: text/javascript"));
  auto svg = curl("-D", "-", server.url("/img/logo.svg"));
  CHECK_THAT(svg.stdout, Catch::Contains("Content-Type: image/svg+xml"));

  RawTcpClient client(server.port);
  REQUIRE(
      client.send("GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /img/%2e%2e/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                  "GET /missing.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto got = client.read_all_until_close(10s);
  auto responses = parse_http_responses(got.data);
  REQUIRE(responses.size() == 3);
  CHECK(responses[0].status == 400);
  CHECK(responses[1].status == 400);
  CHECK(responses[2].status == 404);
  CHECK(got.data.find("do not serve") == std::string::npos);
  server.stop_and_check();
}

}  // namespace
}  // namespace portico::test

// `portico --check [--probe]`: validates the configuration, prints the effective table and one
// line per certificate, host and backend check, and exits 0 (all good), 1 (a check failed) or 2
// (the configuration does not load). Nothing listens.

#include <catch2/catch.hpp>
#include <regex>
#include <string>
#include <vector>

#include "tests/support/example_server.h"
#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

CommandResult run_check(const TempDir& dir, const std::string& routes, const TestCert& cert,
                        std::vector<std::string> extra = {}) {
  const std::string routes_path = dir.write_file("routes.conf", routes);
  std::vector<std::string> argv = {PORTICO_BINARY, "--routes", routes_path, "--cert",
                                   cert.fullchain, "--key",    cert.key,    "--check"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_command(argv, "", 60s);
}

bool has_line(const std::string& text, const std::string& pattern) {
  return std::regex_search(text, std::regex(pattern, std::regex::multiline));
}

}  // namespace

TEST_CASE("portico --check prints the effective table and exits 0", "[check]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  CommandResult r = run_check(dir,
                              "# the classic layout\n"
                              "/           http://127.0.0.1:9001\n"
                              "/api/       http://127.0.0.1:9002 strip_prefix\n"
                              "/socket.io/ http://127.0.0.1:9003 upgrade=only ws_idle=1m\n",
                              cert);
  INFO(r.describe());
  CHECK(r.exit_code == 0);
  CHECK(has_line(r.stdout,
                 "^/ http://127\\.0\\.0\\.1:9001 strip_prefix=off connect_timeout=5s "
                 "read_timeout=1m ws_idle=30s max_body=0 max_ws_message=1m origins=- "
                 "upgrade=allow balance=round_robin$"));
  CHECK(has_line(r.stdout, "^/api/ http://127\\.0\\.0\\.1:9002 strip_prefix=on "));
  CHECK(has_line(r.stdout,
                 "^/socket\\.io/ http://127\\.0\\.0\\.1:9003 .* ws_idle=1m .* "
                 "upgrade=only "));
  CHECK(has_line(r.stdout,
                 "^cert PASS file=\\S+ expires=\\d{4}-\\d\\d-\\d\\dT\\S+Z "
                 "days_left=(29|30)$"));
  CHECK(has_line(r.stdout, "^cert PASS file=\\S+ key=\\S+ detail="));
  CHECK(has_line(r.stdout, "^portico: check passed routes=3 failures=0 warnings=0$"));
  // Without --probe nothing is contacted.
  CHECK(r.stdout.find("probe ") == std::string::npos);
  CHECK(r.stderr.empty());
}

TEST_CASE("portico --check warns of an --acme-webroot that is not a directory", "[check]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  const std::string file = dir.write_file("not-a-dir", "x");
  for (const std::string& webroot : {dir.file("missing"), file}) {
    INFO(webroot);
    CommandResult r =
        run_check(dir, "/ http://127.0.0.1:9001\n", cert, {"--acme-webroot", webroot});
    CHECK(r.exit_code == 0);  // a warning: certbot may create it later
    CHECK(has_line(r.stdout, "^acme WARN detail=" + webroot + ": "));
    CHECK(has_line(r.stdout, "^portico: check passed routes=1 failures=0 warnings=1$"));
  }
  CommandResult ok =
      run_check(dir, "/ http://127.0.0.1:9001\n", cert, {"--acme-webroot", dir.path()});
  CHECK(ok.stdout.find("acme WARN") == std::string::npos);
}

TEST_CASE("portico --check reports every error of a bad route file with its line and exits 2",
          "[check]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  CommandResult r = run_check(dir,
                              "/ http://127.0.0.1:9001\n"
                              "/api/ http://127.0.0.1:9002 strip_prefx\n"
                              "/ws htp://127.0.0.1:9003\n",
                              cert);
  INFO(r.describe());
  CHECK(r.exit_code == 2);
  const std::string file = dir.file("routes.conf");
  CHECK(has_line(r.stderr, "^" + file + ":2:\\d+: unknown option \"strip_prefx\""));
  CHECK(has_line(r.stderr, "^" + file + ":3:\\d+: unsupported backend URL scheme \"htp\""));
  CHECK(has_line(r.stderr, "^portico: configuration is invalid errors=2$"));
  CHECK(r.stdout.empty());  // no table when the file does not load
}

TEST_CASE("portico --check exits 2 for a key that does not match the certificate", "[check]") {
  TempDir dir;
  TestCert one = make_test_cert(dir, {"localhost"}, "one");
  TestCert two = make_test_cert(dir, {"localhost"}, "two");
  TestCert mixed = one;
  mixed.key = two.key;
  CommandResult r = run_check(dir, "/ http://127.0.0.1:9001\n", mixed);
  INFO(r.describe());
  CHECK(r.exit_code == 2);
  CHECK(has_line(r.stderr, "private key does not match the certificate"));
}

TEST_CASE("portico --check --probe passes against a live backend and fails against a closed port",
          "[check]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir, {"localhost", "api.example.com"});
  TestBackend backend;

  SECTION("live") {
    CommandResult r = run_check(dir,
                                "/ http://" + backend.address() +
                                    "\n"
                                    "api.example.com/v1/ http://localhost:" +
                                    std::to_string(backend.port()) + "\n",
                                cert, {"--probe"});
    INFO(r.describe());
    CHECK(r.exit_code == 0);
    CHECK(has_line(r.stdout, "^probe PASS route=/ backend=http://" + backend.address() +
                                 " detail=status=200 "));
    // A backend given by name is resolved.
    CHECK(has_line(r.stdout, "^probe PASS route=api\\.example\\.com/v1/ backend=http://localhost:" +
                                 std::to_string(backend.port()) + " detail=status=200 "));
    REQUIRE(backend.wait_for_requests(2));
    std::vector<ReceivedRequest> requests = backend.requests();
    std::sort(requests.begin(), requests.end(),
              [](const auto& a, const auto& b) { return a.target < b.target; });
    CHECK(requests[0].method == "GET");
    CHECK(requests[0].target == "/");
    CHECK(requests[0].header("Host") == "localhost");
    CHECK(requests[1].target == "/v1/");
    CHECK(requests[1].header("Host") == "api.example.com");
  }
  SECTION("closed port") {
    ClosedPort closed_holder;
    const uint16_t closed = closed_holder.port();
    CommandResult r = run_check(dir,
                                "/ http://" + backend.address() +
                                    "\n/down/ http://127.0.0.1:" + std::to_string(closed) + "\n",
                                cert, {"--probe", "--probe-timeout", "2s"});
    INFO(r.describe());
    CHECK(r.exit_code == 1);
    CHECK(has_line(r.stdout, "^probe PASS route=/ "));
    CHECK(has_line(r.stdout, "^probe FAIL route=/down/ backend=http://127\\.0\\.0\\.1:" +
                                 std::to_string(closed) +
                                 " detail=connect 127\\.0\\.0\\.1: Connection refused$"));
    CHECK(has_line(r.stdout, "^portico: check failed routes=2 failures=1 "));
  }
}

TEST_CASE("portico --check --probe: a WebSocket handshake for upgrade=only routes", "[check]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);

  SECTION("ws_server answers 101 with the right accept key") {
    WsServer ws;
    CommandResult r =
        run_check(dir, "/ws http://127.0.0.1:" + std::to_string(ws.port) + " upgrade=only\n", cert,
                  {"--probe"});
    INFO(r.describe());
    CHECK(r.exit_code == 0);
    CHECK(has_line(r.stdout, "^probe PASS route=/ws backend=http://127\\.0\\.0\\.1:" +
                                 std::to_string(ws.port) + " detail=status=101 websocket "));
  }
  SECTION("a plain HTTP backend does not upgrade") {
    TestBackend backend;
    CommandResult r =
        run_check(dir, "/ws http://" + backend.address() + " upgrade=only\n", cert, {"--probe"});
    INFO(r.describe());
    CHECK(r.exit_code == 1);
    CHECK(has_line(r.stdout, "^probe FAIL route=/ws backend=http://" + backend.address() +
                                 " detail=status=200: expected 101 Switching Protocols"));
    // What the backend got was a real opening handshake (RFC 6455 section 4.1).
    REQUIRE(backend.wait_for_requests(1));
    const ReceivedRequest request = backend.requests().at(0);
    CHECK(request.target == "/ws");
    CHECK(iequals(request.header("Upgrade"), "websocket"));
    CHECK(request.header("Sec-WebSocket-Version") == "13");
    CHECK(request.header("Sec-WebSocket-Key").size() == 24);
  }
}

TEST_CASE("portico --check reports route hosts the certificate does not cover", "[check]") {
  TempDir dir;
  TestCert cert =
      make_test_cert(dir, {"localhost", "*.example.com", "www.example.org", "127.0.0.1"});
  CommandResult r = run_check(dir,
                              "/ http://127.0.0.1:9001\n"
                              "a.example.com/ http://127.0.0.1:9001\n"
                              "*.example.com/x/ http://127.0.0.1:9001\n"
                              "www.example.org/ http://127.0.0.1:9001\n"
                              "b.c.example.com/ http://127.0.0.1:9001\n"
                              "*.example.org/ http://127.0.0.1:9001\n"
                              "127.0.0.1/ http://127.0.0.1:9001\n",
                              cert);
  INFO(r.describe());
  CHECK(r.exit_code == 1);
  CHECK(has_line(r.stdout,
                 "^host PASS host=a\\.example\\.com line=2 detail=covered by "
                 "DNS:\\*\\.example\\.com$"));
  CHECK(has_line(r.stdout, "^host PASS host=\\*\\.example\\.com line=3 "));
  CHECK(has_line(r.stdout, "^host PASS host=www\\.example\\.org line=4 "));
  // A wildcard covers one label only, and a wildcard route needs the same wildcard name.
  CHECK(has_line(r.stdout,
                 "^host FAIL host=b\\.c\\.example\\.com line=5 detail=not covered by "
                 "the certificate's names \\(DNS:localhost,DNS:\\*\\.example\\.com,"
                 "DNS:www\\.example\\.org,IP:127\\.0\\.0\\.1\\)$"));
  CHECK(has_line(r.stdout, "^host FAIL host=\\*\\.example\\.org line=6 "));
  CHECK(has_line(r.stdout,
                 "^host PASS host=127\\.0\\.0\\.1 line=7 detail=covered by IP:127\\.0\\.0\\.1$"));
  CHECK(has_line(r.stdout, "^portico: check failed routes=7 failures=2 warnings=0$"));
}

TEST_CASE("portico --check reports an expired certificate", "[check]") {
  TempDir dir;
  CertOptions options;
  options.expired = true;
  TestCert cert = make_cert(dir, options);
  CommandResult r = run_check(dir, "/ http://127.0.0.1:9001\n", cert);
  INFO(r.describe());
  CHECK(r.exit_code == 1);
  CHECK(has_line(r.stdout, "^cert FAIL file=" + cert.fullchain +
                               " expires=\\S+ "
                               "days_left=-?\\d+ detail=expired$"));
  CHECK(has_line(r.stdout, "^portico: check failed "));
}

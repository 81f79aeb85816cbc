// Tests of the test harness itself (tests/support), with real clients and without portico: if
// these fail, no integration test result means anything.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/body_pattern.h"
#include "tests/support/http_message.h"
#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

namespace portico::test {
namespace {

std::string backend_url(const TestBackend& backend, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(backend.port()) + path;
}

// A minimal TLS server on 127.0.0.1:0 for the client-side TLS helpers: per connection it
// completes a handshake (selecting ALPN http/1.1), reads a request head, answers "tls hello" and
// closes, with or without close_notify.
class TinyTlsServer {
 public:
  TinyTlsServer(const TestCert& cert, bool send_close_notify)
      : send_close_notify_(send_close_notify) {
    ctx_ = make_test_server_context(cert);
    listen_fd_ = listen_loopback(16, &port_);
    REQUIRE(listen_fd_ >= 0);
    thread_ = std::thread([this] { run(); });
  }
  ~TinyTlsServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
  }
  uint16_t port() const { return port_; }
  int handshakes() const { return handshakes_; }

 private:
  void run() {
    while (!stopping_) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      timeval tv{5, 0};  // a client that stalls must not hang the test
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      SSL* ssl = SSL_new(ctx_);
      SSL_set_fd(ssl, fd);
      if (SSL_accept(ssl) == 1) {
        ++handshakes_;
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) break;
          request.append(buf, static_cast<size_t>(n));
        }
        std::string response =
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntls hello";
        SSL_write(ssl, response.data(), static_cast<int>(response.size()));
        if (send_close_notify_) SSL_shutdown(ssl);
      }
      ERR_clear_error();
      SSL_free(ssl);
      ::close(fd);
    }
  }

  SSL_CTX* ctx_;
  bool send_close_notify_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> handshakes_{0};
  std::thread thread_;
};

TEST_CASE("Process captures output, exit codes and signals", "[harness]") {
  Process p({"sh", "-c", "echo out-line; echo 'err-line port=4242' >&2; exit 3"});
  auto m = p.wait_for_output(std::regex(R"(port=(\d+))"), 5s);
  CHECK(m[1] == "4242");
  auto status = p.wait_exit(5s);
  REQUIRE(status);
  CHECK_FALSE(status->signaled);
  CHECK(status->code == 3);
  p.wait_output_end(5s);
  CHECK(p.stdout_text() == "out-line\n");

  Process sleeper({"sleep", "30"});
  CHECK(sleeper.running());
  CHECK_FALSE(sleeper.wait_exit(50ms));
  REQUIRE(sleeper.signal(SIGTERM));
  auto killed = sleeper.wait_exit(5s);
  REQUIRE(killed);
  CHECK(killed->signaled);
  CHECK(killed->code == SIGTERM);

  auto r = run_command({"cat"}, "stdin goes through");
  CHECK(r.exit_code == 0);
  CHECK(r.stdout == "stdin goes through");
  auto slow = run_command({"sleep", "30"}, "", 200ms);
  CHECK(slow.timed_out);

  TempDir dir;
  ProcessOptions options;
  options.env = {{"PORTICO_HARNESS_VAR", "v1"}};
  options.working_dir = dir.path();
  Process env_pwd({"sh", "-c", "echo $PORTICO_HARNESS_VAR; pwd"}, options);
  REQUIRE(env_pwd.wait_exit(5s));
  env_pwd.wait_output_end(5s);
  CHECK(env_pwd.stdout_text() == "v1\n" + dir.path() + "\n");
}

TEST_CASE("TestBackend records a GET and its headers, as sent by curl", "[harness]") {
  TestBackend backend;
  auto r = curl("-H", "X-Test: one", "-H", "X-Test: two", "-H", "User-Agent: harness",
                backend_url(backend, "/some/path?q=1"));
  REQUIRE(r.exit_code == 0);
  CHECK(r.stdout == "ok GET /some/path?q=1");
  REQUIRE(backend.wait_for_requests(1, 5s));
  auto requests = backend.requests();
  REQUIRE(requests.size() == 1);
  const ReceivedRequest& req = requests[0];
  CHECK(req.method == "GET");
  CHECK(req.target == "/some/path?q=1");
  CHECK(req.version == "HTTP/1.1");
  CHECK(req.header("user-agent") == "harness");
  CHECK(req.header("HOST") == "127.0.0.1:" + std::to_string(backend.port()));
  CHECK(req.headers_named("x-test") == std::vector<std::string>{"one", "two"});
  CHECK(req.body_size == 0);
  CHECK(req.connection_id == 1);
  auto raw = backend.raw_received();
  REQUIRE(raw.size() == 1);
  CHECK(raw[0].rfind("GET /some/path?q=1 HTTP/1.1\r\n", 0) == 0);
}

TEST_CASE("TestBackend receives 5 MiB POST bodies, Content-Length and chunked", "[harness]") {
  TempDir dir;
  const uint64_t size = 5 << 20;
  std::string file = dir.write_file("body.bin", pattern_string(0, size));
  TestBackend backend([](const ReceivedRequest& req) {
    Response r;
    r.body = std::to_string(req.body_size);
    return r;
  });
  auto r = curl("--data-binary", "@" + file, "-H", "Content-Type: application/octet-stream",
                backend_url(backend, "/upload"));
  REQUIRE(r.exit_code == 0);
  CHECK(r.stdout == std::to_string(size));
  auto chunked = curl("--data-binary", "@" + file, "-H", "Transfer-Encoding: chunked",
                      backend_url(backend, "/upload-chunked"));
  REQUIRE(chunked.exit_code == 0);

  auto requests = backend.requests();
  REQUIRE(requests.size() == 2);
  for (const auto& req : requests) {
    CHECK(req.method == "POST");
    CHECK(req.body_size == size);
    CHECK(req.body_hash == pattern_hash(size));
    CHECK(req.body.size() == ReceivedRequest::kMaxKeptBody);
    CHECK(req.body == pattern_string(0, ReceivedRequest::kMaxKeptBody));
  }
  CHECK_FALSE(requests[0].chunked);
  CHECK(requests[1].chunked);
}

TEST_CASE("TestBackend response framings reach curl intact", "[harness]") {
  TempDir dir;
  TestBackend backend([](const ReceivedRequest& req) {
    Response r;
    r.generated_body_size = 3 * 1000 * 1000 + 7;
    if (req.target == "/chunked") r.framing = Response::kChunked;
    if (req.target == "/close") r.framing = Response::kCloseDelimited;
    if (req.target == "/cut") r.close_mid_body = true;
    if (req.target == "/echo") return echo_response(req);
    return r;
  });
  for (std::string path : {"/length", "/chunked", "/close"}) {
    INFO(path);
    std::string out = dir.file("out" + path.substr(1));
    auto r = curl("-o", out, "-D", "-", backend_url(backend, path));
    REQUIRE(r.exit_code == 0);
    if (path == "/chunked") CHECK_THAT(r.stdout, Catch::Contains("Transfer-Encoding: chunked"));
    uint64_t got_size = 0;
    CHECK(hash_file(out, &got_size) == pattern_hash(3 * 1000 * 1000 + 7));
    CHECK(got_size == 3 * 1000 * 1000 + 7);
  }
  auto cut = curl("-o", "/dev/null", backend_url(backend, "/cut"));
  CHECK(cut.exit_code == 18);  // CURLE_PARTIAL_FILE

  auto echo = curl("--data-binary", "echo me", "-H", "Content-Type: text/x-test", "-D", "-",
                   backend_url(backend, "/echo"));
  REQUIRE(echo.exit_code == 0);
  CHECK_THAT(echo.stdout, Catch::Contains("Content-Type: text/x-test"));
  CHECK_THAT(echo.stdout, Catch::EndsWith("\r\n\r\necho me"));
}

TEST_CASE("TestBackend keeps connections alive and answers pipelined requests", "[harness]") {
  TestBackend backend;
  auto r = curl(backend_url(backend, "/one"), backend_url(backend, "/two"));
  REQUIRE(r.exit_code == 0);
  CHECK(r.stdout == "ok GET /oneok GET /two");
  CHECK(backend.connections_accepted() == 1);
  auto requests = backend.requests();
  REQUIRE(requests.size() == 2);
  CHECK(requests[1].connection_id == requests[0].connection_id);
  CHECK(requests[1].index_on_connection == 1);

  RawTcpClient client(backend.port());
  REQUIRE(client.ok());
  REQUIRE(client.send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
      "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n"
      "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
      "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto got = client.read_all_until_close(10s);
  CHECK(got.closed == CloseKind::kEof);
  auto responses = parse_http_responses(got.data, {"GET", "HEAD", "POST", "GET"});
  REQUIRE(responses.size() == 4);
  CHECK(responses[0].body == "ok GET /a");
  CHECK(responses[1].body.empty());
  CHECK(responses[1].header("content-length") == "10");
  CHECK(responses[2].body == "ok POST /c");
  CHECK(responses[3].body == "ok GET /d");
  for (const auto& resp : responses) {
    CHECK(resp.complete);
    CHECK(resp.error.empty());
  }
  REQUIRE(backend.wait_for_requests(6, 5s));
  CHECK(backend.requests()[4].body == "abc");
}

TEST_CASE("TestBackend rejects malformed requests and stops while holding connections",
          "[harness]") {
  auto backend = std::make_unique<TestBackend>([](const ReceivedRequest& req) {
    Response r;
    r.never_respond = req.target == "/hold";
    return r;
  });
  RawTcpClient bad(backend->port());
  REQUIRE(bad.send("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"));
  auto rejected = bad.read_all_until_close(5s);
  CHECK_THAT(rejected.data, Catch::StartsWith("HTTP/1.1 400"));
  CHECK(backend->parse_errors().size() == 1);

  RawTcpClient held(backend->port());
  REQUIRE(held.send("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(backend->wait_for_requests(1, 5s));
  CHECK_FALSE(held.read_until("\r\n", 200ms).matched);
  backend.reset();  // must not hang on the held connection
  auto after = held.read_all_until_close(5s);
  CHECK(after.closed == CloseKind::kEof);
  CHECK(after.data.empty());
}

TEST_CASE("parse_http_responses handles close-delimited and truncated streams", "[harness]") {
  auto r = parse_http_responses("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nto the end");
  REQUIRE(r.size() == 2);
  CHECK(r[0].status == 100);
  CHECK(r[1].body == "to the end");
  CHECK(r[1].complete);
  auto cut = parse_http_responses("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
  REQUIRE(cut.size() == 1);
  CHECK_FALSE(cut[0].complete);
  CHECK_FALSE(cut[0].error.empty());
  auto chunked = parse_http_responses(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: 1\r\n\r\n", {},
      false);
  REQUIRE(chunked.size() == 1);
  CHECK(chunked[0].body == "ab");
  CHECK(chunked[0].chunked);
  CHECK(chunked[0].trailers == HeaderList{{"X-T", "1"}});
}

TEST_CASE("Generated certificates verify with curl and the raw TLS client", "[harness]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TinyTlsServer server(cert, /*send_close_notify=*/true);
  std::string port = std::to_string(server.port());

  for (std::string host : {"localhost", "127.0.0.1"}) {
    INFO(host);
    auto r = curl("--cacert", cert.ca_cert, "--resolve", "localhost:" + port + ":127.0.0.1",
                  "https://" + host + ":" + port + "/");
    CHECK(r.exit_code == 0);
    CHECK(r.stdout == "tls hello");
  }
  auto wrong_name = curl("--cacert", cert.ca_cert, "--resolve", "other.test:" + port + ":127.0.0.1",
                         "https://other.test:" + port + "/");
  CHECK(wrong_name.exit_code == 60);  // CURLE_PEER_FAILED_VERIFICATION

  RawTlsClient client(server.port(), cert.ca_cert);
  REQUIRE(client.ok());
  CHECK(client.alpn() == "http/1.1");
  CHECK(client.verify_result() == 0);
  CHECK_THAT(client.peer_subject(), Catch::Contains("CN=localhost"));
  REQUIRE(client.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  auto got = client.read_all_until_close(5s);
  CHECK(got.closed == CloseKind::kCloseNotify);
  CHECK_THAT(got.data, Catch::EndsWith("tls hello"));

  RawTlsClient wrong_sni(server.port(),
                         TlsClientOptions{.sni = "other.test", .ca_file = cert.ca_cert});
  CHECK_FALSE(wrong_sni.ok());
  CHECK_THAT(wrong_sni.error(), Catch::Contains("verify"));
}

TEST_CASE("Certificate variants: RSA, expired, self-signed, shared CA", "[harness]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  CertOptions rsa_options;
  rsa_options.prefix = "rsa";
  rsa_options.key_type = KeyType::kRsa2048;
  TestCert rsa = issue_cert(dir, ca, rsa_options);
  CertOptions expired_options;
  expired_options.prefix = "expired";
  expired_options.expired = true;
  TestCert expired = issue_cert(dir, ca, expired_options);
  TestCert self_signed = make_self_signed(dir);

  auto fetch = [](const TestCert& cert, const std::string& ca_file, bool close_notify) {
    TinyTlsServer server(cert, close_notify);
    RawTlsClient client(server.port(), ca_file);
    if (!client.ok()) return client.error();
    client.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    auto got = client.read_all_until_close(5s);
    return std::string(to_string(got.closed)) + " " + got.data.substr(got.data.size() - 9);
  };
  CHECK(fetch(rsa, ca.cert, true) == "close_notify tls hello");
  CHECK(fetch(self_signed, self_signed.ca_cert, false) == "eof tls hello");
  CHECK_THAT(fetch(expired, ca.cert, true), Catch::Contains("certificate has expired"));
  auto text = run_command({"openssl", "x509", "-in", rsa.cert, "-noout", "-text"});
  CHECK_THAT(text.stdout, Catch::Contains("rsaEncryption"));
  CHECK_THAT(text.stdout, Catch::Contains("IP Address:0:0:0:0:0:0:0:1"));
}

}  // namespace
}  // namespace portico::test

// Tests of the WebSocket test harness itself: the example ws_server and the wslay WsClient,
// talking to each other without portico. If these fail, no WebSocket proxy test means anything.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <regex>
#include <string>
#include <thread>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"
#include "tests/support/ws_client.h"

namespace portico::test {
namespace {

// The example backend on 127.0.0.1 and a port of its choosing.
struct WsServer {
  explicit WsServer(std::vector<std::string> extra_args = {}) {
    std::vector<std::string> argv = {PORTICO_BUILD_DIR "/examples/ws_server", "--port", "0"};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process = std::make_unique<Process>(argv);
    const OutputMatch m = process->wait_for_output(
        std::regex(R"(ws_server listening on 127\.0\.0\.1:(\d+)\n)"), 10s, Stream::kStdout);
    port = static_cast<uint16_t>(std::stoi(m[1]));
  }
  WsClientOptions client_options(const std::string& path = "/ws") const {
    WsClientOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    o.tls = false;
    o.path = path;
    return o;
  }
  std::unique_ptr<Process> process;
  uint16_t port = 0;
};

std::string pattern(size_t n, char seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

TEST_CASE("ws harness: echo of text and binary messages of every length class", "[ws-harness]") {
  WsServer server;
  auto client = WsClient::connect(server.client_options());
  REQUIRE(client->ok());
  CHECK(client->status() == 101);
  const size_t sizes[] = {1, 125, 126, 65535, 65536, 1024 * 1024};
  for (size_t n : sizes) {
    CAPTURE(n);
    const std::string text = pattern(n, 't');
    REQUIRE(client->send_text(text));
    auto m = client->receive(10s);
    REQUIRE(m);
    CHECK(m->opcode == WSLAY_TEXT_FRAME);
    CHECK(m->data == text);

    std::string binary = pattern(n, 'b');
    binary[0] = '\0';
    binary[n - 1] = '\xff';
    REQUIRE(client->send_binary(binary));
    m = client->receive(10s);
    REQUIRE(m);
    CHECK(m->opcode == WSLAY_BINARY_FRAME);
    CHECK(m->data == binary);
  }
  CHECK(client->close());
}

TEST_CASE("ws harness: fragmented message with pings between the fragments", "[ws-harness]") {
  WsServer server;
  WsClientOptions options = server.client_options("/echo");
  options.surface_control_frames = true;
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(client->send_fragmented(WSLAY_TEXT_FRAME, {"hel", "lo ", pattern(70000, 'f')}, true));
  // The server answers each Ping as it arrives, so both Pongs precede the echoed message.
  for (int i = 0; i < 2; ++i) {
    auto pong = client->receive(10s);
    REQUIRE(pong);
    CHECK(pong->opcode == WSLAY_PONG);
    CHECK(pong->data == "frag");
  }
  auto m = client->receive(10s);
  REQUIRE(m);
  CHECK(m->opcode == WSLAY_TEXT_FRAME);
  CHECK(m->data == "hello " + pattern(70000, 'f'));
}

TEST_CASE("ws harness: ping gets a pong with the same payload", "[ws-harness]") {
  WsServer server;
  WsClientOptions options = server.client_options();
  options.surface_control_frames = true;
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(client->send_ping("are you there"));
  auto m = client->receive(10s);
  REQUIRE(m);
  CHECK(m->opcode == WSLAY_PONG);
  CHECK(m->data == "are you there");
}

TEST_CASE("ws harness: chat broadcasts to every chat client, not to echo clients", "[ws-harness]") {
  WsServer server;
  auto alice = WsClient::connect(server.client_options("/room/chat"));
  auto bob = WsClient::connect(server.client_options("/chat?name=bob"));
  auto echo = WsClient::connect(server.client_options("/ws"));
  REQUIRE(alice->ok());
  REQUIRE(bob->ok());
  REQUIRE(echo->ok());
  REQUIRE(alice->send_text("hello from alice"));
  for (WsClient* c : {alice.get(), bob.get()}) {
    auto m = c->receive(10s);
    REQUIRE(m);
    CHECK(m->opcode == WSLAY_TEXT_FRAME);
    CHECK(m->data == "hello from alice");
  }
  REQUIRE(bob->send_text("hi alice"));
  auto m = alice->receive(10s);
  REQUIRE(m);
  CHECK(m->data == "hi alice");
  // The echo client saw none of it: its next message is its own echo.
  REQUIRE(echo->send_text("mine"));
  m = echo->receive(10s);
  REQUIRE(m);
  CHECK(m->data == "mine");
}

TEST_CASE("ws harness: client-initiated close handshake", "[ws-harness]") {
  WsServer server;
  auto client = WsClient::connect(server.client_options());
  REQUIRE(client->ok());
  REQUIRE(client->send_text("last words"));
  CHECK(client->close(4000, "done"));
  CHECK(client->peer_close_code() == 4000);  // the server echoes the client's code
  // The echo sent before the Close is still delivered, then the Close.
  auto m = client->receive(1s);
  REQUIRE(m);
  CHECK(m->data == "last words");
  m = client->receive(1s);
  REQUIRE(m);
  CHECK(m->opcode == WSLAY_CONNECTION_CLOSE);
  // RFC 6455 7.1.1: the server closes the TCP connection after the handshake.
  CHECK_FALSE(client->receive(5s));
  CHECK(client->peer_sent_eof());
}

TEST_CASE("ws harness: SIGTERM closes every client with 1001 and exits 0", "[ws-harness]") {
  WsServer server;
  auto a = WsClient::connect(server.client_options());
  auto b = WsClient::connect(server.client_options("/chat"));
  REQUIRE(a->ok());
  REQUIRE(b->ok());
  REQUIRE(server.process->signal(SIGTERM));
  for (WsClient* c : {a.get(), b.get()}) {
    REQUIRE(c->wait_peer_closed(5s));
    CHECK(c->peer_close_code() == 1001);
  }
  const auto status = server.process->wait_exit(5s);
  REQUIRE(status);
  CHECK(status->exited_ok());
}

TEST_CASE("ws harness: 16 MiB messages pass, larger ones and unmasked frames are refused",
          "[ws-harness]") {
  WsServer server;
  auto client = WsClient::connect(server.client_options());
  REQUIRE(client->ok());
  const std::string limit(16 * 1024 * 1024, 'm');
  REQUIRE(client->send_binary(limit));
  auto m = client->receive(30s);
  REQUIRE(m);
  CHECK(m->data.size() == limit.size());
  CHECK(m->data == limit);
  client->send_binary(limit + "!");  // the server may close while this is still being written
  REQUIRE(client->wait_peer_closed(30s));
  CHECK(client->peer_close_code() == 1009);

  auto raw = WsClient::connect(server.client_options());
  REQUIRE(raw->ok());
  REQUIRE(raw->send_raw(WsClient::encode_frame(WSLAY_TEXT_FRAME, true, "bare", false)));
  REQUIRE(raw->wait_peer_closed(10s));
  CHECK(raw->peer_close_code() == 1002);
}

TEST_CASE("ws harness: --close-after-ms drops the connection without a Close", "[ws-harness]") {
  WsServer server({"--close-after-ms", "100"});
  auto client = WsClient::connect(server.client_options());
  REQUIRE(client->ok());
  CHECK(client->wait_peer_closed(5s));
  CHECK(client->peer_sent_eof());
  CHECK(client->peer_close_code() == 0);
}

TEST_CASE("ws harness: plain HTTP requests and bad upgrades", "[ws-harness]") {
  WsServer server;
  const std::string base = "http://127.0.0.1:" + std::to_string(server.port);
  CommandResult r = curl(base + "/health");
  CHECK(r.exit_code == 0);
  CHECK(r.stdout == "ok\n");
  r = curl(base + "/anything");
  CHECK(r.stdout == "websocket endpoint\n");
  r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Connection: Upgrade", "-H",
           "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 8", "-H",
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", base + "/ws");
  CHECK(r.stdout == "426");
  r = curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "Connection: Upgrade", "-H",
           "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13", "-H",
           "Sec-WebSocket-Key: short", base + "/ws");
  CHECK(r.stdout == "400");
}

// A one-connection TLS terminator in front of ws_server, to check WsClient's TLS mode (SNI,
// ALPN, CA verification) without portico.
class TlsRelay {
 public:
  TlsRelay(const TestCert& cert, uint16_t backend_port) {
    ctx_ = make_test_server_context(cert);
    listen_fd_ = listen_loopback(4, &port_);
    REQUIRE(listen_fd_ >= 0);
    thread_ = std::thread([this, backend_port] { serve(backend_port); });
  }
  ~TlsRelay() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    join();
    ::close(listen_fd_);
    SSL_CTX_free(ctx_);
  }
  uint16_t port() const { return port_; }
  // Waits for the relayed connection to end.
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  // The SNI the client sent; read it after join().
  const std::string& sni() const { return sni_; }

 private:
  void serve(uint16_t backend_port) {
    const int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    SSL* ssl = SSL_new(ctx_);
    SSL_set_fd(ssl, fd);
    std::string err;
    int backend = -1;
    if (SSL_accept(ssl) == 1) {
      if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) sni_ = name;
      backend = connect_tcp("127.0.0.1", backend_port, 5s, &err);
    }
    char buf[16384];
    while (backend >= 0) {
      // SSL_pending first: poll() cannot see records OpenSSL has already read.
      pollfd p[2] = {{fd, POLLIN, 0}, {backend, POLLIN, 0}};
      if (SSL_pending(ssl) == 0 && ::poll(p, 2, 10000) <= 0) break;
      if (SSL_pending(ssl) > 0 || (p[0].revents & (POLLIN | POLLHUP)) != 0) {
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0 || ::send(backend, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
      }
      if ((p[1].revents & (POLLIN | POLLHUP)) != 0) {
        const ssize_t n = ::recv(backend, buf, sizeof buf, 0);
        if (n <= 0 || SSL_write(ssl, buf, static_cast<int>(n)) != n) break;
      }
    }
    if (backend >= 0) ::close(backend);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ::close(fd);
  }

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::string sni_;
};

TEST_CASE("ws harness: WsClient over TLS verifies the CA and offers SNI and ALPN", "[ws-harness]") {
  WsServer server;
  TempDir dir;
  const TestCert cert = make_test_cert(dir);
  {
    TlsRelay relay(cert, server.port);
    WsClientOptions options;
    options.host = "localhost";
    options.port = relay.port();
    options.ca_file = cert.ca_cert;
    options.origin = "https://example.test";
    auto client = WsClient::connect(options);
    REQUIRE(client->ok());
    CHECK(client->alpn() == "http/1.1");
    const std::string big = pattern(200000, 'z');
    REQUIRE(client->send_binary(big));
    auto m = client->receive(10s);
    REQUIRE(m);
    CHECK(m->data == big);
    CHECK(client->close());
    client.reset();
    relay.join();
    CHECK(relay.sni() == "localhost");
  }
  {
    // An untrusted certificate: the handshake fails and says why.
    TempDir other;
    const TestCert stranger = make_test_cert(other);
    TlsRelay relay(stranger, server.port);
    WsClientOptions options;
    options.port = relay.port();
    options.ca_file = cert.ca_cert;
    options.timeout = 5000ms;
    auto client = WsClient::connect(options);
    CHECK_FALSE(client->ok());
    CHECK(client->status() == 0);
    CHECK_THAT(client->error(), Catch::Contains("TLS handshake failed"));
  }
}

}  // namespace
}  // namespace portico::test

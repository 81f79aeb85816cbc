// WebSocket streams through portico: the wslay test client over TLS, the example ws_server (and
// a raw backend that records every byte) behind it.

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <csignal>
#include <fstream>
#include <mutex>
#include <regex>
#include <thread>

#include "proxy/ws_frames.h"
#include "tests/integration/raw_ws_backend.h"
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

struct WsFront {
  explicit WsFront(const std::string& backend, std::string options = "",
                   std::vector<std::string> extra_args = {})
      : cert(make_test_cert(dir)),
        portico(dir, "/ws http://" + backend + " " + options + "\n", cert, std::move(extra_args)) {}

  WsClientOptions options(std::string path = "/ws") const {
    WsClientOptions o;
    o.port = portico.https_port();
    o.ca_file = cert.ca_cert;
    o.path = std::move(path);
    return o;
  }
  std::unique_ptr<WsClient> connect(std::string path = "/ws") const {
    auto client = WsClient::connect(options(std::move(path)));
    INFO(client->error() << "\n" << client->response_head());
    REQUIRE(client->ok());
    return client;
  }

  TempDir dir;
  TestCert cert;
  PorticoProcess portico;
};

uint16_t close_code_of(const WsMessage& message) {
  REQUIRE(message.opcode == 8);
  REQUIRE(message.data.size() >= 2);
  return static_cast<uint16_t>((static_cast<uint8_t>(message.data[0]) << 8) |
                               static_cast<uint8_t>(message.data[1]));
}

}  // namespace

TEST_CASE("text and binary messages of every length class echo through", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address());
  auto client = front.connect();
  CHECK(client->status() == 101);
  for (size_t size :
       {size_t{1}, size_t{125}, size_t{126}, size_t{65535}, size_t{65536}, size_t{1} << 20}) {
    INFO(size);
    std::string text(size, 't');
    std::string binary(size, '\0');
    for (size_t i = 0; i < size; ++i) binary[i] = static_cast<char>(i * 7);
    REQUIRE(client->send_text(text));
    auto echo = client->receive(10s);
    REQUIRE(echo);
    CHECK(echo->opcode == 1);
    CHECK(echo->data == text);
    REQUIRE(client->send_binary(binary));
    echo = client->receive(10s);
    REQUIRE(echo);
    CHECK(echo->opcode == 2);
    CHECK(echo->data == binary);
  }
  CHECK(client->close(1000));
  CHECK(client->peer_close_code() == 1000);
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("access: .*status=101 .*tunnel=websocket messages_in=12 messages_out=12 "
                 "close_from_client=1000 close_from_backend=1000"),
      5s));
}

// A TLS 1.3 tunnel's records go over to portico's own record layer when it opens; a TLS 1.2
// one stays with OpenSSL. Both relay every length class both ways and close cleanly, and
// /metrics counts the hand-overs.
TEST_CASE("tunnels over TLS 1.3 (records handed over) and TLS 1.2 (OpenSSL's) both relay",
          "[websocket][handover]") {
  WsServer backend;
  WsFront front(backend.address(), "", {"--admin", "127.0.0.1:0"});
  auto handovers = [&] {
    std::smatch m;
    const std::string metrics = front.portico.admin_get("/metrics");
    REQUIRE(std::regex_search(metrics, m, std::regex(R"(\nportico_tls_handovers_total (\d+)\n)")));
    return std::stoi(m[1]);
  };
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    INFO((version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2"));
    WsClientOptions options = front.options();
    options.max_tls_version = version;
    auto client = WsClient::connect(options);
    REQUIRE(client->ok());
    CHECK(handovers() == 1);  // the TLS 1.3 tunnel's, and not the TLS 1.2 one's
    for (size_t size : {size_t{1}, size_t{16384}, size_t{70000}, size_t{1} << 20}) {
      std::string binary(size, '\0');
      for (size_t i = 0; i < size; ++i) binary[i] = static_cast<char>(i * 13 + size);
      REQUIRE(client->send_binary(binary));
      auto echo = client->receive(10s);
      REQUIRE(echo);
      CHECK(echo->data == binary);
    }
    CHECK(client->close(1000));
    CHECK(client->peer_close_code() == 1000);
  }
}

TEST_CASE("fragmented messages and pings pass through", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address());
  WsClientOptions options = front.options();
  options.surface_control_frames = true;
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(client->send_fragmented(1, {"frag", "mented ", "message"}, /*ping_between=*/true));
  std::optional<WsMessage> message;
  // The backend answers the interleaved ping with a pong, then echoes the whole message.
  bool saw_pong = false;
  for (int i = 0; i < 3 && !(message && message->opcode == 1); ++i) {
    message = client->receive(5s);
    REQUIRE(message);
    if (message->opcode == 10) saw_pong = true;
  }
  CHECK(saw_pong);
  CHECK(message->data == "fragmented message");
  REQUIRE(client->send_ping("are you there"));
  auto pong = client->receive(5s);
  REQUIRE(pong);
  CHECK(pong->opcode == 10);
  CHECK(pong->data == "are you there");
}

TEST_CASE("200 concurrent tunnels", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address());
  std::vector<std::unique_ptr<WsClient>> clients;
  for (int i = 0; i < 200; ++i) {
    auto client = WsClient::connect(front.options());
    REQUIRE(client->ok());
    clients.push_back(std::move(client));
  }
  for (int i = 0; i < 200; ++i) REQUIRE(clients[i]->send_text("client " + std::to_string(i)));
  for (int i = 0; i < 200; ++i) {
    auto echo = clients[i]->receive(10s);
    REQUIRE(echo);
    CHECK(echo->data == "client " + std::to_string(i));
  }
  for (auto& client : clients) CHECK(client->close(1000));
}

TEST_CASE("the backend closing first: close handshake relayed, and a killed backend",
          "[websocket]") {
  SECTION("backend-initiated close handshake (the backend stops with 1001)") {
    WsServer backend;
    WsFront front(backend.address());
    auto client = front.connect();
    REQUIRE(client->send_text("hello"));
    REQUIRE(client->receive(5s));
    backend.process->signal(SIGTERM);
    CHECK(client->wait_peer_closed(10s));
    CHECK(client->peer_close_code() == 1001);
  }
  SECTION("backend killed mid-stream: Close 1001 or 1011, then EOF") {
    WsServer backend;
    WsFront front(backend.address());
    auto client = front.connect();
    REQUIRE(client->send_text("hello"));
    REQUIRE(client->receive(5s));
    backend.process->signal(SIGKILL);
    CHECK(client->wait_peer_closed(10s));
    uint16_t code = client->peer_close_code();
    CHECK((code == 1001 || code == 1011));
    // Nothing after the Close (still queued in the client, maybe) but the end of the stream.
    std::optional<WsMessage> after;
    while ((after = client->receive(5s)) && after->opcode == 8) {
    }
    CHECK_FALSE(after);
    CHECK(client->peer_sent_eof());
  }
}

TEST_CASE("a client that goes away gives the backend its FIN", "[websocket]") {
  RawWsBackend backend;
  WsFront front(backend.address());
  {
    auto client = front.connect();
    REQUIRE(backend.wait_upgraded(5s));
  }  // the client's socket closes without a Close frame
  backend.wait_close_code(10s);
  CHECK(backend.saw_eof());
  // The tunnel's access line says the client closed.
  front.portico.process().wait_for_output(
      std::regex(R"(info access: .*status=101 .*tunnel=websocket .*ended=client_closed\n)"), 10s);

  // A client whose connection is reset: the backend gets its FIN, and the line says so.
  RawWsBackend second_backend;
  WsFront second(second_backend.address());
  auto client = second.connect();
  REQUIRE(second_backend.wait_upgraded(5s));
  client->reset();
  second_backend.wait_close_code(10s);
  CHECK(second_backend.saw_eof());
  second.portico.process().wait_for_output(
      std::regex(R"(info access: .*tunnel=websocket .*ended=client_connection_error_ECONNRESET\n)"),
      10s);
}

TEST_CASE("a tunnel's client that sends close_notify gets portico's (TLS 1.3 and 1.2)",
          "[websocket]") {
  // RFC 8446 6.1: a close_notify is answered with one, in a tunnel as between requests.
  for (int version : {TLS1_3_VERSION, TLS1_2_VERSION}) {
    INFO((version == TLS1_3_VERSION ? "TLS 1.3" : "TLS 1.2"));
    RawWsBackend backend;  // it takes one upgrade
    WsFront front(backend.address());
    TlsClientOptions options;
    options.ca_file = front.cert.ca_cert;
    options.max_tls_version = version;
    RawTlsClient client(front.portico.https_port(), options);
    REQUIRE(client.ok());
    REQUIRE(
        client.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
    ReadResult head = client.read_until("\r\n\r\n", 5s);
    REQUIRE(head.data.rfind("HTTP/1.1 101", 0) == 0);
    client.shutdown_write();  // close_notify, then FIN
    CHECK(client.read_all_until_close(5s).closed == CloseKind::kCloseNotify);
    CHECK(backend.wait_close_code(10s) == 0);  // and the backend its FIN
    CHECK(backend.saw_eof());
  }
}

TEST_CASE("a tunnel's combined-format line has the request's protocol, agent and whole bytes",
          "[websocket]") {
  WsServer backend;
  WsFront front(backend.address(), "", {"--log-format", "combined"});
  WsClientOptions options = front.options();
  options.extra_headers = {{"User-Agent", "WsAgent/2"}, {"Referer", "https://localhost/page"}};
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(client->send_text("hello"));
  REQUIRE(client->receive(5s));
  client->close(1000);
  // bytes_out counts the 101 head too, not only the frames after it.
  OutputMatch line = front.portico.process().wait_for_output(
      std::regex(R"re("GET /ws HTTP/1\.1" 101 (\d+) "https://localhost/page" "WsAgent/2")re"), 10s);
  CHECK(std::stoul(line[1]) > 100);
}

TEST_CASE("SIGTERM sends Close 1001 to both ends", "[websocket]") {
  RawWsBackend backend;
  WsFront front(backend.address());
  auto client = front.connect();
  REQUIRE(backend.wait_upgraded(5s));
  front.portico.process().signal(SIGTERM);
  auto close = client->receive(10s);
  REQUIRE(close);
  CHECK(close_code_of(*close) == 1001);
  client->close(1001);
  CHECK(backend.wait_close_code(10s) == 1001);
  auto status = front.portico.process().wait_exit(15s);
  REQUIRE(status);
  CHECK(status->exited_ok());
  CHECK(front.portico.stderr_text().find("ended=portico_is_shutting_down\n") != std::string::npos);
}

TEST_CASE("a message over max_ws_message gets 1009, the backend 1001", "[websocket]") {
  RawWsBackend backend;
  WsFront front(backend.address(), "max_ws_message=64k");
  auto client = front.connect();
  REQUIRE(backend.wait_upgraded(5s));
  REQUIRE(client->send_binary(std::string(64 * 1024 + 1, 'x')));
  auto close = client->receive(10s);
  REQUIRE(close);
  CHECK(close_code_of(*close) == 1009);
  CHECK(backend.wait_close_code(10s) == 1001);
  client.reset();
  CHECK(front.portico.process().try_wait_for_output(
      std::regex(R"(tunnel=websocket .*close_to_client=1009 .*ended=message_too_big\n)"), 10s));
}

TEST_CASE("a message of exactly max_ws_message passes", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address(), "max_ws_message=64k");
  auto client = front.connect();
  REQUIRE(client->send_binary(std::string(64 * 1024, 'x')));
  auto echo = client->receive(10s);
  REQUIRE(echo);
  CHECK(echo->data.size() == 64 * 1024);
}

TEST_CASE("an unmasked client frame gets 1002, a masked backend frame too", "[websocket]") {
  SECTION("client") {
    RawWsBackend backend;
    WsFront front(backend.address());
    auto client = front.connect();
    REQUIRE(backend.wait_upgraded(5s));
    REQUIRE(client->send_raw(WsClient::encode_frame(1, true, "not masked", /*mask=*/false)));
    auto close = client->receive(10s);
    REQUIRE(close);
    CHECK(close_code_of(*close) == 1002);
    // The backend does not answer portico's Close: the client's further records arrive during
    // the wait for it, and the violation is logged once, not once per read.
    for (int i = 0; i < 20; ++i) {
      client->send_raw(WsClient::encode_frame(1, true, "more", /*mask=*/false));
      std::this_thread::sleep_for(5ms);
    }
    CHECK(backend.wait_close_code(10s) == 1001);
    REQUIRE(front.portico.process().try_wait_for_output(
        std::regex("access: .*tunnel=websocket .*ended=unmasked_client_frame"), 10s));
    const std::string log = front.portico.stderr_text();
    CHECK(log.find("client broke the protocol") == log.rfind("client broke the protocol"));
  }
  SECTION("backend") {
    RawWsBackend backend;
    WsFront front(backend.address());
    auto client = front.connect();
    REQUIRE(backend.wait_upgraded(5s));
    backend.send_raw(WsClient::encode_frame(1, true, "masked by a server", /*mask=*/true));
    auto close = client->receive(10s);
    REQUIRE(close);
    CHECK(close_code_of(*close) == 1011);
    CHECK(backend.wait_close_code(10s) == 1002);
  }
}

TEST_CASE(
    "nothing after a Close is relayed, a backend that keeps its connection after the "
    "close handshake is closed, not pinged",
    "[websocket]") {
  RawWsBackend backend;
  WsFront front(backend.address(), "ws_idle=1s");
  WsClientOptions options = front.options();
  options.surface_control_frames = true;
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(backend.wait_upgraded(5s));
  // RFC 6455 5.5.1: nothing may follow a Close. The client's frames after its own Close, sent
  // with it, stop at portico.
  const std::string close_frame = WsClient::encode_frame(8, true, std::string("\x03\xe8", 2));
  REQUIRE(client->send_raw(close_frame + WsClient::encode_frame(1, true, "after my close") +
                           WsClient::encode_frame(9, true, "ping")));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (backend.received().size() < close_frame.size() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(200ms);
  CHECK(backend.received() == close_frame);
  // The backend answers, sends a frame after its Close, and keeps its connection open.
  backend.send_raw(WsClient::encode_frame(8, true, std::string("\x03\xe8", 2), false) +
                   WsClient::encode_frame(1, true, "after the reply", false));
  auto reply = client->receive(5s);
  REQUIRE(reply);
  CHECK(close_code_of(*reply) == 1000);
  // Then nothing (no message, no ping although ws_idle is 1 s) until portico ends the tunnel.
  CHECK_FALSE(client->receive(8s));
  CHECK(client->peer_sent_eof());
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("access: .*tunnel=websocket messages_in=0 messages_out=0 close_from_client=1000 "
                 "close_from_backend=1000 close_to_client=0 close_to_backend=0 "
                 "ended=close_handshake_done"),
      5s));
}

TEST_CASE("a 101 without Connection: Upgrade is refused with 502", "[websocket]") {
  // RFC 6455 4.1: a client fails such a handshake; relaying it would leave a 101 on the client
  // side and HTTP parsing of the backend's frames on portico's.
  RawWsBackend backend({"", false, ""});
  WsFront front(backend.address());
  auto client = WsClient::connect(front.options());
  CHECK_FALSE(client->ok());
  CHECK(client->status() == 502);
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("reason=\"invalid 101 Switching Protocols from backend\""), 5s));
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("access: .*status=502 .*error=invalid_response_from_backend"), 5s));
}

TEST_CASE("a 101 with a second Sec-WebSocket-Accept is refused with 502", "[websocket]") {
  // Relayed, both would reach the browser, which fails such a handshake (RFC 6455 4.1).
  RawWsBackend::Options options;
  options.extra_101_headers = "Sec-WebSocket-Accept: c2Vjb25kIGFjY2VwdCBrZXk=\r\n";
  RawWsBackend backend(options);
  WsFront front(backend.address());
  auto client = WsClient::connect(front.options());
  CHECK_FALSE(client->ok());
  CHECK(client->status() == 502);
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("reason=\"invalid 101 Switching Protocols from backend\""), 5s));
}

TEST_CASE("permessage-deflate agreed by the backend: compressed (RSV1) frames pass both ways",
          "[websocket]") {
  RawWsBackend backend({"Sec-WebSocket-Extensions: permessage-deflate\r\n"});
  WsFront front(backend.address());
  WsClientOptions options = front.options();
  options.extra_headers = {{"Sec-WebSocket-Extensions", "permessage-deflate"}};
  auto client = WsClient::connect(options);
  INFO(client->error() << "\n" << client->response_head());
  REQUIRE(client->ok());
  REQUIRE(backend.wait_upgraded(5s));
  CHECK(client->response_head().find("Sec-WebSocket-Extensions: permessage-deflate") !=
        std::string::npos);
  // RSV1 set: the bytes stand for a compressed message; portico does not inflate, only relays.
  std::string up = WsClient::encode_frame(1, true, "\xf2\x48\x05\x00");
  up[0] = static_cast<char>(up[0] | 0x40);
  REQUIRE(client->send_raw(up));
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (backend.received() != up && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  CHECK(backend.received() == up);
  std::string down = WsClient::encode_frame(2, true, "\xca\x48\x05\x00", /*mask=*/false);
  down[0] = static_cast<char>(down[0] | 0x40);
  backend.send_raw(down);
  CHECK(client->receive_raw(down.size(), 5s) == down);
  CHECK_FALSE(backend.saw_eof());
}

TEST_CASE("a 101 that claims a body: what follows its blank line is checked as frames",
          "[websocket]") {
  // RFC 9112 section 6.3: a 1xx ends at its blank line whatever its Content-Length says. Read as
  // a 10-byte body, the frame header below would reach the client unchecked and the tracker
  // would start inside the payload, so a message over max_ws_message would pass.
  RawWsBackend backend({"Content-Length: 10\r\n"});
  WsFront front(backend.address(), "max_ws_message=1k");
  auto client = front.connect();
  REQUIRE(backend.wait_upgraded(5s));
  CHECK(client->response_head().find("Content-Length") == std::string::npos);
  backend.send_raw(WsClient::encode_frame(2, true, std::string(4096, '\0'), /*mask=*/false));
  auto close = client->receive(10s);
  REQUIRE(close);
  CHECK(close->opcode == 8);
  CHECK(close_code_of(*close) == 1011);  // the backend broke the limit: 1009 goes to it
  CHECK(backend.wait_close_code(10s) == 1009);
}

TEST_CASE("a client that sends and leaves: its bytes and Close still reach a slow backend",
          "[websocket]") {
  RawWsBackend backend({.extra_101_headers = "", .slow_reader = true});
  WsFront front(backend.address());
  auto client = front.connect();
  REQUIRE(backend.wait_upgraded(5s));
  std::string sent;
  // More than the kernel's socket buffers hold (portico's send buffer grows to 4 MiB), so that
  // portico's own queue towards the backend is not empty when the client leaves.
  for (int i = 0; i < 128; ++i) {
    std::string frame =
        WsClient::encode_frame(2, true, std::string(64 * 1024, static_cast<char>('a' + i % 26)));
    REQUIRE(client->send_raw(frame));
    sent += frame;
  }
  std::string close_frame = WsClient::encode_frame(8, true,
                                                   std::string("\x03\xe8"
                                                               "bye",
                                                               5));
  REQUIRE(client->send_raw(close_frame));
  sent += close_frame;
  client.reset();  // close_notify and FIN, with much of it still queued in portico
  CHECK(backend.wait_close_code(10s) == 1000);
  CHECK(backend.saw_eof());
  std::string received = backend.received();
  CHECK(received.size() == sent.size());
  CHECK(received == sent);
  CHECK(front.portico.process().try_wait_for_output(std::string("ended=client_closed\n"), 5s));
}

TEST_CASE("the origin check refuses foreign pages and allows listed ones", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address(), "origins=https://app.example");
  std::string own = "https://localhost:" + std::to_string(front.portico.https_port());
  std::string own_host_plain = "http://localhost:" + std::to_string(front.portico.https_port());
  for (const auto& [origin, allowed] :
       std::vector<std::pair<std::string, bool>>{{"https://evil.example", false},
                                                 {own, true},
                                                 {own_host_plain, false},  // another origin
                                                 {"https://app.example", true},
                                                 {"", true}}) {
    INFO(origin);
    WsClientOptions options = front.options();
    options.origin = origin;
    auto client = WsClient::connect(options);
    CHECK(client->ok() == allowed);
    CHECK(client->status() == (allowed ? 101 : 403));
  }
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("warn websocket: refused origin=\"https://evil.example\""), 5s));
}

TEST_CASE("bad upgrade requests get 400, a non-101 answer leaves the connection HTTP",
          "[websocket]") {
  TestBackend http_backend;
  WsFront front(http_backend.address());
  const char* bad[] = {
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n",
      // A body: to some backends the first frames, unchecked (here an unmasked one).
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Content-Length: 5\r\n\r\n\x82\x03"
      "abc",
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\n\x82\x03"
      "abc\r\n0\r\n\r\n",
  };
  for (const char* request : bad) {
    INFO(request);
    RawTlsClient client(front.portico.https_port(), front.cert.ca_cert);
    REQUIRE(client.send(request));
    ReadResult read = client.read_until("\r\n\r\n", 5s);
    CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
  }
  CHECK(http_backend.request_count() == 0);

  // The backend is plain HTTP: it answers the upgrade with 200, which goes back as an ordinary
  // response, and the same connection then carries an ordinary request.
  RawTlsClient client(front.portico.https_port(), front.cert.ca_cert);
  REQUIRE(client.send(
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
  ReadResult first = client.read_until("ok GET /ws", 5s);
  CHECK(first.data.rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(client.send("GET /ws/again HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  ReadResult second = client.read_until("ok GET /ws/again", 5s);
  CHECK(second.matched);
  REQUIRE(http_backend.wait_for_requests(2));
  CHECK(http_backend.requests()[0].header("Upgrade") == "websocket");
}

TEST_CASE("plain requests and upgrades share a path (socket.io style)", "[websocket]") {
  WsServer backend;
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/socket.io/ http://" + backend.address() + "\n", cert);
  CommandResult polling =
      curl({"--cacert", cert.ca_cert, portico.url("/socket.io/?EIO=4&transport=polling")});
  CHECK(polling.exit_code == 0);
  CHECK(polling.stdout == "websocket endpoint\n");
  WsClientOptions options;
  options.port = portico.https_port();
  options.ca_file = cert.ca_cert;
  options.path = "/socket.io/?EIO=4&transport=websocket";
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  REQUIRE(client->send_text("42[\"hello\"]"));
  auto echo = client->receive(5s);
  REQUIRE(echo);
  CHECK(echo->data == "42[\"hello\"]");
}

TEST_CASE("idle tunnels are pinged, kept open, and dead clients closed", "[websocket]") {
  WsServer backend;
  WsFront front(backend.address(), "ws_idle=1s");
  WsClientOptions options = front.options();
  options.surface_control_frames = true;
  auto client = WsClient::connect(options);
  REQUIRE(client->ok());
  auto ping = client->receive(5s);  // wslay answers it with a pong by itself
  REQUIRE(ping);
  CHECK(ping->opcode == 9);
  // Keep reading (wslay answers each ping as it reads it) through several idle periods.
  auto until = std::chrono::steady_clock::now() + 2500ms;
  while (std::chrono::steady_clock::now() < until) {
    auto frame = client->receive(200ms);
    if (frame) CHECK(frame->opcode == 9);
  }
  REQUIRE(client->send_text("still here"));
  std::optional<WsMessage> echo;
  do {
    echo = client->receive(5s);
  } while (echo && echo->opcode == 9);
  REQUIRE(echo);
  CHECK(echo->data == "still here");

  // A client that never answers: the raw handshake, then silence.
  RawTlsClient silent(front.portico.https_port(), front.cert.ca_cert);
  REQUIRE(silent.send(
      "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"));
  REQUIRE(silent.read_until("\r\n\r\n", 5s).matched);
  ReadResult rest = silent.read_all_until_close(10s);
  CHECK(rest.closed != CloseKind::kOpen);
  CHECK(front.portico.process().try_wait_for_output("client did not answer ping", 5s));
  // The tunnel's line says why portico closed it, not how the close handshake ended.
  CHECK(front.portico.process().try_wait_for_output(
      std::regex(R"(tunnel=websocket .*close_to_client=1001 .*ended=client_did_not_answer_ping\n)"),
      5s));
}

TEST_CASE("a WebSocket client that stops reading is let go after --send-timeout", "[websocket]") {
  RawWsBackend backend;
  // ws_idle far off: only --send-timeout (1 s) can end this tunnel.
  WsFront front(backend.address(), "ws_idle=1h", {"--send-timeout", "1s"});
  auto client = front.connect();  // and then never reads
  REQUIRE(backend.wait_upgraded(5s));
  backend.flood(uint64_t{64} << 20, 1 << 20, 3s);  // until portico stops reading it
  CHECK(front.portico.process().try_wait_for_output(
      std::regex("info websocket: client stopped reading client=127.0.0.1"), 20s));
  CHECK(front.portico.process().try_wait_for_output(
      std::regex(R"(tunnel=websocket .*ended=client_stopped_reading\n)"), 5s));
}

TEST_CASE("a tunnel portico closes ends after its close wait even if the client does not read",
          "[websocket]") {
  RawWsBackend backend;
  // --send-timeout far off: only the close handshake's own wait (3 s) can end it in time.
  WsFront front(backend.address(), "ws_idle=1h", {"--send-timeout", "60s"});
  auto client = front.connect();  // and then never reads
  REQUIRE(backend.wait_upgraded(5s));
  backend.flood(uint64_t{64} << 20, 1 << 20, 3s);  // until portico stops reading it
  // An unmasked frame: portico closes the tunnel (1002).
  REQUIRE(client->send_raw(WsClient::encode_frame(1, true, "not masked", /*mask=*/false)));
  CHECK(front.portico.process().try_wait_for_output(
      std::regex(R"(tunnel=websocket .*ended=unmasked_client_frame\n)"), 15s));
}

TEST_CASE("tunnel backpressure: a side that stops reading stops the other side", "[websocket]") {
  constexpr uint64_t kFlood = uint64_t{256} << 20;
  SECTION("the backend stops reading") {
    RawWsBackend backend;
    WsFront front(backend.address());
    WsClientOptions options = front.options();
    options.timeout = 3s;  // a send that cannot progress for 3 s gives up
    auto client = WsClient::connect(options);
    REQUIRE(client->ok());
    REQUIRE(backend.wait_upgraded(5s));
    backend.stop_reading();
    pid_t pid = front.portico.process().pid();
    long before = rss_kib(pid);
    uint64_t accepted = 0;
    const std::string message(1 << 20, 'm');
    while (accepted < kFlood && client->send_binary(message)) accepted += message.size();
    long during = rss_kib(pid);
    INFO("client got " << accepted << " bytes out; rss " << before << " -> " << during << " KiB");
    CHECK(accepted < kFlood);            // the client was stopped...
    CHECK(during - before < 16 * 1024);  // ...and the proxy did not buffer the difference
  }
  SECTION("the client stops reading") {
    RawWsBackend backend;
    WsFront front(backend.address());
    auto client = front.connect();  // and then never reads
    REQUIRE(backend.wait_upgraded(5s));
    pid_t pid = front.portico.process().pid();
    long before = rss_kib(pid);
    uint64_t sent = backend.flood(kFlood, 1 << 20, 3s);
    long during = rss_kib(pid);
    INFO("backend got " << sent << " bytes out; rss " << before << " -> " << during << " KiB");
    CHECK(sent < kFlood);
    CHECK(during - before < 16 * 1024);
  }
}

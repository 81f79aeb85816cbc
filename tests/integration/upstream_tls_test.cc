// TLS to backends: https:// backend URLs are re-encrypted, the backend's certificate is verified
// against the route's ca= bundle (or the system CAs) for the backend's host, with SNI set to it.
// The backend here is a TestBackend speaking TLS with a certificate from its own test CA.

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <thread>

#include "proxy/ws_frames.h"
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

// A TLS backend: a CA of its own and a leaf for `names`, served by a TestBackend.
struct TlsBackend {
  TlsBackend(const TempDir& dir, std::vector<std::string> names, Handler handler,
             const std::string& prefix = "backend")
      : ca(make_test_ca(dir, prefix + "-ca")) {
    CertOptions options;
    options.names = std::move(names);
    options.prefix = prefix;
    cert = issue_cert(dir, ca, options);
    ctx = make_test_server_context(cert);
    BackendOptions backend_options;
    backend_options.tls = ctx;
    backend = std::make_unique<TestBackend>(std::move(handler), backend_options);
  }
  ~TlsBackend() {
    backend.reset();  // its connection threads use ctx
    SSL_CTX_free(ctx);
  }
  uint16_t port() const { return backend->port(); }

  TestCa ca;
  TestCert cert;
  SSL_CTX* ctx = nullptr;
  std::unique_ptr<TestBackend> backend;
};

struct Front {
  Front(TempDir& dir, const std::string& routes)
      : cert(make_test_cert(dir, {"localhost", "127.0.0.1"}, "front")),
        portico(dir, routes, cert) {}
  CommandResult get(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--cacert", cert.ca_cert, "-sS"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(portico.url(path));
    return curl(args);
  }
  int status_of(const std::string& path) {
    CommandResult r = get(path, {"-o", "/dev/null", "-w", "%{http_code}"});
    return std::stoi(r.stdout.empty() ? "0" : r.stdout);
  }
  TestCert cert;
  PorticoProcess portico;
};

// Polls `done` every 20 ms until it holds or `timeout` passes.
template <typename Predicate>
bool wait_for(Predicate done, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::string file_name(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

}  // namespace

TEST_CASE("https:// backend: requests re-encrypted, verified with ca=, SNI is the backend name",
          "[upstream_tls]") {
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, echo_handler());
  // ca= relative to the route file's directory (the TempDir, where the CA was written).
  Front front(dir, "/ https://localhost:" + std::to_string(tls.port()) +
                       " ca=" + file_name(tls.ca.cert) + "\n");
  CommandResult get = front.get("/hello");
  INFO(get.describe() << front.portico.stderr_text());
  CHECK(get.exit_code == 0);
  CHECK(get.stdout.empty());  // echo of an empty GET body

  std::string body(512 * 1024, 'p');
  for (size_t i = 0; i < body.size(); i += 7) body[i] = static_cast<char>('a' + i % 26);
  std::string body_file = dir.write_file("upload.bin", body);
  CommandResult post = front.get("/upload", {"--data-binary", "@" + body_file});
  CHECK(post.exit_code == 0);
  CHECK(post.stdout == body);

  REQUIRE(tls.backend->wait_for_requests(2));
  auto requests = tls.backend->requests();
  CHECK(requests[0].target == "/hello");
  CHECK(requests[1].method == "POST");
  CHECK(requests[1].body_size == body.size());
  // SNI carried the backend's host name, as written in the route.
  auto names = tls.backend->tls_server_names();
  REQUIRE_FALSE(names.empty());
  CHECK(names[0] == "localhost");
  CHECK(tls.backend->tls_failures() == 0);
}

TEST_CASE("https:// backend: a close-delimited body ends only with close_notify",
          "[upstream_tls]") {
  // Without close_notify the end of the TCP connection proves nothing (RFC 8446 6.1: anyone on
  // the path can send a FIN): the client must see the body cut short, not a complete one.
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, [](const ReceivedRequest& request) {
    Response r;
    r.framing = Response::kCloseDelimited;
    r.body = std::string(10000, 'b');
    r.skip_close_notify = request.target == "/cut";
    return r;
  });
  Front front(dir, "/ https://localhost:" + std::to_string(tls.port()) +
                       " ca=" + file_name(tls.ca.cert) + "\n");
  CommandResult whole = front.get("/whole");
  INFO(whole.describe());
  CHECK(whole.exit_code == 0);
  CHECK(whole.stdout == std::string(10000, 'b'));
  CommandResult cut = front.get("/cut");
  INFO(cut.describe());
  CHECK(cut.exit_code == 18);  // curl: the chunked body never ended
  CHECK(front.portico.process().try_wait_for_output(
      std::string("error=\"backend closed TLS without close_notify\""), 5s));
}

TEST_CASE("https:// backend: the TLS connection is pooled and reused across clients",
          "[upstream_tls]") {
  TempDir dir;
  TlsBackend tls(dir, {"127.0.0.1"}, default_response);
  Front front(dir,
              "/ https://127.0.0.1:" + std::to_string(tls.port()) + " ca=" + tls.ca.cert + "\n");
  for (int i = 0; i < 5; ++i) {
    CommandResult r = front.get("/n" + std::to_string(i));
    INFO(r.describe());
    CHECK(r.stdout == "ok GET /n" + std::to_string(i));
    // Let the backend's post-handshake session tickets arrive while the connection is idle
    // in the pool: they must not be taken for a backend closing it.
    std::this_thread::sleep_for(50ms);
  }
  CHECK(tls.backend->connections_accepted() == 1);
  // An IP literal is verified against the certificate's IP names, and never sent as SNI.
  auto names = tls.backend->tls_server_names();
  REQUIRE(names.size() == 1);
  CHECK(names[0].empty());
}

TEST_CASE("https:// backend: bytes in a later record of the same read end the connection",
          "[upstream_tls]") {
  // The answer to /one ends in its record; the record after it, in the same TCP segment, holds
  // bytes the backend should not have sent. Taken record by record, they reached the next
  // request on the connection (the pipelined /two) as its answer.
  TempDir dir;
  TlsBackend tls(dir, {"127.0.0.1"}, [](const ReceivedRequest& request) {
    Response r;
    if (request.target == "/one") {
      r.raw = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none";
      r.raw_late = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTOLEN";
      return r;
    }
    return default_response(request);
  });
  Front front(dir,
              "/ https://127.0.0.1:" + std::to_string(tls.port()) + " ca=" + tls.ca.cert + "\n");
  RawTlsClient client(front.portico.https_port(), front.cert.ca_cert);
  REQUIRE(
      client.send("GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  "GET /two HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  std::string answers = client.read_all_until_close(10s).data;
  INFO(answers);
  CHECK(answers.find("\r\n\r\none") != std::string::npos);
  CHECK(answers.find("ok GET /two") != std::string::npos);
  CHECK(answers.find("STOLEN") == std::string::npos);
  CHECK(tls.backend->connections_accepted() == 2);
}

TEST_CASE("https:// backend: a new connection resumes the backend's last session",
          "[upstream_tls]") {
  TempDir dir;
  // The backend closes after each answer, so every request needs a new TLS connection.
  TlsBackend tls(dir, {"localhost"}, [](const ReceivedRequest& request) {
    Response r;
    r.body = "ok " + request.target;
    r.close_after = true;
    return r;
  });
  Front front(dir,
              "/ https://localhost:" + std::to_string(tls.port()) + " ca=" + tls.ca.cert + "\n");
  for (int i = 0; i < 4; ++i) {
    CommandResult r = front.get("/r" + std::to_string(i));
    INFO(r.describe());
    CHECK(r.stdout == "ok /r" + std::to_string(i));
  }
  CHECK(tls.backend->connections_accepted() == 4);
  // The first handshake is full; the others resume (TLS 1.3 tickets, the last one each time).
  CHECK(tls.backend->tls_resumed() == 3);
  CHECK(tls.backend->tls_server_names() == std::vector<std::string>(4, "localhost"));
}

TEST_CASE("https:// backend: a certificate the route's CA did not sign gets 502 and a log line",
          "[upstream_tls]") {
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, default_response);
  TestCa other = make_test_ca(dir, "other-ca");
  Front front(dir,
              "/ https://localhost:" + std::to_string(tls.port()) + " ca=" + other.cert + "\n");
  CHECK(front.status_of("/") == 502);
  CHECK(tls.backend->request_count() == 0);
  CHECK(wait_for([&] { return tls.backend->tls_failures() >= 1; }, 5s));
  std::string log = front.portico.stderr_text();
  INFO(log);
  // The backend sends its chain up to its own root, which the route's CA does not know.
  CHECK(log.find("tls handshake failed backend=https://localhost:" + std::to_string(tls.port()) +
                 " reason=\"self-signed certificate in certificate chain\"") != std::string::npos);
}

TEST_CASE(
    "https:// backend: a TLS handshake the backend never answers gives 504 at connect_timeout",
    "[upstream_tls]") {
  // The kernel completes the TCP handshake into the listen backlog; nothing ever accepts, so
  // the ClientHello is never answered and connect_timeout (which covers the TLS handshake)
  // ends the wait. As NGINX: a timed-out attempt is 504, a failed one 502.
  TempDir dir;
  uint16_t port = 0;
  int silent = listen_loopback(16, &port);
  REQUIRE(silent >= 0);
  Front front(dir, "/ https://127.0.0.1:" + std::to_string(port) + " connect_timeout=300ms\n");
  CHECK(front.status_of("/") == 504);
  CHECK(front.portico.process().try_wait_for_output(
      "connect timed out backend=https://127.0.0.1:" + std::to_string(port), 5s));
  close(silent);
}

TEST_CASE("https:// backend: a certificate for another name gets 502", "[upstream_tls]") {
  TempDir dir;
  TlsBackend tls(dir, {"other.test"}, default_response);
  Front front(dir, "/byname https://localhost:" + std::to_string(tls.port()) + " ca=" +
                       tls.ca.cert + "\n/byip https://127.0.0.1:" + std::to_string(tls.port()) +
                       " ca=" + tls.ca.cert + "\n");
  CHECK(front.status_of("/byname") == 502);
  CHECK(front.status_of("/byip") == 502);
  CHECK(tls.backend->request_count() == 0);
  std::string log = front.portico.stderr_text();
  INFO(log);
  CHECK(log.find("reason=\"hostname mismatch\"") != std::string::npos);
  CHECK(log.find("reason=\"IP address mismatch\"") != std::string::npos);
}

TEST_CASE("https:// backend: a certificate naming the host only in its CN gets 502",
          "[upstream_tls]") {
  TempDir dir;
  // No subjectAltName: CN=localhost (the prefix names the subject when there are no names).
  TlsBackend tls(dir, {}, default_response, "localhost");
  Front front(dir,
              "/ https://localhost:" + std::to_string(tls.port()) + " ca=" + tls.ca.cert + "\n");
  CHECK(front.status_of("/") == 502);
  CHECK(tls.backend->request_count() == 0);
  INFO(front.portico.stderr_text());
  CHECK(front.portico.stderr_text().find("reason=\"hostname mismatch\"") != std::string::npos);
}

TEST_CASE("https:// backend without ca=: the system CAs, which do not know a private CA",
          "[upstream_tls]") {
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, default_response);
  Front front(dir, "/ https://localhost:" + std::to_string(tls.port()) + "\n");
  CHECK(front.status_of("/") == 502);
  CHECK(tls.backend->request_count() == 0);
}

TEST_CASE("https:// backend: a WebSocket upgrade is tunnelled over TLS to the backend",
          "[upstream_tls][websocket]") {
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, [](const ReceivedRequest& request) {
    Response r;
    r.raw =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        portico::ws_accept_for_key(request.header("sec-websocket-key")) + "\r\n\r\n";
    r.status = 101;
    return r;
  });
  Front front(dir,
              "/ws https://localhost:" + std::to_string(tls.port()) + " ca=" + tls.ca.cert + "\n");
  WsClientOptions options;
  options.port = front.portico.https_port();
  options.ca_file = front.cert.ca_cert;
  auto ws = WsClient::connect(options);
  INFO(ws->error() << front.portico.stderr_text());
  REQUIRE(ws->ok());
  const std::string text = "hello over tls";
  REQUIRE(ws->send_text(text));
  // The backend records the (decrypted) frame after the request head: FIN+text, masked length,
  // the mask, then the masked payload.
  std::string frame;
  CHECK(wait_for(
      [&] {
        auto raw = tls.backend->raw_received();
        if (raw.empty()) return false;
        size_t end = raw[0].find("\r\n\r\n");
        if (end == std::string::npos) return false;
        frame = raw[0].substr(end + 4);
        return frame.size() >= 6 + text.size();
      },
      5s));
  REQUIRE(frame.size() == 6 + text.size());
  CHECK(static_cast<unsigned char>(frame[0]) == 0x81);
  CHECK(static_cast<unsigned char>(frame[1]) == (0x80 | text.size()));
  std::string payload;
  for (size_t i = 0; i < text.size(); ++i) payload.push_back(frame[6 + i] ^ frame[2 + i % 4]);
  CHECK(payload == text);
}

TEST_CASE("portico --check --probe does the TLS handshake an https:// backend will get",
          "[upstream_tls][check]") {
  TempDir dir;
  TlsBackend tls(dir, {"localhost"}, default_response);
  TestCa other = make_test_ca(dir, "other-ca");
  TestCert front = make_test_cert(dir, {"localhost"}, "front");
  const std::string backend = "https://localhost:" + std::to_string(tls.port());
  const std::string routes =
      dir.write_file("routes.conf", "/good/ " + backend + " ca=" + tls.ca.cert + "\n/bad/ " +
                                        backend + " ca=" + other.cert + "\n");
  CommandResult r = run_command({PORTICO_BINARY, "--routes", routes, "--cert", front.fullchain,
                                 "--key", front.key, "--check", "--probe"},
                                "", 60s);
  INFO(r.describe());
  CHECK(r.exit_code == 1);  // one probe failed
  CHECK(r.stdout.find("probe PASS route=/good/ backend=" + backend + " detail=status=200") !=
        std::string::npos);
  CHECK(r.stdout.find("probe FAIL route=/bad/ backend=" + backend +
                      " detail=tls handshake: self-signed certificate in certificate chain") !=
        std::string::npos);
  REQUIRE(tls.backend->wait_for_requests(1));
  CHECK(tls.backend->requests()[0].target == "/good/");
}

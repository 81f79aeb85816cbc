// The front door end to end: the real portico binary with a generated certificate, real
// backends started by the test, real clients (curl, openssl s_client, raw TLS sockets).

#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <functional>
#include <mutex>
#include <regex>
#include <thread>

#include "tests/support/body_pattern.h"
#include "tests/support/http_message.h"
#include "tests/support/net.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/scripted_backend.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

// One portico in front of one TestBackend, routing everything to it.
struct FrontDoor {
  explicit FrontDoor(Handler handler = default_response, std::string route_options = "",
                     std::vector<std::string> extra_args = {})
      : cert(make_test_cert(dir)),
        backend(std::move(handler)),
        portico(dir, "/ http://" + backend.address() + " " + route_options + "\n", cert,
                std::move(extra_args)) {}

  CommandResult get(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--cacert", cert.ca_cert, "-i", portico.url(path)};
    args.insert(args.end(), extra.begin(), extra.end());
    return curl(args);
  }

  TempDir dir;
  TestCert cert;
  TestBackend backend;
  PorticoProcess portico;
};

HttpResponse only_response(const CommandResult& result) {
  INFO(result.describe());
  REQUIRE(result.exit_code == 0);
  auto responses = parse_http_responses(result.stdout);
  REQUIRE(!responses.empty());
  return responses.back();
}

long peak_rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace

TEST_CASE("a GET reaches the backend with forwarding headers set", "[front-door]") {
  FrontDoor door;
  auto response = only_response(door.get(
      "/api/hello?x=1&y=%20z",
      {"-H", "X-Forwarded-For: 6.6.6.6", "-H", "Forwarded: for=6.6.6.6", "-H", "X-Custom: kept",
       "-H", "X-Forwarded-Port: 1", "-H", "X-Forwarded-Prefix: /x",
       // Underscore spellings: CGI-style backends read them as the hyphenated ones.
       "-H", "X_Forwarded_For: 5.5.5.5", "-H", "X_Real_IP: 4.4.4.4", "-H",
       "x-forwarded_host: evil.test", "-H", "X_Forwarded_Prefix: /y", "-H", "X_Custom_Id: 7"}));
  CHECK(response.status == 200);
  CHECK(response.body == "ok GET /api/hello?x=1&y=%20z");
  REQUIRE(door.backend.wait_for_requests(1));
  ReceivedRequest received = door.backend.requests().at(0);
  CHECK(received.target == "/api/hello?x=1&y=%20z");
  CHECK(received.header("Host") == "localhost:" + std::to_string(door.portico.https_port()));
  // A client's own forwarding headers are not trusted: portico replaces them.
  CHECK(received.headers_named("X-Forwarded-For") == std::vector<std::string>{"127.0.0.1"});
  CHECK(received.header("X-Forwarded-Proto") == "https");
  CHECK(received.header("X-Forwarded-Host") == received.header("Host"));
  CHECK(received.headers_named("Forwarded").size() == 1);
  CHECK(received.header("Forwarded") ==
        "for=127.0.0.1;proto=https;host=\"" + received.header("Host") + "\"");
  CHECK(received.header("X-Custom") == "kept");
  CHECK_FALSE(received.has_header("X-Forwarded-Port"));
  for (const char* name :
       {"X_Forwarded_For", "X_Real_IP", "x-forwarded_host", "X_Forwarded_Prefix"}) {
    INFO(name);
    CHECK_FALSE(received.has_header(name));
  }
  CHECK(received.header("X_Custom_Id") == "7");
  CHECK_FALSE(received.has_header("X-Forwarded-Prefix"));
}

TEST_CASE("hop-by-hop headers are removed both ways", "[front-door]") {
  FrontDoor door([](const ReceivedRequest&) {
    Response r;
    r.body = "hi";
    r.headers = {{"Connection", "X-Backend-Hop"},
                 {"X-Backend-Hop", "secret"},
                 {"Keep-Alive", "timeout=5"},
                 {"X-End", "visible"}};
    return r;
  });
  auto response = only_response(
      door.get("/", {"-H", "Connection: keep-alive, X-Client-Hop", "-H", "X-Client-Hop: secret",
                     "-H", "Keep-Alive: timeout=9", "-H", "TE: trailers", "-H",
                     "Proxy-Connection: keep-alive", "-H", "Trailer: X-T", "-H", "Upgrade: h2c"}));
  CHECK(response.status == 200);
  CHECK_FALSE(response.has_header("X-Backend-Hop"));
  CHECK_FALSE(response.has_header("Keep-Alive"));
  CHECK(response.header("X-End") == "visible");
  REQUIRE(door.backend.wait_for_requests(1));
  ReceivedRequest received = door.backend.requests().at(0);
  for (const char* name :
       {"X-Client-Hop", "Keep-Alive", "TE", "Proxy-Connection", "Trailer", "Upgrade"}) {
    INFO(name);
    CHECK_FALSE(received.has_header(name));
  }
}

TEST_CASE("trusted proxies have their forwarding headers appended to", "[front-door]") {
  FrontDoor door(default_response, "", {"--trusted-proxies", "127.0.0.0/8,::1"});
  only_response(door.get("/", {"-H", "X-Forwarded-For: 203.0.113.9", "-H",
                               "Forwarded: for=203.0.113.9", "-H", "X-Forwarded-Port: 8443"}));
  REQUIRE(door.backend.wait_for_requests(1));
  ReceivedRequest received = door.backend.requests().at(0);
  CHECK(received.header("X-Forwarded-Port") == "8443");
  CHECK(received.header("X-Forwarded-For") == "203.0.113.9, 127.0.0.1");
  CHECK(received.header("Forwarded").rfind("for=203.0.113.9, for=127.0.0.1;", 0) == 0);
}

TEST_CASE("Expect: 100-continue gets a 100 over HTTP/1.1 and none over HTTP/1.0",
          "[front-door][body]") {
  FrontDoor door;
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(
      client.send("POST /e HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                  "Content-Length: 5\r\nConnection: close\r\n\r\n"));
  ReadResult interim = client.read_until("HTTP/1.1 100 Continue\r\n\r\n", 5s);
  REQUIRE(interim.matched);
  REQUIRE(client.send("hello"));
  ReadResult rest = client.read_all_until_close(5s);
  CHECK(rest.data.find("ok POST /e") != std::string::npos);
  // The 100 went to the client too: bytes_out counts it (as NGINX's $bytes_sent does).
  const size_t received = interim.data.size() + rest.data.size();
  CHECK(door.portico.process().try_wait_for_output(
      std::regex("access: .*path=/e .*bytes_out=" + std::to_string(received) + " "), 5s));
  // RFC 9110 10.1.1: an HTTP/1.0 request's expectation is ignored (no 1xx to a 1.0 client).
  RawTlsClient old(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(old.send(
      "POST /o HTTP/1.0\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
  std::this_thread::sleep_for(300ms);  // a 100 would be sent now, before the body
  REQUIRE(old.send("hello"));
  ReadResult read = old.read_all_until_close(5s);
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(read.data.find("100 Continue") == std::string::npos);
}

TEST_CASE("10 MiB bodies stream both ways with Content-Length", "[front-door][body]") {
  constexpr uint64_t kSize = 10 << 20;
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    if (request.method == "GET") r.generated_body_size = kSize;
    r.body = request.method == "POST" ? std::to_string(request.body_hash) : "";
    return r;
  });
  std::string upload(kSize, '\0');
  pattern_fill(0, upload.data(), upload.size());
  std::string upload_path = door.dir.write_file("upload.bin", upload);

  CommandResult post =
      curl({"--cacert", door.cert.ca_cert, "--data-binary", "@" + upload_path, "-H",
            "Content-Type: application/octet-stream", door.portico.url("/up")});
  INFO(post.describe());
  REQUIRE(post.exit_code == 0);
  CHECK(post.stdout == std::to_string(pattern_hash(kSize)));
  REQUIRE(door.backend.wait_for_requests(1));
  ReceivedRequest received = door.backend.requests().at(0);
  CHECK(received.body_size == kSize);
  CHECK(received.header("Content-Length") == std::to_string(kSize));
  CHECK_FALSE(received.has_header("Expect"));  // portico answered 100-continue itself

  std::string download_path = door.dir.file("download.bin");
  CommandResult get = curl({"--cacert", door.cert.ca_cert, "-o", download_path, "-w",
                            "%{size_download}", door.portico.url("/down")});
  INFO(get.describe());
  REQUIRE(get.exit_code == 0);
  uint64_t size = 0;
  CHECK(hash_file(download_path, &size) == pattern_hash(kSize));
  CHECK(size == kSize);
}

TEST_CASE("chunked bodies stream both ways", "[front-door][body]") {
  constexpr uint64_t kSize = 10 << 20;
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    r.framing = Response::kChunked;
    if (request.method == "GET") {
      r.generated_body_size = kSize;
    } else {
      r.body = std::to_string(request.body_size) + " " + std::to_string(request.body_hash);
    }
    return r;
  });
  std::string upload(kSize, '\0');
  pattern_fill(0, upload.data(), upload.size());
  std::string upload_path = door.dir.write_file("upload.bin", upload);
  CommandResult post = curl({"--cacert", door.cert.ca_cert, "-H", "Transfer-Encoding: chunked",
                             "--data-binary", "@" + upload_path, door.portico.url("/up")});
  INFO(post.describe());
  REQUIRE(post.exit_code == 0);
  CHECK(post.stdout == std::to_string(kSize) + " " + std::to_string(pattern_hash(kSize)));
  REQUIRE(door.backend.wait_for_requests(1));
  CHECK(door.backend.requests().at(0).chunked);
  CHECK_FALSE(door.backend.requests().at(0).has_header("Content-Length"));

  std::string download_path = door.dir.file("download.bin");
  CommandResult get = curl({"--cacert", door.cert.ca_cert, "-D", door.dir.file("head.txt"), "-o",
                            download_path, door.portico.url("/down")});
  INFO(get.describe());
  REQUIRE(get.exit_code == 0);
  uint64_t size = 0;
  CHECK(hash_file(download_path, &size) == pattern_hash(kSize));
  CHECK(size == kSize);
  std::ifstream head_file(door.dir.file("head.txt"));
  std::string head((std::istreambuf_iterator<char>(head_file)), {});
  CHECK(std::regex_search(head, std::regex("transfer-encoding: chunked", std::regex::icase)));
}

TEST_CASE("a close-delimited response reaches the client whole, re-framed as chunked",
          "[front-door][body]") {
  FrontDoor door([](const ReceivedRequest&) {
    Response r;
    r.framing = Response::kCloseDelimited;
    r.generated_body_size = 300000;
    return r;
  });
  // Two requests on one client connection: the second proves the client connection survived.
  CommandResult result =
      curl({"--cacert", door.cert.ca_cert, "-o", door.dir.file("a"), "-o", door.dir.file("b"), "-w",
            "%{num_connects} ", door.portico.url("/a"), door.portico.url("/b")});
  INFO(result.describe());
  REQUIRE(result.exit_code == 0);
  uint64_t size_a = 0, size_b = 0;
  CHECK(hash_file(door.dir.file("a"), &size_a) == pattern_hash(300000));
  CHECK(hash_file(door.dir.file("b"), &size_b) == pattern_hash(300000));
  CHECK(result.stdout == "1 0 ");
}

TEST_CASE("keep-alive: many requests share one backend connection", "[front-door][keepalive]") {
  FrontDoor door;
  std::vector<std::string> args = {"--cacert", door.cert.ca_cert};
  for (int i = 0; i < 5; ++i) args.push_back(door.portico.url("/k" + std::to_string(i)));
  CommandResult first = curl(args);
  INFO(first.describe());
  REQUIRE(first.exit_code == 0);
  // A second client connection reuses the pooled backend connection too.
  CommandResult second = curl(args);
  REQUIRE(second.exit_code == 0);
  REQUIRE(door.backend.wait_for_requests(10));
  CHECK(door.backend.connections_accepted() == 1);
  auto requests = door.backend.requests();
  for (size_t i = 0; i < requests.size(); ++i) CHECK(requests[i].connection_id == 1);
}

TEST_CASE("pipelined requests are answered in order", "[front-door][keepalive]") {
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    r.body = "answer to " + request.target;
    // The first answer is the slowest: order must still hold.
    if (request.target == "/p0") r.delay_before_headers = 200ms;
    return r;
  });
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(client.ok());
  std::string requests;
  for (int i = 0; i < 4; ++i) {
    requests += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  }
  requests += "HEAD /p4 HTTP/1.1\r\nHost: localhost\r\n\r\n";
  requests += "GET /p5 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  REQUIRE(client.send(requests));
  ReadResult read = client.read_all_until_close(10s);
  auto responses = parse_http_responses(read.data, {"GET", "GET", "GET", "GET", "HEAD", "GET"});
  REQUIRE(responses.size() == 6);
  for (int i = 0; i < 6; ++i) {
    INFO(i);
    CHECK(responses[i].status == 200);
    if (i != 4) CHECK(responses[i].body == "answer to /p" + std::to_string(i));
  }
  CHECK(responses[4].body.empty());
  CHECK(responses[4].header("Content-Length") ==
        std::to_string(std::string("answer to /p4").size()));
  CHECK(responses[5].header("Connection") == "close");
  CHECK(read.closed == CloseKind::kCloseNotify);
}

TEST_CASE("a 1xx, 204 or 304 that claims a body ends at its blank line", "[front-door]") {
  // RFC 9112 section 6.3. Relayed as a body, these bytes would reach the client after a head
  // that announced none, and the client would take them for its next answer.
  const char* responses[] = {
      "HTTP/1.1 204 No Content\r\nContent-Length: 45\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nPOISONED!",
      "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
      "9\r\nPOISONED!\r\n0\r\n\r\n",
      "HTTP/1.1 150 Odd\r\nContent-Length: 9\r\n\r\nPOISONED!"
      "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal",
  };
  for (const char* raw : responses) {
    INFO(raw);
    FrontDoor door([raw](const ReceivedRequest&) {
      Response r;
      r.raw = raw;
      return r;
    });
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(client.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    ReadResult read = client.read_until("\r\n\r\n", 5s);
    client.send("GET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    read.data += client.read_all_until_close(10s).data;
    INFO(read.data);
    CHECK(read.data.find("POISONED!") == std::string::npos);
  }
  // A 304 may carry the length its 200 would have (RFC 9110 8.6): it is answered at once, not
  // held until read_timeout waiting for that many bytes.
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    if (request.target == "/304") {
      r.raw = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n";
    } else {
      r.body = "after";
    }
    return r;
  });
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(
      client.send("GET /304 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  "GET /next HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  ReadResult read = client.read_until("after", 5s);
  INFO(read.data);
  CHECK(read.matched);
  auto parsed = parse_http_responses(read.data, {"GET", "GET"});
  REQUIRE(parsed.size() == 2);
  CHECK(parsed[0].status == 304);
  CHECK(parsed[1].body == "after");
}

TEST_CASE("HEAD, 204 and 304 are answered without bodies", "[front-door]") {
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    if (request.target == "/204") r.status = 204;
    if (request.target == "/304") r.status = 304;
    if (request.target == "/head") r.body = "twelve bytes";
    if (request.target == "/end") r.body = "the end";
    return r;
  });
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(client.send(
      "HEAD /head HTTP/1.1\r\nHost: localhost\r\n\r\nGET /204 HTTP/1.1\r\nHost: localhost\r\n\r\n"
      "GET /304 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /end HTTP/1.1\r\nHost: localhost\r\n"
      "Connection: close\r\n\r\n"));
  ReadResult read = client.read_all_until_close(10s);
  auto responses = parse_http_responses(read.data, {"HEAD", "GET", "GET", "GET"});
  INFO(read.data);
  REQUIRE(responses.size() == 4);
  CHECK(responses[0].status == 200);
  CHECK(responses[0].header("Content-Length") == "12");
  CHECK(responses[0].body.empty());
  CHECK(responses[1].status == 204);
  CHECK_FALSE(responses[1].has_header("Content-Length"));
  CHECK(responses[2].status == 304);
  CHECK(responses[3].body == "the end");
}

TEST_CASE("portico's own answers to HEAD (404, 502) have no body, and the connection goes on",
          "[front-door]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  // /down/ goes to a port nothing listens on (502); a Host no route serves gets 404.
  PorticoProcess portico(dir,
                         "/down/ http://127.0.0.1:" + std::to_string(free_port()) +
                             "\nserved.test/ http://" + backend.address() + "\n",
                         cert);
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.send(
      "HEAD /down/a HTTP/1.1\r\nHost: localhost\r\n\r\nHEAD /none HTTP/1.1\r\nHost: "
      "localhost\r\n\r\nGET /down/b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  ReadResult read = client.read_all_until_close(10s);
  INFO(read.data);
  auto responses = parse_http_responses(read.data, {"HEAD", "HEAD", "GET"});
  REQUIRE(responses.size() == 3);
  CHECK(responses[0].status == 502);
  CHECK(responses[0].header("Content-Length") != "0");  // the length a GET would get
  CHECK(responses[0].body.empty());
  CHECK(responses[1].status == 404);
  CHECK(responses[1].body.empty());
  CHECK(responses[2].status == 502);
  CHECK(responses[2].body.rfind("502 Bad Gateway", 0) == 0);
  // Nothing after the three answers: a body sent after a HEAD answer would be left over here.
  CHECK(read.data.size() == read.data.rfind("502 Bad Gateway") + responses[2].body.size());
}

TEST_CASE("a method the parser does not know gets 501, garbage 400, and neither is forwarded",
          "[front-door]") {
  FrontDoor door;
  auto answer = [&](const std::string& request) {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(client.send(request));
    ReadResult read = client.read_all_until_close(5s);
    CHECK(read.closed != CloseKind::kOpen);
    return read.data;
  };
  CHECK(answer("BAN /x HTTP/1.1\r\nHost: localhost\r\n\r\n").rfind("HTTP/1.1 501 ", 0) == 0);
  CHECK(answer("QUERY /x HTTP/1.1\r\nHost: localhost\r\n\r\n").rfind("HTTP/1.1 501 ", 0) == 0);
  CHECK(answer("G@T /x HTTP/1.1\r\nHost: localhost\r\n\r\n").rfind("HTTP/1.1 400 ", 0) == 0);
  CHECK(answer("GARBAGE\r\n\r\n").rfind("HTTP/1.1 400 ", 0) == 0);
  CHECK(door.backend.request_count() == 0);
  // After a first request on the connection too: the 501 closes it (the parser cannot go on).
  const std::string after_get = answer(
      "GET /first HTTP/1.1\r\nHost: localhost\r\n\r\nBAN /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
  INFO(after_get);
  CHECK(after_get.find("HTTP/1.1 501 ") != std::string::npos);
  CHECK(after_get.find("Connection: close\r\n") != std::string::npos);
  CHECK(door.backend.request_count() == 1);
}

TEST_CASE("the redirect listener sends every request to https", "[front-door][redirect]") {
  FrontDoor door;
  std::string https_port = std::to_string(door.portico.https_port());
  std::string http = "http://127.0.0.1:" + std::to_string(door.portico.http_port());
  CommandResult get = curl({"-i", http + "/x?y=1"});
  auto response = only_response(get);
  CHECK(response.status == 301);
  CHECK(response.header("Location") == "https://127.0.0.1:" + https_port + "/x?y=1");
  // The Location is the whole answer: no body, an explicit empty length, the connection kept.
  CHECK(response.header("Content-Length") == "0");
  CHECK(response.body.empty());
  CHECK_FALSE(response.has_header("Connection"));

  CommandResult encoded =
      curl({"-i", "--path-as-is", "-H", "Host: Example.COM:80", http + "/a%2Fb/../c?q=%41&r"});
  CHECK(only_response(encoded).header("Location") ==
        "https://Example.COM:" + https_port + "/a%2Fb/../c?q=%41&r");

  CommandResult post = curl({"-i", "-X", "POST", "-d", "body", http + "/form"});
  auto post_response = only_response(post);
  CHECK(post_response.status == 308);
  CHECK(post_response.header("Location") == "https://127.0.0.1:" + https_port + "/form");

  CommandResult bad_host = curl({"-i", "-H", "Host: bad host!", door.portico.http_url("/")});
  CHECK(only_response(bad_host).status == 400);
  CommandResult no_host = curl({"-i", "-H", "Host:", door.portico.http_url("/")});
  CHECK(only_response(no_host).status == 400);
  // An Upgrade request (h2c here) is answered, and the connection ends with the answer: what
  // follows it would be another protocol's.
  RawTcpClient upgrade(door.portico.http_port());
  REQUIRE(
      upgrade.send("GET /u HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
                   "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"));
  ReadResult upgraded = upgrade.read_all_until_close(5s);
  INFO(upgraded.data);
  CHECK(upgraded.data.rfind("HTTP/1.1 301", 0) == 0);
  CHECK(upgraded.data.find("Connection: close") != std::string::npos);
  CHECK(upgraded.closed != CloseKind::kOpen);
  // Nothing on port 80 is ever forwarded.
  CHECK(door.backend.request_count() == 0);
}

TEST_CASE("a field value's trailing blanks are no part of it, on both ports",
          "[front-door][redirect]") {
  // RFC 9112 5.1: "Host: a " names host a, as NGINX reads it; the blanks inside a value and
  // every other byte of it are forwarded exactly, both ways.
  std::mutex mutex;
  std::string received;
  ScriptedBackend backend([&](int fd, int) {
    std::string head = ScriptedBackend::read_until(fd, "\r\n\r\n");
    {
      std::lock_guard<std::mutex> lock(mutex);
      received = head;
    }
    ScriptedBackend::send_all(fd,
                              "HTTP/1.1 200 OK\r\nX-Back: r \t s \t\r\nContent-Length: 2\r\n"
                              "Connection: close\r\n\r\nok");
  });
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.ok());
  REQUIRE(client.send("GET /p HTTP/1.1\r\nHost: localhost \t"));
  REQUIRE(client.send("\r\nX-Custom: v \t w \r\nX-Plain: z\r\nConnection: close\r\n\r\n"));
  ReadResult answer = client.read_all_until_close(5s);
  INFO(answer.data);
  CHECK(answer.data.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(answer.data.find("\r\nX-Back: r \t s\r\n") != std::string::npos);
  {
    std::lock_guard<std::mutex> lock(mutex);
    INFO(received);
    CHECK(received.rfind("GET /p HTTP/1.1\r\nHost: localhost\r\n", 0) == 0);
    CHECK(received.find("\r\nX-Custom: v \t w\r\n") != std::string::npos);
    CHECK(received.find("\r\nX-Plain: z\r\n") != std::string::npos);
    CHECK(received.find("X-Forwarded-Host: localhost\r\n") != std::string::npos);
  }
  // The redirect listener reads Host the same way.
  for (std::string host : {"a.test ", "a.test\t", "a.test:80 \t "}) {
    INFO(host);
    RawTcpClient redirect(portico.http_port());
    REQUIRE(redirect.send("GET /r HTTP/1.1\r\nHost: " + host + "\r\n\r\n"));
    ReadResult read = redirect.read_until("\r\n\r\n", 5s);
    CHECK(read.data.rfind("HTTP/1.1 301", 0) == 0);
    CHECK(read.data.find("\r\nLocation: https://a.test:" + std::to_string(portico.https_port()) +
                         "/r\r\n") != std::string::npos);
  }
}

TEST_CASE("the redirect listener answers from the head, not after the body",
          "[front-door][redirect]") {
  FrontDoor door;
  // RFC 9110 10.1.1: the head decides the answer, so Expect: 100-continue gets the 308 at
  // once (not a 100, nor silence until 100 MB arrive), with Connection: close.
  RawTcpClient client(door.portico.http_port());
  REQUIRE(
      client.send("POST /p HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
                  "Content-Length: 100000000\r\n\r\n"));
  ReadResult head = client.read_until("\r\n\r\n", 5s);
  INFO(head.data);
  REQUIRE(head.matched);
  CHECK(head.data.rfind("HTTP/1.1 308", 0) == 0);
  CHECK(head.data.find("Connection: close") != std::string::npos);
  // Body bytes the client sends anyway are read and dropped (no reset that could destroy the
  // answer), and the connection ends once the client closes its side.
  REQUIRE(client.send(std::string(256 * 1024, 'x')));
  client.shutdown_write();
  ReadResult rest = client.read_all_until_close(10s);
  CHECK(rest.closed == CloseKind::kEof);
  CHECK(rest.data.empty());
  // A client that announced a body and then sends nothing is not kept for the keep-alive
  // timeout (75 s): the wait for it to go is 5 s of silence.
  RawTcpClient silent(door.portico.http_port());
  REQUIRE(silent.send("POST /q HTTP/1.1\r\nHost: a.test\r\nContent-Length: 100\r\n\r\n"));
  ReadResult answered = silent.read_all_until_close(20s);
  CHECK(answered.data.rfind("HTTP/1.1 308", 0) == 0);
  CHECK(answered.closed == CloseKind::kEof);
  // An absolute-form target naming another host than Host is refused, as on the TLS port.
  RawTcpClient other(door.portico.http_port());
  REQUIRE(other.send("GET http://evil.test/p HTTP/1.1\r\nHost: a.test\r\n\r\n"));
  CHECK(other.read_until("\r\n\r\n", 5s).data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(door.backend.request_count() == 0);
}

TEST_CASE("the redirect listener refuses a target the TLS port refuses, and escapes high bytes",
          "[front-door][redirect]") {
  FrontDoor door;
  // HTAB and FF pass llhttp: in a Location header they would split or corrupt it. The TLS port
  // answers such a path 400 (malformed path), and so does this one.
  for (std::string target : {"/a\tb", "/a\fb", "/a%zz", "/../etc/passwd", "/a?x\fy"}) {
    INFO(target);
    RawTcpClient client(door.portico.http_port());
    REQUIRE(client.send("GET " + target + " HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    ReadResult read = client.read_all_until_close(5s);
    CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(read.data.find("Location") == std::string::npos);
    if (target.find('?') != std::string::npos) continue;  // (the TLS port checks the path only)
    RawTlsClient tls(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(tls.send("GET " + target + " HTTP/1.1\r\nHost: a.test\r\n\r\n"));
    CHECK(tls.read_all_until_close(5s).data.rfind("HTTP/1.1 400", 0) == 0);
  }
  // Raw UTF-8 from a client that did not escape it: the escapes a browser would have sent.
  RawTcpClient utf8(door.portico.http_port());
  REQUIRE(utf8.send("GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: a.test\r\n\r\n"));
  ReadResult read = utf8.read_until("\r\n\r\n", 5s);
  INFO(read.data);
  CHECK(read.data.rfind("HTTP/1.1 301", 0) == 0);
  CHECK(read.data.find("\r\nLocation: https://a.test:" + std::to_string(door.portico.https_port()) +
                       "/caf%C3%A9?q=%C3%A9\r\n") != std::string::npos);
  CHECK(door.backend.request_count() == 0);
}

TEST_CASE("the redirect listener logs and counts the malformed requests it refuses",
          "[front-door][redirect]") {
  FrontDoor door(default_response, "", {"--admin", "127.0.0.1:0"});
  const char* cases[] = {
      "GARBAGE\r\n\r\n",
      "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
      // After an answered request on the same connection: its line is this request's own.
      "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n\x01GET / HTTP/1.1\r\n\r\n",
  };
  size_t log_from = door.portico.stderr_text().size();
  for (const char* request : cases) {
    INFO(request);
    RawTcpClient client(door.portico.http_port());
    REQUIRE(client.send(request));
    ReadResult read = client.read_all_until_close(5s);
    CHECK(read.data.find("HTTP/1.1 400 Bad Request") != std::string::npos);
    CHECK(read.closed != CloseKind::kOpen);
    // One access-log line per request, as the TLS port writes for the same bytes.
    OutputMatch line = door.portico.process().wait_for_output(
        std::regex("info access: [^\n]*route=redirect [^\n]*status=400 [^\n]*"
                   "error=malformed_request\n"),
        5s, Stream::kStderr, log_from);
    CHECK(line[0].find("path=/ok") == std::string::npos);
    log_from = line.end;
  }
  std::string metrics = door.portico.admin_get("/metrics");
  INFO(metrics);
  CHECK(metrics.find("\nportico_requests_total{route=\"redirect\",status_class=\"4xx\"} 3\n") !=
        std::string::npos);
  CHECK(metrics.find("\nportico_requests_total{route=\"redirect\",status_class=\"3xx\"} 1\n") !=
        std::string::npos);
}

TEST_CASE("the redirect listener answers a head not received in time with 408",
          "[front-door][redirect][timeouts]") {
  FrontDoor door(default_response, "", {"--header-timeout", "1s"});
  // A head begun and never finished: 408 and a close, as on the TLS port.
  RawTcpClient partial(door.portico.http_port());
  REQUIRE(partial.send("GET /slow HTTP/1.1\r\nHost: a"));
  ReadResult answered = partial.read_all_until_close(10s);
  INFO(answered.data);
  CHECK(answered.data.rfind("HTTP/1.1 408 Request Timeout\r\n", 0) == 0);
  CHECK(answered.data.find("Connection: close") != std::string::npos);
  CHECK(answered.closed == CloseKind::kEof);
  door.portico.process().wait_for_output(
      std::regex("info access: [^\n]*path=/slow route=redirect [^\n]*status=408 [^\n]*"
                 "error=request_head_not_received_in_time\n"));
  // The same for a later request on a kept connection, from its own first byte.
  RawTcpClient kept(door.portico.http_port());
  REQUIRE(kept.send("GET /one HTTP/1.1\r\nHost: a\r\n\r\nGET /two HTTP/1.1\r\n"));
  ReadResult second = kept.read_all_until_close(10s);
  INFO(second.data);
  CHECK(second.data.rfind("HTTP/1.1 301", 0) == 0);
  CHECK(second.data.find("HTTP/1.1 408 Request Timeout\r\n") != std::string::npos);
  // No byte at all: closed silently.
  RawTcpClient silent(door.portico.http_port());
  ReadResult nothing = silent.read_all_until_close(10s);
  CHECK(nothing.data.empty());
  CHECK(nothing.closed != CloseKind::kOpen);
}

TEST_CASE("the redirect listener reads again once a slow client has taken its answers",
          "[front-door][redirect][backpressure]") {
  FrontDoor door(default_response, "", {"--max-buffer", "16k"});
  // Far more pipelined requests than the answers the sockets and the connection may hold
  // (--max-buffer): reading stops at the high mark, and must start again once the client
  // reads.
  constexpr size_t kRequests = 100000;
  std::string requests;
  for (size_t i = 0; i < kRequests; ++i) requests += "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n";
  RawTcpClient client(door.portico.http_port());
  REQUIRE(client.send(requests, 20s));
  std::this_thread::sleep_for(2s);
  auto answers = [](std::string_view data) {
    size_t n = 0;
    for (size_t at = data.find(" 301 "); at != std::string_view::npos;
         at = data.find(" 301 ", at + 1)) {
      ++n;
    }
    return n;
  };
  size_t seen = 0;
  ReadResult read = client.read_until(
      [&](std::string_view data) {
        seen = answers(data);
        return seen >= kRequests;
      },
      30s);
  CHECK(seen == kRequests);
  CHECK(read.closed == CloseKind::kOpen);
}

TEST_CASE("no matching route gives 404", "[front-door][errors]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/api/ http://" + backend.address() + "\n", cert);
  CommandResult result = curl({"--cacert", cert.ca_cert, "-i", portico.url("/other")});
  auto response = only_response(result);
  CHECK(response.status == 404);
  CHECK(response.header("Content-Type").rfind("text/plain", 0) == 0);
  CHECK(backend.request_count() == 0);
  CHECK(
      portico.process().try_wait_for_output(std::regex("access: .*path=/other .*status=404"), 5s));
}

TEST_CASE("CONNECT gets 405 with Allow, and nothing is forwarded", "[front-door][errors]") {
  FrontDoor door;
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  // After a proxied request on the same connection: the 405's line names no backend.
  REQUIRE(client.send("GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  REQUIRE(client.read_until("ok GET /first", 5s).matched);
  REQUIRE(client.send(
      "CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n"));
  ReadResult read = client.read_all_until_close(5s);
  REQUIRE(!read.data.empty());
  HttpResponse response = parse_http_responses(read.data).at(0);
  CHECK(response.status == 405);
  // RFC 9110 section 15.5.6: a 405 carries Allow.
  CHECK(response.header("Allow").find("GET, HEAD, POST") == 0);
  CHECK(door.backend.request_count() == 1);
  CHECK(door.portico.process().try_wait_for_output(
      std::regex("access: .*path=localhost:443 .*route=- backend=- status=405"), 5s));
}

TEST_CASE("a backend that is down gives 502 at once", "[front-door][errors]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  ClosedPort closed;
  uint16_t closed_port = closed.port();
  PorticoProcess portico(dir, "/ http://127.0.0.1:" + std::to_string(closed_port) + "\n", cert);
  auto start = std::chrono::steady_clock::now();
  CommandResult result = curl({"--cacert", cert.ca_cert, "-i", portico.url("/")});
  auto response = only_response(result);
  CHECK(response.status == 502);
  CHECK(response.body.find("Bad Gateway") != std::string::npos);
  // "At once": well below any timeout (a generous bound, not a benchmark).
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(portico.process().try_wait_for_output(std::regex("access: .*status=502"), 5s));
}

TEST_CASE("a backend that does not answer in time gives 504", "[front-door][errors]") {
  FrontDoor door(
      [](const ReceivedRequest&) {
        Response r;
        r.never_respond = true;
        return r;
      },
      "read_timeout=1s");
  auto response = only_response(door.get("/slow"));
  CHECK(response.status == 504);
  CHECK(door.portico.process().try_wait_for_output(std::regex("access: .*status=504"), 5s));
}

TEST_CASE("read_timeout counts from the last body byte sent, a stalled body gets 408",
          "[front-door][errors]") {
  FrontDoor door(default_response, "read_timeout=1s");
  SECTION("an upload slower than read_timeout in all, never silent that long") {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(
        client.send("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n"
                    "Connection: close\r\n\r\n"));
    for (int i = 0; i < 6; ++i) {
      std::this_thread::sleep_for(400ms);
      REQUIRE(client.send("x"));
    }
    ReadResult read = client.read_all_until_close(5s);
    INFO(read.data);
    CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
    REQUIRE(door.backend.wait_for_requests(1));
    CHECK(door.backend.requests()[0].body == "xxxxxx");
  }
  SECTION("a client that stops halfway through its body") {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(
        client.send("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n\r\nabc"));
    ReadResult read = client.read_all_until_close(5s);
    INFO(read.data);
    CHECK(read.data.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(read.closed != CloseKind::kOpen);
    CHECK(door.backend.request_count() == 0);  // it never saw a whole request
  }
}

TEST_CASE("a backend closing mid-response truncates the client's response",
          "[front-door][errors]") {
  FrontDoor door([](const ReceivedRequest&) {
    Response r;
    r.generated_body_size = 1 << 20;
    r.close_mid_body = true;
    return r;
  });
  CommandResult result =
      curl({"--cacert", door.cert.ca_cert, "-o", "/dev/null", door.portico.url("/")});
  // curl sees the body end early (exit 18: partial file) rather than a complete response.
  CHECK(result.exit_code == 18);
}

TEST_CASE("an exchange its connection cut short still gets its access-log line",
          "[front-door][errors]") {
  FrontDoor door(
      [](const ReceivedRequest& request) {
        Response r;
        if (request.target == "/big") r.generated_body_size = uint64_t{100} << 20;
        if (request.target == "/bad-trailer") {
          // A valid head and body, then a trailer section over the response head limit.
          r.raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n" +
                  std::string("X-Trailer: ") + std::string(70000, 'a') + "\r\n\r\n";
        }
        return r;
      },
      "", {"--admin", "127.0.0.1:0"});
  Process& portico = door.portico.process();

  // A download the client resets part-way: the status that went out and the bytes it got.
  {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(client.send("GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    REQUIRE(client.read_until("\r\n\r\n", 5s).matched);
    client.reset();
  }
  OutputMatch big = portico.wait_for_output(
      std::regex(R"(info access: .*path=/big .*status=200 bytes_in=0 bytes_out=(\d+) .*)"
                 R"(error=client_connection_error_E[A-Z]+\n)"),
      10s);
  CHECK(std::stoull(big[1]) < (uint64_t{100} << 20));

  // An upload the client leaves before any answer: NGINX's 499.
  const int connections_before = door.backend.connections_accepted();
  {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(
        client.send("POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n"
                    "0123456789"));
    // Routed and connected (a new backend connection: the download's was not kept): the
    // exchange has begun.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (door.backend.connections_accepted() < connections_before + 1 &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(door.backend.connections_accepted() == connections_before + 1);
    client.close();
  }
  portico.wait_for_output(
      std::regex(R"(info access: .*method=POST .*path=/upload .*status=499 .*error=client_)"), 10s);

  // A response the backend breaks after its head went out: the line says so.
  CommandResult cut = door.get("/bad-trailer");
  CHECK(cut.exit_code != 0);  // curl sees the chunked body end without its last chunk
  portico.wait_for_output(std::regex(R"(info access: .*path=/bad-trailer .*status=200 .*)"
                                     R"(error=invalid_response_from_backend\n)"),
                          10s);

  // And each is counted, like every other request.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = door.portico.admin_get("/metrics");
    if (metrics.find("portico_requests_total{route=\"/\",status_class=\"2xx\"} 2\n") !=
        std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  CHECK(metrics.find("portico_requests_total{route=\"/\",status_class=\"2xx\"} 2\n") !=
        std::string::npos);
  CHECK(metrics.find("portico_requests_total{route=\"/\",status_class=\"4xx\"} 1\n") !=
        std::string::npos);
}

TEST_CASE("plain HTTP on the TLS port gets a plain 400 saying so, and a close",
          "[front-door][tls]") {
  FrontDoor door;
  RawTcpClient client(door.portico.https_port());
  REQUIRE(client.ok());
  REQUIRE(client.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  ReadResult read = client.read_all_until_close(5s);
  INFO(read.data);
  CHECK(read.closed != CloseKind::kOpen);
  CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(read.data.find("use https://") != std::string::npos);
  CHECK(door.backend.request_count() == 0);
}

TEST_CASE("TLS: 1.2 and 1.3 only, ALPN http/1.1, close_notify", "[front-door][tls]") {
  FrontDoor door;
  std::string connect = "127.0.0.1:" + std::to_string(door.portico.https_port());
  CommandResult tls13 =
      run_command({"openssl", "s_client", "-connect", connect, "-servername", "localhost",
                   "-CAfile", door.cert.ca_cert, "-alpn", "h2,http/1.1", "-brief"},
                  "", 15s);
  CHECK(tls13.stderr.find("Protocol version: TLSv1.3") != std::string::npos);
  CHECK(tls13.stderr.find("Verification: OK") != std::string::npos);
  CommandResult alpn =
      run_command({"openssl", "s_client", "-connect", connect, "-servername", "localhost",
                   "-CAfile", door.cert.ca_cert, "-alpn", "h2,http/1.1"},
                  "", 15s);
  CHECK(alpn.stdout.find("ALPN protocol: http/1.1") != std::string::npos);
  // Only h2 offered: no_application_protocol (RFC 7301 3.2), as NGINX answers.
  CommandResult h2_only =
      run_command({"openssl", "s_client", "-connect", connect, "-servername", "localhost",
                   "-CAfile", door.cert.ca_cert, "-alpn", "h2", "-brief"},
                  "", 15s);
  INFO(h2_only.stderr);
  CHECK(h2_only.exit_code != 0);
  CHECK(h2_only.stderr.find("no application protocol") != std::string::npos);
  // `curl --http1.0` offers http/1.0 alone: agreed, as NGINX does, and the request served.
  CommandResult http10 = curl({"--http1.0", "--cacert", door.cert.ca_cert, "-sS", "-o", "/dev/null",
                               "-w", "%{http_code}", door.portico.url("/old")});
  INFO(http10.describe());
  CHECK(http10.stdout == "200");
  CommandResult http10_alpn =
      run_command({"openssl", "s_client", "-connect", connect, "-servername", "localhost",
                   "-CAfile", door.cert.ca_cert, "-alpn", "http/1.0"},
                  "", 15s);
  CHECK(http10_alpn.stdout.find("ALPN protocol: http/1.0") != std::string::npos);
  CommandResult tls12 = run_command({"openssl", "s_client", "-connect", connect, "-tls1_2",
                                     "-CAfile", door.cert.ca_cert, "-brief"},
                                    "", 15s);
  CHECK(tls12.stderr.find("Protocol version: TLSv1.2") != std::string::npos);
  CommandResult tls11 =
      run_command({"openssl", "s_client", "-connect", connect, "-tls1_1", "-brief"}, "", 15s);
  CHECK(tls11.stderr.find("Protocol version: TLSv1.1") == std::string::npos);
  CHECK(tls11.exit_code != 0);

  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(client.ok());
  CHECK(client.alpn() == "http/1.1");
  REQUIRE(client.send("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  ReadResult read = client.read_all_until_close(5s);
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(read.closed == CloseKind::kCloseNotify);

  // A client's close_notify between requests is answered with portico's own.
  RawTlsClient idle(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(idle.ok());
  REQUIRE(idle.send("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  CHECK(idle.read_until("ok GET /", 5s).matched);
  idle.shutdown_write();
  CHECK(idle.read_all_until_close(5s).closed == CloseKind::kCloseNotify);
}

TEST_CASE("a client that never finishes its handshake is dropped, and each way is logged",
          "[front-door][tls]") {
  FrontDoor door(default_response, "", {"--handshake-timeout", "500ms"});
  RawTcpClient client(door.portico.https_port());
  REQUIRE(client.ok());
  ReadResult read = client.read_all_until_close(5s);
  CHECK(read.closed != CloseKind::kOpen);
  CHECK(door.portico.process().try_wait_for_output(
      "info tls: handshake failed client=127.0.0.1 reason=timeout", 5s));
  // The start of a ClientHello, then a close or a reset: one line each, as NGINX's "peer
  // closed connection in SSL handshake".
  const std::string hello_start("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  {
    RawTcpClient gives_up(door.portico.https_port());
    REQUIRE(gives_up.send(hello_start));
    gives_up.shutdown_write();
    CHECK(gives_up.read_all_until_close(5s).closed != CloseKind::kOpen);
  }
  {
    RawTcpClient resets(door.portico.https_port());
    REQUIRE(resets.send(hello_start));
    std::this_thread::sleep_for(100ms);
    resets.reset();
  }
  CHECK(door.portico.process().try_wait_for_output(
      "handshake failed client=127.0.0.1 reason=peer_closed detail=eof", 5s));
  CHECK(door.portico.process().try_wait_for_output(
      "handshake failed client=127.0.0.1 reason=peer_closed detail=ECONNRESET", 5s));
  // A connection closed before a byte (a port check, a TCP health check) is not worth a line.
  const std::string log_before = door.portico.stderr_text();
  {
    RawTcpClient check(door.portico.https_port());
    REQUIRE(check.ok());
  }
  std::this_thread::sleep_for(300ms);
  CHECK(door.portico.stderr_text() == log_before);
}

TEST_CASE("a malformed or ambiguous request gets 400 and nothing is forwarded",
          "[front-door][errors]") {
  FrontDoor door;
  const char* cases[] = {
      ("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n"),
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "GET / HTTP/1.1\nHost: a\n\n",
      "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
      "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET /../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked, identity\r\n\r\n",
      // Invalid Host values (RFC 9112 3.2): one would write a Forwarded element of its own.
      "GET / HTTP/1.1\r\nHost: a\", for=6.6.6.6;host=\"b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: evil.example, good.example\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a/b?c\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: good.example:443@evil.example\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: good.example:99999\r\n\r\n",
  };
  for (const char* request : cases) {
    INFO(request);
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(client.ok());
    REQUIRE(client.send(request));
    ReadResult read = client.read_all_until_close(5s);
    CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(read.closed != CloseKind::kOpen);
  }
  // Another major version than 1 on an HTTP/1 request line: 505, not served as HTTP/1.x.
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(client.send("GET / HTTP/2.0\r\nHost: a\r\n\r\n"));
  ReadResult read = client.read_all_until_close(5s);
  INFO(read.data);
  CHECK(read.data.rfind("HTTP/1.1 505", 0) == 0);
  CHECK(door.backend.request_count() == 0);
  CHECK(door.backend.connections_accepted() == 0);
  // An empty port is a valid Host (port = *DIGIT, RFC 3986 3.2.3): served.
  RawTlsClient empty_port(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(empty_port.send("GET / HTTP/1.1\r\nHost: a:\r\nConnection: close\r\n\r\n"));
  CHECK(empty_port.read_all_until_close(5s).data.rfind("HTTP/1.1 200", 0) == 0);
}

TEST_CASE("a 1 GiB download and a 256 MiB upload stream with flat memory",
          "[front-door][body][slow]") {
  constexpr uint64_t kDown = uint64_t{1} << 30;
  constexpr uint64_t kUp = uint64_t{256} << 20;
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    if (request.method == "GET") r.generated_body_size = kDown;
    r.body = request.method == "POST" ? std::to_string(request.body_size) : "";
    return r;
  });
  pid_t pid = door.portico.process().pid();
  long before = rss_kib(pid);
  CommandResult get = curl({"--max-time", "120", "--cacert", door.cert.ca_cert, "-o", "/dev/null",
                            "-w", "%{size_download}", door.portico.url("/big")});
  INFO(get.describe());
  REQUIRE(get.exit_code == 0);
  CHECK(get.stdout == std::to_string(kDown));
  // Upload from a generator (no 256 MiB file on disk): curl reads the body from stdin.
  std::string upload(kUp, 'u');
  CommandResult post =
      run_command({"curl", "-sS", "--max-time", "120", "--cacert", door.cert.ca_cert, "-H",
                   "Expect:", "--data-binary", "@-", door.portico.url("/up")},
                  upload, 180s);
  INFO(post.describe());
  CHECK(post.stdout == std::to_string(kUp));
  long peak = peak_rss_kib(pid);
  INFO("rss before " << before << " KiB, peak " << peak << " KiB");
  // Bounded buffers: the peak stays within a few MiB of the idle size, not near the body sizes.
  CHECK(peak - before < 32 * 1024);
}

TEST_CASE("a client that does not read stops the backend being read", "[front-door][body]") {
  FrontDoor door([](const ReceivedRequest&) {
    Response r;
    r.generated_body_size = uint64_t{100} << 20;
    return r;
  });
  pid_t pid = door.portico.process().pid();
  long before = rss_kib(pid);
  RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(client.send("GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  ReadResult first = client.read_until("\r\n\r\n", 5s);
  REQUIRE(first.matched);
  // Do not read: give the proxy time to fill whatever it would buffer.
  std::this_thread::sleep_for(1500ms);
  long during = rss_kib(pid);
  INFO("rss before " << before << " KiB, while stalled " << during << " KiB");
  CHECK(during - before < 16 * 1024);
}

TEST_CASE("a slow client gets the whole answer, and one that stops reading is let go",
          "[front-door][backpressure]") {
  FrontDoor door(
      [](const ReceivedRequest& request) {
        Response r;
        r.generated_body_size = request.target == "/huge" ? 48 << 20 : 12 << 20;
        return r;
      },
      "read_timeout=1s",
      {"--keepalive-timeout", "1s", "--send-timeout", "5s", "--max-buffer", "16m"});
  // Reads nothing for `pause`, then reads until `body_size` bytes of body are in (or the
  // connection ends).
  auto fetch = [&door](const std::string& request, std::chrono::milliseconds pause,
                       size_t body_size) {
    RawTlsClient client(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(client.send(request));
    std::this_thread::sleep_for(pause);
    ReadResult read = client.read_until(
        [body_size](std::string_view data) {
          size_t end = data.find("\r\n\r\n");
          return end != std::string_view::npos && data.size() - end - 4 >= body_size;
        },
        60s);
    auto responses = parse_http_responses(read.data);
    REQUIRE(responses.size() == 1);
    return responses.back();
  };
  // The whole 12 MiB answer fits portico's buffer (16m), more than the sockets hold: the exchange
  // ends, and the connection's end (the 2 s linger after Connection: close; the 1 s keep-alive
  // wait, then that linger) comes while the client has not read it. Both waited for the client
  // instead of cutting the answer short.
  auto closing =
      fetch("GET /c HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 2500ms, 12 << 20);
  CHECK(closing.complete);
  CHECK(closing.body.size() == (12u << 20));
  auto idle = fetch("GET /k HTTP/1.1\r\nHost: localhost\r\n\r\n", 3500ms, 12 << 20);
  CHECK(idle.complete);
  CHECK(idle.body.size() == (12u << 20));
  // 48 MiB does not fit: portico stops reading the backend, whose read_timeout (1s) must not
  // count that pause as the backend's silence.
  auto huge = fetch("GET /huge HTTP/1.1\r\nHost: localhost\r\n\r\n", 2000ms, 48 << 20);
  CHECK(huge.complete);
  CHECK(huge.body.size() == (48u << 20));
  CHECK(door.portico.process().stderr_text().find("stalled mid-response") == std::string::npos);
  // A client that takes nothing is dropped after --send-timeout (5 s) without progress.
  RawTlsClient stuck(door.portico.https_port(), door.cert.ca_cert);
  REQUIRE(stuck.send("GET /huge HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  CHECK(door.portico.process().try_wait_for_output(
      std::regex("info http: client stopped reading client=127.0.0.1"), 15s));
}

TEST_CASE("send timeout: counted from the client's last progress, not from another deadline",
          "[front-door][backpressure]") {
  // The backend's read_timeout and the keep-alive wait are 30 s: a drop well before that can
  // only be --send-timeout's (1 s), counted from when the client stopped taking bytes.
  FrontDoor door(
      [](const ReceivedRequest& request) {
        Response r;
        r.generated_body_size = request.target == "/fits" ? 20 << 20 : 256 << 20;
        return r;
      },
      "read_timeout=30s",
      {"--keepalive-timeout", "30s", "--send-timeout", "1s", "--max-buffer", "64m"});
  for (const std::string path : {"/paused", "/fits"}) {
    // /paused: more than portico buffers, so it stops reading the backend mid-answer;
    // /fits: all of it in portico's buffer, the exchange over, the connection idle.
    INFO(path);
    const size_t from = door.portico.stderr_text().size();
    RawTlsClient stuck(door.portico.https_port(), door.cert.ca_cert);
    REQUIRE(stuck.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    CHECK(door.portico.process().try_wait_for_output(
        std::regex("info http: client stopped reading client=127.0.0.1"), 15s, Stream::kStderr,
        from));
  }
}

TEST_CASE("a pooled connection the backend closed is not reused", "[front-door][keepalive]") {
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    // Claims keep-alive, then closes at once, as a backend with a short idle timeout does.
    r.raw = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(request.target.size()) +
            "\r\n\r\n" + request.target;
    r.close_after = true;
    return r;
  });
  CHECK(door.get("/first").exit_code == 0);
  std::this_thread::sleep_for(300ms);  // let portico see the backend's FIN on the idle connection
  auto response = only_response(door.get("/second"));
  CHECK(response.status == 200);
  CHECK(response.body == "/second");
  CHECK(door.backend.connections_accepted() == 2);
}

TEST_CASE("a body sent where none may follow never answers a later request",
          "[front-door][keepalive]") {
  // A HEAD answer announces the GET's length, a 204 one it may not have. This backend sends
  // those bodies anyway, late, and they look like a response: on a reused connection they
  // would answer the next request, another client's.
  const std::string stray = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTOLEN";
  FrontDoor door([&stray](const ReceivedRequest& request) {
    Response r;
    if (request.target == "/head-body") {
      r.raw = "HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n";
    } else if (request.target == "/no-content-body") {
      r.raw = "HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n";
    } else {
      r.body = "own " + request.target;
      return r;
    }
    r.raw_late = stray;
    r.raw_late_delay = 500ms;
    return r;
  });
  auto head = only_response(door.get("/head-body", {"-I"}));
  CHECK(head.status == 200);
  CHECK(only_response(door.get("/mine")).body == "own /mine");
  auto no_content = only_response(door.get("/no-content-body"));
  CHECK(no_content.status == 204);
  CHECK(no_content.body.empty());
  CHECK(only_response(door.get("/mine-too")).body == "own /mine-too");
  // Each answer that announced a body it may not carry ended its connection; /mine's served
  // /no-content-body after it.
  CHECK(door.backend.connections_accepted() == 3);
}

TEST_CASE("a request that meets a pooled connection closing is retried once",
          "[front-door][keepalive]") {
  FrontDoor door([](const ReceivedRequest& request) {
    Response r;
    r.body = "answer " + request.target;
    // The second request on any connection finds it closed (the race a pool cannot rule out).
    r.close_without_response = request.index_on_connection == 1;
    return r;
  });
  CHECK(only_response(door.get("/one")).body == "answer /one");
  auto second = only_response(door.get("/two"));
  CHECK(second.status == 200);
  CHECK(second.body == "answer /two");
  CHECK(door.backend.connections_accepted() == 2);
  CHECK(door.backend.request_count() == 3);  // /one, /two lost with the connection, /two again

  // A POST is not idempotent (RFC 9110 9.2.2): the backend may have acted on it, so it is not
  // sent twice; the client gets the 502 and decides (NGINX does the same).
  auto post = only_response(door.get("/three", {"-X", "POST"}));
  CHECK(post.status == 502);
  CHECK(door.backend.request_count() == 4);
}

TEST_CASE("a request with a body is not sent again: its body never goes ahead of its head",
          "[front-door][keepalive]") {
  // The backend answers a connection's first request and closes at the head of the second, as
  // a backend whose keep-alive ran out does. Portico streams bodies and keeps none: a resend of
  // such a request could not repeat the body, and bytes arriving while a new connection opened
  // went out before the head (a PUT's body, itself a request, reached the backend as one).
  struct Case {
    const char* name;
    std::string head;  // sent first; the body (if any) once portico has said 100 Continue
    std::string body;
  };
  const std::string smuggled = "GET /admin HTTP/1.1\r\nHost: internal.example\r\n\r\n";
  const Case cases[] = {
      {"a PUT whose body follows its 100 Continue",
       "PUT /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: " +
           std::to_string(smuggled.size()) + "\r\n\r\n",
       smuggled},
      // The last chunk went to the closed connection; a resend sent the head without it.
      {"a GET with an empty chunked body",
       "GET /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       ""},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    std::atomic<bool> second_request_seen{false};
    std::mutex later_mutex;
    std::string later_connections;  // what any connection after the first received
    ScriptedBackend backend([&](int fd, int number) {
      if (number > 1) {
        std::string got = ScriptedBackend::read_until(fd, "\r\n\r\n", 2s);
        ScriptedBackend::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nresent");
        got += ScriptedBackend::read_for(fd, 300ms);
        std::lock_guard<std::mutex> lock(later_mutex);
        later_connections += got;
        return;
      }
      ScriptedBackend::read_until(fd, "\r\n\r\n");
      ScriptedBackend::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
      ScriptedBackend::read_until(fd, "\r\n\r\n");
      second_request_seen = true;  // and closed, unanswered, when the script returns
    });
    TempDir dir;
    TestCert cert = make_test_cert(dir);
    PorticoProcess portico(dir, "/ http://" + backend.address() + " read_timeout=5s\n", cert);
    RawTlsClient client(portico.https_port(), cert.ca_cert);
    REQUIRE(client.ok());
    REQUIRE(client.send("GET /first HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    REQUIRE(client.read_until("first").matched);
    REQUIRE(client.send(c.head));
    if (!c.body.empty()) {
      REQUIRE(client.read_until("100 Continue").matched);
      // Until the backend has closed and portico has seen it.
      for (int i = 0; i < 100 && !second_request_seen; ++i) std::this_thread::sleep_for(10ms);
      std::this_thread::sleep_for(200ms);
      REQUIRE(client.send(c.body));
    }
    ReadResult answer = client.read_until("\r\n\r\n", 8s);
    CHECK(answer.data.find("HTTP/1.1 502 ") != std::string::npos);
    CHECK(backend.connections_accepted() == 1);
    std::lock_guard<std::mutex> lock(later_mutex);
    CHECK(later_connections.find("/admin") == std::string::npos);
  }
}

namespace {
// GET /1 and GET /2 pipelined on one TLS connection; what came back by the time "right" (the
// backend's answer to /2) or "STOLEN" (an answer nobody asked for) arrived.
std::string pipelined_answers(uint16_t port, const std::string& ca_cert) {
  RawTlsClient client(port, ca_cert);
  REQUIRE(client.ok());
  REQUIRE(
      client.send("GET /1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  "GET /2 HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  const auto answered = [](std::string_view data) {
    return data.find("right") != std::string_view::npos ||
           data.find("STOLEN") != std::string_view::npos;
  };
  return client.read_until(answered, 5s).data;
}

// A backend's script: `answer_1` answers GET /1 (and whatever it sends after), "right" answers
// GET /2, on each connection.
std::function<void(int, int)> answering_1_then_2(std::function<void(int)> answer_1) {
  return [answer_1](int fd, int) {
    for (;;) {
      std::string request = ScriptedBackend::read_until(fd, "\r\n\r\n");
      if (request.find("GET /1 ") != std::string::npos) {
        answer_1(fd);
      } else if (request.find("GET /2 ") != std::string::npos) {
        ScriptedBackend::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nright");
      } else {
        return;
      }
    }
  };
}
}  // namespace

TEST_CASE("bytes after a response that ends a full read do not answer the next request",
          "[front-door][keepalive]") {
  // The response to /1 ends exactly where portico's 64 KiB read ends, and the backend sent more
  // after it. libuv reads again at once, still inside the same callback: a connection put back
  // in the pool there, and taken by the pipelined /2, would give /2 those bytes as its answer.
  const std::string stray = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTOLEN";
  auto response_of = [](size_t total) {
    const std::string head_start = "HTTP/1.1 200 OK\r\nContent-Length: ";
    size_t body = total - head_start.size() - 9;  // "NNNNN\r\n\r\n" is 9 bytes here
    std::string response = head_start + std::to_string(body) + "\r\n\r\n";
    REQUIRE(response.size() + body == total);
    return response + std::string(body, 'a');
  };
  const std::string first = response_of(64 * 1024);
  ScriptedBackend backend(
      answering_1_then_2([&](int fd) { ScriptedBackend::send_all(fd, first + stray); }));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    const std::string got = pipelined_answers(portico.https_port(), cert.ca_cert);
    CHECK(got.find("STOLEN") == std::string::npos);
    CHECK(got.find("right") != std::string::npos);
  }
}

TEST_CASE("a pipelined request does not take the connection its predecessor was just answered on",
          "[front-door][keepalive]") {
  // The backend answers /1 and, a moment later, sends a second answer nobody asked for (out of
  // step). Taken at once by the pipelined /2, that connection would give /2 the stray answer;
  // in the pool, the stray is read and the connection dropped.
  ScriptedBackend backend(answering_1_then_2([](int fd) {
    ScriptedBackend::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
    std::this_thread::sleep_for(100ms);
    ScriptedBackend::send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTOLEN");
  }));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  const std::string got = pipelined_answers(portico.https_port(), cert.ca_cert);
  CHECK(got.find("first") != std::string::npos);
  CHECK(got.find("STOLEN") == std::string::npos);
  CHECK(got.find("right") != std::string::npos);
}

TEST_CASE("backend names are resolved", "[front-door]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://localhost:" + std::to_string(backend.port()) + "\n", cert);
  auto response = only_response(curl({"--cacert", cert.ca_cert, "-i", portico.url("/named")}));
  CHECK(response.status == 200);
  CHECK(response.body == "ok GET /named");
}

// Request smuggling and strict parsing: portico never forwards an ambiguous request, and never
// passes on a malformed response. Each case checks what the client got AND what the backend
// received.

#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/http_message.h"
#include "tests/support/portico_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

struct Door {
  explicit Door(Handler handler = default_response)
      : cert(make_test_cert(dir)),
        backend(std::move(handler)),
        portico(dir, "/ http://" + backend.address() + "\n", cert) {}
  ReadResult exchange(const std::string& bytes) {
    RawTlsClient client(portico.https_port(), cert.ca_cert);
    REQUIRE(client.ok());
    REQUIRE(client.send(bytes));
    return client.read_all_until_close(5s);
  }
  // Each piece in its own TLS record, 100 ms apart, so that portico reads them one by one.
  ReadResult exchange_in_pieces(std::initializer_list<std::string_view> pieces) {
    RawTlsClient client(portico.https_port(), cert.ca_cert);
    REQUIRE(client.ok());
    bool first = true;
    for (std::string_view piece : pieces) {
      if (!first) std::this_thread::sleep_for(100ms);
      first = false;
      REQUIRE(client.send(piece));
    }
    return client.read_all_until_close(5s);
  }
  TempDir dir;
  TestCert cert;
  TestBackend backend;
  PorticoProcess portico;
};

}  // namespace

TEST_CASE("ambiguous or malformed requests are refused with 400, nothing forwarded",
          "[smuggling]") {
  struct Case {
    const char* name;
    std::string request;
  };
  const Case cases[] = {
      {"Content-Length with Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"Content-Length above 2^63 - 1 (negative to a signed reader)",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n"
       "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"differing duplicate Content-Length",
       "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd"},
      {"Transfer-Encoding not ending in chunked",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding with another coding before chunked",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
      {"two Transfer-Encoding headers",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n"},
      {"Transfer-Encoding on HTTP/1.0",
       "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
      {"invalid chunk size",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "zz\r\nhello\r\n0\r\n\r\n"},
      {"chunk size overflow",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "1000000000000000000000005\r\nhello\r\n0\r\n\r\n"},
      {"chunk size with a space",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5 \r\nhello\r\n0\r\n\r\n"},
      {"invalid chunk extension",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;a\"b\r\nhello\r\n0\r\n\r\n"},
      {"chunk data not followed by CRLF",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"},
      {"chunk data longer than its size",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"},
      // Extensions are bounded (4 KiB a chunk), also when they are separators only.
      {"chunk extensions over 4 KiB",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;" +
           std::string(5000, 'e') + "\r\nhello\r\n0\r\n\r\n"},
      {"chunk extension separators over 4 KiB",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5" +
           std::string(5000, ';') + "\r\nhello\r\n0\r\n\r\n"},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
      // llhttp hands a fold after an empty value on as the value's only span.
      {"obs-fold after an empty value",
       "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
      {"obs-fold after a blank value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \r\n\tb\r\n\r\n"},
      {"bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n"},
      {"bare CR in a value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n")},
      // llhttp 8.1 takes the byte after the CR of an empty value as its LF (see line_starts).
      {"bare CR after an empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-A:\rX-B: 1\r\n\r\n"},
      {"bare CR hiding a Content-Length",
       "POST / HTTP/1.1\r\nHost: a\r\nX-A:\r:Content-Length: 5\r\n\r\nhello"},
      {"empty header name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"},
      // RFC 9112 5.1 (llhttp 8.1 lets these through): a backend that trims the space would
      // read another header than portico did.
      {"space inside a header name", "GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n"},
      {"space before the colon of any header", "GET / HTTP/1.1\r\nHost: a\r\nX-B : 1\r\n\r\n"},
      {"NUL in a value", std::string("GET / HTTP/1.1\r\nHost: a\r\nX-A: b") + '\0' + "c\r\n\r\n"},
      {"control character in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n"},
      {"control character in a name", "GET / HTTP/1.1\r\nHost: a\r\nX\x01A: b\r\n\r\n"},
      {"space before the colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello"},
      {"absolute-form naming another authority",
       "GET http://internal.example/admin HTTP/1.1\r\nHost: a\r\n\r\n"},
      // RFC 9112 3.2: a request target carries no fragment, in its path or in its query.
      {"a fragment in the path", "GET /x#f HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"a fragment after the query", "GET /x?a=1#f HTTP/1.1\r\nHost: a\r\n\r\n"},
      // llhttp passes HTAB and FF in a target; a backend may split its request line there.
      {"a tab in the query", "GET /x?a=1\tHTTP/1.0 HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"a form feed in the query", "GET /x?a\x0c=1 HTTP/1.1\r\nHost: a\r\n\r\n"},
      {"HTTP/0.9", "GET /\r\n\r\n"},
      {"missing Host", "GET / HTTP/1.1\r\n\r\n"},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"},
      {"invalid Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello"},
      {"negative Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
  };
  Door door;
  for (const Case& c : cases) {
    INFO(c.name);
    ReadResult read = door.exchange(c.request);
    CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(read.closed != CloseKind::kOpen);
  }
  // Nothing complete reached the backend. (A chunked body whose framing breaks after it began
  // streaming leaves the backend a request cut short, on a connection portico then closes.)
  CHECK(door.backend.request_count() == 0);
  for (const std::string& raw : door.backend.raw_received()) {
    CHECK(raw.find("smuggled") == std::string::npos);
    CHECK(raw.find("internal.example") == std::string::npos);
  }
}

TEST_CASE("a header line after a bare CR is refused when the CR ends one read", "[smuggling]") {
  // The check looks at the byte before each header line, which here is the last byte of the
  // previous read (two TLS records, sent apart).
  Door door;
  ReadResult bad = door.exchange_in_pieces(
      {"POST / HTTP/1.1\r\nHost: a\r\nX-A:\r", ":Content-Length: 5\r\n\r\nhello"});
  CHECK(bad.data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(bad.closed != CloseKind::kOpen);
  CHECK(door.backend.request_count() == 0);
  // A clean request split the same way, before a header line and inside a CRLF, is served.
  ReadResult read = door.exchange_in_pieces(
      {"GET /split HTTP/1.1\r\nHost: a\r\n", "X-A: b\r", "\nX-B: c\r\nConnection: close\r\n\r\n"});
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(door.backend.wait_for_requests(1));
  CHECK(door.backend.requests().at(0).target == "/split");
}

TEST_CASE("obs-fold after an empty value is refused when a read ends inside it", "[smuggling]") {
  Door door;
  CHECK(door.exchange_in_pieces({"GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\n", " b\r\n\r\n"})
            .data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(door.exchange_in_pieces({"GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\n ", "b\r\n\r\n"})
            .data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(door.backend.request_count() == 0);
  // Values split the same ways without a fold are served.
  ReadResult read = door.exchange_in_pieces({"GET /v HTTP/1.1\r\nHost: a\r\nX-A:", " b\r\nX-B: ",
                                             "c\r\nX-C:\r\nConnection: close\r\n\r\n"});
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(door.backend.wait_for_requests(1));
  CHECK(door.backend.requests().at(0).header("X-A") == "b");
}

TEST_CASE("the CRLF after chunk data is checked when a read ends inside or before it",
          "[smuggling]") {
  Door door;
  for (const char* rest : {"X\n0\r\n\r\n", "\rX0\r\n\r\n"}) {
    INFO(rest);
    ReadResult read = door.exchange_in_pieces(
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", rest});
    CHECK(read.data.rfind("HTTP/1.1 400", 0) == 0);
  }
  CHECK(door.backend.request_count() == 0);
  // The same body split at the same places, well-formed, goes through whole.
  ReadResult read =
      door.exchange_in_pieces({"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
                               "chunked\r\nConnection: close\r\n\r\n5\r\nhello",
                               "\r", "\n6\r\n world\r\n0\r\n\r\n"});
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(door.backend.wait_for_requests(1));
  CHECK(door.backend.requests().at(0).body == "hello world");
}

TEST_CASE("an HTTP/2 preface on the HTTP/1 port is refused", "[smuggling]") {
  Door door;
  ReadResult read = door.exchange("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  CHECK(read.data.rfind("HTTP/1.1 4", 0) == 0);
  CHECK(read.closed != CloseKind::kOpen);
  CHECK(door.backend.request_count() == 0);
}

TEST_CASE("outgoing framing is portico's own: the backend sees one clean request", "[smuggling]") {
  Door door(echo_handler());
  // A chunked request with extensions and trailers reaches the backend re-chunked, without
  // them; the pipelined second request is a separate request.
  // (Extensions up to 4 KiB a chunk pass.)
  ReadResult read = door.exchange(
      "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;name=value\r\nhello\r\n3;long=" +
      std::string(4000, 'e') +
      "\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
  auto responses = parse_http_responses(read.data);
  REQUIRE(responses.size() == 2);
  CHECK(responses[0].body == "helloabc");
  REQUIRE(door.backend.wait_for_requests(2));
  auto requests = door.backend.requests();
  CHECK(requests[0].target == "/a");
  CHECK(requests[0].body == "helloabc");
  CHECK(requests[1].target == "/b");
  std::string raw = door.backend.raw_received().at(0);
  CHECK(raw.find("name=value") == std::string::npos);
  CHECK(raw.find("eeee") == std::string::npos);
  CHECK(raw.find("X-Trailer") == std::string::npos);
  CHECK(raw.find("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n") != std::string::npos);
}

TEST_CASE("malformed backend responses become 502, never passed through", "[smuggling]") {
  const char* bad_responses[] = {
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
      "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nX-A:\r\n c\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nX-A:\r:Content-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\n: b\r\nContent-Length: 5\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
      "NOT HTTP AT ALL\r\n\r\n",
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
      // RFC 9112 5.1: no whitespace in a field name or before its colon (llhttp 8.1 lets it
      // through; relayed, a client that trims it would take it for the header it names).
      "HTTP/1.1 200 OK\r\nStrict-Transport-Security : max-age=0\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nX A: 1\r\nContent-Length: 2\r\n\r\nok",
      // A status is three digits, 100-599; a reason phrase has no control characters.
      "HTTP/1.1 007 X\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1  200 OK\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nok",
      // Codings portico cannot re-frame would reach the client undecoded.
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
      // A version portico cannot relay as HTTP/1.1; a length beyond 2^63 - 1.
      "HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
      "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nok",
      // Chunk data must be followed by CRLF (found after the head went out).
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX6\r\n world\r\n0\r\n\r\n",
  };
  // Heads over portico's limits (200 fields, 64 KiB): 502 as well, not a crash.
  std::string many_fields = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 201; ++i) many_fields += "X-" + std::to_string(i) + ": v\r\n";
  many_fields += "Content-Length: 2\r\n\r\nok";
  const std::string long_reason =
      "HTTP/1.1 200 " + std::string(70000, 'R') + "\r\nContent-Length: 2\r\n\r\nok";
  const std::string long_value =
      "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70000, 'v') + "\r\nContent-Length: 2\r\n\r\nok";
  const std::string long_extension = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;" +
                                     std::string(5000, 'e') + "\r\nhello\r\n0\r\n\r\n";
  std::vector<std::string> all(std::begin(bad_responses), std::end(bad_responses));
  all.insert(all.end(), {many_fields, long_reason, long_value, long_extension});
  for (const std::string& bad : all) {
    INFO(bad);
    Door door([bad](const ReceivedRequest&) {
      Response r;
      r.raw = bad;
      r.close_after = true;
      return r;
    });
    ReadResult read = door.exchange("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    auto responses = parse_http_responses(read.data);
    REQUIRE(responses.size() == 1);
    // A bad chunk (its size, its extensions) is found only after the head went out: then the
    // client sees the body cut short rather than a 502.
    const bool chunked_only =
        bad.find("\r\nTransfer-Encoding: chunked\r\n\r\n") != std::string::npos &&
        bad.find("Content-Length") == std::string::npos &&
        bad.find("Transfer-Encoding: chunked\r\nTransfer-Encoding") == std::string::npos;
    if (bad.rfind("HTTP/1.1 101", 0) == 0) {
      // The warn line says what was wrong, not llhttp's "User callback error".
      CHECK(door.portico.process().try_wait_for_output(
          "reason=\"101 Switching Protocols to a request that asked for no upgrade\"", 5s));
    }
    if (bad == many_fields) {  // the line names the limit that was passed
      CHECK(door.portico.process().try_wait_for_output(
          "reason=\"more than 200 header fields in the response\"", 5s));
    }
    if (chunked_only) {
      CHECK_FALSE(responses[0].complete);
    } else {
      CHECK(responses[0].status == 502);
    }
  }
}

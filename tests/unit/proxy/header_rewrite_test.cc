#include "proxy/header_rewrite.h"

#include <catch2/catch.hpp>

using namespace portico;

namespace {

HttpHead request_head(std::vector<HeaderField> headers, std::string_view method = "GET") {
  HttpHead head;
  head.method = method;
  head.target = "/x";
  head.headers = std::move(headers);
  return head;
}

std::string upstream(const HttpHead& head, bool trusted = false,
                     BodyFraming framing = BodyFraming::kNone, uint64_t length = 0,
                     bool upgrade = false) {
  UpstreamRequest request;
  request.head = &head;
  request.target = "/api/x?q=1";
  request.host = "example.com";
  request.client_address = "192.0.2.7";
  request.client_trusted = trusted;
  request.framing = framing;
  request.content_length = length;
  request.upgrade = upgrade;
  std::string out;
  build_upstream_request_head(request, &out);
  return out;
}

}  // namespace

TEST_CASE("upstream head: request line, Host kept, forwarding headers set", "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"}, {"Accept", "*/*"}});
  std::string out = upstream(head);
  CHECK(out.rfind("GET /api/x?q=1 HTTP/1.1\r\nHost: example.com\r\n", 0) == 0);
  CHECK(out.find("Accept: */*\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-For: 192.0.2.7\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Proto: https\r\n") != std::string::npos);
  CHECK(out.find("X-Forwarded-Host: example.com\r\n") != std::string::npos);
  CHECK(out.find("Forwarded: for=192.0.2.7;proto=https;host=\"example.com\"\r\n") !=
        std::string::npos);
  CHECK(out.find("Connection: keep-alive\r\n") != std::string::npos);
  CHECK(out.ends_with("\r\n\r\n"));
}

TEST_CASE("upstream head: untrusted forwarding headers are replaced, trusted ones appended",
          "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"},
                                {"X-Forwarded-For", "10.0.0.1"},
                                {"x-forwarded-for", "10.0.0.2"},
                                {"Forwarded", "for=10.0.0.1"},
                                {"X-Real-IP", "10.0.0.1"},
                                {"X-Forwarded-Proto", "http"}});
  std::string untrusted = upstream(head);
  CHECK(untrusted.find("10.0.0.") == std::string::npos);
  CHECK(untrusted.find("X-Forwarded-Proto: http\r\n") == std::string::npos);
  std::string trusted = upstream(head, true);
  CHECK(trusted.find("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n") != std::string::npos);
  CHECK(trusted.find("Forwarded: for=10.0.0.1, for=192.0.2.7;") != std::string::npos);
}

TEST_CASE("upstream head: other X-Forwarded-* pass from trusted proxies only", "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"},
                                {"X-Forwarded-Port", "1"},
                                {"x-forwarded-prefix", "/evil"},
                                {"X-Forwarded-Ssl", "off"},
                                {"X-Forwarded", "kept"},
                                {"X-Forwarder", "kept"}});
  std::string untrusted = upstream(head);
  CHECK(untrusted.find("X-Forwarded-Port") == std::string::npos);
  CHECK(untrusted.find("x-forwarded-prefix") == std::string::npos);
  CHECK(untrusted.find("X-Forwarded-Ssl") == std::string::npos);
  CHECK(untrusted.find("X-Forwarded: kept\r\n") != std::string::npos);  // not the prefix
  CHECK(untrusted.find("X-Forwarder: kept\r\n") != std::string::npos);
  std::string trusted = upstream(head, true);
  CHECK(trusted.find("X-Forwarded-Port: 1\r\n") != std::string::npos);
  CHECK(trusted.find("x-forwarded-prefix: /evil\r\n") != std::string::npos);
  CHECK(trusted.find("X-Forwarded-Ssl: off\r\n") != std::string::npos);
}

TEST_CASE("upstream head: IPv6 clients are quoted in Forwarded", "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"}});
  UpstreamRequest request;
  request.head = &head;
  request.target = "/";
  request.host = "example.com";
  request.client_address = "2001:db8::1";
  std::string out;
  build_upstream_request_head(request, &out);
  CHECK(out.find("Forwarded: for=\"[2001:db8::1]\";proto=https") != std::string::npos);
  CHECK(out.find("X-Forwarded-For: 2001:db8::1\r\n") != std::string::npos);
}

TEST_CASE("upstream head: hop-by-hop headers and those named by Connection go",
          "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"},
                                {"Connection", "keep-alive, X-Hop"},
                                {"X-Hop", "1"},
                                {"Keep-Alive", "timeout=5"},
                                {"Proxy-Connection", "keep-alive"},
                                {"TE", "trailers"},
                                {"Trailer", "X-T"},
                                {"Upgrade", "h2c"},
                                {"Expect", "100-continue"},
                                {"Transfer-Encoding", "chunked"},
                                {"Content-Length", "12"},
                                // Underscore spellings, which a backend that maps '_' to '-'
                                // (CGI, WSGI, Rack, PHP) would read as framing.
                                {"Transfer_Encoding", "chunked"},
                                {"content_length", "7"},
                                {"Keep_Alive", "timeout=5"},
                                {"X-Stay", "yes"}});
  std::string out = upstream(head);
  for (const char* gone : {"X-Hop", "Keep-Alive", "Proxy-Connection", "TE:", "Trailer", "Upgrade",
                           "Expect", "Transfer-Encoding", "Content-Length", "Transfer_Encoding",
                           "content_length", "Keep_Alive"}) {
    INFO(gone);
    CHECK(out.find(std::string("\n") + gone) == std::string::npos);
  }
  CHECK(out.find("X-Stay: yes\r\n") != std::string::npos);
}

TEST_CASE("upstream head: framing is portico's own", "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"}, {"Content-Length", "999"}}, "POST");
  std::string with_length = upstream(head, false, BodyFraming::kContentLength, 12);
  CHECK(with_length.find("Content-Length: 12\r\n") != std::string::npos);
  CHECK(with_length.find("999") == std::string::npos);
  std::string chunked = upstream(head, false, BodyFraming::kChunked);
  CHECK(chunked.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(chunked.find("Content-Length") == std::string::npos);
}

TEST_CASE("upstream head: a WebSocket upgrade keeps Upgrade and Connection", "[header-rewrite]") {
  HttpHead head = request_head({{"Host", "example.com"},
                                {"Connection", "Upgrade"},
                                {"Upgrade", "websocket"},
                                {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                                {"Sec-WebSocket-Version", "13"}});
  std::string out = upstream(head, false, BodyFraming::kNone, 0, true);
  CHECK(out.find("Upgrade: websocket\r\nConnection: upgrade\r\n") != std::string::npos);
  CHECK(out.find("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n") != std::string::npos);
  CHECK(out.find("keep-alive") == std::string::npos);
}

TEST_CASE("client head: framing per client version and response kind", "[header-rewrite]") {
  HttpHead head;
  head.status = 200;
  head.reason = "OK";
  head.headers = {{"Content-Type", "text/plain"},
                  {"Transfer-Encoding", "chunked"},
                  {"Connection", "X-Secret"},
                  {"X-Secret", "1"}};
  ClientResponse response;
  response.head = &head;

  SECTION("a chunked body stays chunked for HTTP/1.1") {
    response.framing = BodyFraming::kChunked;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kChunked);
    CHECK(out.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
    CHECK(out.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
    CHECK(out.find("X-Secret") == std::string::npos);
    CHECK(out.find("Connection") == std::string::npos);
  }
  SECTION("a close-delimited body becomes chunked for HTTP/1.1") {
    response.framing = BodyFraming::kCloseDelimited;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kChunked);
  }
  SECTION("HTTP/1.0 clients get a close-delimited body") {
    response.framing = BodyFraming::kChunked;
    response.client_http11 = false;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kCloseDelimited);
    CHECK(out.find("Connection: close\r\n") != std::string::npos);
    CHECK(out.find("Transfer-Encoding") == std::string::npos);
  }
  SECTION("Content-Length is re-emitted") {
    response.framing = BodyFraming::kContentLength;
    response.content_length = 42;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kContentLength);
    CHECK(out.find("Content-Length: 42\r\n") != std::string::npos);
  }
  SECTION("HEAD keeps the length, carries no body") {
    response.framing = BodyFraming::kContentLength;
    response.content_length = 42;
    response.head_request = true;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kNone);
    CHECK(out.find("Content-Length: 42\r\n") != std::string::npos);
  }
  SECTION("a 204 to HEAD has no length either") {
    head.status = 204;
    response.framing = BodyFraming::kContentLength;
    response.content_length = 5;
    response.head_request = true;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kNone);
    CHECK(out.find("Content-Length") == std::string::npos);
  }
  SECTION("304 has neither length nor body") {
    head.status = 304;
    response.framing = BodyFraming::kNone;
    std::string out;
    CHECK(build_client_response_head(response, &out) == BodyFraming::kNone);
    CHECK(out.find("Content-Length") == std::string::npos);
  }
  SECTION("extra headers and Connection: close") {
    response.framing = BodyFraming::kContentLength;
    response.keep_alive = false;
    response.extra_headers = "Strict-Transport-Security: max-age=60\r\n";
    std::string out;
    build_client_response_head(response, &out);
    CHECK(out.find("Strict-Transport-Security: max-age=60\r\nContent-Length: 0\r\nConnection: "
                   "close\r\n\r\n") != std::string::npos);
  }
}

TEST_CASE("client head: --hsts replaces a backend's own Strict-Transport-Security",
          "[header-rewrite]") {
  HttpHead head;
  head.status = 200;
  head.headers = {{"strict-transport-security", "max-age=0"}, {"X-Kept", "1"}};
  ClientResponse response;
  response.head = &head;
  response.framing = BodyFraming::kContentLength;
  std::string without;
  build_client_response_head(response, &without);
  CHECK(without.find("strict-transport-security: max-age=0\r\n") != std::string::npos);
  response.site_headers = "Strict-Transport-Security: max-age=600\r\n";
  std::string with;
  build_client_response_head(response, &with);
  CHECK(with.find("max-age=0") == std::string::npos);
  CHECK(with.find("Strict-Transport-Security: max-age=600\r\n") != std::string::npos);
  CHECK(with.find("X-Kept: 1\r\n") != std::string::npos);
}

TEST_CASE("simple responses and chunk headers", "[header-rewrite]") {
  std::string out;
  build_simple_response(404, "404 Not Found: no route\n", true, {}, &out);
  CHECK(out ==
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 24\r\n\r\n404 Not Found: no route\n");
  // The same answer to HEAD: the same head, no body.
  out.clear();
  build_simple_response(404, "404 Not Found: no route\n", true, {}, &out, /*head_request=*/true);
  CHECK(out ==
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 24\r\n\r\n");
  // No body (a redirect): no Content-Type, an explicit empty length, the extra headers.
  out.clear();
  build_simple_response(301, "", true, {"Location: ", "https://example.com/", "\r\n"}, &out);
  CHECK(out ==
        "HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\n"
        "Location: https://example.com/\r\n\r\n");
  char buf[20];
  CHECK(std::string(buf, chunk_header(0, buf)) == "0\r\n");
  CHECK(std::string(buf, chunk_header(255, buf)) == "ff\r\n");
  CHECK(std::string(buf, chunk_header(0x10000, buf)) == "10000\r\n");
  CHECK(std::string(buf, chunk_header(UINT64_MAX, buf)) == "ffffffffffffffff\r\n");
}

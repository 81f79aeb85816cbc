// Host syntax, redirect Locations, WebSocket handshake and origin checks, CIDR ranges.

#include <arpa/inet.h>

#include <catch2/catch.hpp>

#include "proxy/cidr.h"
#include "proxy/http_head.h"
#include "proxy/redirect_server.h"
#include "proxy/websocket_handshake.h"

using namespace portico;

TEST_CASE("Host header syntax", "[http-head]") {
  struct Case {
    const char* value;
    bool ok;
    const char* host;
    const char* port;
  };
  const Case cases[] = {
      {"example.com", true, "example.com", ""},
      {"example.com:8443", true, "example.com", "8443"},
      {"127.0.0.1:80", true, "127.0.0.1", "80"},
      {"[::1]", true, "[::1]", ""},
      {"[2001:db8::1]:443", true, "[2001:db8::1]", "443"},
      {"", false, "", ""},
      {"example.com:", true, "example.com", ""},  // port = *DIGIT: empty is allowed
      {"[::1]:", true, "[::1]", ""},
      {"example.com:0", false, "", ""},
      {"example.com:65536", false, "", ""},
      {"example.com:8x", false, "", ""},
      {"bad host", false, "", ""},
      {"a/b", false, "", ""},
      {"user@host", false, "", ""},
      {"[::1", false, "", ""},
      {"[::1]x", false, "", ""},
      {"[zz::1]", false, "", ""},
  };
  for (const Case& c : cases) {
    INFO(c.value);
    std::string_view host, port;
    REQUIRE(split_host_port(c.value, &host, &port) == c.ok);
    if (c.ok) {
      CHECK(host == c.host);
      CHECK(port == c.port);
    }
  }
}

TEST_CASE("header tokens", "[http-head]") {
  CHECK(header_has_token("keep-alive, Upgrade", "upgrade"));
  CHECK(header_has_token(" close ", "close"));
  CHECK_FALSE(header_has_token("upgraded", "upgrade"));
  CHECK_FALSE(header_has_token("", "close"));
  CHECK(is_idempotent("GET"));
  CHECK(is_idempotent("DELETE"));
  CHECK_FALSE(is_idempotent("POST"));
  CHECK_FALSE(is_idempotent("PATCH"));
  // With parameters, as in Sec-WebSocket-Extensions.
  CHECK(header_has_token("x-foo, permessage-deflate; client_max_window_bits", "permessage-deflate",
                         /*with_parameters=*/true));
  CHECK(header_has_token(" Permessage-Deflate ;x=1", "permessage-deflate", true));
  CHECK_FALSE(header_has_token("permessage-deflate; x=1", "permessage-deflate"));
  CHECK_FALSE(header_has_token("x; permessage-deflate", "permessage-deflate", true));
}

TEST_CASE("redirect Location keeps path and query exactly", "[redirect]") {
  CHECK(https_redirect_location("example.com", "/x?y=1", 443) == "https://example.com/x?y=1");
  CHECK(https_redirect_location("example.com:80", "/a%2F..//b?q=%41", 8443) ==
        "https://example.com:8443/a%2F..//b?q=%41");
  CHECK(https_redirect_location("[::1]:8080", "/", 8443) == "https://[::1]:8443/");
  CHECK(https_redirect_location("example.com", "http://example.com/p?q", 443) ==
        "https://example.com/p?q");
  CHECK(https_redirect_location("example.com", "https://EXAMPLE.com", 443) ==
        "https://example.com/");
  CHECK(https_redirect_location("example.com", "http://example.com:80/p", 443) ==
        "https://example.com/p");
  // absolute-form naming another host than Host: refused, not one of the two picked.
  CHECK(https_redirect_location("example.com", "http://evil.test/p", 443).empty());
  CHECK(https_redirect_location("example.com", "http://evil.test?/p", 443).empty());
  // The scheme in any case (RFC 3986 3.1); a query straight after the authority has no path.
  CHECK(https_redirect_location("example.com", "HTTP://example.com/p", 443) ==
        "https://example.com/p");
  CHECK(https_redirect_location("example.com", "http://example.com?q", 443).empty());
  CHECK(https_redirect_location("bad host", "/", 443).empty());
  CHECK(https_redirect_location("example.com", "/x#f", 443).empty());
  CHECK(https_redirect_location("example.com", "/x?a=1#f", 443).empty());
  CHECK(https_redirect_location("example.com", "*", 443).empty());
}

TEST_CASE("redirect Location: a path the TLS port refuses is refused, raw high bytes escaped",
          "[redirect]") {
  // Control bytes llhttp lets through (HTAB, FF), in the path or the query: never written
  // into the Location header.
  for (std::string_view target : {"/a\tb", "/a\fb", "/a?x\ty", "/a?x\fy", "/a?x\x7fy"}) {
    INFO(target);
    CHECK(https_redirect_location("example.com", target, 443).empty());
  }
  // What normalize_path refuses on the TLS port: a broken escape, ".." above the root.
  CHECK(https_redirect_location("example.com", "/a%zz", 443).empty());
  CHECK(https_redirect_location("example.com", "/a%4", 443).empty());
  CHECK(https_redirect_location("example.com", "/../etc/passwd", 443).empty());
  CHECK(https_redirect_location("example.com", "http://example.com/a\x0c", 443).empty());
  // Bytes above ASCII: escaped as a browser sends them, path and query; escapes kept as sent.
  CHECK(https_redirect_location("example.com", "/caf\xc3\xa9/%c3%a9?q=\xc3\xa9&r=%7e", 443) ==
        "https://example.com/caf%C3%A9/%c3%a9?q=%C3%A9&r=%7e");
}

TEST_CASE("absolute-form target and Host: one authority, the scheme's default port aside",
          "[http]") {
  CHECK(same_authority("https", "localhost:443", "localhost"));
  CHECK(same_authority("https", "localhost", "localhost:443"));
  CHECK(same_authority("HTTPS", "Example.COM:443", "example.com"));
  CHECK(same_authority("http", "example.com:80", "example.com"));
  CHECK(same_authority("http", "example.com", "example.com"));
  CHECK(same_authority("https", "[::1]:443", "[::1]"));
  CHECK(same_authority("https", "example.com:8443", "example.com:8443"));
  // A port is a number: leading zeros name the same one.
  CHECK(same_authority("https", "localhost:0443", "localhost"));
  CHECK(same_authority("https", "localhost:00443", "localhost:443"));
  CHECK(same_authority("http", "localhost:080", "localhost:80"));
  CHECK_FALSE(same_authority("https", "localhost:4430", "localhost"));
  // Another port, another host, or the other scheme's default: two authorities.
  CHECK_FALSE(same_authority("https", "example.com:80", "example.com"));
  CHECK_FALSE(same_authority("http", "example.com:443", "example.com"));
  CHECK_FALSE(same_authority("https", "example.com:8443", "example.com"));
  CHECK_FALSE(same_authority("https", "evil.test:443", "example.com"));
  CHECK_FALSE(same_authority("https", "example.com", "example.com.evil.test"));
  CHECK_FALSE(same_authority("https", "", "example.com"));
  CHECK_FALSE(same_authority("https", "a b:443", "a b"));
}

TEST_CASE("absolute-form targets split into authority and path", "[http]") {
  std::string_view authority, rest;
  REQUIRE(split_absolute_form("HTTPS://Example.com:8443/a/b?c", &authority, &rest));
  CHECK(authority == "Example.com:8443");
  CHECK(rest == "/a/b?c");
  REQUIRE(split_absolute_form("http://example.com", &authority, &rest));
  CHECK(authority == "example.com");
  CHECK(rest == "/");
  REQUIRE(split_absolute_form("http://example.com?q", &authority, &rest));
  CHECK(rest == "?q");
  REQUIRE(split_absolute_form("http:///p", &authority, &rest));
  CHECK(authority.empty());
  for (std::string_view other : {"/p", "*", "example.com:443", "ftp://example.com/", "http:/p",
                                 "/redirect?to=http://example.com/"}) {
    INFO(other);
    CHECK_FALSE(split_absolute_form(other, &authority, &rest));
  }
}

namespace {
HttpHead websocket_request() {
  HttpHead head;
  head.method = "GET";
  head.target = "/ws";
  head.headers = {{"Host", "example.com"},
                  {"Connection", "keep-alive, Upgrade"},
                  {"Upgrade", "websocket"},
                  {"Sec-WebSocket-Version", "13"},
                  {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}};
  return head;
}
}  // namespace

TEST_CASE("WebSocket opening handshake checks", "[websocket]") {
  std::string why;
  HttpHead ok = websocket_request();
  CHECK(is_websocket_upgrade(ok));
  CHECK(check_websocket_request(ok, &why) == 0);

  HttpHead post = websocket_request();
  post.method = "POST";
  CHECK(check_websocket_request(post, &why) == 400);
  HttpHead http10 = websocket_request();
  http10.version_minor = 0;
  CHECK(check_websocket_request(http10, &why) == 400);
  HttpHead version = websocket_request();
  version.headers[3].value = "8";
  CHECK(check_websocket_request(version, &why) == 400);
  CHECK(why == "Sec-WebSocket-Version must be 13");
  HttpHead short_key = websocket_request();
  short_key.headers[4].value = "c2hvcnQ=";
  CHECK(check_websocket_request(short_key, &why) == 400);
  HttpHead no_key = websocket_request();
  no_key.headers.pop_back();
  CHECK(check_websocket_request(no_key, &why) == 400);
  HttpHead no_connection = websocket_request();
  no_connection.headers[1].value = "keep-alive";
  CHECK_FALSE(is_websocket_upgrade(no_connection));
  // No body: some backends would read it as a body, others as the first frames.
  HttpHead with_length = websocket_request();
  with_length.headers.push_back({"Content-Length", "5"});
  CHECK(check_websocket_request(with_length, &why) == 400);
  CHECK(why == "WebSocket upgrade must not carry a body");
  HttpHead chunked = websocket_request();
  chunked.headers.push_back({"Transfer-Encoding", "chunked"});
  CHECK(check_websocket_request(chunked, &why) == 400);
  HttpHead zero_length = websocket_request();
  zero_length.headers.push_back({"Content-Length", "0"});
  CHECK(check_websocket_request(zero_length, &why) == 0);
}

TEST_CASE("WebSocket extensions agreed in a 101", "[websocket]") {
  HttpHead response;
  response.headers = {{"Upgrade", "websocket"}};
  CHECK_FALSE(ws_extension_negotiated(response, "permessage-deflate"));
  response.headers.push_back(
      {"Sec-WebSocket-Extensions", "permessage-deflate; server_no_context_takeover"});
  CHECK(ws_extension_negotiated(response, "permessage-deflate"));
  response.headers.back() = {"sec-websocket-extensions", "x-webkit-deflate-frame"};
  CHECK_FALSE(ws_extension_negotiated(response, "permessage-deflate"));
  response.headers.push_back({"Sec-WebSocket-Extensions", "foo, permessage-deflate"});
  CHECK(ws_extension_negotiated(response, "permessage-deflate"));
}

TEST_CASE("WebSocket origin check", "[websocket]") {
  const std::vector<std::string> none;
  CHECK(websocket_origin_allowed("", "example.com", none));
  CHECK(websocket_origin_allowed("https://example.com", "example.com", none));
  CHECK(websocket_origin_allowed("https://EXAMPLE.com", "example.com:443", none));
  CHECK(websocket_origin_allowed("https://localhost:8443", "localhost:8443", none));
  CHECK_FALSE(websocket_origin_allowed("https://localhost:9999", "localhost:8443", none));
  CHECK_FALSE(websocket_origin_allowed("https://evil.example", "example.com", none));
  CHECK_FALSE(websocket_origin_allowed("https://example.com.evil.example", "example.com", none));
  CHECK_FALSE(websocket_origin_allowed("null", "example.com", none));
  // The site's own host on another scheme is another origin.
  for (const char* other_scheme :
       {"http://example.com", "http://example.com:80", "http://example.com:443", "ws://example.com",
        "foo://example.com"}) {
    INFO(other_scheme);
    CHECK_FALSE(websocket_origin_allowed(other_scheme, "example.com", none));
  }
  CHECK(websocket_origin_allowed("http://example.com", "example.com", {"http://example.com"}));
  CHECK(websocket_origin_allowed("https://app.example", "api.example", {"https://app.example"}));
  CHECK(websocket_origin_allowed("http://app.example:3000", "api.example", {"app.example"}));
  CHECK(websocket_origin_allowed("https://anything.test", "api.example", {"*"}));
  CHECK_FALSE(websocket_origin_allowed("https://other.example", "api.example", {"app.example"}));
}

TEST_CASE("CIDR ranges", "[cidr]") {
  auto contains = [](const char* cidr, const char* address) {
    auto range = Cidr::parse(cidr);
    REQUIRE(range);
    sockaddr_storage addr{};
    if (std::string_view(address).find(':') != std::string_view::npos) {
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr);
      in6->sin6_family = AF_INET6;
      inet_pton(AF_INET6, address, &in6->sin6_addr);
    } else {
      auto* in = reinterpret_cast<sockaddr_in*>(&addr);
      in->sin_family = AF_INET;
      inet_pton(AF_INET, address, &in->sin_addr);
    }
    return range->contains(addr);
  };
  CHECK(contains("10.0.0.0/8", "10.200.3.4"));
  CHECK_FALSE(contains("10.0.0.0/8", "11.0.0.1"));
  CHECK(contains("192.0.2.7", "192.0.2.7"));
  CHECK_FALSE(contains("192.0.2.7", "192.0.2.8"));
  CHECK(contains("192.0.2.0/25", "192.0.2.127"));
  CHECK_FALSE(contains("192.0.2.0/25", "192.0.2.128"));
  CHECK(contains("::1", "::1"));
  CHECK(contains("2001:db8::/32", "2001:db8:ffff::1"));
  CHECK(contains("127.0.0.0/8", "::ffff:127.0.0.1"));
  CHECK(contains("0.0.0.0/0", "8.8.8.8"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/33"));
  CHECK_FALSE(Cidr::parse("::1/129"));
  CHECK_FALSE(Cidr::parse("example.com"));
  CHECK_FALSE(Cidr::parse("10.0.0.0/"));
  std::string error;
  CHECK(parse_cidr_list("10.0.0.0/8, ::1", &error)->size() == 2);
  CHECK_FALSE(parse_cidr_list("10.0.0.0/8,nope", &error));
  CHECK(error == "not an address or CIDR range: \"nope\"");
}

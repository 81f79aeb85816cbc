// The value parsers of the route file: durations, sizes, backend URLs.

#include <catch2/catch.hpp>

#include "routing/route_table.h"

using namespace std::chrono_literals;

namespace portico {
namespace {

TEST_CASE("parse_duration accepts each unit", "[routing][values]") {
  struct Case {
    const char* text;
    std::chrono::milliseconds want;
  };
  const Case cases[] = {
      {"250ms", 250ms}, {"1ms", 1ms},   {"5s", 5s},          {"2m", 2min}, {"1h", 1h},
      {"24h", 24h},     {"1440m", 24h}, {"86400000ms", 24h}, {"007s", 7s},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto d = parse_duration(c.text);
    REQUIRE(d.has_value());
    CHECK(*d == c.want);
  }
}

TEST_CASE("parse_duration rejects bad text", "[routing][values]") {
  const char* bad[] = {
      "",
      "5",
      "0s",
      "0ms",
      "25h",
      "86400001ms",
      "1441m",
      "s",
      "-5s",
      "+5s",
      "5 s",
      "5S",
      "5sec",
      "1.5s",
      "1m30s",
      "5mss",
      "99999999999999999999h",
      "18446744073709551616ms",
  };
  for (const char* text : bad) {
    INFO(text);
    CHECK_FALSE(parse_duration(text).has_value());
  }
}

TEST_CASE("parse_size accepts binary units in any case", "[routing][values]") {
  struct Case {
    const char* text;
    uint64_t want;
  };
  const Case cases[] = {
      {"0", 0},
      {"512", 512},
      {"64k", 64 * 1024},
      {"64K", 64 * 1024},
      {"10m", 10ULL << 20},
      {"10M", 10ULL << 20},
      {"1g", 1ULL << 30},
      {"1G", 1ULL << 30},
      {"18446744073709551615", 18446744073709551615ULL},
      {"17179869183g", 17179869183ULL << 30},
  };
  for (const Case& c : cases) {
    INFO(c.text);
    auto s = parse_size(c.text);
    REQUIRE(s.has_value());
    CHECK(*s == c.want);
  }
}

TEST_CASE("parse_size rejects overflow and garbage", "[routing][values]") {
  const char* bad[] = {"",
                       "k",
                       "18446744073709551616",
                       "17179869184g",
                       "16777216t",
                       "1kb",
                       "1t",
                       "-1",
                       "1.5m",
                       " 1",
                       "1 ",
                       "0x10"};
  for (const char* text : bad) {
    INFO(text);
    CHECK_FALSE(parse_size(text).has_value());
  }
}

TEST_CASE("parse_backend_url accepts http and https URLs", "[routing][values]") {
  struct Case {
    const char* url;
    const char* scheme;
    const char* host;
    uint16_t port;
    bool is_ip;
    const char* authority;
  };
  const Case cases[] = {
      {"http://127.0.0.1:8080", "http", "127.0.0.1", 8080, true, "127.0.0.1:8080"},
      {"http://127.0.0.1", "http", "127.0.0.1", 80, true, "127.0.0.1:80"},
      {"https://api.internal", "https", "api.internal", 443, false, "api.internal:443"},
      {"https://api.internal:8443/", "https", "api.internal", 8443, false, "api.internal:8443"},
      {"http://API.Internal:1", "http", "api.internal", 1, false, "api.internal:1"},
      {"http://[::1]:9000", "http", "::1", 9000, true, "[::1]:9000"},
      {"https://[2001:DB8::1]", "https", "2001:db8::1", 443, true, "[2001:db8::1]:443"},
      {"http://[::ffff:10.0.0.1]:81", "http", "::ffff:10.0.0.1", 81, true, "[::ffff:10.0.0.1]:81"},
      {"http://localhost:65535", "http", "localhost", 65535, false, "localhost:65535"},
      // A Docker Compose service name may have '_' (NGINX takes it too).
      {"http://api_server:3000", "http", "api_server", 3000, false, "api_server:3000"},
  };
  for (const Case& c : cases) {
    INFO(c.url);
    std::string error;
    auto b = parse_backend_url(c.url, &error);
    REQUIRE(b.has_value());
    CHECK(error.empty());
    CHECK(b->scheme == c.scheme);
    CHECK(b->host == c.host);
    CHECK(b->port == c.port);
    CHECK(b->host_is_ip == c.is_ip);
    CHECK(b->authority() == c.authority);
  }
}

TEST_CASE("parse_backend_url explains what is wrong", "[routing][values]") {
  struct Case {
    const char* url;
    const char* error;
  };
  const Case cases[] = {
      {"localhost:8080",
       "backend URL \"localhost:8080\" needs a scheme: http://HOST:PORT or https://HOST[:PORT]"},
      {"HTTP://a", "backend URL scheme must be lower-case http or https"},
      {"ftp://a", "unsupported backend URL scheme \"ftp\"; use http or https"},
      {"http://a/api", "backend URL must not have a path; use strip_prefix"},
      {"http://a:80/api/", "backend URL must not have a path; use strip_prefix"},
      {"http://a?x=1", "backend URL must not have a query"},
      {"http://a/?x=1", "backend URL must not have a query"},
      {"http://a#top", "backend URL must not have a fragment"},
      {"http://user:pw@a", "backend URL must not have userinfo"},
      {"http://", "invalid backend host \"\": host is empty"},
      {"http://:80", "invalid backend host \"\": host is empty"},
      {"http://a:0", "backend URL \"http://a:0\": port must be a number 1-65535"},
      {"http://a:65536", "backend URL \"http://a:65536\": port must be a number 1-65535"},
      {"http://a:", "backend URL \"http://a:\": port must be a number 1-65535"},
      {"http://a:8x", "backend URL \"http://a:8x\": port must be a number 1-65535"},
      {"http://::1:80", "backend URL \"http://::1:80\": an IPv6 address must be in brackets"},
      {"http://[::1", "backend URL \"http://[::1\": unterminated IPv6 literal"},
      {"http://[::1]x",
       "backend URL \"http://[::1]x\": unexpected characters after the IPv6 literal"},
      {"http://[1:2:3]", "invalid backend host \"[1:2:3]\": invalid IPv6 literal"},
      {"http://[1::2::3]", "invalid backend host \"[1::2::3]\": invalid IPv6 literal"},
      {"http://256.1.1.1", "invalid backend host \"256.1.1.1\": invalid IPv4 address"},
      {"http://01.1.1.1", "invalid backend host \"01.1.1.1\": invalid IPv4 address"},
      {"http://1.1.1", "invalid backend host \"1.1.1\": invalid IPv4 address"},
      {"http://a+b",
       "invalid backend host \"a+b\": host name has an invalid character (allowed: "
       "letters, digits, '-', '_', '.')"},
      {"http://b\xC3\xBC"
       "cher.example",
       "invalid backend host \"b\xC3\xBC"
       "cher.example\": host name is not ASCII: write its IDNA "
       "form (xn--...), which clients send"},
      {"http://a..b", "invalid backend host \"a..b\": host name has an empty label"},
      {"http://-a.b",
       "invalid backend host \"-a.b\": host name label must not start or end with '-'"},
      {"http://*.b",
       "invalid backend host \"*.b\": host name has an invalid character (allowed: "
       "letters, digits, '-', '_', '.')"},
  };
  for (const Case& c : cases) {
    INFO(c.url);
    std::string error;
    CHECK_FALSE(parse_backend_url(c.url, &error).has_value());
    CHECK(error == c.error);
  }
  // A null error pointer is allowed.
  CHECK_FALSE(parse_backend_url("ftp://a", nullptr).has_value());
}

TEST_CASE("parse_backend_url checks host label and name lengths", "[routing][values]") {
  const std::string label63(63, 'a');
  CHECK(parse_backend_url("http://" + label63 + ".example", nullptr).has_value());
  std::string error;
  CHECK_FALSE(parse_backend_url("http://" + label63 + "a.example", &error).has_value());
  CHECK(error.find("label is longer than 63 characters") != std::string::npos);
  // 4 x 63 + 3 dots = 255 > 253
  const std::string long_name = label63 + "." + label63 + "." + label63 + "." + label63;
  CHECK_FALSE(parse_backend_url("http://" + long_name, &error).has_value());
  CHECK(error.find("longer than 253 characters") != std::string::npos);
}

}  // namespace
}  // namespace portico

// format_access_line: the three formats, byte for byte, and the escaping of hostile values.

#include <catch2/catch.hpp>
#include <string>

#include "proxy/access_log.h"
#include "proxy/log.h"

namespace portico {
namespace {

// 2026-03-04 05:06:07.089 UTC
const std::chrono::system_clock::time_point kTime =
    std::chrono::system_clock::time_point(std::chrono::milliseconds(1772600767089));

AccessLogEntry sample() {
  AccessLogEntry e;
  e.time = kTime;
  e.client = "203.0.113.7";
  e.method = "GET";
  e.host = "example.com";
  e.target = "/api/users?id=1";
  e.protocol = "HTTP/1.1";
  e.referer = "https://example.com/";
  e.user_agent = "curl/8.5.0";
  e.route = "/api/";
  e.backend = "127.0.0.1:3000";
  e.status = 200;
  e.bytes_in = 12;
  e.bytes_out = 512;
  e.duration_ms = 1.842;
  return e;
}

TEST_CASE("access log: kv is portico's historic line", "[access-log]") {
  CHECK(format_access_line(sample(), AccessLogFormat::kKv) ==
        "info access: client=203.0.113.7 method=GET host=example.com path=/api/users?id=1 "
        "route=/api/ backend=127.0.0.1:3000 status=200 bytes_in=12 bytes_out=512 "
        "duration_ms=1.842\n");
  AccessLogEntry e = sample();
  e.error = "backend closed";
  e.tunnel = true;
  e.status = 101;
  e.messages_in = 3;
  e.messages_out = 4;
  e.close_from_client = 1000;
  e.close_from_backend = 1005;
  e.ended = "backend closed";
  CHECK(format_access_line(e, AccessLogFormat::kKv) ==
        "info access: client=203.0.113.7 method=GET host=example.com path=/api/users?id=1 "
        "route=/api/ backend=127.0.0.1:3000 status=101 bytes_in=12 bytes_out=512 "
        "duration_ms=1.842 tunnel=websocket messages_in=3 messages_out=4 close_from_client=1000 "
        "close_from_backend=1005 close_to_client=0 close_to_backend=0 ended=backend_closed "
        "error=backend_closed\n");
}

TEST_CASE("access log: kv keeps hostile values one ASCII token", "[access-log]") {
  AccessLogEntry e = sample();
  // U+0085 (NEL), U+2028 (line separator), a bare C1 CSI, a byte that is no UTF-8, a backslash,
  // and the controls, space and quote that were always replaced.
  e.target = "/\xC2\x85\xE2\x80\xA8\x9B\xFF\\x y\"\t";
  CHECK(format_access_line(e, AccessLogFormat::kKv) ==
        "info access: client=203.0.113.7 method=GET host=example.com "
        "path=/\\xc2\\x85\\xe2\\x80\\xa8\\x9b\\xff\\x5cx_y__ route=/api/ backend=127.0.0.1:3000 "
        "status=200 bytes_in=12 bytes_out=512 duration_ms=1.842\n");
}

TEST_CASE("event log: Quoted values cannot end their field", "[log]") {
  CHECK(str_cat("origin=", Quoted{"https://x\" client=1.2.3.4 z=\"\\\t\xC2\x85"}, " host=h") ==
        "origin=\"https://x\\x22 client=1.2.3.4 z=\\x22\\x5c\\x09\\xc2\\x85\" host=h");
}

TEST_CASE("access log: combined", "[access-log]") {
  CHECK(format_access_line(sample(), AccessLogFormat::kCombined) ==
        "203.0.113.7 - - [04/Mar/2026:05:06:07 +0000] \"GET /api/users?id=1 HTTP/1.1\" 200 512 "
        "\"https://example.com/\" \"curl/8.5.0\" 0.002\n");
  AccessLogEntry e = sample();
  e.referer = "";
  e.user_agent = "evil\" \"x\\y\n\x01\xC3\xA9";
  e.method = "";
  e.status = 408;
  CHECK(format_access_line(e, AccessLogFormat::kCombined) ==
        "203.0.113.7 - - [04/Mar/2026:05:06:07 +0000] \"-\" 408 512 \"-\" "
        "\"evil\\x22 \\x22x\\x5cy\\x0a\\x01\\xc3\\xa9\" 0.002\n");
}

TEST_CASE("access log: json has every field and escapes everything", "[access-log]") {
  CHECK(format_access_line(sample(), AccessLogFormat::kJson) ==
        "{\"time\":\"2026-03-04T05:06:07.089Z\",\"client\":\"203.0.113.7\",\"method\":\"GET\","
        "\"host\":\"example.com\",\"path\":\"/api/users?id=1\",\"protocol\":\"HTTP/1.1\","
        "\"referer\":\"https://example.com/\",\"user_agent\":\"curl/8.5.0\",\"route\":\"/api/\","
        "\"backend\":\"127.0.0.1:3000\",\"status\":200,\"bytes_in\":12,\"bytes_out\":512,"
        "\"duration_ms\":1.842,\"error\":\"\",\"tunnel\":false,\"messages_in\":0,"
        "\"messages_out\":0,\"close_from_client\":0,\"close_from_backend\":0,"
        "\"close_to_client\":0,\"close_to_backend\":0,\"ended\":\"\"}\n");
  AccessLogEntry e = sample();
  e.user_agent = std::string_view("q\"b\\n\n\r\t\x01\x7f\xff\0z", 13);
  std::string line = format_access_line(e, AccessLogFormat::kJson);
  CHECK(line.find("\"user_agent\":\"q\\\"b\\\\n\\n\\r\\t\\u0001\\u007f\\u00ff\\u0000z\"") !=
        std::string::npos);
  // One line, whatever the input.
  CHECK(line.find('\n') == line.size() - 1);
}

TEST_CASE("access log: format names", "[access-log]") {
  AccessLogFormat f = AccessLogFormat::kKv;
  CHECK(parse_access_log_format("json", &f));
  CHECK(f == AccessLogFormat::kJson);
  CHECK(parse_access_log_format("combined", &f));
  CHECK(f == AccessLogFormat::kCombined);
  CHECK(parse_access_log_format("kv", &f));
  CHECK(f == AccessLogFormat::kKv);
  CHECK_FALSE(parse_access_log_format("JSON", &f));
  CHECK_FALSE(parse_access_log_format("", &f));
}

}  // namespace
}  // namespace portico

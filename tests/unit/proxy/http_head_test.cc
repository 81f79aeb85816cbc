#include "proxy/http_head.h"

#include <llhttp.h>

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

using portico::has_only_chunked_coding;
using portico::HeaderField;
using portico::HttpHead;
using portico::is_token;

namespace {

constexpr size_t kMaxBytes = 32 * 1024;
constexpr size_t kMaxHeaders = 100;

// A request head as a browser sends it: most values are longer than a std::string keeps in
// place (15 bytes), so a head of std::strings allocated for each of them on every request.
const std::string kBrowserRequest =
    "GET /api/users/42/orders?page=3&sort=created_at HTTP/1.1\r\n"
    "Host: app.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n"
    "Accept-Encoding: gzip, deflate, br, zstd\r\n"
    "Referer: https://app.example.com/orders\r\n"
    "Cookie: session=6f1c0e5a9b2d4c7e8f3a1b0c9d8e7f6a; theme=dark\r\n"
    "sec-ch-ua: \"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"\r\n"
    "\r\n";

// Feeds llhttp's request callbacks into a head through its own methods, as portico does.
struct Parser {
  HttpHead head;
  llhttp_t parser;
  llhttp_settings_t settings;
  bool headers_complete = false;

  Parser() {
    llhttp_settings_init(&settings);
    settings.on_message_begin = [](llhttp_t* p) {
      self(p)->head.clear();
      self(p)->headers_complete = false;
      return 0;
    };
    settings.on_url = [](llhttp_t* p, const char* at, size_t len) {
      return self(p)->head.append_target(at, len, kMaxBytes) ? 0 : int{HPE_USER};
    };
    settings.on_header_field = [](llhttp_t* p, const char* at, size_t len) {
      return self(p)->head.append_name(at, len, kMaxBytes, kMaxHeaders) ? 0 : int{HPE_USER};
    };
    settings.on_header_field_complete = [](llhttp_t* p) {
      return self(p)->head.end_name() ? 0 : int{HPE_USER};
    };
    settings.on_header_value = [](llhttp_t* p, const char* at, size_t len) {
      return self(p)->head.append_value(at, len, kMaxBytes) ? 0 : int{HPE_USER};
    };
    settings.on_header_value_complete = [](llhttp_t* p) {
      self(p)->head.end_value();
      return 0;
    };
    settings.on_headers_complete = [](llhttp_t* p) {
      self(p)->head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
      self(p)->headers_complete = true;
      return 0;
    };
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = this;
  }
  static Parser* self(llhttp_t* p) { return static_cast<Parser*>(p->data); }

  // Parses `text` in reads of at most `piece` bytes, each from its own copy of the bytes (a
  // socket read's buffer is reused, so the head must keep copies, not pointers into it).
  llhttp_errno_t feed(std::string_view text, size_t piece) {
    while (!text.empty()) {
      std::string read(text.substr(0, piece));
      llhttp_errno_t err = llhttp_execute(&parser, read.data(), read.size());
      read.assign(read.size(), '#');
      if (err != HPE_OK) return err;
      text.remove_prefix(std::min(piece, text.size()));
    }
    return HPE_OK;
  }
};

void check_browser_head(const HttpHead& head) {
  CHECK(head.method == "GET");
  CHECK(head.target == "/api/users/42/orders?page=3&sort=created_at");
  REQUIRE(head.headers.size() == 8);
  CHECK(head.headers[0].name == "Host");
  CHECK(head.headers[0].value == "app.example.com");
  CHECK(head.find("user-agent")->value.starts_with("Mozilla/5.0 (X11; Linux x86_64)"));
  CHECK(head.find("user-agent")->value.ends_with("Safari/537.36"));
  CHECK(head.find("cookie")->value == "session=6f1c0e5a9b2d4c7e8f3a1b0c9d8e7f6a; theme=dark");
  CHECK(head.headers[7].name == "sec-ch-ua");
  CHECK(head.headers[7].value.ends_with("v=\"24\""));
  size_t held = head.target.size();
  for (const HeaderField& h : head.headers) held += h.name.size() + h.value.size();
  CHECK(head.bytes() == held);
}

}  // namespace

TEST_CASE("http head: every field survives reads split at any byte", "[http-head]") {
  for (size_t piece = 1; piece <= kBrowserRequest.size(); ++piece) {
    Parser p;
    INFO("reads of " << piece << " bytes");
    REQUIRE(p.feed(kBrowserRequest, piece) == HPE_OK);
    REQUIRE(p.headers_complete);
    check_browser_head(p.head);
  }
}

TEST_CASE("http head: a value's trailing blanks are dropped once it is whole, however it is split",
          "[http-head]") {
  // RFC 9112 5.1: OWS around a field value is no part of it. Blanks inside a value stay, and
  // a read that ends on one must not lose it when more of the value follows.
  const std::string request =
      "GET / HTTP/1.1\r\n"
      "Host: a.example \t\r\n"
      "X-Inner: b \t c  \r\n"
      "X-Blank: \t \r\n"
      "X-Tab:\tx\t\r\n"
      "X-Kept: y\r\n"
      "\r\n";
  for (size_t piece = 1; piece <= request.size(); ++piece) {
    Parser p;
    INFO("reads of " << piece << " bytes");
    REQUIRE(p.feed(request, piece) == HPE_OK);
    REQUIRE(p.headers_complete);
    REQUIRE(p.head.headers.size() == 5);
    CHECK(p.head.find("host")->value == "a.example");
    CHECK(p.head.find("x-inner")->value == "b \t c");
    CHECK(p.head.find("x-blank")->value.empty());
    CHECK(p.head.find("x-tab")->value == "x");
    CHECK(p.head.find("x-kept")->value == "y");
  }
}

TEST_CASE("http head: keep-alive requests reuse the head's buffer, allocating nothing",
          "[http-head]") {
  Parser p;
  REQUIRE(p.feed(kBrowserRequest, 64) == HPE_OK);
  check_browser_head(p.head);
  // After the first request the head holds one buffer and one field array; the next requests,
  // however they are split, fit in both: neither moves nor grows.
  const char* buffer = p.head.target.data();
  const size_t capacity = p.head.capacity();
  const HeaderField* fields = p.head.headers.data();
  CHECK(capacity <= kMaxBytes);
  for (size_t piece : {size_t{1}, size_t{7}, size_t{100}, kBrowserRequest.size()}) {
    REQUIRE(p.feed(kBrowserRequest, piece) == HPE_OK);
    check_browser_head(p.head);
    CHECK(p.head.target.data() == buffer);
    CHECK(p.head.capacity() == capacity);
    CHECK(p.head.headers.data() == fields);
  }
  // A smaller head after it still uses the same buffer.
  REQUIRE(p.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 5) == HPE_OK);
  CHECK(p.head.target == "/");
  CHECK(p.head.find("host")->value == "a");
  CHECK(p.head.target.data() == buffer);
  CHECK(p.head.bytes() == 1 + 4 + 1);
}

TEST_CASE("http head: the limits hold and a refused span adds nothing", "[http-head]") {
  HttpHead head;
  const std::string long_value(100, 'v');
  REQUIRE(head.append_target("/", 1, 200));
  REQUIRE(head.append_name("X-A", 3, 200, 2));
  REQUIRE(head.end_name());
  REQUIRE(head.append_value(long_value.data(), long_value.size(), 200));
  head.end_value();
  CHECK(head.bytes() == 104);
  // 104 + 100 would pass 200: refused, and the head is as it was.
  CHECK_FALSE(head.append_target(long_value.data(), long_value.size(), 200));
  CHECK_FALSE(head.append_value(long_value.data(), long_value.size(), 200));
  CHECK(head.bytes() == 104);
  CHECK(head.headers[0].value == long_value);
  // The second field fits; a third is one too many.
  REQUIRE(head.append_name("X-B", 3, 200, 2));
  REQUIRE(head.end_name());
  CHECK_FALSE(head.append_name("X-C", 3, 200, 2));
  CHECK(head.headers.size() == 2);
  CHECK(head.capacity() <= 200);
  // A value with no field before it is refused.
  HttpHead empty;
  CHECK_FALSE(empty.append_value("v", 1, 200));
}

TEST_CASE("http head: a moved head keeps its views, a hand-built one can be extended",
          "[http-head]") {
  Parser p;
  REQUIRE(p.feed(kBrowserRequest, 13) == HPE_OK);
  HttpHead moved = std::move(p.head);
  check_browser_head(moved);

  // Views set by hand point elsewhere; a span appended to one copies what it had first.
  HttpHead head;
  head.target = "/static";
  REQUIRE(head.append_target("/more", 5, 100));
  CHECK(head.target == "/static/more");
  CHECK(head.bytes() == 12);
}

TEST_CASE("http head: an empty header name is refused", "[http-head]") {
  // llhttp 8.1 accepts ": b" as a header line; a field-name needs one token character.
  Parser p;
  CHECK(p.feed("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 1000) != HPE_OK);
  CHECK_FALSE(p.headers_complete);
  HttpHead head;
  REQUIRE(head.append_name("", 0, 100, 10));
  CHECK_FALSE(head.end_name());
}

TEST_CASE("http head: a header name must be a token", "[http-head]") {
  // llhttp 8.1 passes "X A" and "X-B " (a space before the colon) as names.
  Parser p;
  CHECK(p.feed("GET / HTTP/1.1\r\nHost: a\r\nX-B : 1\r\n\r\n", 1000) != HPE_OK);
  CHECK_FALSE(p.headers_complete);
  CHECK(is_token("X-Forwarded-For"));
  CHECK(is_token("!#$%&'*+-.^_`|~09azAZ"));
  for (const char* name : {"", "X A", "X-B ", "X\tA", "X:A", "X\"A", "X(A)", "\xc3\xa9"}) {
    INFO(name);
    CHECK_FALSE(is_token(name));
  }
}

TEST_CASE("http head: only a single plain chunked Transfer-Encoding is re-framed", "[http-head]") {
  auto head_with = [](std::vector<std::string> values) {
    auto head = std::make_unique<HttpHead>();
    for (const std::string& value : values) {
      REQUIRE(head->append_name("Transfer-Encoding", 17, 1000, 10));
      REQUIRE(head->end_name());
      REQUIRE(head->append_value(value.data(), value.size(), 1000));
      head->end_value();
    }
    return head;
  };
  CHECK(has_only_chunked_coding(*head_with({"chunked"})));
  CHECK(has_only_chunked_coding(*head_with({"Chunked \t"})));
  CHECK_FALSE(has_only_chunked_coding(*head_with({})));
  CHECK_FALSE(has_only_chunked_coding(*head_with({"gzip, chunked"})));
  CHECK_FALSE(has_only_chunked_coding(*head_with({"identity"})));
  CHECK_FALSE(has_only_chunked_coding(*head_with({"chunked", "chunked"})));
}

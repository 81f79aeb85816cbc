// RouteTable::parse: the route-file grammar, every error message, describe() round trip.

#include <catch2/catch.hpp>

#include "routing/route_table.h"

using namespace std::chrono_literals;

namespace portico {
namespace {

// All errors of a parse, one `to_string()` per line, so that a failing CHECK shows them all.
std::string errors_of(const RouteParseResult& r) {
  std::string out;
  for (const RouteError& e : r.errors) {
    out += e.to_string();
    out += '\n';
  }
  return out;
}

const Route& only_route(const RouteParseResult& r) {
  INFO(errors_of(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.table != nullptr);
  REQUIRE(r.table->routes().size() == 1);
  return r.table->routes()[0];
}

bool same_backend(const BackendAddress& a, const BackendAddress& b) {
  return a.scheme == b.scheme && a.host == b.host && a.port == b.port &&
         a.host_is_ip == b.host_is_ip;
}

bool same_route(const Route& a, const Route& b) {
  if (a.host != b.host || a.prefix != b.prefix || a.line != b.line ||
      a.backends.size() != b.backends.size()) {
    return false;
  }
  for (size_t i = 0; i < a.backends.size(); ++i) {
    if (!same_backend(a.backends[i], b.backends[i])) return false;
  }
  const RouteOptions& x = a.options;
  const RouteOptions& y = b.options;
  return x.strip_prefix == y.strip_prefix && x.connect_timeout == y.connect_timeout &&
         x.read_timeout == y.read_timeout && x.ws_idle == y.ws_idle && x.max_body == y.max_body &&
         x.max_ws_message == y.max_ws_message && x.origins == y.origins && x.upgrade == y.upgrade &&
         x.balance == y.balance && x.ca_file == y.ca_file;
}

TEST_CASE("parse: a minimal route gets the documented defaults", "[routing][parse]") {
  auto r = RouteTable::parse("/ http://127.0.0.1:8080\n", "routes");
  const Route& route = only_route(r);
  CHECK(route.host.empty());
  CHECK(route.prefix == "/");
  CHECK(route.line == 1);
  REQUIRE(route.backends.size() == 1);
  CHECK(route.backends[0].authority() == "127.0.0.1:8080");
  const RouteOptions& o = route.options;
  CHECK_FALSE(o.strip_prefix);
  CHECK(o.connect_timeout == 5s);
  CHECK(o.read_timeout == 60s);
  CHECK(o.ws_idle == 30s);
  CHECK(o.max_body == 0);
  CHECK(o.max_ws_message == 1024 * 1024);
  CHECK(o.origins.empty());
  CHECK(o.upgrade == UpgradePolicy::kAllow);
  CHECK(o.balance == BalancePolicy::kRoundRobin);
  CHECK(o.ca_file.empty());
}

TEST_CASE("parse: a backend URL's trailing slash where it cannot be misread", "[routing][parse]") {
  // On "/" there is no prefix to strip; with strip_prefix written either way the intent is
  // stated. (Without it, on another prefix, it is an error: see the error messages below.)
  for (const char* line : {"/ http://b:1/", "/api/ http://b:1/ strip_prefix",
                           "/api/ http://b:1/ strip_prefix=off", "a.com/ https://b/"}) {
    INFO(line);
    auto r = RouteTable::parse(line, "r");
    CHECK(errors_of(r).empty());
    CHECK(r.table != nullptr);
  }
}

TEST_CASE("parse: comments, blank lines, tabs, CRLF, no final newline", "[routing][parse]") {
  const char* text =
      "# portico routes\r\n"
      "\r\n"
      "   \t  \n"
      "api.example.com/v1\thttp://10.0.0.1:8001   http://10.0.0.2:8001 # two backends\r\n"
      "\t# indented comment\n"
      "  /static/ http://10.0.0.3 strip_prefix\t#comment after an option\n"
      "*.Example.COM/ https://Web.Internal";
  auto r = RouteTable::parse(text, "routes");
  INFO(errors_of(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.table != nullptr);
  const auto& routes = r.table->routes();
  REQUIRE(routes.size() == 3);

  CHECK(routes[0].line == 4);
  CHECK(routes[0].host == "api.example.com");
  CHECK(routes[0].prefix == "/v1");
  REQUIRE(routes[0].backends.size() == 2);
  CHECK(routes[0].backends[0].authority() == "10.0.0.1:8001");
  CHECK(routes[0].backends[1].authority() == "10.0.0.2:8001");

  CHECK(routes[1].line == 6);
  CHECK(routes[1].host.empty());
  CHECK(routes[1].prefix == "/static/");
  CHECK(routes[1].backends[0].authority() == "10.0.0.3:80");
  CHECK(routes[1].options.strip_prefix);

  CHECK(routes[2].line == 7);
  CHECK(routes[2].host == "*.example.com");
  CHECK(routes[2].prefix == "/");
  CHECK(routes[2].backends[0].scheme == "https");
  CHECK(routes[2].backends[0].authority() == "web.internal:443");
  CHECK_FALSE(routes[2].backends[0].host_is_ip);
}

TEST_CASE("parse: a UTF-8 byte order mark is skipped", "[routing][parse]") {
  auto r = RouteTable::parse("\xEF\xBB\xBF/ http://127.0.0.1:1\n", "routes");
  CHECK(only_route(r).prefix == "/");
}

TEST_CASE("parse: route hosts", "[routing][parse]") {
  struct Case {
    const char* pattern;
    const char* host;
    const char* prefix;
  };
  const Case cases[] = {
      {"/", "", "/"},
      {"API.Example.com/api/", "api.example.com", "/api/"},
      {"localhost/", "localhost", "/"},
      {"10.1.2.3/", "10.1.2.3", "/"},
      {"[::1]/", "[::1]", "/"},
      {"[2001:DB8::A]/x", "[2001:db8::a]", "/x"},
      {"*.example.com/", "*.example.com", "/"},
      {"*.EXAMPLE.com/a", "*.example.com", "/a"},
      {"xn--bcher-kva.example/", "xn--bcher-kva.example", "/"},
  };
  for (const Case& c : cases) {
    INFO(c.pattern);
    auto r = RouteTable::parse(std::string(c.pattern) + " http://b:1", "f");
    const Route& route = only_route(r);
    CHECK(route.host == c.host);
    CHECK(route.prefix == c.prefix);
  }
}

TEST_CASE("parse: https:// backends and their ca= bundle", "[routing][parse]") {
  auto r = RouteTable::parse(
      "/a https://api.internal ca=certs/internal-ca.pem\n"
      "/b http://10.0.0.1:80 https://10.0.0.2:8443 ca=/etc/ssl/corp.pem\n"
      "/c https://[::1]:9443\n",
      "f");
  INFO(errors_of(r));
  REQUIRE(r.table != nullptr);
  const auto& routes = r.table->routes();
  CHECK(routes[0].backends[0].scheme == "https");
  CHECK(routes[0].backends[0].port == 443);  // the https default
  CHECK(routes[0].options.ca_file == "certs/internal-ca.pem");
  CHECK(routes[1].options.ca_file == "/etc/ssl/corp.pem");
  CHECK(routes[2].options.ca_file.empty());  // the system CAs
  CHECK(r.table->describe().find("/a https://api.internal:443 ") != std::string::npos);
  CHECK(r.table->describe().find(" ca=certs/internal-ca.pem\n") != std::string::npos);

  auto bad = RouteTable::parse("/ http://b:1 ca=x.pem\n", "f");
  CHECK(bad.table == nullptr);
  CHECK(errors_of(bad) == "f:1:14: ca= applies to https:// backends, and this route has none\n");
}

TEST_CASE("parse: every option and its accepted values", "[routing][parse]") {
  auto opts = [](const std::string& options) {
    auto r = RouteTable::parse("/ http://b:1 " + options, "f");
    INFO(options << "\n" << errors_of(r));
    REQUIRE(r.table != nullptr);
    return r.table->routes().at(0).options;
  };
  CHECK(opts("strip_prefix").strip_prefix);
  CHECK(opts("strip_prefix=on").strip_prefix);
  CHECK_FALSE(opts("strip_prefix=off").strip_prefix);
  CHECK(opts("connect_timeout=250ms").connect_timeout == 250ms);
  CHECK(opts("read_timeout=2m").read_timeout == 2min);
  CHECK(opts("ws_idle=1h").ws_idle == 1h);
  CHECK(opts("max_body=0").max_body == 0);
  CHECK(opts("max_body=10M").max_body == 10 * 1024 * 1024);
  CHECK(opts("max_ws_message=64k").max_ws_message == 64 * 1024);
  CHECK(opts("origins=*").origins == std::vector<std::string>{"*"});
  CHECK(opts("origins=-").origins.empty());
  CHECK(opts("origins=https://App.Example.com,http://localhost:3000,Example.org,[::1]:8080")
            .origins == std::vector<std::string>{"https://app.example.com", "http://localhost:3000",
                                                 "example.org", "[::1]:8080"});
  CHECK(opts("upgrade=allow").upgrade == UpgradePolicy::kAllow);
  CHECK(opts("upgrade=only").upgrade == UpgradePolicy::kOnly);
  CHECK(opts("upgrade=never").upgrade == UpgradePolicy::kNever);
  CHECK(opts("balance=round_robin").balance == BalancePolicy::kRoundRobin);
  CHECK(opts("balance=least_conn").balance == BalancePolicy::kLeastConn);
  CHECK(opts("balance=ip_hash").balance == BalancePolicy::kIpHash);
  CHECK(opts("balance=cookie").balance == BalancePolicy::kCookie);

  const RouteOptions all = opts(
      "strip_prefix=on connect_timeout=1s read_timeout=2s ws_idle=3s max_body=1k "
      "max_ws_message=2k origins=* upgrade=never balance=ip_hash");
  CHECK(all.strip_prefix);
  CHECK(all.connect_timeout == 1s);
  CHECK(all.read_timeout == 2s);
  CHECK(all.ws_idle == 3s);
  CHECK(all.max_body == 1024);
  CHECK(all.max_ws_message == 2048);
  CHECK(all.upgrade == UpgradePolicy::kNever);
  CHECK(all.balance == BalancePolicy::kIpHash);
}

// Each line is parsed alone as file "r"; the single expected error is compared whole.
TEST_CASE("parse: error messages with line and column", "[routing][parse][errors]") {
  struct Case {
    std::string_view line;
    const char* error;
  };
  const Case cases[] = {
      // The pattern.
      {"example.com http://b:1",
       "r:1:1: route \"example.com\" needs a path prefix starting with \"/\" (like example.com/ "
       "or /api)"},
      {"example.com:8080/ http://b:1", "r:1:1: route host must not have a port"},
      {"[::1]:8080/ http://b:1", "r:1:1: route host must not have a port"},
      {"*.example.com:80/ http://b:1", "r:1:1: route host must not have a port"},
      {"::1/ http://b:1", "r:1:1: an IPv6 route host must be in brackets"},
      {"  a+b.com/ http://b:1",
       "r:1:3: invalid route host \"a+b.com\": host name has an invalid character (allowed: "
       "letters, digits, '-', '_', '.')"},
      {"a..b/ http://b:1", "r:1:1: invalid route host \"a..b\": host name has an empty label"},
      {"example.com./ http://b:1",
       "r:1:1: invalid route host \"example.com.\": host name ends with '.': write it without"},
      {"300.1.1.1/ http://b:1", "r:1:1: invalid route host \"300.1.1.1\": invalid IPv4 address"},
      {"[::g]/ http://b:1", "r:1:1: invalid route host \"[::g]\": invalid IPv6 literal"},
      {"[::1/ http://b:1", "r:1:1: invalid route host \"[::1\": invalid IPv6 literal"},
      {"[0:0::1]/ http://b:1",
       "r:1:1: IPv6 route host \"[0:0::1]\" is not in the form clients send (write \"[::1]\")"},
      {"[2001:DB8::0:1]/ http://b:1",
       "r:1:1: IPv6 route host \"[2001:DB8::0:1]\" is not in the "
       "form clients send (write \"[2001:db8::1]\")"},
      {"a.*.com/ http://b:1",
       "r:1:1: a wildcard route host must start with \"*.\" (like *.example.com)"},
      {"*example.com/ http://b:1",
       "r:1:1: a wildcard route host must start with \"*.\" (like *.example.com)"},
      {"*./ http://b:1", "r:1:1: invalid route host \"*.\": host name has an empty label"},
      {"a.com/a/../b http://b:1", "r:1:6: prefix \"/a/../b\" is not normalised (means \"/b\")"},
      {"/a/./b http://b:1", "r:1:1: prefix \"/a/./b\" is not normalised (means \"/a/b\")"},
      {"//x http://b:1", "r:1:1: prefix \"//x\" is not normalised (means \"/x\")"},
      {"/%7euser http://b:1", "r:1:1: prefix \"/%7euser\" is not normalised (means \"/~user\")"},
      {"/a%2fb http://b:1", "r:1:1: prefix \"/a%2fb\" is not normalised (means \"/a%2Fb\")"},
      {"/.. http://b:1", "r:1:1: prefix \"/..\" climbs above \"/\""},
      {"/a?b http://b:1",
       "r:1:1: prefix \"/a?b\" can never match a request path; write \"/a%3Fb\""},
      {"/\xC3\xBC/ http://b:1",
       "r:1:1: prefix \"/\xC3\xBC/\" is not normalised (means \"/%C3%BC/\")"},
      {"/a;x/ http://b:1 http://c:1 balance=cookie",
       "r:1:1: balance=cookie needs a prefix without ';' (it is the cookie's Path)"},
      {"/a%zz http://b:1",
       "r:1:1: prefix \"/a%zz\" is invalid (bad %-escape, space, control character or '#')"},
      {"/a#b http://b:1",
       "r:1:1: prefix \"/a#b\" is invalid (bad %-escape, space, control character or '#')"},
      // Backends.
      {"/", "r:1:1: route needs at least one backend URL (like http://127.0.0.1:8080)"},
      {"/ strip_prefix",
       "r:1:1: route needs at least one backend URL (like http://127.0.0.1:8080)"},
      {"/ http://b:1/api", "r:1:3: backend URL must not have a path; use strip_prefix"},
      // NGINX's proxy_pass habit: the trailing "/" would strip the prefix there.
      {"/api/ http://a:1 http://b:1/",
       "r:1:18: backend URL ends with \"/\", which in NGINX's proxy_pass strips the prefix: "
       "write strip_prefix to strip it, or drop the \"/\" to forward the path whole"},
      {"/ http:/b:1", "r:1:3: backend URL \"http:/b:1\" needs \"://\" after its scheme"},
      {"https://example.com/ http://b:1",
       "r:1:1: route \"https://example.com/\" is a URL: a route is a path prefix (/api/) or a "
       "host and one (example.com/), without a scheme; the backend URL comes after it"},
      {"/ http://b:1 10.0.0.1:80",
       "r:1:14: backend URL \"10.0.0.1:80\" needs a scheme: http://HOST:PORT or "
       "https://HOST[:PORT]"},
      {"/ http://b:1 max_body=1k http://c:2",
       "r:1:26: backend URL after options; list backends before options"},
      // Options.
      {"/ http://b:1 retries=3",
       "r:1:14: unknown option \"retries\"; valid options: strip_prefix, connect_timeout, "
       "read_timeout, ws_idle, max_body, max_ws_message, origins, upgrade, balance, ca"},
      {"/ http://b:1 Balance=cookie",
       "r:1:14: unknown option \"Balance\"; valid options: strip_prefix, connect_timeout, "
       "read_timeout, ws_idle, max_body, max_ws_message, origins, upgrade, balance, ca"},
      {"/ http://b:1 balance=cookie balance=ip_hash", "r:1:29: duplicate option \"balance\""},
      {"/ http://b:1 strip_prefix strip_prefix=off", "r:1:27: duplicate option \"strip_prefix\""},
      {"/ http://b:1 balance", "r:1:14: option \"balance\" needs a value (balance=...)"},
      {"/ https://b:1 ca=", "r:1:15: option \"ca\" needs a value (ca=...)"},
      {"/ http://b:1 connect_timeout=",
       "r:1:14: option \"connect_timeout\" needs a value (connect_timeout=...)"},
      {"/ http://b:1 strip_prefix=yes", "r:1:14: invalid strip_prefix \"yes\": must be on or off"},
      {"/ http://b:1 connect_timeout=5",
       "r:1:14: invalid connect_timeout \"5\": duration needs a unit (ms, s, m, h)"},
      {"/ http://b:1 read_timeout=0s",
       "r:1:14: invalid read_timeout \"0s\": duration must be greater than 0"},
      {"/ http://b:1 ws_idle=25h", "r:1:14: invalid ws_idle \"25h\": duration must be at most 24h"},
      {"/ http://b:1 ws_idle=", "r:1:14: option \"ws_idle\" needs a value (ws_idle=...)"},
      {"/ http://b:1 ws_idle=5d",
       "r:1:14: invalid ws_idle \"5d\": unknown duration unit \"d\" (use ms, s, m or h)"},
      {"/ http://b:1 max_body=99999999999g",
       "r:1:14: invalid max_body \"99999999999g\": size is too large"},
      {"/ http://b:1 max_body=1x",
       "r:1:14: invalid max_body \"1x\": unknown size unit \"x\" (use k, m or g, or none)"},
      {"/ http://b:1 max_body=k",
       "r:1:14: invalid max_body \"k\": size must start with a number (like 64k)"},
      {"/ http://b:1 max_ws_message=0",
       "r:1:14: invalid max_ws_message \"0\": must be greater than 0"},
      {"/ http://b:1 origins=", "r:1:14: option \"origins\" needs a value (origins=...)"},
      {"/ http://b:1 origins=a.com,,b.com",
       "r:1:14: invalid origins \"a.com,,b.com\": empty origin in the list"},
      {"/ http://b:1 origins=ftp://a.com",
       "r:1:14: invalid origins \"ftp://a.com\": \"ftp://a.com\": origin scheme must be http or "
       "https"},
      {"/ http://b:1 origins=https://a.com/app",
       "r:1:14: invalid origins \"https://a.com/app\": \"https://a.com/app\": an origin is "
       "scheme://host[:port] only, without path"},
      {"/ http://b:1 origins=https://a.com:0",
       "r:1:14: invalid origins \"https://a.com:0\": \"https://a.com:0\": port must be a number "
       "1-65535"},
      {"/ http://b:1 origins=a+b",
       "r:1:14: invalid origins \"a+b\": \"a+b\": host name has an invalid character (allowed: "
       "letters, digits, '-', '_', '.')"},
      {"/ http://b:1 upgrade=yes", "r:1:14: invalid upgrade \"yes\": must be allow, only or never"},
      {"/ http://b:1 balance=random",
       "r:1:14: invalid balance \"random\": must be round_robin, least_conn, ip_hash or cookie"},
      // Characters.
      {"/ http://b:1\x01", "r:1:13: control character 0x01 is not allowed"},
      {"/ http://b:1 # a comment with a DEL \x7F", "r:1:37: control character 0x7F is not allowed"},
      {"/\r http://b:1", "r:1:2: control character 0x0D is not allowed"},
      {std::string_view("/ \0http://b:1", 13), "r:1:3: control character 0x00 is not allowed"},
  };
  for (const Case& c : cases) {
    INFO(c.line);
    auto r = RouteTable::parse(c.line, "r");
    CHECK(r.table == nullptr);
    CHECK(errors_of(r) == std::string(c.error) + "\n");
  }
}

TEST_CASE("parse: every error is collected, in file order, and the table is null",
          "[routing][parse][errors]") {
  const char* text =
      "/ok http://b:1\n"
      "/bad%zz http://b:1 balance=random\n"
      "# fine\n"
      "/ok2 ftp://b\n"
      "/ok3 http://b:1\n";
  auto r = RouteTable::parse(text, "conf/routes");
  CHECK(r.table == nullptr);
  CHECK(errors_of(r) ==
        "conf/routes:2:1: prefix \"/bad%zz\" is invalid (bad %-escape, space, control character "
        "or '#')\n"
        "conf/routes:2:20: invalid balance \"random\": must be round_robin, least_conn, ip_hash "
        "or cookie\n"
        "conf/routes:4:6: unsupported backend URL scheme \"ftp\"; use http or https\n");
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0].file == "conf/routes");
  CHECK(r.errors[0].line == 2);
  CHECK(r.errors[0].column == 1);
  CHECK(r.errors[2].line == 4);
  CHECK(r.errors[2].column == 6);
}

TEST_CASE("parse: several errors on one line are ordered by column", "[routing][parse][errors]") {
  auto r = RouteTable::parse("a+b/x%zz\n", "r");
  CHECK(r.table == nullptr);
  CHECK(errors_of(r) ==
        "r:1:1: invalid route host \"a+b\": host name has an invalid character (allowed: "
        "letters, digits, '-', '_', '.')\n"
        "r:1:1: route needs at least one backend URL (like http://127.0.0.1:8080)\n"
        "r:1:4: prefix \"/x%zz\" is invalid (bad %-escape, space, control character or '#')\n");
}

TEST_CASE("parse: duplicate routes name the earlier line", "[routing][parse][errors]") {
  const char* text =
      "/api http://b:1\n"
      "api.example.com/api http://b:1\n"
      "*.example.com/api http://b:1\n"
      "/api/ http://b:1\n"
      "\n"
      "/api http://c:2 strip_prefix\n"
      "API.Example.com/api http://b:1\n"
      "*.EXAMPLE.com/api http://b:1\n";
  auto r = RouteTable::parse(text, "r");
  CHECK(r.table == nullptr);
  CHECK(errors_of(r) ==
        "r:6:1: duplicate route \"/api\" (first defined on line 1)\n"
        "r:7:1: duplicate route \"api.example.com/api\" (first defined on line 2)\n"
        "r:8:1: duplicate route \"*.example.com/api\" (first defined on line 3)\n");
}

TEST_CASE("parse: a file without routes is an error", "[routing][parse][errors]") {
  for (const char* text : {"", "\n", "# only a comment\n\n   \t\n", "\r\n"}) {
    INFO('"' << text << '"');
    auto r = RouteTable::parse(text, "empty.routes");
    CHECK(r.table == nullptr);
    CHECK(errors_of(r) == "empty.routes:1:1: no routes defined\n");
  }
  // A control character in a comment-only file is the error that matters.
  auto r = RouteTable::parse("#\x02\n", "f");
  CHECK(errors_of(r) == "f:1:2: control character 0x02 is not allowed\n");
}

TEST_CASE("parse: IPv6 and https backends", "[routing][parse]") {
  auto r =
      RouteTable::parse("/ http://[::1]:8080 https://[fe80::1] https://secure.internal\n", "f");
  const Route& route = only_route(r);
  REQUIRE(route.backends.size() == 3);
  CHECK(route.backends[0].host == "::1");
  CHECK(route.backends[0].port == 8080);
  CHECK(route.backends[0].host_is_ip);
  CHECK(route.backends[0].authority() == "[::1]:8080");
  CHECK(route.backends[1].scheme == "https");
  CHECK(route.backends[1].authority() == "[fe80::1]:443");
  CHECK(route.backends[2].port == 443);
  CHECK_FALSE(route.backends[2].host_is_ip);
}

TEST_CASE("describe: one explicit line per route", "[routing][describe]") {
  auto r = RouteTable::parse(
      "api.example.com/v1/ http://10.0.0.1:8001 https://[::1] strip_prefix read_timeout=90s "
      "ws_idle=60000ms max_body=10240k origins=https://app.example.com,* balance=cookie\n"
      "/ http://web:80\n",
      "f");
  INFO(errors_of(r));
  REQUIRE(r.table != nullptr);
  CHECK(r.table->describe() ==
        "api.example.com/v1/ http://10.0.0.1:8001 https://[::1]:443 strip_prefix=on "
        "connect_timeout=5s read_timeout=90s ws_idle=1m max_body=10m max_ws_message=1m "
        "origins=https://app.example.com,* upgrade=allow balance=cookie\n"
        "/ http://web:80 strip_prefix=off connect_timeout=5s read_timeout=1m ws_idle=30s "
        "max_body=0 max_ws_message=1m origins=- upgrade=allow balance=round_robin\n");
}

TEST_CASE("describe: parse(describe()) gives an equal table", "[routing][describe]") {
  const char* text =
      "# a realistic table\n"
      "api.example.com/v1/ http://10.0.0.1:8001 http://10.0.0.2:8001 strip_prefix\n"
      "api.example.com/ https://API-backend.internal:8443/ connect_timeout=250ms "
      "read_timeout=1500ms\n"
      "*.example.com/ws http://[2001:db8::7]:9000 upgrade=only ws_idle=45s "
      "max_ws_message=3000 origins=https://a.example.com,B.example.com:8443\n"
      "[::1]/ http://127.0.0.1:1 max_body=1g upgrade=never balance=least_conn\n"
      "10.0.0.9/x http://localhost:65535 balance=ip_hash max_body=1025 connect_timeout=24h\n"
      "/ http://web.internal balance=cookie origins=*\n";
  auto first = RouteTable::parse(text, "f");
  INFO(errors_of(first));
  REQUIRE(first.table != nullptr);
  const std::string described = first.table->describe();
  auto second = RouteTable::parse(described, "described");
  INFO(described << errors_of(second));
  REQUIRE(second.table != nullptr);
  const auto& a = first.table->routes();
  const auto& b = second.table->routes();
  REQUIRE(a.size() == 6);
  REQUIRE(b.size() == a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("route " << i);
    Route expected = a[i];
    expected.line = static_cast<int>(i) + 1;  // describe() has no comment lines
    CHECK(same_route(expected, b[i]));
  }
  CHECK(second.table->describe() == described);
}

}  // namespace
}  // namespace portico

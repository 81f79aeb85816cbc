// RouteTable::match, normalize_path and upstream_path.

#include <catch2/catch.hpp>

#include "routing/route_table.h"

namespace portico {
namespace {

std::shared_ptr<const RouteTable> table_of(const char* text) {
  auto r = RouteTable::parse(text, "t");
  std::string errors;
  for (const RouteError& e : r.errors) errors += e.to_string() + "\n";
  INFO(errors);
  REQUIRE(r.table != nullptr);
  return r.table;
}

// The line of the matched route, or 0 for no match: lines make the tables below readable.
int matched_line(const RouteTable& table, std::string_view host, std::string_view path) {
  const Route* r = table.match(host, path);
  return r == nullptr ? 0 : r->line;
}

TEST_CASE("match: host classes, fallback and longest prefix", "[routing][match]") {
  auto table = table_of(
      "api.example.com/v1/ http://b:1\n"       // 1
      "api.example.com/v1/admin http://b:1\n"  // 2
      "*.example.com/ http://b:1\n"            // 3
      "*.example.com/v1/ http://b:1\n"         // 4
      "*.eu.example.com/eu/ http://b:1\n"      // 5
      "/ http://b:1\n"                         // 6
      "/static/ http://b:1\n"                  // 7
      "/api http://b:1\n"                      // 8
      "[::1]/ipv6 http://b:1\n"                // 9
      "10.0.0.1/v4 http://b:1\n"               // 10
      "only.example.org/x http://b:1\n");      // 11
  struct Case {
    const char* host;
    const char* path;
    int line;
  };
  const Case cases[] = {
      // An exact host wins over wildcard and host-less routes; the longest prefix wins in it.
      {"api.example.com", "/v1/users", 1},
      {"api.example.com", "/v1/admin/x", 2},
      {"api.example.com", "/v1/adminx", 2},  // plain string prefix, like NGINX location
      // Exact host routes exist but none matches: fall back to the wildcard class...
      {"api.example.com", "/v2", 3},
      {"api.example.com", "/static/a.css", 3},
      // ...and without a wildcard, to the host-less class.
      {"only.example.org", "/x/y", 11},
      {"only.example.org", "/static/a.css", 7},
      {"only.example.org", "/nothing", 6},
      // Wildcards: one or more labels in front, longest suffix first, never the bare domain.
      {"www.example.com", "/", 3},
      {"www.example.com", "/v1/x", 4},
      {"a.b.example.com", "/v1/x", 4},
      {"x.eu.example.com", "/eu/x", 5},
      {"x.eu.example.com", "/v1/x", 4},  // the longer wildcard has no such prefix: fall back
      {"x.eu.example.com", "/", 3},
      {"eu.example.com", "/", 3},
      {"example.com", "/v1/x", 6},
      {".example.com", "/", 6},
      // Host-less routes and the longest prefix among them.
      {"", "/static/x", 7},
      {"other.org", "/api", 8},
      {"other.org", "/apix", 8},
      {"other.org", "/ap", 6},
      // Host header forms: port, case, one trailing dot, IPv6 with and without port.
      {"API.Example.COM:8443", "/v1/x", 1},
      {"api.example.com.", "/v1/x", 1},
      {"api.example.com.:443", "/v1/x", 1},
      {"WWW.EXAMPLE.COM", "/v1/x", 4},
      {"api.example.com..", "/v1/x", 6},  // only one trailing dot is stripped
      {"[::1]", "/ipv6/x", 9},
      {"[::1]:8443", "/ipv6", 9},
      {"[::2]:8443", "/ipv6", 6},
      {"[::1", "/ipv6", 6},  // malformed: only host-less routes apply
      {"10.0.0.1:80", "/v4", 10},
  };
  for (const Case& c : cases) {
    INFO(c.host << " " << c.path);
    CHECK(matched_line(*table, c.host, c.path) == c.line);
  }
}

TEST_CASE("match: no match gives null", "[routing][match]") {
  auto table = table_of(
      "api.example.com/v1/ http://b:1\n"
      "*.example.com/ws http://b:1\n"
      "/static/ http://b:1\n");
  CHECK(table->match("api.example.com", "/v2") == nullptr);
  CHECK(table->match("a.example.com", "/w") == nullptr);
  CHECK(table->match("other.org", "/static") == nullptr);  // "/static/" needs the slash
  CHECK(table->match("", "/") == nullptr);
  CHECK(table->match("api.example.com", "/static/x") != nullptr);
}

TEST_CASE("match: a copied table matches the same routes", "[routing][match]") {
  auto table = table_of("a.com/x http://b:1\n/ http://b:1\n");
  const RouteTable copy = *table;
  const Route* r = copy.match("a.com", "/x");
  REQUIRE(r != nullptr);
  CHECK(r->line == 1);
  CHECK(r == &copy.routes()[0]);
}

TEST_CASE("normalize_path", "[routing][normalize]") {
  struct Case {
    std::string_view raw;
    PathStatus status;
    const char* path;
  };
  const Case cases[] = {
      {"/", PathStatus::kOk, "/"},
      {"/a/b", PathStatus::kOk, "/a/b"},
      // Unreserved escapes are decoded, others kept with upper-case hex.
      {"/%41%7a%30%2D%2e%5F%7E", PathStatus::kOk, "/Az0-._~"},
      {"/a%2fb", PathStatus::kOk, "/a%2Fb"},
      {"/%3f%3F%25%00%ff", PathStatus::kOk, "/%3F%3F%25%00%FF"},
      {"/%2525", PathStatus::kOk, "/%2525"},  // decoded once only
      // Raw bytes above ASCII become the escapes a browser sends for them.
      {"/\xc3\xbc/x", PathStatus::kOk, "/%C3%BC/x"},
      {"/\xff", PathStatus::kOk, "/%FF"},
      // Dot segments, also when written as escapes.
      {"/a/./b", PathStatus::kOk, "/a/b"},
      {"/a/b/../c", PathStatus::kOk, "/a/c"},
      {"/a/%2e%2e/c", PathStatus::kOk, "/c"},
      {"/a/%2E/c", PathStatus::kOk, "/a/c"},
      {"/a/.%2e/c", PathStatus::kOk, "/c"},
      {"/a/...", PathStatus::kOk, "/a/..."},
      {"/a/..b/.c", PathStatus::kOk, "/a/..b/.c"},
      // Trailing slashes are kept.
      {"/a/b/", PathStatus::kOk, "/a/b/"},
      {"/a/b/..", PathStatus::kOk, "/a/"},
      {"/a/.", PathStatus::kOk, "/a/"},
      {"/a/..", PathStatus::kOk, "/"},
      {"/.", PathStatus::kOk, "/"},
      {"/./", PathStatus::kOk, "/"},
      // Slashes merge (NGINX's merge_slashes), before dot segments resolve.
      {"//a//b", PathStatus::kOk, "/a/b"},
      {"//api/x", PathStatus::kOk, "/api/x"},
      {"/a///", PathStatus::kOk, "/a/"},
      {"//", PathStatus::kOk, "/"},
      {"/a//../b", PathStatus::kOk, "/b"},
      {"/a/%2F/b", PathStatus::kOk, "/a/%2F/b"},  // an escaped slash is no separator
      // Nothing else collapses.
      {"/a/b.", PathStatus::kOk, "/a/b."},
      // Climbing above the root.
      {"/..", PathStatus::kEscapesRoot, ""},
      {"/../a", PathStatus::kEscapesRoot, ""},
      {"/a/../../b", PathStatus::kEscapesRoot, ""},
      {"/%2e%2e/etc/passwd", PathStatus::kEscapesRoot, ""},
      {"/a/%2E%2E/%2e%2e", PathStatus::kEscapesRoot, ""},
      // Invalid input.
      {"", PathStatus::kInvalid, ""},
      {"a/b", PathStatus::kInvalid, ""},
      {"/%G1", PathStatus::kInvalid, ""},
      {"/%4", PathStatus::kInvalid, ""},
      {"/%", PathStatus::kInvalid, ""},
      {"/a%4g", PathStatus::kInvalid, ""},
      {"/a b", PathStatus::kInvalid, ""},
      {"/a#b", PathStatus::kInvalid, ""},
      {"/a\x7f", PathStatus::kInvalid, ""},
      {"/a\tb", PathStatus::kInvalid, ""},
      {std::string_view("/a\0b", 4), PathStatus::kInvalid, ""},
  };
  for (const Case& c : cases) {
    INFO(c.raw);
    const NormalizedPath n = normalize_path(c.raw);
    CHECK(n.status == c.status);
    if (c.status == PathStatus::kOk) {
      CHECK(n.path == c.path);
      // Normalising is idempotent: what the proxy forwards normalises to itself.
      CHECK(normalize_path(n.path).path == n.path);
    }
  }
}

TEST_CASE("normalize_path into a kept buffer: the same answers, and no new buffer per path",
          "[routing][normalize]") {
  std::string out;
  REQUIRE(normalize_path("/api/users/42/./orders/../orders/%7Euser/", &out) == PathStatus::kOk);
  CHECK(out == "/api/users/42/orders/~user/");
  const char* buffer = out.data();
  const size_t capacity = out.capacity();
  // Later paths no longer than the first reuse its buffer, whatever they resolve to.
  CHECK(normalize_path("/a/b/../../c", &out) == PathStatus::kOk);
  CHECK(out == "/c");
  CHECK(normalize_path("/x/../..", &out) == PathStatus::kEscapesRoot);
  CHECK(out.empty());
  CHECK(normalize_path("/bad%zz", &out) == PathStatus::kInvalid);
  CHECK(out.empty());
  CHECK(normalize_path("/api/users/42/orders?", &out) == PathStatus::kOk);
  CHECK(out == "/api/users/42/orders?");
  CHECK(out.data() == buffer);
  CHECK(out.capacity() == capacity);
  // What the buffer held before never leaks into a shorter answer.
  CHECK(normalize_path("/", &out) == PathStatus::kOk);
  CHECK(out == "/");
}

TEST_CASE("upstream_path with and without strip_prefix", "[routing][upstream]") {
  struct Case {
    const char* prefix;
    bool strip;
    const char* path;
    const char* want;
  };
  const Case cases[] = {
      {"/api", true, "/api/users", "/users"},
      {"/api/", true, "/api/users", "/users"},
      {"/api", true, "/api", "/"},
      {"/api/", true, "/api/", "/"},
      {"/api", true, "/apix", "/x"},
      {"/", true, "/users", "/users"},
      {"/", true, "/", "/"},
      {"/api", true, "/api//x", "//x"},
      {"/api", false, "/api/users", "/api/users"},
      {"/", false, "/", "/"},
  };
  for (const Case& c : cases) {
    INFO(c.prefix << " " << c.strip << " " << c.path);
    Route route;
    route.prefix = c.prefix;
    route.options.strip_prefix = c.strip;
    CHECK(upstream_path(route, c.path) == c.want);
  }
}

}  // namespace
}  // namespace portico

// libFuzzer target for the route-file parser and what it feeds: RouteTable::parse, match() on
// the parsed table, normalize_path(). Beyond "no crash", it checks the properties the proxy
// relies on, so that a silent logic bug also stops the fuzzer:
//   - errors and table are exclusive; every error has a line and column >= 1;
//   - describe() re-parses to a table that describes itself identically;
//   - a matched route's prefix is a prefix of the path; normalize_path is idempotent and an
//     accepted path never contains a dot segment.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "routing/route_table.h"

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool has_dot_segment(std::string_view path) {
  size_t start = 0;
  while (start <= path.size()) {
    const size_t slash = path.find('/', start);
    const size_t end = slash == std::string_view::npos ? path.size() : slash;
    const std::string_view seg = path.substr(start, end - start);
    if (seg == "." || seg == "..") return true;
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return false;
}

void check_normalize(std::string_view raw) {
  const portico::NormalizedPath n = portico::normalize_path(raw);
  if (n.status != portico::PathStatus::kOk) return;
  check(!n.path.empty() && n.path.front() == '/');
  check(!has_dot_segment(n.path));
  const portico::NormalizedPath again = portico::normalize_path(n.path);
  check(again.status == portico::PathStatus::kOk && again.path == n.path);
}

void check_match(const portico::RouteTable& table, std::string_view host, std::string_view path) {
  const portico::Route* r = table.match(host, path);
  if (r == nullptr) return;
  check(path.starts_with(r->prefix));
  const std::string up = portico::upstream_path(*r, path);
  check(!up.empty() && up.front() == '/');
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_normalize(text);

  const portico::RouteParseResult result = portico::RouteTable::parse(text, "fuzz");
  check((result.table == nullptr) == !result.errors.empty());
  for (const portico::RouteError& e : result.errors) {
    check(e.line >= 1 && e.column >= 1);
  }
  if (result.table == nullptr) return 0;

  const portico::RouteTable& table = *result.table;
  for (const portico::Route& r : table.routes()) {
    check(!r.backends.empty() && !r.prefix.empty() && r.prefix.front() == '/');
    // Each route must be reachable through its own host and prefix.
    std::string host = r.host;
    if (host.starts_with("*.")) host = "x" + host.substr(1);
    check(table.match(host, r.prefix) != nullptr);
    check_match(table, host, r.prefix + "x/y");
  }
  static constexpr std::string_view kHosts[] = {
      "",
      "example.com",
      "API.Example.com:8443",
      "a.b.example.com.",
      "[::1]:80",
      "[::1",
      "10.0.0.1",
      "localhost",
      ":80",
      "a..b",
  };
  static constexpr std::string_view kPaths[] = {"/", "/api", "/api/", "/api/x", "//", "/%2F"};
  for (std::string_view host : kHosts) {
    for (std::string_view path : kPaths) check_match(table, host, path);
  }

  const std::string described = table.describe();
  const portico::RouteParseResult again = portico::RouteTable::parse(described, "described");
  check(again.table != nullptr && again.table->routes().size() == table.routes().size());
  check(again.table->describe() == described);
  return 0;
}

#pragma once

// The route table: pure data and pure functions (no I/O, no libuv, no OpenSSL, no globals),
// so that every rule is unit-tested on its own. A reload parses a new table and swaps a
// shared_ptr<const RouteTable>; requests keep the table they started with.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico {

// A backend URL from the route file: http://host:port, or https://host:port (TLS to the backend).
struct BackendAddress {
  std::string scheme;  // "http" or "https"
  std::string host;    // IPv6 without brackets; a name is resolved asynchronously at connect time
  uint16_t port = 0;   // default 80 / 443 when the URL has none
  bool host_is_ip = false;

  // "host:port", or "[v6]:port": the key of the upstream pool and what logs show.
  std::string authority() const;
  // What logs and metrics call the backend: the authority, after "https://" for a TLS one.
  std::string label() const;
};

enum class BalancePolicy { kRoundRobin, kLeastConn, kIpHash, kCookie };
enum class UpgradePolicy { kAllow, kOnly, kNever };

struct RouteOptions {
  bool strip_prefix = false;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds read_timeout{60000};  // backend response (and body idle) timeout
  std::chrono::milliseconds ws_idle{30000};       // ping an idle WebSocket client after this
  uint64_t max_body = 0;                          // bytes; 0 = unlimited
  uint64_t max_ws_message = 1 << 20;              // bytes
  std::vector<std::string> origins;               // extra allowed WebSocket origins; "*" = any
  UpgradePolicy upgrade = UpgradePolicy::kAllow;
  BalancePolicy balance = BalancePolicy::kRoundRobin;
  // CA bundle (PEM) that the route's https:// backends must chain to; "" = the system CAs.
  // As written in the route file: a relative path is relative to the route file's directory.
  std::string ca_file;
};

struct Route {
  std::string host;    // "" = any host; "api.example.com"; "*.example.com" (lower case)
  std::string prefix;  // always starts with '/'
  std::vector<BackendAddress> backends;  // at least one
  RouteOptions options;
  int line = 0;  // line in the route file, for logs and --check
};

struct RouteError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string to_string() const;  // "FILE:LINE:COL: message"
};

class RouteTable;

struct RouteParseResult {
  std::shared_ptr<const RouteTable> table;  // null when errors is not empty
  std::vector<RouteError> errors;           // every error found, in file order
};

class RouteTable {
 public:
  // Parses a route file's text. `file_name` is used only in error messages.
  static RouteParseResult parse(std::string_view text, std::string_view file_name);

  // The route for a request. `host` is the Host header value (any case, may carry ":port",
  // IPv6 in brackets); `normalized_path` comes from normalize_path(). Routes whose host matches
  // (exact first, then the longest wildcard) win over host-less ones; within them the longest
  // prefix wins. Returns null when nothing matches.
  const Route* match(std::string_view host, std::string_view normalized_path) const;

  const std::vector<Route>& routes() const { return routes_; }

  // The effective table, one normalised line per route, as `portico --check` prints it.
  std::string describe() const;

 private:
  // The match index, built once by parse() so that match() neither scans every route nor
  // allocates: route indices grouped by host class, each group ordered by prefix length
  // (longest first). Indices, not pointers, so that copying a table keeps it valid.
  struct HostGroup {
    std::string host;  // exact: "api.example.com"; wildcard: ".example.com" (the "*" dropped)
    std::vector<uint32_t> routes;
  };
  void build_index();
  const Route* match_group(const std::vector<uint32_t>& group, std::string_view path) const;

  std::vector<Route> routes_;
  std::vector<HostGroup> exact_hosts_;     // sorted by host
  std::vector<HostGroup> wildcard_hosts_;  // sorted by host
  std::vector<uint32_t> any_host_;
};

// Request-target path normalisation (RFC 3986 section 6.2.2): percent-decoding of unreserved
// characters only, upper-case hex in the remaining escapes, "." and ".." segments resolved.
// A path that climbs above "/" is rejected (the proxy answers 400).
enum class PathStatus { kOk, kEscapesRoot, kInvalid };
struct NormalizedPath {
  PathStatus status = PathStatus::kInvalid;
  std::string path;
};
// `raw_path` is the path part of an origin-form target (no query); it must start with '/'.
NormalizedPath normalize_path(std::string_view raw_path);
// The same into `out` (replacing what it held; empty unless kOk), for a caller that reuses one
// buffer for every request: it allocates only when a path is longer than any before it.
PathStatus normalize_path(std::string_view raw_path, std::string* out);
// A byte no request target may carry raw: a control, SP or DEL (RFC 3986 has no place for them;
// llhttp lets HTAB and FF through). normalize_path refuses them in a path.
inline bool is_forbidden_target_byte(unsigned char byte) { return byte < 0x21 || byte == 0x7F; }
// Appends `byte` as "%XX" with upper-case hex, the form normalize_path leaves escapes in.
void append_percent_escape(std::string* out, unsigned char byte);

// The path to send upstream: with strip_prefix the route's prefix is removed (keeping a
// leading '/'), otherwise the normalised path unchanged.
std::string upstream_path(const Route& route, std::string_view normalized_path);
// The same, appended to `out`.
void append_upstream_path(const Route& route, std::string_view normalized_path, std::string* out);

// Empty when `name` is a valid DNS host name (RFC 1123: labels of letters, digits and '-', not
// at either end, 1-63 long, 253 in all); otherwise what is wrong with it.
std::string check_dns_name(std::string_view name);

// Parses "http://host:port" style backend URLs (used by the route file parser).
std::optional<BackendAddress> parse_backend_url(std::string_view url, std::string* error);

// Durations "250ms", "5s", "2m", "1h"; sizes "512", "64k", "10m", "1g" (binary units).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
std::optional<uint64_t> parse_size(std::string_view text);

}  // namespace portico

// The route-file parser: RouteTable::parse and the value parsers it uses.
//
// Grammar (one route per line; bytes, not characters; columns in errors are 1-based bytes):
//
//   file     = *( line ( LF / EOF ) )           ; a leading UTF-8 BOM is skipped
//   line     = *WS [ route ] *WS [ comment ] [ CR ]
//   comment  = "#" *any                          ; only at line start or after whitespace:
//                                                ; "#" inside a field is part of the field
//   route    = pattern 1*( 1*WS backend ) *( 1*WS option )
//   pattern  = [ host ] prefix
//   host     = dns-name / "*." dns-name / ipv4 / "[" ipv6 "]"   ; no port; stored lower-case
//   prefix   = "/" ...                           ; must equal normalize_path(prefix)
//   backend  = ( "http" / "https" ) "://" ( dns-name / ipv4 / "[" ipv6 "]" ) [ ":" port ] [ "/" ]
//   option   = "strip_prefix" [ "=" ( "on" / "off" ) ]
//            / ( "connect_timeout" / "read_timeout" / "ws_idle" ) "=" duration
//            / ( "max_body" / "max_ws_message" ) "=" size
//            / "origins=" ( "-" / origin *( "," origin ) )    ; "-" = none (what describe() prints)
//            / "upgrade=" ( "allow" / "only" / "never" )
//            / "balance=" ( "round_robin" / "least_conn" / "ip_hash" / "cookie" )
//            / "ca=" path        ; PEM CA bundle for the route's https:// backends
//   origin   = "*" / [ ( "http" / "https" ) "://" ] host-or-ip [ ":" port ]
//   duration = 1*DIGIT ( "ms" / "s" / "m" / "h" )  ; > 0 and <= 24h
//   size     = 1*DIGIT [ "k" / "m" / "g" ]         ; binary units, any case
//   WS       = SP / HTAB
//
// A field is an option when it starts with a key ([A-Za-z0-9_-]+) followed by "=" or the end of
// the field ("http://..." cannot: ':' is not a key character); anything else is a backend URL.
// Backends come first: once an option has appeared, a backend on the same line is an error (keeps
// lines easy to scan and makes a misplaced URL a loud mistake rather than a silent one).
//
// Other control characters (anything below 0x20 except HTAB, and 0x7F), also in comments, are
// errors. Every error is collected; parsing resumes on the next line. A line with errors
// defines no route. A second route with the same host and prefix is an error (it could never
// be reached). A file without any route line and without other errors gets "no routes
// defined" at 1:1.

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <limits>
#include <map>
#include <utility>

#include "routing/route_table.h"

namespace portico {

namespace {

constexpr uint64_t kMaxDurationMs = 24ULL * 3600 * 1000;

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

bool is_ipv4(std::string_view s) {
  int parts = 0;
  size_t i = 0;
  while (true) {
    size_t j = i;
    while (j < s.size() && is_digit(s[j])) ++j;
    const size_t len = j - i;
    // Leading zeros are refused: inet_aton() would read them as octal.
    if (len == 0 || len > 3 || (len > 1 && s[i] == '0')) return false;
    if (std::stoi(std::string(s.substr(i, len))) > 255) return false;
    ++parts;
    if (j == s.size()) break;
    if (s[j] != '.' || parts == 4) return false;
    i = j + 1;
  }
  return parts == 4;
}

bool is_ipv6(std::string_view s) {
  int groups = 0;
  bool double_colon = false;
  size_t i = 0;
  if (s.starts_with("::")) {
    double_colon = true;
    i = 2;
  } else if (s.starts_with(":") || s.empty()) {
    return false;
  }
  while (i < s.size()) {
    size_t j = i;
    while (j < s.size() && is_hex(s[j])) ++j;
    if (j < s.size() && s[j] == '.') {  // an embedded IPv4 address ends the literal
      if (!is_ipv4(s.substr(i))) return false;
      groups += 2;
      break;
    }
    if (j == i || j - i > 4) return false;
    ++groups;
    i = j;
    if (i == s.size()) break;
    if (s[i] != ':') return false;
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (double_colon) return false;
      double_colon = true;
      ++i;
    } else if (i == s.size()) {
      return false;  // a single trailing colon
    }
  }
  return double_colon ? groups <= 7 : groups == 8;
}

// A host as written in a URL or route: DNS name, IPv4 literal or bracketed IPv6 literal,
// without port. Empty string when valid.
std::string check_host(std::string_view host, bool* is_ip) {
  *is_ip = false;
  if (host.empty()) return "host is empty";
  if (host.front() == '[') {
    if (host.size() < 2 || host.back() != ']' || !is_ipv6(host.substr(1, host.size() - 2))) {
      return "invalid IPv6 literal";
    }
    *is_ip = true;
    return "";
  }
  if (std::all_of(host.begin(), host.end(), [](char c) { return is_digit(c) || c == '.'; })) {
    if (!is_ipv4(host)) return "invalid IPv4 address";
    *is_ip = true;
    return "";
  }
  return check_dns_name(host);
}

// "[v6]" written the way clients write it (RFC 5952: lower case, zeros compressed, as
// inet_ntop does); "" when `host` is not a bracketed IPv6 literal.
std::string canonical_ipv6_host(std::string_view host) {
  if (host.size() < 3 || host.front() != '[' || host.back() != ']') return "";
  const std::string literal(host.substr(1, host.size() - 2));
  in6_addr address{};
  char text[INET6_ADDRSTRLEN];
  if (inet_pton(AF_INET6, literal.c_str(), &address) != 1 ||
      inet_ntop(AF_INET6, &address, text, sizeof text) == nullptr) {
    return "";
  }
  return "[" + std::string(text) + "]";
}

// Splits "host[:port]" / "[v6][:port]". Empty string when valid; `port` is 0 when absent.
std::string split_authority(std::string_view authority, std::string_view* host, uint32_t* port,
                            bool* has_port) {
  std::string_view port_text;
  *has_port = false;
  *port = 0;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 literal";
    *host = authority.substr(0, close + 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "unexpected characters after the IPv6 literal";
      *has_port = true;
      port_text = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != std::string_view::npos &&
        authority.find(':', colon + 1) != std::string_view::npos) {
      return "an IPv6 address must be in brackets";
    }
    *host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      *has_port = true;
      port_text = authority.substr(colon + 1);
    }
  }
  if (*has_port) {
    if (port_text.empty() || port_text.size() > 5 ||
        !std::all_of(port_text.begin(), port_text.end(), is_digit)) {
      return "port must be a number 1-65535";
    }
    *port = static_cast<uint32_t>(std::stoul(std::string(port_text)));
    if (*port < 1 || *port > 65535) return "port must be a number 1-65535";
  }
  return "";
}

std::optional<std::chrono::milliseconds> duration_or_error(std::string_view text,
                                                           std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<std::chrono::milliseconds> {
    if (error != nullptr) *error = std::move(msg);
    return std::nullopt;
  };
  size_t i = 0;
  uint64_t value = 0;
  bool too_big = false;
  while (i < text.size() && is_digit(text[i])) {
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
    if (value > kMaxDurationMs) {
      too_big = true;
      value = kMaxDurationMs + 1;  // stays small enough that the multiplication cannot overflow
    }
    ++i;
  }
  if (i == 0) return fail("duration must start with a number (like 5s)");
  const std::string_view unit = text.substr(i);
  uint64_t factor = 0;
  if (unit.empty()) return fail("duration needs a unit (ms, s, m, h)");
  if (unit == "ms") {
    factor = 1;
  } else if (unit == "s") {
    factor = 1000;
  } else if (unit == "m") {
    factor = 60 * 1000;
  } else if (unit == "h") {
    factor = 3600 * 1000;
  } else {
    return fail("unknown duration unit " + quoted(unit) + " (use ms, s, m or h)");
  }
  if (value == 0) return fail("duration must be greater than 0");
  if (too_big || value * factor > kMaxDurationMs) return fail("duration must be at most 24h");
  return std::chrono::milliseconds(static_cast<int64_t>(value * factor));
}

std::optional<uint64_t> size_or_error(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<uint64_t> {
    if (error != nullptr) *error = std::move(msg);
    return std::nullopt;
  };
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  size_t i = 0;
  uint64_t value = 0;
  while (i < text.size() && is_digit(text[i])) {
    const auto d = static_cast<uint64_t>(text[i] - '0');
    if (value > (kMax - d) / 10) return fail("size is too large");
    value = value * 10 + d;
    ++i;
  }
  if (i == 0) return fail("size must start with a number (like 64k)");
  const std::string unit = lower(text.substr(i));
  uint64_t factor = 1;
  if (unit == "k") {
    factor = 1ULL << 10;
  } else if (unit == "m") {
    factor = 1ULL << 20;
  } else if (unit == "g") {
    factor = 1ULL << 30;
  } else if (!unit.empty()) {
    return fail("unknown size unit " + quoted(text.substr(i)) + " (use k, m or g, or none)");
  }
  if (value > kMax / factor) return fail("size is too large");
  return value * factor;
}

// Empty string when valid.
std::string check_origin(std::string_view origin) {
  if (origin == "*") return "";
  std::string_view authority = origin;
  const size_t sep = origin.find("://");
  if (sep != std::string_view::npos) {
    const std::string scheme = lower(origin.substr(0, sep));
    if (scheme != "http" && scheme != "https") return "origin scheme must be http or https";
    authority = origin.substr(sep + 3);
  }
  if (authority.find_first_of("/?#@") != std::string_view::npos) {
    return "an origin is scheme://host[:port] only, without path";
  }
  std::string_view host;
  uint32_t port = 0;
  bool has_port = false;
  bool is_ip = false;
  std::string err = split_authority(authority, &host, &port, &has_port);
  if (err.empty()) {
    err = check_host(host, &is_ip);
  }
  return err;
}

struct Field {
  std::string_view text;
  int column = 0;
};

constexpr std::array<std::string_view, 10> kOptionKeys = {
    "strip_prefix",   "connect_timeout", "read_timeout", "ws_idle", "max_body",
    "max_ws_message", "origins",         "upgrade",      "balance", "ca"};

std::string valid_option_list() {
  std::string out;
  for (std::string_view k : kOptionKeys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

bool is_option_field(std::string_view f) {
  const size_t eq = std::min(f.find('='), f.size());
  if (eq == 0) return false;
  return std::all_of(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(eq),
                     [](char c) { return is_alpha(c) || is_digit(c) || c == '_' || c == '-'; });
}

// `prefix` with '?' written as %3F, as a request path carries it.
std::string escape_unmatchable(std::string_view prefix) {
  std::string out;
  for (char c : prefix) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '?') {
      append_percent_escape(&out, u);
    } else {
      out += c;
    }
  }
  return out;
}

// Parses one line's fields into `route`; reports through `error(column, message)`.
template <typename ErrorFn>
void parse_route_fields(const std::vector<Field>& fields, Route& route, ErrorFn&& error) {
  const Field& pattern = fields[0];
  const size_t slash = pattern.text.find('/');
  if (pattern.text.find("://") != std::string_view::npos) {
    // A URL pasted where the route's host and path go: what follows would read as a host with
    // a port, then a prefix starting with "//", two errors that say nothing of the mistake.
    error(pattern.column, "route " + quoted(pattern.text) +
                              " is a URL: a route is a path prefix (/api/) or a host and one"
                              " (example.com/), without a scheme; the backend URL comes after it");
    return;
  }
  if (slash == std::string_view::npos) {
    error(pattern.column,
          "route " + quoted(pattern.text) +
              " needs a path prefix starting with \"/\" (like example.com/ or /api)");
  } else {
    const std::string_view host = pattern.text.substr(0, slash);
    const std::string_view prefix = pattern.text.substr(slash);
    const int prefix_column = pattern.column + static_cast<int>(slash);
    if (!host.empty()) {
      bool is_ip = false;
      const size_t close = host.find(']');
      const bool bracket_port =
          host.front() == '[' && close + 1 < host.size() && host[close + 1] == ':';
      const size_t colons = static_cast<size_t>(std::count(host.begin(), host.end(), ':'));
      if (host.starts_with("*.")) {
        const std::string err = check_dns_name(host.substr(2));
        if (host.find(':') != std::string_view::npos) {
          error(pattern.column, "route host must not have a port");
        } else if (!err.empty()) {
          error(pattern.column, "invalid route host " + quoted(host) + ": " + err);
        }
      } else if (host.find('*') != std::string_view::npos) {
        error(pattern.column, "a wildcard route host must start with \"*.\" (like *.example.com)");
      } else if (host.front() != '[' && colons > 1) {
        error(pattern.column, "an IPv6 route host must be in brackets");
      } else if (bracket_port || (host.front() != '[' && colons == 1)) {
        error(pattern.column, "route host must not have a port");
      } else if (std::string err = check_host(host, &is_ip); !err.empty()) {
        error(pattern.column, "invalid route host " + quoted(host) + ": " + err);
      } else if (std::string canonical = canonical_ipv6_host(host);
                 !canonical.empty() && canonical != lower(host)) {
        // Hosts are compared as text, and clients write an IPv6 address in its RFC 5952 form.
        error(pattern.column, "IPv6 route host " + quoted(host) +
                                  " is not in the form clients send (write " + quoted(canonical) +
                                  ")");
      }
      route.host = lower(host);
    }
    const NormalizedPath norm = normalize_path(prefix);
    if (norm.status == PathStatus::kEscapesRoot) {
      error(prefix_column, "prefix " + quoted(prefix) + " climbs above \"/\"");
    } else if (norm.status != PathStatus::kOk) {
      error(prefix_column, "prefix " + quoted(prefix) +
                               " is invalid (bad %-escape, space, control character or '#')");
    } else if (norm.path != prefix) {
      error(prefix_column,
            "prefix " + quoted(prefix) + " is not normalised (means " + quoted(norm.path) + ")");
    } else if (std::string escaped = escape_unmatchable(prefix); escaped != prefix) {
      // A request's path never holds '?' (the query starts there): such a prefix would never
      // match. (Bytes beyond ASCII are escaped by normalisation, above.)
      error(prefix_column, "prefix " + quoted(prefix) + " can never match a request path; write " +
                               quoted(escaped));
    }
    route.prefix = std::string(prefix);
  }

  size_t k = 1;
  int slash_backend_column = 0;  // the first backend URL written with a trailing "/"
  for (; k < fields.size() && !is_option_field(fields[k].text); ++k) {
    std::string err;
    if (auto backend = parse_backend_url(fields[k].text, &err)) {
      route.backends.push_back(std::move(*backend));
      if (fields[k].text.ends_with('/') && slash_backend_column == 0) {
        slash_backend_column = fields[k].column;
      }
    } else {
      error(fields[k].column, err);
    }
  }
  if (k == 1) {
    error(pattern.column, "route needs at least one backend URL (like http://127.0.0.1:8080)");
  }

  std::array<bool, kOptionKeys.size()> seen{};
  RouteOptions& o = route.options;
  for (; k < fields.size(); ++k) {
    const Field& f = fields[k];
    if (!is_option_field(f.text)) {
      error(f.column, "backend URL after options; list backends before options");
      continue;
    }
    const size_t eq = f.text.find('=');
    const std::string_view key = f.text.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view value = has_value ? f.text.substr(eq + 1) : std::string_view();
    const auto key_it = std::find(kOptionKeys.begin(), kOptionKeys.end(), key);
    if (key_it == kOptionKeys.end()) {
      error(f.column, "unknown option " + quoted(key) + "; valid options: " + valid_option_list());
      continue;
    }
    const auto key_index = static_cast<size_t>(key_it - kOptionKeys.begin());
    if (seen[key_index]) {
      error(f.column, "duplicate option " + quoted(key));
      continue;
    }
    seen[key_index] = true;
    // "ca=" with nothing after it is no value either: taken as "no CA file" it would trust the
    // system CAs, which an operator who wrote ca= did not mean.
    if ((!has_value || value.empty()) && key != "strip_prefix") {
      error(f.column, "option " + quoted(key) + " needs a value (" + std::string(key) + "=...)");
      continue;
    }
    const std::string bad = "invalid " + std::string(key) + " " + quoted(value) + ": ";
    std::string err;
    if (key == "strip_prefix") {
      if (!has_value || value == "on") {
        o.strip_prefix = true;
      } else if (value == "off") {
        o.strip_prefix = false;
      } else {
        error(f.column, bad + "must be on or off");
      }
    } else if (key == "connect_timeout" || key == "read_timeout" || key == "ws_idle") {
      if (auto d = duration_or_error(value, &err)) {
        (key == "connect_timeout" ? o.connect_timeout
         : key == "read_timeout"  ? o.read_timeout
                                  : o.ws_idle) = *d;
      } else {
        error(f.column, bad + err);
      }
    } else if (key == "max_body" || key == "max_ws_message") {
      auto size = size_or_error(value, &err);
      if (!size) {
        error(f.column, bad + err);
      } else if (key == "max_body") {
        o.max_body = *size;  // 0 = unlimited
      } else if (*size == 0) {
        error(f.column, bad + "must be greater than 0");
      } else {
        o.max_ws_message = *size;
      }
    } else if (key == "origins") {
      if (value == "-") continue;
      size_t start = 0;
      while (true) {
        const size_t comma = std::min(value.find(',', start), value.size());
        const std::string_view origin = value.substr(start, comma - start);
        if (origin.empty()) {
          error(f.column, bad + "empty origin in the list");
          break;
        }
        if (std::string oerr = check_origin(origin); !oerr.empty()) {
          error(f.column, bad + quoted(origin) + ": " + oerr);
          break;
        }
        o.origins.push_back(lower(origin));
        if (comma == value.size()) break;
        start = comma + 1;
      }
    } else if (key == "upgrade") {
      if (value == "allow") {
        o.upgrade = UpgradePolicy::kAllow;
      } else if (value == "only") {
        o.upgrade = UpgradePolicy::kOnly;
      } else if (value == "never") {
        o.upgrade = UpgradePolicy::kNever;
      } else {
        error(f.column, bad + "must be allow, only or never");
      }
    } else if (key == "balance") {
      if (value == "round_robin") {
        o.balance = BalancePolicy::kRoundRobin;
      } else if (value == "least_conn") {
        o.balance = BalancePolicy::kLeastConn;
      } else if (value == "ip_hash") {
        o.balance = BalancePolicy::kIpHash;
      } else if (value == "cookie") {
        o.balance = BalancePolicy::kCookie;
      } else {
        error(f.column, bad + "must be round_robin, least_conn, ip_hash or cookie");
      }
    } else if (key == "ca") {
      // Read (and checked) when the configuration is loaded; here only where it may appear.
      if (std::none_of(route.backends.begin(), route.backends.end(),
                       [](const BackendAddress& b) { return b.scheme == "https"; })) {
        error(f.column, "ca= applies to https:// backends, and this route has none");
      } else {
        o.ca_file = std::string(value);
      }
    }
  }
  // NGINX's `location /api/ { proxy_pass http://b/; }` strips the prefix, because of that
  // last "/"; here the path goes on whole unless strip_prefix says otherwise. Written from that
  // habit without strip_prefix, the line means one thing to its author and another to portico.
  const auto strip_key = static_cast<size_t>(
      std::find(kOptionKeys.begin(), kOptionKeys.end(), "strip_prefix") - kOptionKeys.begin());
  if (slash_backend_column != 0 && route.prefix != "/" && !seen[strip_key]) {
    error(slash_backend_column,
          "backend URL ends with \"/\", which in NGINX's proxy_pass strips the prefix: write"
          " strip_prefix to strip it, or drop the \"/\" to forward the path whole");
  }
  // The sticky cookie's Path is the prefix, and in a cookie ';' ends the value (RFC 6265 4.1.1):
  // "/a;Domain=x/" would set a Domain.
  if (o.balance == BalancePolicy::kCookie && route.prefix.find(';') != std::string::npos) {
    error(pattern.column, "balance=cookie needs a prefix without ';' (it is the cookie's Path)");
  }
}

}  // namespace

std::string check_dns_name(std::string_view name) {
  if (name.size() > 253) return "host name is longer than 253 characters";
  if (name.size() > 1 && name.back() == '.') {
    return "host name ends with '.': write it without";
  }
  if (std::any_of(name.begin(), name.end(), [](char c) { return (c & 0x80) != 0; })) {
    return "host name is not ASCII: write its IDNA form (xn--...), which clients send";
  }
  size_t start = 0;
  while (true) {
    const size_t dot = std::min(name.find('.', start), name.size());
    const std::string_view label = name.substr(start, dot - start);
    if (label.empty()) return "host name has an empty label";
    if (label.size() > 63) return "host name label is longer than 63 characters";
    for (char c : label) {
      // '_' too, as NGINX takes it: Docker Compose service names may have one.
      if (!is_alpha(c) && !is_digit(c) && c != '-' && c != '_') {
        return "host name has an invalid character (allowed: letters, digits, '-', '_', '.')";
      }
    }
    if (label.front() == '-' || label.back() == '-') {
      return "host name label must not start or end with '-'";
    }
    if (dot == name.size()) return "";
    start = dot + 1;
  }
}

std::optional<BackendAddress> parse_backend_url(std::string_view url, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<BackendAddress> {
    if (error != nullptr) *error = std::move(msg);
    return std::nullopt;
  };
  BackendAddress out;
  const size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    if (const size_t colon = url.find(':');
        colon != std::string_view::npos &&
        (lower(url.substr(0, colon)) == "http" || lower(url.substr(0, colon)) == "https")) {
      return fail("backend URL " + quoted(url) + " needs \"://\" after its scheme");
    }
    return fail("backend URL " + quoted(url) +
                " needs a scheme: http://HOST:PORT or https://HOST[:PORT]");
  }
  const std::string_view scheme = url.substr(0, sep);
  if (scheme == "http") {
    out.port = 80;
  } else if (scheme == "https") {
    out.port = 443;
  } else if (lower(scheme) == "http" || lower(scheme) == "https") {
    return fail("backend URL scheme must be lower-case http or https");
  } else {
    return fail("unsupported backend URL scheme " + quoted(scheme) + "; use http or https");
  }
  out.scheme = std::string(scheme);
  const std::string_view rest = url.substr(sep + 3);
  const size_t end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, end);
  const std::string_view tail = rest.substr(end);
  if (!tail.empty() && tail != "/") {
    if (tail.front() == '/' && tail[1] != '?' && tail[1] != '#') {
      return fail("backend URL must not have a path; use strip_prefix");
    }
    if (tail.find('?') != std::string_view::npos) return fail("backend URL must not have a query");
    return fail("backend URL must not have a fragment");
  }
  if (authority.find('@') != std::string_view::npos) {
    return fail("backend URL must not have userinfo");
  }
  std::string_view host;
  uint32_t port = 0;
  bool has_port = false;
  if (std::string err = split_authority(authority, &host, &port, &has_port); !err.empty()) {
    return fail("backend URL " + quoted(url) + ": " + err);
  }
  if (std::string err = check_host(host, &out.host_is_ip); !err.empty()) {
    return fail("invalid backend host " + quoted(host) + ": " + err);
  }
  if (has_port) out.port = static_cast<uint16_t>(port);
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  out.host = lower(host);
  return out;
}

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  return duration_or_error(text, nullptr);
}

std::optional<uint64_t> parse_size(std::string_view text) { return size_or_error(text, nullptr); }

RouteParseResult RouteTable::parse(std::string_view text, std::string_view file_name) {
  RouteParseResult result;
  std::vector<Route> routes;
  std::map<std::pair<std::string, std::string>, int> first_line;  // (host, prefix) -> line
  bool any_route_line = false;
  auto add_error = [&](int line, int column, std::string message) {
    result.errors.push_back(RouteError{std::string(file_name), line, column, std::move(message)});
  };

  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  int line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    ++line_no;
    const size_t nl = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    const auto bad = std::find_if(line.begin(), line.end(), [](char c) {
      return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7F;
    });
    if (bad != line.end()) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const auto c = static_cast<unsigned char>(*bad);
      add_error(
          line_no, static_cast<int>(bad - line.begin()) + 1,
          std::string("control character 0x") + kHex[c >> 4] + kHex[c & 0xF] + " is not allowed");
      continue;
    }

    std::vector<Field> fields;
    for (size_t i = 0; i < line.size();) {
      if (line[i] == ' ' || line[i] == '\t') {
        ++i;
        continue;
      }
      if (line[i] == '#') break;
      const size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      fields.push_back(Field{line.substr(start, i - start), static_cast<int>(start) + 1});
    }
    if (fields.empty()) continue;
    any_route_line = true;

    Route route;
    route.line = line_no;
    bool ok = true;
    parse_route_fields(fields, route, [&](int column, std::string message) {
      ok = false;
      add_error(line_no, column, std::move(message));
    });
    if (!ok) continue;
    auto [it, inserted] = first_line.try_emplace({route.host, route.prefix}, line_no);
    if (!inserted) {
      add_error(line_no, fields[0].column,
                "duplicate route " + quoted(route.host + route.prefix) +
                    " (first defined on line " + std::to_string(it->second) + ")");
      continue;
    }
    routes.push_back(std::move(route));
  }

  if (!any_route_line && result.errors.empty()) {
    add_error(1, 1, "no routes defined");
  }
  // Within a line, checks run field by field but "needs a backend" points back at the pattern.
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const RouteError& a, const RouteError& b) {
                     return a.line != b.line ? a.line < b.line : a.column < b.column;
                   });
  if (result.errors.empty()) {
    auto table = std::make_shared<RouteTable>();
    table->routes_ = std::move(routes);
    table->build_index();
    result.table = std::move(table);
  }
  return result;
}

}  // namespace portico

// The route table at request time: matching, path normalisation and the --check description.
// The route-file parser lives in route_file.cc.

#include "routing/route_table.h"

#include <algorithm>
#include <cstddef>

namespace portico {

namespace {

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Three-way comparison of a request host (any case) with a stored, lower-case host, without
// building a lowered copy: the hot path must not allocate.
int compare_host(std::string_view request, std::string_view stored) {
  const size_t n = std::min(request.size(), stored.size());
  for (size_t i = 0; i < n; ++i) {
    const auto a = static_cast<unsigned char>(ascii_lower(request[i]));
    const auto b = static_cast<unsigned char>(stored[i]);
    if (a != b) {
      return a < b ? -1 : 1;
    }
  }
  if (request.size() == stored.size()) {
    return 0;
  }
  return request.size() < stored.size() ? -1 : 1;
}

template <typename Group>
const Group* find_group(const std::vector<Group>& groups, std::string_view host) {
  auto it = std::lower_bound(
      groups.begin(), groups.end(), host,
      [](const Group& g, std::string_view h) { return compare_host(h, g.host) > 0; });
  if (it != groups.end() && compare_host(host, it->host) == 0) {
    return &*it;
  }
  return nullptr;
}

// The host part of a Host header value: without ":port", without one trailing dot. Brackets of
// an IPv6 literal are kept, because route hosts store them too.
std::string_view request_host(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    const size_t close = host.find(']');
    // An unterminated literal matches no host route; host-less routes still apply.
    return close == std::string_view::npos ? std::string_view() : host.substr(0, close + 1);
  }
  const size_t colon = host.find(':');
  if (colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  if (!host.empty() && host.back() == '.') {
    host.remove_suffix(1);
  }
  return host;
}

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The largest unit that represents the value exactly, so that describe() output is short and
// parses back to the same value.
std::string format_duration(std::chrono::milliseconds d) {
  const long long ms = d.count();
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::string format_size(uint64_t bytes) {
  constexpr uint64_t kK = 1024;
  if (bytes != 0 && bytes % (kK * kK * kK) == 0)
    return std::to_string(bytes / (kK * kK * kK)) + "g";
  if (bytes != 0 && bytes % (kK * kK) == 0) return std::to_string(bytes / (kK * kK)) + "m";
  if (bytes != 0 && bytes % kK == 0) return std::to_string(bytes / kK) + "k";
  return std::to_string(bytes);
}

const char* upgrade_name(UpgradePolicy p) {
  switch (p) {
    case UpgradePolicy::kAllow:
      return "allow";
    case UpgradePolicy::kOnly:
      return "only";
    case UpgradePolicy::kNever:
      return "never";
  }
  return "allow";
}

const char* balance_name(BalancePolicy p) {
  switch (p) {
    case BalancePolicy::kRoundRobin:
      return "round_robin";
    case BalancePolicy::kLeastConn:
      return "least_conn";
    case BalancePolicy::kIpHash:
      return "ip_hash";
    case BalancePolicy::kCookie:
      return "cookie";
  }
  return "round_robin";
}

}  // namespace

std::string BackendAddress::authority() const {
  if (host.find(':') != std::string::npos) {
    return "[" + host + "]:" + std::to_string(port);
  }
  return host + ":" + std::to_string(port);
}

std::string BackendAddress::label() const {
  return scheme == "https" ? "https://" + authority() : authority();
}

std::string RouteError::to_string() const {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

void RouteTable::build_index() {
  exact_hosts_.clear();
  wildcard_hosts_.clear();
  any_host_.clear();
  for (uint32_t i = 0; i < routes_.size(); ++i) {
    const std::string& host = routes_[i].host;
    if (host.empty()) {
      any_host_.push_back(i);
      continue;
    }
    const bool wildcard = host.size() > 1 && host[0] == '*' && host[1] == '.';
    std::vector<HostGroup>& groups = wildcard ? wildcard_hosts_ : exact_hosts_;
    const std::string key = wildcard ? host.substr(1) : host;
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const HostGroup& g) { return g.host == key; });
    if (it == groups.end()) {
      groups.push_back(HostGroup{key, {}});
      it = groups.end() - 1;
    }
    it->routes.push_back(i);
  }
  // Longest prefix first: the first prefix that matches is then the longest one. Distinct
  // prefixes of equal length cannot both match one path, so ties need no further order.
  auto by_prefix_length = [this](uint32_t a, uint32_t b) {
    return routes_[a].prefix.size() > routes_[b].prefix.size();
  };
  auto by_host = [](const HostGroup& a, const HostGroup& b) { return a.host < b.host; };
  for (auto* groups : {&exact_hosts_, &wildcard_hosts_}) {
    std::sort(groups->begin(), groups->end(), by_host);
    for (HostGroup& g : *groups) {
      std::stable_sort(g.routes.begin(), g.routes.end(), by_prefix_length);
    }
  }
  std::stable_sort(any_host_.begin(), any_host_.end(), by_prefix_length);
}

const Route* RouteTable::match_group(const std::vector<uint32_t>& group,
                                     std::string_view path) const {
  for (uint32_t i : group) {
    if (path.starts_with(routes_[i].prefix)) {
      return &routes_[i];
    }
  }
  return nullptr;
}

const Route* RouteTable::match(std::string_view host, std::string_view normalized_path) const {
  const std::string_view name = request_host(host);
  if (!name.empty()) {
    if (const HostGroup* g = find_group(exact_hosts_, name)) {
      if (const Route* r = match_group(g->routes, normalized_path)) {
        return r;
      }
    }
    // Each dot (not the first character: a label must precede it) starts a candidate
    // wildcard suffix; scanning from the left tries the longest suffix first.
    if (!wildcard_hosts_.empty() && name.front() != '[') {
      for (size_t dot = name.find('.', 1); dot != std::string_view::npos;
           dot = name.find('.', dot + 1)) {
        if (const HostGroup* g = find_group(wildcard_hosts_, name.substr(dot))) {
          if (const Route* r = match_group(g->routes, normalized_path)) {
            return r;
          }
        }
      }
    }
  }
  return match_group(any_host_, normalized_path);
}

std::string RouteTable::describe() const {
  std::string out;
  for (const Route& r : routes_) {
    out += r.host;
    out += r.prefix;
    for (const BackendAddress& b : r.backends) {
      out += ' ';
      out += b.scheme;
      out += "://";
      out += b.authority();
    }
    const RouteOptions& o = r.options;
    out += o.strip_prefix ? " strip_prefix=on" : " strip_prefix=off";
    out += " connect_timeout=" + format_duration(o.connect_timeout);
    out += " read_timeout=" + format_duration(o.read_timeout);
    out += " ws_idle=" + format_duration(o.ws_idle);
    out += " max_body=" + format_size(o.max_body);
    out += " max_ws_message=" + format_size(o.max_ws_message);
    out += " origins=";
    if (o.origins.empty()) {
      out += '-';
    }
    for (size_t i = 0; i < o.origins.size(); ++i) {
      if (i != 0) {
        out += ',';
      }
      out += o.origins[i];
    }
    out += " upgrade=";
    out += upgrade_name(o.upgrade);
    out += " balance=";
    out += balance_name(o.balance);
    if (!o.ca_file.empty()) {
      out += " ca=";
      out += o.ca_file;
    }
    out += '\n';
  }
  return out;
}

NormalizedPath normalize_path(std::string_view raw_path) {
  NormalizedPath result;
  result.status = normalize_path(raw_path, &result.path);
  return result;
}

void append_percent_escape(std::string* out, unsigned char byte) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  *out += '%';
  *out += kHex[byte >> 4];
  *out += kHex[byte & 0xF];
}

PathStatus normalize_path(std::string_view raw_path, std::string* out) {
  std::string& path = *out;
  path.clear();
  // A refused path leaves `out` empty.
  auto refuse = [&path](PathStatus why) {
    path.clear();
    return why;
  };
  if (raw_path.empty() || raw_path.front() != '/') {
    return PathStatus::kInvalid;
  }
  // Pass 1: decode unreserved escapes first, so that "%2e%2e" is a dot segment below and cannot
  // smuggle a traversal past a prefix check.
  path.reserve(raw_path.size());
  for (size_t i = 0; i < raw_path.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw_path[i]);
    if (c == '%') {
      if (i + 2 >= raw_path.size()) {
        return refuse(PathStatus::kInvalid);
      }
      const int hi = hex_value(raw_path[i + 1]);
      const int lo = hex_value(raw_path[i + 2]);
      if (hi < 0 || lo < 0) {
        return refuse(PathStatus::kInvalid);
      }
      const auto v = static_cast<unsigned char>(hi * 16 + lo);
      if (is_unreserved(v)) {
        path += static_cast<char>(v);
      } else {
        append_percent_escape(&path, v);
      }
      i += 2;
      continue;
    }
    if (is_forbidden_target_byte(c) || c == '#') {
      return refuse(PathStatus::kInvalid);
    }
    if (c >= 0x80) {
      // Raw bytes above ASCII (a client that did not escape UTF-8) are written as the escapes
      // a browser sends, so that both spellings of a path meet the same route (prefixes are
      // written escaped) and reach the backend alike.
      append_percent_escape(&path, c);
      continue;
    }
    path += static_cast<char>(c);
  }

  // Pass 2: RFC 3986 section 5.2.4 (and merged slashes), on whole segments, in place: each kept
  // segment is written
  // back as "/segment" at `written` (never past the segment being read, so nothing is
  // overwritten before it is read), and ".." drops the last one written by going back to its
  // '/'. Unlike the RFC, ".." at the root is an error rather than ignored: such a request is a
  // traversal probe, not a real link.
  size_t written = 0;
  size_t read = 1;  // after the leading '/'
  while (true) {
    const size_t slash = path.find('/', read);
    const bool last = slash == std::string::npos;
    const size_t seg_end = last ? path.size() : slash;
    const std::string_view seg(path.data() + read, seg_end - read);
    if (seg == ".") {
      if (last) {
        path[written++] = '/';  // "/a/." keeps its trailing slash: "/a/"
      }
    } else if (seg == "..") {
      if (written == 0) {
        return refuse(PathStatus::kEscapesRoot);
      }
      written = path.rfind('/', written - 1);  // the start of the last segment written
      if (last) {
        path[written++] = '/';  // "/a/b/.." -> "/a/"
      }
    } else if (seg.empty() && !last) {
      // "//": merged, as NGINX does by default (merge_slashes). Many backends read "//api/x" as
      // "/api/x"; kept, it would match a shorter prefix ("/") than the route for "/api/" and
      // reach a backend without that route's options.
    } else {
      path[written++] = '/';
      for (size_t i = read; i < seg_end; ++i) path[written++] = path[i];
    }
    if (last) {
      break;
    }
    read = slash + 1;
  }
  path.resize(written);
  if (path.empty()) {
    path = "/";
  }
  return PathStatus::kOk;
}

std::string upstream_path(const Route& route, std::string_view normalized_path) {
  std::string out;
  append_upstream_path(route, normalized_path, &out);
  return out;
}

void append_upstream_path(const Route& route, std::string_view normalized_path, std::string* out) {
  if (!route.options.strip_prefix || !normalized_path.starts_with(route.prefix)) {
    out->append(normalized_path);
    return;
  }
  const std::string_view rest = normalized_path.substr(route.prefix.size());
  if (rest.empty() || rest.front() != '/') {
    out->push_back('/');
  }
  out->append(rest);
}

}  // namespace portico

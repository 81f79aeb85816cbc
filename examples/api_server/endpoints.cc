#include "examples/api_server/endpoints.h"

#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <ctime>

namespace portico::examples {

namespace {

std::string_view header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return v;
  }
  return {};
}

bool has_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (n.size() == name.size() && strncasecmp(n.data(), name.data(), n.size()) == 0) return true;
  }
  return false;
}

void append_json_or_null(std::string& out, const HeaderList& headers, std::string_view name) {
  if (has_header(headers, name)) {
    append_json_string(out, header(headers, name));
  } else {
    out += "null";
  }
}

ResponsePlan json(int status, std::string body) {
  ResponsePlan plan;
  plan.status = status;
  plan.content_type = "application/json";
  plan.body = std::move(body);
  plan.body += '\n';
  return plan;
}

ResponsePlan error_json(int status, std::string_view message, std::string_view path) {
  std::string body = "{\"error\":";
  append_json_string(body, message);
  body += ",\"path\":";
  append_json_string(body, path);
  body += '}';
  return json(status, std::move(body));
}

ResponsePlan method_not_allowed(std::string_view allow, std::string_view path) {
  ResponsePlan plan = error_json(405, "method not allowed", path);
  plan.extra_headers.emplace_back("Allow", std::string(allow));
  return plan;
}

std::string iso8601_now() {
  std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

ResponsePlan hello(const RequestView& r) {
  std::string body = "{\"message\":\"hello from the API\",\"time\":\"" + iso8601_now() + "\"";
  body += ",\"forwarded_proto\":";
  append_json_or_null(body, r.headers, "X-Forwarded-Proto");
  body += ",\"forwarded_for\":";
  append_json_or_null(body, r.headers, "X-Forwarded-For");
  body += ",\"host\":";
  append_json_or_null(body, r.headers, "Host");
  body += ",\"path\":";
  append_json_string(body, r.target);
  body += '}';
  return json(200, std::move(body));
}

// Names as received; a repeated name becomes an array so that a proxy adding a second copy of a
// header (a classic bug) is visible.
ResponsePlan headers_json(const RequestView& r) {
  std::string body = "{";
  std::vector<bool> done(r.headers.size(), false);
  for (size_t i = 0; i < r.headers.size(); ++i) {
    if (done[i]) continue;
    const std::string& name = r.headers[i].first;
    std::vector<size_t> same;
    for (size_t j = i; j < r.headers.size(); ++j) {
      const std::string& other = r.headers[j].first;
      if (other.size() == name.size() && strcasecmp(other.c_str(), name.c_str()) == 0) {
        same.push_back(j);
        done[j] = true;
      }
    }
    if (body.size() > 1) body += ',';
    append_json_string(body, name);
    body += ':';
    if (same.size() == 1) {
      append_json_string(body, r.headers[i].second);
      continue;
    }
    body += '[';
    for (size_t k = 0; k < same.size(); ++k) {
      if (k > 0) body += ',';
      append_json_string(body, r.headers[same[k]].second);
    }
    body += ']';
  }
  body += '}';
  return json(200, std::move(body));
}

std::string_view content_type_for(std::string_view path) {
  static const std::pair<std::string_view, std::string_view> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".png", "image/png"},
      {".svg", "image/svg+xml"},
      {".json", "application/json"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (path.size() >= ext.size() && path.substr(path.size() - ext.size()) == ext) return type;
  }
  return "application/octet-stream";
}

ResponsePlan static_file(std::string_view path, const std::string& static_dir) {
  // No percent-decoding and no "..": the path names a file under DIR literally, or nothing.
  // (Symlinks inside DIR are followed; DIR is the operator's choice.)
  if (path.empty() || path[0] != '/' || path.find("..") != std::string_view::npos ||
      path.find('\\') != std::string_view::npos || path.find('\0') != std::string_view::npos) {
    return error_json(400, "bad path", path);
  }
  std::string file = static_dir + std::string(path);
  if (file.back() == '/') file += "index.html";
  int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error_json(404, "not found", path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return error_json(404, "not found", path);
  }
  ResponsePlan plan;
  plan.content_type = std::string(content_type_for(file));
  plan.body_kind = ResponsePlan::Body::kFile;
  plan.file_fd = fd;
  plan.length = static_cast<uint64_t>(st.st_size);
  return plan;
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Unknown";
  }
}

ResponsePlan plan_response(const RequestView& r, const std::string& static_dir) {
  std::string_view path = r.target.substr(0, r.target.find('?'));
  bool get = r.method == "GET" || r.method == "HEAD";

  if (path == "/api/hello") return get ? hello(r) : method_not_allowed("GET, HEAD", path);
  if (path == "/api/headers") return get ? headers_json(r) : method_not_allowed("GET, HEAD", path);
  if (path == "/api/echo") {
    if (r.method != "POST") return method_not_allowed("POST", path);
    ResponsePlan plan;
    std::string_view type = header(r.headers, "Content-Type");
    plan.content_type = type.empty() ? "application/octet-stream" : std::string(type);
    plan.body = std::string(r.body);
    return plan;
  }
  if (path == "/small") {
    if (!get) return method_not_allowed("GET, HEAD", path);
    ResponsePlan plan;
    plan.content_type = "text/plain";
    plan.body = "hello, world\n";
    return plan;
  }
  if (path.starts_with("/bytes/")) {
    if (!get) return method_not_allowed("GET, HEAD", path);
    std::string_view digits = path.substr(7);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        n > kMaxBytesEndpoint) {
      return error_json(400, "want /bytes/N with N <= 1073741824", path);
    }
    ResponsePlan plan;
    plan.content_type = "application/octet-stream";
    plan.body_kind = ResponsePlan::Body::kRepeatedX;
    plan.length = n;
    return plan;
  }
  if (!static_dir.empty() && get && !path.starts_with("/api/")) {
    return static_file(path, static_dir);
  }
  return error_json(404, "not found", path);
}

}  // namespace portico::examples

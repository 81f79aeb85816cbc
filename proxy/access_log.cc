#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "proxy/http_head.h"
#include "proxy/log.h"

namespace portico {

AccessLog::~AccessLog() {
  if (owns_fd_) ::close(fd_);
}

bool AccessLog::open(const std::string& destination, std::string* error) {
  if (destination == "off") return true;
  if (destination == "-") {
    fd_ = STDERR_FILENO;
    return true;
  }
  fd_ = ::open(destination.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    *error = destination + ": cannot open access log: " + std::strerror(errno);
    return false;
  }
  owns_fd_ = true;
  path_ = destination;
  return true;
}

bool AccessLog::reopen(std::string* error) const {
  if (path_.empty()) return true;
  int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    *error = path_ + ": cannot open access log: " + std::strerror(errno);
    return false;
  }
  const bool moved = ::dup3(fd, fd_, O_CLOEXEC) >= 0;
  if (!moved) *error = path_ + ": cannot reopen access log: " + std::strerror(errno);
  ::close(fd);
  return moved;
}

void set_request_fields(AccessLogEntry* entry, const HttpHead& request) {
  auto value_of = [&request](std::string_view name) {
    const HeaderField* field = request.find(name);
    return field ? std::string_view(field->value) : std::string_view();
  };
  entry->method = request.method;
  entry->host = value_of("host");
  entry->target = request.target;
  entry->protocol = request.method.empty()       ? std::string_view()
                    : request.version_minor == 0 ? std::string_view("HTTP/1.0")
                                                 : std::string_view("HTTP/1.1");
  entry->referer = value_of("referer");
  entry->user_agent = value_of("user-agent");
}

bool AccessLog::can_open(const std::string& destination, std::string* error) {
  if (destination == "off" || destination == "-") return true;
  std::error_code ec;
  const std::filesystem::path path(destination);
  const bool exists = std::filesystem::exists(path, ec);
  const std::filesystem::path dir =
      path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int rc = exists ? ::access(destination.c_str(), W_OK) : ::access(dir.c_str(), W_OK | X_OK);
  if (rc != 0 || (exists && std::filesystem::is_directory(path, ec))) {
    *error = destination + ": cannot open access log: " + std::strerror(rc != 0 ? errno : EISDIR);
    return false;
  }
  return true;
}

namespace {
// Values come from the network: keep each one a single token. Spaces, control bytes and '"'
// become '_'; '\\' and bytes above 0x7F are escaped as \xHH (append_escaped), so the line stays
// ASCII: raw, they could carry C1 controls, U+0085 or U+2028, which some tools read as a line
// break and some terminals as commands.
void append_value(std::string& line, std::string_view value) {
  if (value.empty()) {
    line.push_back('-');
    return;
  }
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F || c == '"') {
      line.push_back('_');
    } else if (u > 0x7F || c == '\\') {
      append_escaped(line, std::string_view(&c, 1));
    } else {
      line.push_back(c);
    }
  }
}
}  // namespace

bool parse_access_log_format(std::string_view text, AccessLogFormat* out) {
  if (text == "kv") {
    *out = AccessLogFormat::kKv;
  } else if (text == "combined") {
    *out = AccessLogFormat::kCombined;
  } else if (text == "json") {
    *out = AccessLogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

namespace {

std::string format_kv(const AccessLogEntry& e) {
  std::string line;
  line.reserve(256);
  line.append("info access: client=");
  append_value(line, e.client);
  line.append(" method=");
  append_value(line, e.method);
  line.append(" host=");
  append_value(line, e.host);
  line.append(" path=");
  append_value(line, e.target);
  line.append(" route=");
  append_value(line, e.route);
  line.append(" backend=");
  append_value(line, e.backend);
  str_append(line, " status=");
  str_append(line, e.status);
  str_append(line, " bytes_in=");
  str_append(line, e.bytes_in);
  str_append(line, " bytes_out=");
  str_append(line, e.bytes_out);
  str_append(line, " duration_ms=");
  str_append(line, e.duration_ms);
  if (e.tunnel) {
    line.append(" tunnel=websocket");
    str_append(line, " messages_in=");
    str_append(line, e.messages_in);
    str_append(line, " messages_out=");
    str_append(line, e.messages_out);
    str_append(line, " close_from_client=");
    str_append(line, e.close_from_client);
    str_append(line, " close_from_backend=");
    str_append(line, e.close_from_backend);
    str_append(line, " close_to_client=");
    str_append(line, e.close_to_client);
    str_append(line, " close_to_backend=");
    str_append(line, e.close_to_backend);
    line.append(" ended=");
    append_value(line, e.ended);
  }
  if (!e.error.empty()) {
    line.append(" error=");
    append_value(line, e.error);
  }
  line.push_back('\n');
  return line;
}

void append_hex_byte(std::string& out, const char* prefix, unsigned char c) {
  static const char kHex[] = "0123456789abcdef";
  out.append(prefix);
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 0xF]);
}

// Inside a combined-format quoted field: NGINX's escaping (" and \ and non-printable bytes as
// \xHH), so that a request cannot forge a field boundary or a line.
void append_quoted_combined(std::string& out, std::string_view value) {
  out.push_back('"');
  if (value.empty()) out.push_back('-');
  append_escaped(out, value);
  out.push_back('"');
}

// Header values are bytes, not UTF-8: a byte above 0x7F is written as \u00XX (its Latin-1
// reading), which keeps every line valid JSON whatever a client sent.
void append_json_string(std::string& out, std::string_view value) {
  out.push_back('"');
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == '"') {
      out.append("\\\"");
    } else if (c == '\\') {
      out.append("\\\\");
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (u < 0x20 || u >= 0x7F) {
      append_hex_byte(out, "\\u00", u);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void append_time(std::string& out, std::chrono::system_clock::time_point time, bool iso) {
  std::time_t t = std::chrono::system_clock::to_time_t(time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  size_t n = std::strftime(buf, sizeof buf, iso ? "%Y-%m-%dT%H:%M:%S" : "%d/%b/%Y:%H:%M:%S", &tm);
  out.append(buf, n);
  if (iso) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()) % 1000;
    char frac[8];
    int m = std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(ms.count()));
    out.append(frac, static_cast<size_t>(m));
  } else {
    out.append(" +0000");  // UTC: the same in every time zone a proxy may run in
  }
}

std::string format_combined(const AccessLogEntry& e) {
  std::string line;
  line.reserve(256);
  line.append(e.client.empty() ? std::string_view("-") : e.client);
  line.append(" - - [");
  append_time(line, e.time, /*iso=*/false);
  line.append("] ");
  if (e.method.empty()) {
    line.append("\"-\"");
  } else {
    std::string request;
    request.append(e.method).append(" ").append(e.target);
    if (!e.protocol.empty()) request.append(" ").append(e.protocol);
    append_quoted_combined(line, request);
  }
  str_append(line, ' ');
  str_append(line, e.status);
  str_append(line, ' ');
  str_append(line, e.bytes_out);
  str_append(line, ' ');
  append_quoted_combined(line, e.referer);
  str_append(line, ' ');
  append_quoted_combined(line, e.user_agent);
  // NGINX's $request_time, in seconds with milliseconds.
  char seconds[32];
  int n = std::snprintf(seconds, sizeof seconds, " %.3f\n", e.duration_ms / 1000.0);
  line.append(seconds, static_cast<size_t>(n));
  return line;
}

std::string format_json(const AccessLogEntry& e) {
  std::string line;
  line.reserve(512);
  auto key = [&](const char* name) {
    line.append(line.size() == 1 ? "\"" : ",\"").append(name).append("\":");
  };
  auto text = [&](const char* name, std::string_view value) {
    key(name);
    append_json_string(line, value);
  };
  auto number = [&](const char* name, uint64_t value) {
    key(name);
    str_append(line, value);
  };
  line.push_back('{');
  key("time");
  line.push_back('"');
  append_time(line, e.time, /*iso=*/true);
  line.push_back('"');
  text("client", e.client);
  text("method", e.method);
  text("host", e.host);
  text("path", e.target);
  text("protocol", e.protocol);
  text("referer", e.referer);
  text("user_agent", e.user_agent);
  text("route", e.route);
  text("backend", e.backend);
  number("status", static_cast<uint64_t>(e.status < 0 ? 0 : e.status));
  number("bytes_in", e.bytes_in);
  number("bytes_out", e.bytes_out);
  key("duration_ms");
  str_append(line, e.duration_ms);
  text("error", e.error);
  key("tunnel");
  line.append(e.tunnel ? "true" : "false");
  number("messages_in", e.messages_in);
  number("messages_out", e.messages_out);
  number("close_from_client", e.close_from_client);
  number("close_from_backend", e.close_from_backend);
  number("close_to_client", e.close_to_client);
  number("close_to_backend", e.close_to_backend);
  text("ended", e.ended);
  line.append("}\n");
  return line;
}

}  // namespace

std::string format_access_line(const AccessLogEntry& entry, AccessLogFormat format) {
  switch (format) {
    case AccessLogFormat::kCombined:
      return format_combined(entry);
    case AccessLogFormat::kJson:
      return format_json(entry);
    case AccessLogFormat::kKv:
      break;
  }
  return format_kv(entry);
}

void AccessLog::write(const AccessLogEntry& e) const {
  if (fd_ < 0) return;
  AccessLogEntry stamped = e;
  if (stamped.time == std::chrono::system_clock::time_point{}) {
    stamped.time = std::chrono::system_clock::now();
  }
  std::string line = format_access_line(stamped, format_);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace portico

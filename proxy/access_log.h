#pragma once

// The access log: one line per request (and per tunnel), to stderr or a file.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico {

// kv: portico's `info access: key=value` line; combined: NGINX/Apache "combined"; json: one
// object per line (see docs/operations.md).
enum class AccessLogFormat { kKv, kCombined, kJson };
bool parse_access_log_format(std::string_view text, AccessLogFormat* out);

struct AccessLogEntry {
  std::chrono::system_clock::time_point time{};  // when the line is written
  std::string_view client;                       // address
  std::string_view method;
  std::string_view host;
  std::string_view target;
  std::string_view protocol;    // "HTTP/1.1" ("" when no request line was read)
  std::string_view referer;     // the request's Referer ("" when none)
  std::string_view user_agent;  // the request's User-Agent ("" when none)
  std::string_view route;       // the matched prefix ("-" when none)
  std::string_view route_host;  // the matched route's host ("" when it has none): for metrics
  std::string_view backend;     // authority ("-" when none)
  int status = 0;
  uint64_t bytes_in = 0;   // request body bytes from the client
  uint64_t bytes_out = 0;  // response bytes to the client (head and body)
  double duration_ms = 0;
  std::string_view error;  // why portico answered itself, when it did ("" otherwise)

  // WebSocket tunnels: written when the tunnel ends.
  bool tunnel = false;
  uint64_t messages_in = 0;        // client to backend
  uint64_t messages_out = 0;       // backend to client
  uint16_t close_from_client = 0;  // the first Close code each side sent (1005: no code)
  uint16_t close_from_backend = 0;
  uint16_t close_to_client = 0;  // Close codes portico sent itself (0: none)
  uint16_t close_to_backend = 0;
  std::string_view ended;  // how the tunnel ended ("backend closed", "client closed", ...)
};

// Milliseconds from `since` to now: an entry's duration_ms.
inline double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since)
      .count();
}

// One line, newline included. Pure: the same entry always gives the same bytes.
std::string format_access_line(const AccessLogEntry& entry, AccessLogFormat format);

struct HttpHead;

// The fields an access-log line takes from the request itself: method, Host, target, protocol
// ("" when no request line was read), Referer and User-Agent. Views into `request`.
void set_request_fields(AccessLogEntry* entry, const HttpHead& request);

class AccessLog {
 public:
  AccessLog() = default;
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // "-" for stderr, "off", or a file opened for appending. Returns false and sets *error.
  bool open(const std::string& destination, std::string* error);
  // What open() would say, without creating the file (--check): an existing file must be
  // writable, a new one's directory must exist and be writable.
  static bool can_open(const std::string& destination, std::string* error);
  void set_format(AccessLogFormat format) { format_ = format; }
  bool enabled() const { return fd_ >= 0; }
  // Whether lines carry the Referer and User-Agent (combined, json): a tunnel keeps them for its
  // line only then, so that idle tunnels under the default format cost nothing for them.
  bool logs_request_headers() const { return enabled() && format_ != AccessLogFormat::kKv; }
  void write(const AccessLogEntry& entry) const;
  // Opens the file again (after logrotate moved it: SIGUSR1) and puts it under the same
  // descriptor with dup2, which is atomic: workers writing on other threads never see a
  // closed descriptor. Nothing to do for stderr or "off". On failure the old file stays.
  bool reopen(std::string* error) const;

 private:
  std::string path_;  // a file's; empty for stderr and "off"
  int fd_ = -1;
  bool owns_fd_ = false;
  AccessLogFormat format_ = AccessLogFormat::kKv;
};

}  // namespace portico

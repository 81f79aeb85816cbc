#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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
  return true;
}

namespace {
// Values come from the network: keep each one a single token.
void append_value(std::string& line, std::string_view value) {
  if (value.empty()) {
    line.push_back('-');
    return;
  }
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    line.push_back(u <= 0x20 || u == 0x7F || c == '"' ? '_' : c);
  }
}
}  // namespace

void AccessLog::write(const AccessLogEntry& e) const {
  if (fd_ < 0) return;
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
  }
  if (!e.error.empty()) {
    line.append(" error=");
    append_value(line, e.error);
  }
  line.push_back('\n');
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

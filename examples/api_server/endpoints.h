#pragma once

// What the example API answers, as data: the connection code turns a ResponsePlan into bytes.
// Nothing here does network I/O, so the endpoints read like a table.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::examples {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct RequestView {
  std::string_view method;  // "GET"
  std::string_view target;  // as received, query included
  const HeaderList& headers;
  std::string_view body;  // kept only for POST /api/echo
};

struct ResponsePlan {
  int status = 200;
  std::string content_type;
  HeaderList extra_headers;
  enum class Body { kInline, kRepeatedX, kFile } body_kind = Body::kInline;
  std::string body;     // kInline
  uint64_t length = 0;  // kRepeatedX, kFile
  int file_fd = -1;     // kFile: owned by whoever streams it
};

constexpr uint64_t kMaxBytesEndpoint = uint64_t{1} << 30;  // GET /bytes/N: N <= 1 GiB

// static_dir: "" unless --static DIR.
ResponsePlan plan_response(const RequestView& request, const std::string& static_dir);

// The reason phrase for the status line.
const char* reason_phrase(int status);
// RFC 8259 string escaping (UTF-8 passes through).
void append_json_string(std::string& out, std::string_view text);

}  // namespace portico::examples

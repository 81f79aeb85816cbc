// Fuzzes the request path up to the bytes that go to a backend: strict llhttp parsing of any
// input, then the pure steps portico applies to a parsed head (Host checks, path normalisation,
// WebSocket checks, the upstream head rewrite, the redirect Location). The invariant that
// matters: whatever portico would send upstream parses back, strictly, as exactly one request
// with one Host and with framing portico chose.

#include <llhttp.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/config.h"
#include "proxy/header_rewrite.h"
#include "proxy/http_head.h"
#include "proxy/redirect_server.h"
#include "proxy/websocket_handshake.h"
#include "routing/route_table.h"

namespace {

// What portico sends upstream carries the client's head (within portico's default limits,
// --max-header-bytes and --max-headers) plus headers of its own, so the reparse of it is not
// held to those limits.
struct Collector {
  explicit Collector(bool client_side)
      : max_bytes(client_side ? portico::Config{}.max_header_bytes : SIZE_MAX),
        max_headers(client_side ? portico::Config{}.max_header_count : SIZE_MAX) {}
  portico::HttpHead head;
  size_t max_bytes;
  size_t max_headers;
  bool complete_headers = false;
  int messages = 0;
};

int on_url(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<Collector*>(p->data);
  return c->head.append_target(at, len, c->max_bytes) ? 0 : HPE_USER;
}
int on_field(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<Collector*>(p->data);
  return c->head.append_name(at, len, c->max_bytes, c->max_headers) ? 0 : HPE_USER;
}
int on_field_complete(llhttp_t* p) {
  return static_cast<Collector*>(p->data)->head.end_name() ? 0 : HPE_USER;
}
int on_value(llhttp_t* p, const char* at, size_t len) {
  auto* c = static_cast<Collector*>(p->data);
  if (c->head.headers.empty()) std::abort();
  return c->head.append_value(at, len, c->max_bytes) ? 0 : HPE_USER;
}
int on_headers_complete(llhttp_t* p) {
  auto* c = static_cast<Collector*>(p->data);
  c->head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  c->head.version_major = p->http_major;
  c->head.version_minor = p->http_minor;
  c->complete_headers = true;
  return HPE_PAUSED;
}
int on_message_complete(llhttp_t* p) {
  ++static_cast<Collector*>(p->data)->messages;
  return 0;
}

llhttp_settings_t make_settings() {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_url = on_url;
  s.on_header_field = on_field;
  s.on_header_field_complete = on_field_complete;
  s.on_header_value = on_value;
  s.on_headers_complete = on_headers_complete;
  s.on_message_complete = on_message_complete;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const llhttp_settings_t settings = make_settings();
  Collector collector(/*client_side=*/true);
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &settings);
  parser.data = &collector;
  // Two reads, split where the input says, so that spans arrive in pieces as they do from a
  // socket and the head's buffer grows with views already pointing into it.
  const char* bytes = reinterpret_cast<const char*>(data);
  size_t first = size == 0 ? 0 : (static_cast<size_t>(data[0]) * 7919) % size;
  llhttp_errno_t err = llhttp_execute(&parser, bytes, first);
  if (err == HPE_OK) err = llhttp_execute(&parser, bytes + first, size - first);
  if (err != HPE_PAUSED || !collector.complete_headers) return 0;

  portico::HttpHead& head = collector.head;
  size_t head_bytes = head.target.size();
  for (const portico::HeaderField& h : head.headers) {
    // The views account for every byte the head holds (none lost or doubled by a regrowth).
    head_bytes += h.name.size() + h.value.size();
    if (h.name.empty()) std::abort();
  }
  if (head_bytes != head.bytes() || head.bytes() > collector.max_bytes) std::abort();
  const portico::HeaderField* host = head.find("host");
  if (!host || head.count("host") != 1) return 0;
  std::string_view host_part, port_part;
  if (!portico::split_host_port(host->value, &host_part, &port_part)) return 0;
  std::string location = portico::https_redirect_location(host->value, head.target, 8443);
  if (!location.empty() && location.rfind("https://", 0) != 0) std::abort();

  std::string_view target = head.target;
  if (target.empty() || target.front() != '/') return 0;
  std::string_view raw_path = target.substr(0, target.find('?'));
  portico::NormalizedPath path = portico::normalize_path(raw_path);
  if (path.status != portico::PathStatus::kOk) return 0;
  if (path.path.empty() || path.path.front() != '/') std::abort();

  std::string why;
  bool websocket =
      portico::is_websocket_upgrade(head) && portico::check_websocket_request(head, &why) == 0;
  const portico::HeaderField* origin = head.find("origin");
  if (origin) portico::websocket_origin_allowed(origin->value, host->value, {"https://a.example"});

  portico::UpstreamRequest request;
  request.head = &head;
  std::string upstream_target = path.path;
  upstream_target.append(target.substr(raw_path.size()));
  request.target = upstream_target;
  request.host = host->value;
  request.client_address = "192.0.2.1";
  request.upgrade = websocket;
  request.framing = (parser.flags & F_CHUNKED)          ? portico::BodyFraming::kChunked
                    : (parser.flags & F_CONTENT_LENGTH) ? portico::BodyFraming::kContentLength
                                                        : portico::BodyFraming::kNone;
  request.content_length = parser.content_length;
  std::string out;
  portico::build_upstream_request_head(request, &out);

  // What goes upstream must parse back strictly as one head, with one Host.
  Collector reparsed(/*client_side=*/false);
  llhttp_t check;
  llhttp_init(&check, HTTP_REQUEST, &settings);
  check.data = &reparsed;
  llhttp_errno_t check_err = llhttp_execute(&check, out.data(), out.size());
  if (check_err != HPE_PAUSED || !reparsed.complete_headers) std::abort();
  if (reparsed.head.count("host") != 1) std::abort();
  if (reparsed.head.count("transfer-encoding") + reparsed.head.count("content-length") > 1) {
    std::abort();
  }
  if (reparsed.head.target != upstream_target) std::abort();
  return 0;
}

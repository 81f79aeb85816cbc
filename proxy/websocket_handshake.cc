#include "proxy/websocket_handshake.h"

#include "proxy/ws_frames.h"

namespace portico {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// "host:443" for https and "host:80" for http name the same place as "host".
std::string without_default_port(std::string_view authority, std::string_view scheme) {
  std::string a = lower(authority);
  std::string_view default_port = scheme == "http" || scheme == "ws" ? ":80" : ":443";
  if (a.size() > default_port.size() && a.ends_with(default_port)) {
    a.resize(a.size() - default_port.size());
  }
  return a;
}

}  // namespace

bool is_websocket_upgrade(const HttpHead& request) {
  const HeaderField* upgrade = request.find("upgrade");
  if (!upgrade || !header_has_token(upgrade->value, "websocket")) return false;
  for (const HeaderField& h : request.headers) {
    if (iequals(h.name, "connection") && header_has_token(h.value, "upgrade")) return true;
  }
  return false;
}

int check_websocket_request(const HttpHead& request, std::string* why) {
  if (request.method != "GET") {
    *why = "WebSocket upgrade must use GET";
    return 400;
  }
  if (request.version_major != 1 || request.version_minor != 1) {
    *why = "WebSocket upgrade needs HTTP/1.1";
    return 400;
  }
  const HeaderField* version = request.find("sec-websocket-version");
  if (!version || version->value != "13" || request.count("sec-websocket-version") != 1) {
    *why = "Sec-WebSocket-Version must be 13";
    return 400;
  }
  // An opening handshake has no body (RFC 6455 section 4.1). Bytes after one would be a body to
  // some backends and the first frames to others, which take the socket over at the blank line:
  // frames that portico's checks never saw.
  const HeaderField* length = request.find("content-length");
  if (request.find("transfer-encoding") ||
      (length && length->value.find_first_not_of('0') != std::string::npos)) {
    *why = "WebSocket upgrade must not carry a body";
    return 400;
  }
  const HeaderField* key = request.find("sec-websocket-key");
  if (!key || request.count("sec-websocket-key") != 1 || !ws_key_is_valid(key->value)) {
    *why = "Sec-WebSocket-Key must be 16 bytes in base64";
    return 400;
  }
  return 0;
}

bool ws_extension_negotiated(const HttpHead& response, std::string_view name) {
  for (const HeaderField& h : response.headers) {
    if (iequals(h.name, "sec-websocket-extensions") &&
        header_has_token(h.value, name, /*with_parameters=*/true)) {
      return true;
    }
  }
  return false;
}

bool websocket_origin_allowed(std::string_view origin, std::string_view host,
                              const std::vector<std::string>& allowed) {
  if (origin.empty()) return true;
  std::string origin_lower = lower(origin);
  for (const std::string& entry : allowed) {
    if (entry == "*" || entry == origin_lower) return true;
  }
  size_t scheme_end = origin_lower.find("://");
  if (scheme_end == std::string::npos) return false;  // "null" and other opaque origins
  std::string_view scheme = std::string_view(origin_lower).substr(0, scheme_end);
  std::string_view authority = std::string_view(origin_lower).substr(scheme_end + 3);
  if (authority.empty() || authority.find('/') != std::string_view::npos) return false;
  std::string origin_authority = without_default_port(authority, scheme);
  // The site itself is https://HOST[:PORT]: a page from http://HOST is another origin (RFC
  // 6454), one that anyone on the path can write.
  if (scheme == "https" && origin_authority == without_default_port(host, "https")) return true;
  // A bare host in the allow-list matches that host on any scheme and port.
  std::string_view origin_host = origin_authority;
  if (!origin_host.empty() && origin_host.front() != '[') {
    origin_host = origin_host.substr(0, origin_host.find(':'));
  }
  for (const std::string& entry : allowed) {
    if (entry.find("://") == std::string::npos && entry == origin_host) return true;
  }
  return false;
}

}  // namespace portico

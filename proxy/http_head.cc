#include "proxy/http_head.h"

#include <algorithm>
#include <array>
#include <functional>
#include <string>

namespace portico {

void HttpHead::clear() {
  method = {};
  target = {};
  status = 0;
  reason = {};
  version_major = 1;
  version_minor = 1;
  headers.clear();
  building_name = false;
  in_value = false;
  text_.clear();
}

bool HttpHead::append_target(const char* at, size_t len, size_t max_bytes) {
  if (len > max_bytes - std::min(max_bytes, text_.size())) return false;
  append_span(&target, at, len, max_bytes);
  return true;
}

bool HttpHead::append_reason(const char* at, size_t len, size_t max_bytes) {
  if (len > max_bytes - std::min(max_bytes, text_.size())) return false;
  append_span(&reason, at, len, max_bytes);
  return true;
}

bool HttpHead::append_name(const char* at, size_t len, size_t max_bytes, size_t max_count) {
  if (len > max_bytes - std::min(max_bytes, text_.size())) return false;
  if (!building_name) {
    if (headers.size() >= max_count) return false;
    headers.emplace_back();
    building_name = true;
  }
  append_span(&headers.back().name, at, len, max_bytes);
  return true;
}

bool HttpHead::end_name() {
  building_name = false;
  return !headers.empty() && is_token(headers.back().name);
}

// RFC 9110 section 5.6.2: tchar. llhttp 8.1 lets a space through inside a field name and
// before the colon ("X-A : 1"), which RFC 9112 section 5.1 says must be refused: a backend or
// client that trims it would read another header than portico did.
bool is_token(std::string_view text) {
  static constexpr auto kTchar = [] {
    std::array<bool, 256> table{};
    for (unsigned char c = '0'; c <= '9'; ++c) table[c] = true;
    for (unsigned char c = 'a'; c <= 'z'; ++c) table[c] = true;
    for (unsigned char c = 'A'; c <= 'Z'; ++c) table[c] = true;
    for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) table[c] = true;
    return table;
  }();
  if (text.empty()) return false;
  for (char c : text) {
    if (!kTchar[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool has_only_chunked_coding(const HttpHead& head) {
  const HeaderField* te = head.find("transfer-encoding");
  if (!te || head.count("transfer-encoding") != 1) return false;
  std::string_view value = te->value;
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return iequals(value, "chunked");
}

bool HttpHead::append_value(const char* at, size_t len, size_t max_bytes) {
  if (len > max_bytes - std::min(max_bytes, text_.size()) || headers.empty()) return false;
  append_span(&headers.back().value, at, len, max_bytes);
  return true;
}

void HttpHead::end_value() {
  in_value = false;
  if (headers.empty()) return;
  std::string_view& value = headers.back().value;
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
}

void HttpHead::append_span(std::string_view* view, const char* at, size_t len, size_t max_bytes) {
  // llhttp delivers a field's spans one after another, so the view being extended ends the
  // buffer. Anything else (a head filled by hand) starts the view afresh at the end, carrying
  // its bytes along.
  const bool continues =
      !view->empty() && view->data() + view->size() == text_.data() + text_.size();
  std::string carried;
  if (!view->empty() && !continues) carried.assign(*view);
  const size_t needed = text_.size() + carried.size() + len;
  if (needed > text_.capacity()) {
    // Doubling keeps the copies few while a head grows; the limit caps what one head can hold.
    size_t grown = std::max<size_t>(256, 2 * text_.capacity());
    grown = std::max(needed, std::min(grown, max_bytes));
    std::vector<char> bigger;
    bigger.reserve(grown);
    bigger.assign(text_.begin(), text_.end());
    // Every view into the old buffer moves to the same offset in the new one, while the old
    // buffer is still there to measure the offsets against.
    const char* old_begin = text_.data();
    const char* old_end = old_begin + text_.size();
    auto rebase = [&](std::string_view& v) {
      if (v.empty() || std::less<const char*>()(v.data(), old_begin) ||
          !std::less<const char*>()(v.data(), old_end)) {
        return;
      }
      v = std::string_view(bigger.data() + (v.data() - old_begin), v.size());
    };
    rebase(target);
    rebase(reason);
    for (HeaderField& h : headers) {
      rebase(h.name);
      rebase(h.value);
    }
    text_.swap(bigger);
  }
  const char* start = continues ? view->data() : text_.data() + text_.size();
  text_.insert(text_.end(), carried.begin(), carried.end());
  text_.insert(text_.end(), at, at + len);
  *view = std::string_view(start, carried.size() + (continues ? view->size() : 0) + len);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

const HeaderField* HttpHead::find(std::string_view name) const {
  for (const HeaderField& h : headers) {
    if (iequals(h.name, name)) return &h;
  }
  return nullptr;
}

size_t HttpHead::count(std::string_view name) const {
  size_t n = 0;
  for (const HeaderField& h : headers) n += iequals(h.name, name) ? 1 : 0;
  return n;
}

bool is_idempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" ||
         method == "PUT" || method == "DELETE";
}

const char* parse_error_reason(const llhttp_t* parser) {
  const char* reason = llhttp_get_error_reason(parser);
  return reason != nullptr ? reason : llhttp_errno_name(llhttp_get_errno(parser));
}

bool header_has_token(std::string_view value, std::string_view token, bool with_parameters) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = value.substr(0, comma);
    if (with_parameters) item = item.substr(0, item.find(';'));
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (iequals(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view cookie_value(const HttpHead& head, std::string_view name) {
  for (const HeaderField& h : head.headers) {
    if (!iequals(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
      size_t eq = pair.find('=');
      if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
        return pair.substr(eq + 1);
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return {};
}

bool split_absolute_form(std::string_view target, std::string_view* authority,
                         std::string_view* path_and_query, std::string_view* scheme) {
  size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return false;
  std::string_view name = target.substr(0, scheme_end);
  if (!iequals(name, "http") && !iequals(name, "https")) return false;
  std::string_view rest = target.substr(scheme_end + 3);
  size_t end = rest.find_first_of("/?");
  *authority = rest.substr(0, end);
  *path_and_query = end == std::string_view::npos ? std::string_view("/") : rest.substr(end);
  if (scheme) *scheme = name;
  return true;
}

bool same_authority(std::string_view scheme, std::string_view target_authority,
                    std::string_view host_header) {
  if (iequals(target_authority, host_header)) return true;
  std::string_view target_host, target_port, host, port;
  if (!split_host_port(target_authority, &target_host, &target_port) ||
      !split_host_port(host_header, &host, &port) || !iequals(target_host, host)) {
    return false;
  }
  const std::string_view default_port = iequals(scheme, "https") ? "443" : "80";
  // A port is a number (RFC 3986 3.2.3: *DIGIT, so "0443" is 443); split_host_port checked
  // that both are digits.
  const auto number = [&](std::string_view p) {
    if (p.empty()) p = default_port;
    while (p.size() > 1 && p.front() == '0') p.remove_prefix(1);
    return p;
  };
  return number(target_port) == number(port);
}

bool split_host_port(std::string_view value, std::string_view* host, std::string_view* port) {
  if (value.empty()) return false;
  std::string_view h, p;
  if (value.front() == '[') {
    size_t close = value.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    h = value.substr(0, close + 1);
    for (char c : value.substr(1, close - 1)) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                c == ':' || c == '.';
      if (!ok) return false;
    }
    std::string_view rest = value.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      p = rest.substr(1);  // may be empty: port = *DIGIT (RFC 3986 3.2.3)
    }
  } else {
    size_t colon = value.find(':');
    h = value.substr(0, colon);
    if (colon != std::string_view::npos) p = value.substr(colon + 1);  // may be empty, as above
    if (h.empty() || h.size() > 253) return false;
    for (char c : h) {
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                c == '-' || c == '.' || c == '_';
      if (!ok) return false;
    }
  }
  if (p.size() > 5) return false;
  unsigned port_value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    port_value = port_value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!p.empty() && (port_value == 0 || port_value > 65535)) return false;
  *host = h;
  *port = p;
  return true;
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 421:
      return "Misdirected Request";
    case 426:
      return "Upgrade Required";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

}  // namespace portico

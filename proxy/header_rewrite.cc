#include "proxy/header_rewrite.h"

#include <charconv>

namespace portico {
namespace {

// Decimal digits straight into the head being built (std::to_string makes a string first).
void append_decimal(std::string* out, uint64_t value) {
  char digits[20];
  char* end = std::to_chars(digits, digits + sizeof digits, value).ptr;  // 20 digits always fit
  out->append(digits, static_cast<size_t>(end - digits));
}

// The forwarding headers portico writes itself (or, for X-Real-IP, that would contradict what it
// writes): never passed on as received.
// Case-insensitive, and '_' the same as '-': CGI, WSGI, Rack and PHP read X_Forwarded_For and
// X-Forwarded-For as one variable (HTTP_X_FORWARDED_FOR), so a client's underscore spelling
// must go wherever the hyphenated one does.
bool same_as_cgi_name(std::string_view name, std::string_view lower_hyphenated) {
  if (name.size() != lower_hyphenated.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '_') c = '-';
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower_hyphenated[i]) return false;
  }
  return true;
}

// Headers that describe one hop, or that portico re-emits itself. Underscore spellings go too
// (NGINX drops every header with '_' by default): `Transfer_Encoding: chunked` forwarded beside
// portico's own framing would be read as framing by a backend that maps '_' to '-'.
bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive",        "proxy-connection", "te",
      "trailer",    "transfer-encoding", "upgrade",          "content-length",
  };
  for (std::string_view hop : kNames) {
    if (same_as_cgi_name(name, hop)) return true;
  }
  return false;
}

// A header named by a Connection header ("Connection: close, X-Foo") is hop-by-hop too.
bool named_by_connection(const HttpHead& head, std::string_view name) {
  for (const HeaderField& h : head.headers) {
    if (iequals(h.name, "connection") && header_has_token(h.value, name)) return true;
  }
  return false;
}

bool is_forwarding_header(std::string_view name) {
  return same_as_cgi_name(name, "x-forwarded-for") || same_as_cgi_name(name, "x-forwarded-proto") ||
         same_as_cgi_name(name, "x-forwarded-host") || same_as_cgi_name(name, "forwarded") ||
         same_as_cgi_name(name, "x-real-ip");
}

// Every other X-Forwarded-* (Port, Prefix, Server, Ssl, Scheme, ...) is something a proxy says
// about the request: believed from a trusted proxy, dropped from anyone else, so that a backend
// that builds URLs from them (Spring, Express, Rack, ...) cannot be steered by a client.
bool is_untrusted_forwarding_claim(std::string_view name, bool client_trusted) {
  constexpr std::string_view kPrefix = "x-forwarded-";
  return !client_trusted && name.size() >= kPrefix.size() &&
         same_as_cgi_name(name.substr(0, kPrefix.size()), kPrefix);
}

void append_header(std::string* out, std::string_view name, std::string_view value) {
  out->append(name).append(": ").append(value).append("\r\n");
}

// Appends the values of every header called `name` (in order), each followed by ", ": what a
// trusted proxy said before portico adds its own entry to the list.
void append_prior_values(std::string* out, const HttpHead& head, std::string_view name) {
  for (const HeaderField& h : head.headers) {
    if (iequals(h.name, name) && !h.value.empty()) out->append(h.value).append(", ");
  }
}

// RFC 7239 node: IPv6 addresses are quoted and bracketed.
void append_forwarded_node(std::string* out, std::string_view address) {
  if (address.find(':') != std::string_view::npos) {
    out->append("\"[").append(address).append("]\"");
  } else {
    out->append(address);
  }
}

void append_content_length(std::string* out, uint64_t length) {
  out->append("Content-Length: ");
  append_decimal(out, length);
  out->append("\r\n");
}

}  // namespace

void build_upstream_request_head(const UpstreamRequest& request, std::string* out) {
  const HttpHead& head = *request.head;
  out->append(head.method).append(" ").append(request.target).append(" HTTP/1.1\r\n");
  append_header(out, "Host", request.host);
  for (const HeaderField& h : head.headers) {
    if (iequals(h.name, "host") || is_hop_by_hop(h.name) || is_forwarding_header(h.name) ||
        is_untrusted_forwarding_claim(h.name, request.client_trusted)) {
      continue;
    }
    if (named_by_connection(head, h.name)) continue;
    // Portico answers Expect: 100-continue itself before it reads the body.
    if (iequals(h.name, "expect")) continue;
    append_header(out, h.name, h.value);
  }

  // Forwarding headers: a client's own values are dropped unless it is a trusted proxy.
  out->append("X-Forwarded-For: ");
  if (request.client_trusted) append_prior_values(out, head, "x-forwarded-for");
  out->append(request.client_address).append("\r\n");
  append_header(out, "X-Forwarded-Proto", "https");
  if (request.forward_host) append_header(out, "X-Forwarded-Host", request.host);
  out->append("Forwarded: ");
  if (request.client_trusted) append_prior_values(out, head, "forwarded");
  out->append("for=");
  append_forwarded_node(out, request.client_address);
  out->append(";proto=https");
  if (request.forward_host) out->append(";host=\"").append(request.host).append("\"");
  out->append("\r\n");

  switch (request.framing) {
    case BodyFraming::kContentLength:
      append_content_length(out, request.content_length);
      break;
    case BodyFraming::kChunked:
      out->append("Transfer-Encoding: chunked\r\n");
      break;
    case BodyFraming::kNone:
    case BodyFraming::kCloseDelimited:
      break;
  }
  if (request.upgrade) {
    append_header(out, "Upgrade", head.find("upgrade") ? head.find("upgrade")->value : "websocket");
    out->append("Connection: upgrade\r\n");
  } else {
    out->append("Connection: keep-alive\r\n");
  }
  out->append("\r\n");
}

BodyFraming build_client_response_head(const ClientResponse& response, std::string* out) {
  const HttpHead& head = *response.head;
  const bool switching = head.status == 101;
  out->append("HTTP/1.1 ");
  append_decimal(out, static_cast<uint64_t>(head.status));
  out->append(" ");
  out->append(head.reason.empty() ? reason_phrase(head.status) : std::string_view(head.reason));
  out->append("\r\n");
  // With --hsts the policy is portico's: a backend's own Strict-Transport-Security would come
  // first, and browsers heed only the first (RFC 6797 section 8.1), so it goes.
  const bool own_hsts = !response.site_headers.empty();
  for (const HeaderField& h : head.headers) {
    if (is_hop_by_hop(h.name) || named_by_connection(head, h.name)) continue;
    if (own_hsts && iequals(h.name, "strict-transport-security")) continue;
    append_header(out, h.name, h.value);
  }
  out->append(response.extra_headers);
  out->append(response.site_headers);

  if (switching) {
    append_header(out, "Upgrade", head.find("upgrade") ? head.find("upgrade")->value : "websocket");
    out->append("Connection: upgrade\r\n\r\n");
    return BodyFraming::kCloseDelimited;
  }

  bool keep_alive = response.keep_alive;
  BodyFraming out_framing = BodyFraming::kNone;
  const bool bodiless = response.head_request || status_has_no_content(head.status);
  if (bodiless) {
    // A HEAD answer keeps the length the GET would have had; 204 and 304 carry none.
    if (response.head_request && !status_has_no_content(head.status) &&
        response.framing == BodyFraming::kContentLength) {
      append_content_length(out, response.content_length);
    }
  } else {
    switch (response.framing) {
      case BodyFraming::kContentLength:
        append_content_length(out, response.content_length);
        out_framing = BodyFraming::kContentLength;
        break;
      case BodyFraming::kNone:
        append_content_length(out, 0);
        break;
      case BodyFraming::kChunked:
      case BodyFraming::kCloseDelimited:
        if (response.client_http11) {
          out->append("Transfer-Encoding: chunked\r\n");
          out_framing = BodyFraming::kChunked;
        } else {
          keep_alive = false;
          out_framing = BodyFraming::kCloseDelimited;
        }
        break;
    }
  }
  if (!keep_alive) {
    out->append("Connection: close\r\n");
  } else if (!response.client_http11) {
    out->append("Connection: keep-alive\r\n");
  }
  out->append("\r\n");
  return out_framing;
}

void build_simple_response(int status, std::string_view body, bool keep_alive,
                           std::initializer_list<std::string_view> extra_headers, std::string* out,
                           bool head_request) {
  size_t extra_size = 0;
  for (std::string_view part : extra_headers) extra_size += part.size();
  out->reserve(out->size() + 96 + extra_size + body.size());
  out->append("HTTP/1.1 ");
  append_decimal(out, static_cast<uint64_t>(status));
  out->append(" ").append(reason_phrase(status)).append("\r\n");
  if (!body.empty()) out->append("Content-Type: text/plain; charset=utf-8\r\n");
  append_content_length(out, body.size());
  for (std::string_view part : extra_headers) out->append(part);
  if (!keep_alive) out->append("Connection: close\r\n");
  out->append("\r\n");
  if (!head_request) out->append(body);
}

size_t chunk_header(uint64_t size, char* out) {
  static const char kHex[] = "0123456789abcdef";
  char digits[16];
  size_t n = 0;
  do {
    digits[n++] = kHex[size & 0xF];
    size >>= 4;
  } while (size != 0);
  size_t len = 0;
  while (n > 0) out[len++] = digits[--n];
  out[len++] = '\r';
  out[len++] = '\n';
  return len;
}

}  // namespace portico

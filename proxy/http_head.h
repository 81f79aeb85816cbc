#pragma once

// A parsed HTTP/1 message head (request or response), filled from llhttp's callbacks with
// limits on its size and header count, and the small pure helpers that read it.

#include <llhttp.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portico {

// Views into the head's buffer (or, in a head built by hand, into any string that outlives it).
struct HeaderField {
  std::string_view name;  // as received
  std::string_view value;
};

// A head's bytes (request-target, reason phrase, header names and values) are copied from
// llhttp's spans into one buffer the head owns, and the fields are views into it. clear() keeps
// the buffer and the field array, so a keep-alive connection allocates for its first head and
// afterwards only for a head larger than any before it, never past the head limit: nothing per
// request or response (docs/performance.md). Moving a head moves the buffer and keeps the views
// valid; copying is not allowed, because a copy's views would point into the original.
struct HttpHead {
  std::string_view method;  // requests: llhttp's static name for it
  std::string_view target;  // requests: the request-target as received
  int status = 0;           // responses
  std::string_view reason;  // responses
  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  std::vector<HeaderField> headers;

  // Accumulation state for llhttp's split callbacks.
  bool building_name = false;  // the last span was part of a header name
  bool in_value = false;       // the last span was part of a header value

  HttpHead() = default;
  HttpHead(const HttpHead&) = delete;
  HttpHead& operator=(const HttpHead&) = delete;
  HttpHead(HttpHead&&) noexcept = default;
  HttpHead& operator=(HttpHead&&) noexcept = default;

  // Building from llhttp's callbacks, one span at a time (llhttp splits any of these where a
  // read ends). Each returns false, appending nothing, when the head would pass `max_bytes` in
  // all (target, reason, names and values) or `max_count` header fields.
  bool append_target(const char* at, size_t len, size_t max_bytes);
  bool append_reason(const char* at, size_t len, size_t max_bytes);
  bool append_name(const char* at, size_t len, size_t max_bytes, size_t max_count);
  bool append_value(const char* at, size_t len, size_t max_bytes);
  // False unless the name is a token (RFC 9110 5.1: one or more tchar). llhttp 8.1 lets an
  // empty one through after a request line with no version and a bare CR, and spaces inside a
  // name or before its colon.
  bool end_name();
  // The value is whole: its trailing SP and HTAB are dropped (RFC 9112 section 5.1: OWS around
  // a value is no part of it; llhttp drops the leading OWS only). Here, not per span: a span
  // ending in a blank may be followed by more of the value.
  void end_value();

  // Bytes held for this head so far, and what its buffer can hold without allocating.
  size_t bytes() const { return text_.size(); }
  size_t capacity() const { return text_.capacity(); }

  void clear();
  // The first header with this name (case-insensitive), or nullptr.
  const HeaderField* find(std::string_view name) const;
  size_t count(std::string_view name) const;

 private:
  void append_span(std::string_view* view, const char* at, size_t len, size_t max_bytes);
  std::vector<char> text_;
};

bool iequals(std::string_view a, std::string_view b);
// One or more tchar (RFC 9110 section 5.6.2).
bool is_token(std::string_view text);

// RFC 9112 section 6.3: a 1xx, 204 or 304 response ends at its blank line, whatever length it
// claims.
inline bool status_has_no_content(int status) {
  return (status >= 100 && status < 200) || status == 204 || status == 304;
}

// RFC 9110 section 9.2.2: GET, HEAD, OPTIONS, TRACE, PUT and DELETE may be sent twice.
bool is_idempotent(std::string_view method);

// Why llhttp stopped: the reason a callback or llhttp set, or else the error's name. Never null
// (llhttp_get_error_reason is null when a callback failed without setting one).
const char* parse_error_reason(const llhttp_t* parser);

// True when the comma-separated header value contains `token` (case-insensitive), as in
// "Connection: keep-alive, Upgrade". With with_parameters, each item's ";..." parameters are
// left out of the comparison, as in "Sec-WebSocket-Extensions: permessage-deflate; x=1".
// Exactly one Transfer-Encoding field, and it says "chunked" alone: the only coding portico can
// re-frame (any other would reach the far side as bytes it cannot decode; RFC 9112 6.1).
bool has_only_chunked_coding(const HttpHead& head);
bool header_has_token(std::string_view value, std::string_view token, bool with_parameters = false);

// The value of cookie `name` in the request's Cookie headers (RFC 6265 section 5.4), or "": a
// view into the head, valid while the head is.
std::string_view cookie_value(const HttpHead& head, std::string_view name);

// Splits a Host header value into host and port after checking its syntax (RFC 3986 host:
// reg-name, IPv4 or [IPv6]; optional port). Returns false for anything else.
bool split_host_port(std::string_view value, std::string_view* host, std::string_view* port);

// An absolute-form request target (RFC 9112 3.2.2: "http://" or "https://", the scheme in any
// case, RFC 3986 3.1) split into its authority and the rest: the path and query, "/" when the
// target has neither. The rest starts with '?' when a query follows the authority directly,
// which callers refuse as they refuse any target that is not a path. False for any other form.
bool split_absolute_form(std::string_view target, std::string_view* authority,
                         std::string_view* path_and_query, std::string_view* scheme = nullptr);

// Whether an absolute-form target's authority and the Host header name the same authority:
// the same host, case aside, and the same port, a missing one being the target scheme's
// default (RFC 9110 4.2.3: https://example.com:443/ and Host: example.com are one).
bool same_authority(std::string_view scheme, std::string_view target_authority,
                    std::string_view host_header);

// The canonical reason phrase for the status codes portico itself writes.
std::string_view reason_phrase(int status);

}  // namespace portico

#pragma once

// A parsed HTTP/1 message head (request or response), filled from llhttp's callbacks with
// limits on its size and header count, and the small pure helpers that read it.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portico {

struct HeaderField {
  std::string name;  // as received
  std::string value;
};

struct HttpHead {
  std::string method;  // requests
  std::string target;  // requests: the request-target as received
  int status = 0;      // responses
  std::string reason;  // responses
  uint8_t version_major = 1;
  uint8_t version_minor = 1;
  std::vector<HeaderField> headers;

  // Accumulation state for llhttp's split callbacks.
  size_t bytes = 0;  // head bytes seen so far, for the limit
  bool in_value = false;

  void clear();
  // The first header with this name (case-insensitive), or nullptr.
  const HeaderField* find(std::string_view name) const;
  size_t count(std::string_view name) const;
};

bool iequals(std::string_view a, std::string_view b);

// True when the comma-separated header value contains `token` (case-insensitive), as in
// "Connection: keep-alive, Upgrade".
bool header_has_token(std::string_view value, std::string_view token);

// The value of cookie `name` in the request's Cookie headers (RFC 6265 section 5.4), or "".
std::string cookie_value(const HttpHead& head, std::string_view name);

// Splits a Host header value into host and port after checking its syntax (RFC 3986 host:
// reg-name, IPv4 or [IPv6]; optional port). Returns false for anything else.
bool split_host_port(std::string_view value, std::string_view* host, std::string_view* port);

// The canonical reason phrase for the status codes portico itself writes.
std::string_view reason_phrase(int status);

}  // namespace portico

#pragma once

// Request and response head rewriting: pure functions from a parsed head to the bytes that go
// out. Hop-by-hop headers (RFC 9110 section 7.6.1) are dropped, forwarding headers are set by
// portico, and message framing is always re-emitted by portico, never copied from the peer.

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "proxy/http_head.h"

namespace portico {

enum class BodyFraming {
  kNone,            // no body
  kContentLength,   // exactly content_length bytes
  kChunked,         // chunked transfer coding
  kCloseDelimited,  // responses only: the body ends when the connection closes
};

struct UpstreamRequest {
  const HttpHead* head = nullptr;  // the client's request head
  std::string_view target;         // what to send as request-target (path + query)
  std::string_view host;           // the client's Host value (kept as sent)
  bool forward_host = true;  // else `host` is the backend's address: no X-Forwarded-Host, host=
  std::string_view client_address;  // the peer address, without port
  bool client_trusted = false;      // peer is in --trusted-proxies: append to its X-Forwarded-*
  bool upgrade = false;             // a WebSocket upgrade: keep Upgrade and Connection: upgrade
  BodyFraming framing = BodyFraming::kNone;
  uint64_t content_length = 0;
};

// Appends the request head for the backend to `out`.
void build_upstream_request_head(const UpstreamRequest& request, std::string* out);

struct ClientResponse {
  const HttpHead* head = nullptr;  // the backend's response head
  bool head_request = false;       // the client asked with HEAD: no body follows
  bool client_http11 = true;       // else HTTP/1.0: no chunked coding, close-delimited instead
  bool keep_alive = true;          // the client connection stays open after this response
  BodyFraming framing = BodyFraming::kNone;  // the backend's framing
  uint64_t content_length = 0;
  std::string_view extra_headers;  // "Name: value\r\n" lines portico adds for this response
  // "Name: value\r\n" lines for every response: --hsts's, which replaces a backend's own.
  std::string_view site_headers;
};

// Appends the response head for the client to `out`. Returns the framing portico uses for the
// body towards the client (chunked re-encoding of a close-delimited body for HTTP/1.1 clients).
BodyFraming build_client_response_head(const ClientResponse& response, std::string* out);

// A complete small plain-text answer written by portico itself (errors, redirects). An empty
// body gets no Content-Type, only Content-Length: 0. `extra_headers` are pieces of
// "Name: value\r\n" lines, appended in order (pieces, so a caller need not join them first).
// The answer to a HEAD request has the head a GET would get and no body (RFC 9110 9.3.2): a
// body there would be read as the start of the next response.
void build_simple_response(int status, std::string_view body, bool keep_alive,
                           std::initializer_list<std::string_view> extra_headers, std::string* out,
                           bool head_request = false);

// Chunked coding: the chunk-size line for `size` bytes ("1a2b\r\n").
size_t chunk_header(uint64_t size, char* out /* >= 20 bytes */);

}  // namespace portico

#pragma once

// HTTP/1.1 message pieces shared by the test backend and the raw clients: header lists with
// case-insensitive lookup, and a parser that splits a received byte stream into responses (for
// pipelining and smuggling tests, where curl would hide what actually went over the wire).

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::test {

// In arrival order, names as received.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

bool iequals(std::string_view a, std::string_view b);
// The first value named `name` (case-insensitive), or "" if there is none.
std::string header_value(const HeaderList& headers, std::string_view name);
bool has_header(const HeaderList& headers, std::string_view name);
std::vector<std::string> header_values(const HeaderList& headers, std::string_view name);

// Gathers llhttp's header callbacks, which may split one name or value over several calls,
// into whole name/value pairs: a name piece after a value starts the next header. Used by both
// test-side parsers (the backend's requests, the raw clients' responses).
struct HeaderCollector {
  std::string field, value;
  bool last_was_value = false;

  void reset();                                                // at a message's start
  void field_piece(std::string_view piece, HeaderList& into);  // llhttp on_header_field
  void value_piece(std::string_view piece);                    // llhttp on_header_value
  void finish(HeaderList& into);  // at the end of the headers or trailers: the last one, if any
};

struct HttpResponse {
  std::string version;  // "HTTP/1.1"
  int status = 0;
  std::string reason;
  HeaderList headers;
  HeaderList trailers;
  std::string body;  // de-chunked
  bool chunked = false;
  bool complete = false;  // false: the bytes ended inside this response
  std::string error;      // set when the bytes stopped parsing as HTTP here

  std::string header(std::string_view name) const { return header_value(headers, name); }
  bool has_header(std::string_view name) const { return test::has_header(headers, name); }
  std::vector<std::string> headers_named(std::string_view name) const {
    return header_values(headers, name);
  }
};

// Splits `bytes` into the responses it holds, in order. `request_methods[i]` is the method of the
// request that response i answers; "HEAD" means no body follows the head (a missing entry means
// GET). 1xx interim responses are returned as responses of their own and take no method slot.
// `stream_ended`: the connection closed after `bytes`, which completes a close-delimited body.
// Parsing stops at the first error, reported in the last response's `error`.
std::vector<HttpResponse> parse_http_responses(std::string_view bytes,
                                               const std::vector<std::string>& request_methods = {},
                                               bool stream_ended = true);

}  // namespace portico::test

#include "tests/support/http_message.h"

#include <llhttp.h>
#include <strings.h>

namespace portico::test {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string header_value(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return v;
  }
  return "";
}

bool has_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) return true;
  }
  return false;
}

std::vector<std::string> header_values(const HeaderList& headers, std::string_view name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) out.push_back(v);
  }
  return out;
}

void HeaderCollector::reset() {
  field.clear();
  value.clear();
  last_was_value = false;
}

void HeaderCollector::field_piece(std::string_view piece, HeaderList& into) {
  if (last_was_value) finish(into);
  field.append(piece);
}

void HeaderCollector::value_piece(std::string_view piece) {
  value.append(piece);
  last_was_value = true;
}

void HeaderCollector::finish(HeaderList& into) {
  if (!field.empty() || last_was_value) into.emplace_back(field, value);
  reset();
}

namespace {

struct ResponseParser {
  llhttp_t parser;
  llhttp_settings_t settings;
  const std::vector<std::string>* methods;
  size_t method_index = 0;
  std::vector<HttpResponse> responses;
  bool in_headers = false;
  HeaderCollector collector;

  HttpResponse& current() { return responses.back(); }
  HeaderList& header_target() { return in_headers ? current().headers : current().trailers; }
};

ResponseParser* self(llhttp_t* p) { return static_cast<ResponseParser*>(p->data); }

int on_message_begin(llhttp_t* p) {
  auto* s = self(p);
  s->responses.emplace_back();
  s->in_headers = true;
  s->collector.reset();
  return 0;
}

int on_status(llhttp_t* p, const char* at, size_t len) {
  self(p)->current().reason.append(at, len);
  return 0;
}

int on_header_field(llhttp_t* p, const char* at, size_t len) {
  auto* s = self(p);
  s->collector.field_piece(std::string_view(at, len), s->header_target());
  return 0;
}

int on_header_value(llhttp_t* p, const char* at, size_t len) {
  self(p)->collector.value_piece(std::string_view(at, len));
  return 0;
}

int on_headers_complete(llhttp_t* p) {
  auto* s = self(p);
  s->collector.finish(s->header_target());
  s->in_headers = false;
  HttpResponse& r = s->current();
  r.status = p->status_code;
  r.version = "HTTP/" + std::to_string(p->http_major) + "." + std::to_string(p->http_minor);
  r.chunked = (p->flags & F_CHUNKED) != 0;
  if (r.status >= 100 && r.status < 200) return 0;  // interim: answers no request slot
  size_t i = s->method_index++;
  bool head = i < s->methods->size() && (*s->methods)[i] == "HEAD";
  return head ? 1 : 0;  // 1: this response has no body
}

int on_body(llhttp_t* p, const char* at, size_t len) {
  self(p)->current().body.append(at, len);
  return 0;
}

int on_message_complete(llhttp_t* p) {
  auto* s = self(p);
  s->collector.finish(s->header_target());  // trailers
  s->current().complete = true;
  return 0;
}

}  // namespace

std::vector<HttpResponse> parse_http_responses(std::string_view bytes,
                                               const std::vector<std::string>& request_methods,
                                               bool stream_ended) {
  ResponseParser s;
  s.methods = &request_methods;
  llhttp_settings_init(&s.settings);
  s.settings.on_message_begin = on_message_begin;
  s.settings.on_status = on_status;
  s.settings.on_header_field = on_header_field;
  s.settings.on_header_value = on_header_value;
  s.settings.on_headers_complete = on_headers_complete;
  s.settings.on_body = on_body;
  s.settings.on_message_complete = on_message_complete;
  llhttp_init(&s.parser, HTTP_RESPONSE, &s.settings);
  s.parser.data = &s;

  llhttp_errno_t err = llhttp_execute(&s.parser, bytes.data(), bytes.size());
  if (err == HPE_OK && stream_ended) err = llhttp_finish(&s.parser);
  if (err != HPE_OK && err != HPE_PAUSED_UPGRADE) {
    if (s.responses.empty()) s.responses.emplace_back();
    const char* pos = llhttp_get_error_pos(&s.parser);
    size_t offset = pos != nullptr ? static_cast<size_t>(pos - bytes.data()) : bytes.size();
    s.responses.back().error = std::string(llhttp_errno_name(err)) + ": " +
                               llhttp_get_error_reason(&s.parser) + " at byte " +
                               std::to_string(offset);
  }
  return std::move(s.responses);
}

}  // namespace portico::test

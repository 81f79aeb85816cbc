#pragma once

// The port-80 listener's connections: every request is answered with a redirect to HTTPS
// (301 for GET/HEAD, 308 otherwise so that the method and body are kept), path and query
// unchanged. Nothing is ever forwarded from here. The one exception, with --acme-webroot DIR:
// GET/HEAD /.well-known/acme-challenge/TOKEN is answered with DIR/.well-known/acme-challenge/TOKEN
// (ACME http-01, RFC 8555 section 8.3; certbot's --webroot layout), and nothing else of DIR.

#include <llhttp.h>
#include <uv.h>

#include <string>

#include "proxy/http_head.h"
#include "proxy/stream_writer.h"
#include "proxy/worker_context.h"

namespace portico {

// The Location for a request to `host_header` + `target`, or "" when the Host is not a valid
// host[:port] or the target is not a path the TLS port would serve (a fragment, a control
// byte, a broken escape, ".." above the root). Bytes above ASCII are %-escaped; the rest of
// the target is kept as sent. `https_port` 443 is left out of the URL.
std::string https_redirect_location(std::string_view host_header, std::string_view target,
                                    uint16_t https_port);

inline constexpr std::string_view kAcmeChallengePrefix = "/.well-known/acme-challenge/";

enum class AcmeTarget {
  kNotAcme,  // any other path: redirect as usual
  kToken,    // *token is a valid token name
  kInvalid,  // under the challenge path, but not a token name: 404, nothing is read
};

// Why challenges under --acme-webroot `dir` could not be served (it does not exist, or is not
// a directory), or "" when they can. Said at start and by --check as a warning, not an
// error: the directory may be made or mounted later, as certbot's --webroot does.
std::string acme_webroot_problem(const std::string& dir);

// Classifies a request target (origin-form). A token is [A-Za-z0-9_-]+ (RFC 8555: base64url),
// at most 256 characters, so "..", "/", "%2e" or "%2f" can never reach the file system.
AcmeTarget acme_challenge_token(std::string_view target, std::string* token);

class RedirectConnection final : private StreamWriter::Owner {
 public:
  static void accept_from(WorkerContext& ctx, uv_stream_t* server);
  // Ends every open redirect connection of `ctx` (the worker stops): an answer in flight gets
  // one chance at the socket; a redirect is cheap to ask for again.
  static void close_all(WorkerContext& ctx);
  // At the connection limit, the TLS listener makes room by ending a redirect connection that
  // waits for a request (NGINX reuses idle keep-alive connections so): false when none does.
  static bool close_one_idle(WorkerContext& ctx);

 private:
  explicit RedirectConnection(WorkerContext& ctx);
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void on_timer(uv_timer_t* timer);
  static void on_closed(uv_handle_t* handle);
  void on_write_done(int status) override;
  void answer();
  void log_request(std::string_view route, int status, size_t bytes_out,
                   std::string_view error = {});
  // Ends a request that gets no redirect, malformed (400) or its head late (408): logged and
  // counted like any answer, with `why` as its error, and the connection ends after it, as on
  // the TLS port.
  void refuse(int status, std::string_view why);
  bool answer_acme(std::string* response, int* status);
  void close();

  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, size_t len);
  static int on_header_field(llhttp_t* p, const char* at, size_t len);
  static int on_header_field_complete(llhttp_t* p);
  static int on_header_value(llhttp_t* p, const char* at, size_t len);
  static int on_header_value_complete(llhttp_t* p);
  static int on_headers_complete(llhttp_t* p);
  static int on_message_complete(llhttp_t* p);
  // After an answer sent before the request's body: read and drop what the client still sends
  // until it closes (bounded), so that closing with unread bytes (a reset) cannot destroy the
  // answer before the client reads it (NGINX's lingering close).
  void end_after_write();
  static const llhttp_settings_t& settings();

  WorkerContext& ctx_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  int open_handles_ = 2;
  bool closing_ = false;
  bool close_after_write_ = false;
  bool body_follows_ = false;  // the request announced a body: the answer does not wait for it
  bool lingering_ = false;     // end_after_write() is dropping the rest of it
  bool read_paused_ = false;   // the client is slow to take its answers: reads wait
  bool mid_request_ = false;   // a request began and is not answered yet
  bool answered_ = false;      // a request was answered: later heads get their own timeout
  uint64_t linger_until_ms_ = 0;
  StreamWriter writer_;
  llhttp_t parser_;
  HttpHead request_;
  std::chrono::steady_clock::time_point request_start_{};  // the request's first byte
  std::string peer_address_;
};

}  // namespace portico

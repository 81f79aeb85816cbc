#pragma once

// The real portico binary, started for one test with a route file and a generated certificate,
// listening on 127.0.0.1 with an ephemeral HTTPS port.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"

namespace portico::test {

// The TLS flags in full, for PorticoProcess (a distinct type: a braced list of strings would
// also convert to a TestCert).
struct TlsArgs {
  std::vector<std::string> args;
};

class PorticoProcess {
 public:
  // Writes `routes_text` to a file in `dir` and runs
  //   portico --routes FILE --cert FULLCHAIN --key KEY --https-port 0 --http-port P
  //           --listen 127.0.0.1 EXTRA...
  // with P = free_port() unless `extra_args` has --http-port (0 turns the redirect listener off).
  // Waits up to 10 s for the "listening kind=https" (and kind=http) lines; fails the test if
  // portico exits or does not log them.
  PorticoProcess(const TempDir& dir, std::string routes_text, const TestCert& cert,
                 std::vector<std::string> extra_args = {});
  // The same with the TLS flags given in full (several --cert/--key pairs, --cert-dir, or none
  // at all for the development certificate) instead of one TestCert's pair.
  PorticoProcess(const TempDir& dir, std::string routes_text, const TlsArgs& tls_args,
                 std::vector<std::string> extra_args = {});

  ~PorticoProcess();
  PorticoProcess(const PorticoProcess&) = delete;
  PorticoProcess& operator=(const PorticoProcess&) = delete;

  // For tests that end the proxy in a way that is meant to fail (a second SIGTERM).
  void expect_nonzero_exit() { expect_nonzero_exit_ = true; }

  uint16_t https_port() const { return https_port_; }
  uint16_t http_port() const { return http_port_; }  // 0 if the redirect listener is off
  Process& process() { return *process_; }
  std::string stderr_text() const { return process_->stderr_text(); }
  const std::string& routes_path() const { return routes_path_; }
  // "https://localhost:PORT" + path
  std::string url(const std::string& path = "/") const;
  // "http://localhost:PORT" + path (the redirect listener)
  std::string http_url(const std::string& path = "/") const;
  // Started with --admin ADDR: the admin listener's port (waits up to 10 s for its line).
  uint16_t admin_port();
  // One plain-HTTP request to the admin listener; the whole response, head and body. `path`
  // may carry more of the request line and headers (tests of malformed requests).
  std::string admin_get(const std::string& path, const std::string& method = "GET");

 private:
  std::string routes_path_;
  std::unique_ptr<Process> process_;
  uint16_t https_port_ = 0;
  uint16_t http_port_ = 0;
  uint16_t admin_port_ = 0;
  bool expect_nonzero_exit_ = false;

  void check_clean_exit();
  void start(const TempDir& dir, std::string routes_text, std::vector<std::string> tls_args,
             std::vector<std::string> extra_args);
};

}  // namespace portico::test

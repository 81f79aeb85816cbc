#pragma once

// The command line, parsed into an immutable Config. Only main() reads flags; everything else
// receives the pieces of Config it needs.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/cidr.h"
#include "proxy/log.h"

namespace portico {

struct CertKeyFiles {
  std::string cert;
  std::string key;
};

struct Config {
  std::string routes_path;
  std::vector<CertKeyFiles> certificates;
  std::string listen_address = "0.0.0.0";
  uint16_t https_port = 443;
  uint16_t http_port = 80;  // 0: no redirect listener
  std::vector<Cidr> trusted_proxies;
  std::string access_log = "-";  // "-" stderr, "off", or a file path
  LogLevel log_level = LogLevel::kInfo;
  bool check_only = false;  // --check: validate, print the table, exit (no listener)
  bool probe = false;       // --probe (with --check): also connect to every backend
  std::chrono::milliseconds probe_timeout{3'000};  // per backend probe

  // Limits and timeouts (each a flag; see docs/configuration.md).
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{30'000};     // whole request head must arrive in this
  std::chrono::milliseconds keepalive_timeout{75'000};  // idle client between requests
  size_t max_header_bytes = 32 * 1024;                  // request line + headers (431 above)
  size_t max_header_count = 100;
};

struct ConfigResult {
  enum class Action { kRun, kHelp, kVersion, kError } action = Action::kError;
  Config config;
  std::string error;  // for kError: one line, without the program name
};

ConfigResult parse_command_line(int argc, const char* const* argv);

const char* usage_text();

}  // namespace portico

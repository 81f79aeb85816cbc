#pragma once

// The command line, parsed into an immutable Config. Only main() reads flags; everything else
// receives the pieces of Config it needs.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/access_log.h"
#include "proxy/cidr.h"
#include "proxy/log.h"

namespace portico {

struct CertKeyFiles {
  std::string cert;
  std::string key;
};

// 10,000 idle connections take about 200 MiB (docs/operations.md).
inline constexpr size_t kDefaultMaxConnections = 10'000;

struct Config {
  std::string routes_path;
  std::vector<CertKeyFiles> certificates;
  // TLS (docs/tls.md).
  std::string cert_dir;  // --cert-dir: NAME.crt/NAME.key pairs and certbot live/NAME/ folders
  int tls_min_version = 0x0303;  // --tls-min: TLS1_2_VERSION or TLS1_3_VERSION
  bool strict = false;           // --strict: an expired certificate stops the start or reload
  // --hsts[=SECONDS]; none: no Strict-Transport-Security (the default). 0 is a value: max-age=0
  // tells browsers to forget an earlier one (RFC 6797 section 6.1.1).
  std::optional<uint32_t> hsts_max_age;
  std::string acme_webroot;  // --acme-webroot: serve http-01 challenges on the port-80 side
  std::vector<std::string> dev_names;  // --dev-name: more names for the dev certificate
  std::string state_dir;               // --state-dir; "" = default_state_dir()
  // No certificate given: `certificates` holds portico's own development certificate, read once
  // at start (a reload keeps it: after --user its root-only state directory is out of reach,
  // and another portico with other --dev-names may rewrite the file).
  bool dev_certificate = false;
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
  // A client that takes none of the bytes portico holds for it for this long is dropped
  // (NGINX's send_timeout); while it takes some, nothing else ends the connection.
  std::chrono::milliseconds send_timeout{60'000};
  size_t max_header_bytes = 32 * 1024;  // request line + headers (431 above)
  size_t max_header_count = 100;
  // Bytes a connection may hold for one direction before the other side's reads stop (the
  // backpressure high mark; reads resume below a quarter of it).
  size_t max_buffer = 256 * 1024;
  // TLS client connections served at once (each tunnel holds a second socket to its backend).
  // At the limit portico stops accepting; the kernel's listen queue holds newcomers until a
  // connection ends. 0 = kDefaultMaxConnections, or fewer if the open files limit cannot carry
  // that many tunnels (main.cc).
  size_t max_connections = 0;
  // --workers: event loops, one thread each; 0 = one per core (uv_available_parallelism).
  unsigned workers = 0;
  unsigned worker_count() const;
  // --user: the user portico runs as once its ports are bound (privileges.h); "" = unchanged.
  std::string user;
  size_t connection_limit() const {
    return max_connections != 0 ? max_connections : kDefaultMaxConnections;
  }

  // Operations (see docs/operations.md).
  bool proxy_protocol = false;  // the TLS listener expects a PROXY v1/v2 header first
  AccessLogFormat log_format = AccessLogFormat::kKv;
  std::string admin_address;  // --admin: "" when off
  uint16_t admin_port = 0;
  std::vector<Cidr> admin_allow;  // besides loopback, which is always allowed
};

struct ConfigResult {
  enum class Action { kRun, kHelp, kVersion, kError } action = Action::kError;
  Config config;
  std::string error;  // for kError: one line, without the program name
};

ConfigResult parse_command_line(int argc, const char* const* argv);

const char* usage_text();

// The "Name: value\r\n" lines portico adds to every HTTPS response: Strict-Transport-Security
// when --hsts is given (max-age=0 included), else nothing.
std::string site_response_headers(const Config& config);

}  // namespace portico

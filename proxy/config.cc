#include "proxy/config.h"

#include <uv.h>

#include <algorithm>
#include <charconv>
#include <string_view>

#include "proxy/tcp_listener.h"
#include "routing/route_table.h"

namespace portico {

unsigned Config::worker_count() const {
  return workers != 0 ? workers : std::max(1u, uv_available_parallelism());
}

const char* usage_text() {
  return R"(usage: portico --routes FILE --cert PEM --key PEM [options]

Terminates TLS, redirects HTTP to HTTPS, and routes requests and WebSocket
streams by host and path prefix to the backends named in the route file.

  --routes FILE            route table file (see docs/routes.md)
  --cert PEM --key PEM     certificate chain and private key (PEM); repeat the pair for
                           several certificates, chosen by SNI (see docs/tls.md)
  --cert-dir DIR           load every NAME.crt/NAME.key pair and every DIR/NAME/ with
                           fullchain.pem/privkey.pem (certbot's live/ layout)
                           (no --cert/--cert-dir: a self-signed development certificate)
  --dev-name NAME          another name for the development certificate (repeatable)
  --state-dir DIR          where the development certificate is kept
                           (default $XDG_STATE_HOME/portico or ~/.local/state/portico)
  --tls-min 1.2|1.3        lowest TLS version accepted (default 1.2)
  --strict                 an expired certificate is an error, not a warning
  --hsts[=SECONDS]         send Strict-Transport-Security (default max-age 31536000 when
                           given; off unless given; --hsts=0 tells browsers to forget it)
  --acme-webroot DIR       serve /.well-known/acme-challenge/TOKEN from DIR on the HTTP port
                           (so not with --http-port 0)
  --https-port N           TLS listener port (default 443; 0 picks a free port)
  --http-port N            redirect listener port (default 80; 0 turns it off)
  --listen ADDR            address to listen on (default 0.0.0.0; e.g. ::, 127.0.0.1)
  --trusted-proxies LIST   comma-separated CIDRs whose X-Forwarded-*/Forwarded
                           headers are kept and appended to (default: none)
  --access-log FILE|-|off  access log destination (default -: stderr)
  --log-level LEVEL        debug, info, warn or error (default info)
  --handshake-timeout DUR  TLS handshake time limit (default 10s)
  --header-timeout DUR     time limit for a request's head to arrive (default 30s)
  --keepalive-timeout DUR  idle client connection time limit (default 75s)
  --send-timeout DUR       longest a client may take none of its answer (default 60s)
  --max-header-bytes SIZE  request line plus headers limit, 431 above (default 32k)
  --max-headers N          header count limit, 431 above (default 100)
  --max-buffer SIZE        bytes held per connection and direction before the sending
                           side is paused (default 256k; reads resume below a quarter)
  --user NAME              after binding the ports and reading the certificates, run as
                           this user and its group (needs root; without it, a root
                           portico warns that it keeps root)
  --workers N              event loops, one thread each, sharing the ports (default: one
                           per core)
  --max-connections N      client connections served at once per worker; above it new connections
                           wait in the listen queue (default 10000, or fewer when the
                           open files limit cannot carry that many tunnels)
  --proxy-protocol         expect a PROXY protocol v1/v2 header before each TLS
                           handshake (behind an L4 load balancer)
  --log-format FORMAT      access log format: kv, combined or json (default kv)
  --admin ADDR:PORT        plain-HTTP admin listener: /metrics, /healthz, status page / and
                           /status.json
  --admin-allow LIST       comma-separated CIDRs allowed on the admin listener
                           besides loopback (default: loopback only)
  --check                  validate the route file and certificates, print the table and
                           the certificate checks, exit (0 ok, 1 a check failed, 2 invalid)
  --probe                  with --check: also send a request (or a WebSocket handshake)
                           to every backend of every route
  --probe-timeout DUR      time limit of each probe (default 3s)
  --help                   this text
  --version                the version
)";
}

namespace {

// One year: what the HSTS preload list asks for, and long enough to matter.
constexpr uint32_t kDefaultHstsMaxAge = 31'536'000;

bool parse_port(std::string_view text, uint16_t* out) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value > 65535) return false;
  *out = static_cast<uint16_t>(value);
  return true;
}

// "127.0.0.1:9100" or "[::1]:9100". The address is checked when it is bound.
bool parse_host_port(std::string_view text, std::string* host, uint16_t* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view address = text.substr(0, colon);
  if (address.front() == '[') {
    if (address.size() < 3 || address.back() != ']') return false;
    address = address.substr(1, address.size() - 2);
  } else if (address.find(':') != std::string_view::npos) {
    return false;  // an IPv6 address needs its brackets
  }
  if (!parse_port(text.substr(colon + 1), port)) return false;
  *host = address;
  return true;
}

// Listeners bind addresses, not names: "localhost" would have to be resolved, and could mean
// two addresses. The same parse listen_tcp makes, so that --check refuses what a start would.
bool is_listen_address(const std::string& text) {
  sockaddr_storage parsed{};
  return parse_listen_address(text, 0, &parsed);
}

// A name the development certificate can carry: an IP address, or a DNS name, optionally "*."
// first. The names are joined into OpenSSL's subjectAltName text, where a ',' or ':' would add
// names of its own.
bool is_dev_name(std::string_view name) {
  if (is_listen_address(std::string(name))) return true;
  if (name.starts_with("*.")) name.remove_prefix(2);
  return check_dns_name(name).empty();
}

}  // namespace

ConfigResult parse_command_line(int argc, const char* const* argv) {
  ConfigResult result;
  Config& config = result.config;
  std::vector<std::string> certs, keys;
  auto fail = [&](std::string message) {
    result.action = ConfigResult::Action::kError;
    result.error = std::move(message);
    return result;
  };

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool has_inline_value = false;
    if (arg.starts_with("--")) {
      if (size_t eq = arg.find('='); eq != std::string_view::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        has_inline_value = true;
      }
    }
    // An empty value is no value: "--access-log ''" would otherwise pass --check and fail at
    // start, and "--cert-dir ''" or "--user ''" would silently mean "not given".
    auto take_value = [&]() -> bool {
      if (!has_inline_value) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
      }
      return !value.empty();
    };
    auto needs = [&](std::string_view what) {
      return fail(std::string(arg) + " needs " + std::string(what));
    };
    // On/off flags take no value: "--proxy-protocol=off" must not switch it on.
    if (has_inline_value &&
        (arg == "--help" || arg == "-h" || arg == "--version" || arg == "--check" ||
         arg == "--probe" || arg == "--strict" || arg == "--proxy-protocol")) {
      return fail(std::string(arg) + " takes no value (leave it out to keep it off)");
    }

    if (arg == "--help" || arg == "-h") {
      result.action = ConfigResult::Action::kHelp;
      return result;
    } else if (arg == "--version") {
      result.action = ConfigResult::Action::kVersion;
      return result;
    } else if (arg == "--check") {
      config.check_only = true;
    } else if (arg == "--probe") {
      config.probe = true;
    } else if (arg == "--routes") {
      if (!take_value()) return needs("a file");
      config.routes_path = value;
    } else if (arg == "--cert") {
      if (!take_value()) return needs("a PEM file");
      certs.emplace_back(value);
    } else if (arg == "--key") {
      if (!take_value()) return needs("a PEM file");
      keys.emplace_back(value);
    } else if (arg == "--cert-dir") {
      if (!take_value()) return needs("a directory");
      config.cert_dir = value;
    } else if (arg == "--dev-name") {
      if (!take_value()) return needs("a host name or address");
      if (!is_dev_name(value)) {
        return fail(
            "--dev-name: expected a host name (a.example, *.a.example) or an IP "
            "address, got \"" +
            std::string(value) + "\"");
      }
      config.dev_names.emplace_back(value);
    } else if (arg == "--state-dir") {
      if (!take_value()) return needs("a directory");
      config.state_dir = value;
    } else if (arg == "--tls-min") {
      if (!take_value()) return needs("1.2 or 1.3");
      if (value == "1.2") {
        config.tls_min_version = 0x0303;
      } else if (value == "1.3") {
        config.tls_min_version = 0x0304;
      } else {
        return fail("--tls-min: expected 1.2 or 1.3, got \"" + std::string(value) + "\"");
      }
    } else if (arg == "--strict") {
      config.strict = true;
    } else if (arg == "--hsts") {
      // The value only inline (--hsts=N): "--hsts 600" would be ambiguous with the next flag.
      config.hsts_max_age = kDefaultHstsMaxAge;
      if (has_inline_value) {
        unsigned n = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc() || ptr != value.data() + value.size()) {
          return fail("--hsts: expected a max-age in seconds (e.g. --hsts=31536000), got \"" +
                      std::string(value) + "\"");
        }
        config.hsts_max_age = n;
      }
    } else if (arg == "--acme-webroot") {
      if (!take_value()) return needs("a directory");
      config.acme_webroot = value;
    } else if (arg == "--https-port" || arg == "--http-port") {
      if (!take_value()) return needs("a port number");
      uint16_t port = 0;
      if (!parse_port(value, &port)) {
        return fail(std::string(arg) + ": not a port number: \"" + std::string(value) + "\"");
      }
      (arg == "--https-port" ? config.https_port : config.http_port) = port;
    } else if (arg == "--listen") {
      if (!take_value()) return needs("an address");
      config.listen_address = value;
      if (!is_listen_address(config.listen_address)) {
        return fail("--listen: not an IP address: \"" + std::string(value) +
                    "\" (0.0.0.0, ::, 127.0.0.1, ...)");
      }
    } else if (arg == "--trusted-proxies") {
      if (!take_value()) return needs("a list of CIDR ranges");
      std::string error;
      auto list = parse_cidr_list(value, &error);
      if (!list) return fail("--trusted-proxies: " + error);
      config.trusted_proxies = std::move(*list);
    } else if (arg == "--access-log") {
      if (!take_value()) return needs("a file, - or off");
      config.access_log = value;
    } else if (arg == "--log-level") {
      if (!take_value()) return needs("a level");
      if (!parse_log_level(value, &config.log_level)) {
        return fail("--log-level: expected debug, info, warn or error, got \"" +
                    std::string(value) + "\"");
      }
    } else if (arg == "--handshake-timeout" || arg == "--header-timeout" ||
               arg == "--keepalive-timeout" || arg == "--send-timeout" ||
               arg == "--probe-timeout") {
      if (!take_value()) return needs("a duration such as 10s");
      auto duration = parse_duration(value);
      if (!duration || duration->count() <= 0) {
        return fail(std::string(arg) + ": not a duration (e.g. 500ms, 10s, 2m): \"" +
                    std::string(value) + "\"");
      }
      if (arg == "--handshake-timeout") config.handshake_timeout = *duration;
      if (arg == "--header-timeout") config.header_timeout = *duration;
      if (arg == "--keepalive-timeout") config.keepalive_timeout = *duration;
      if (arg == "--send-timeout") config.send_timeout = *duration;
      if (arg == "--probe-timeout") config.probe_timeout = *duration;
    } else if (arg == "--max-header-bytes") {
      if (!take_value()) return needs("a size such as 32k");
      auto size = parse_size(value);
      if (!size || *size < 1024 || *size > 1024 * 1024) {
        return fail("--max-header-bytes: expected a size from 1k to 1m, got \"" +
                    std::string(value) + "\"");
      }
      config.max_header_bytes = *size;
    } else if (arg == "--proxy-protocol") {
      config.proxy_protocol = true;
    } else if (arg == "--log-format") {
      if (!take_value()) return needs("kv, combined or json");
      if (!parse_access_log_format(value, &config.log_format)) {
        return fail("--log-format: expected kv, combined or json, got \"" + std::string(value) +
                    "\"");
      }
    } else if (arg == "--admin") {
      if (!take_value()) return needs("an address and port such as 127.0.0.1:9100");
      if (!parse_host_port(value, &config.admin_address, &config.admin_port)) {
        return fail("--admin: expected ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100), got \"" +
                    std::string(value) + "\"");
      }
      if (!is_listen_address(config.admin_address)) {
        return fail("--admin: not an IP address: \"" + config.admin_address +
                    "\" (e.g. 127.0.0.1:9100 or [::1]:9100)");
      }
    } else if (arg == "--admin-allow") {
      if (!take_value()) return needs("a list of CIDR ranges");
      std::string error;
      auto list = parse_cidr_list(value, &error);
      if (!list) return fail("--admin-allow: " + error);
      config.admin_allow = std::move(*list);
    } else if (arg == "--max-headers") {
      if (!take_value()) return needs("a number");
      unsigned n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || n < 1 || n > 10000) {
        return fail("--max-headers: expected a number from 1 to 10000, got \"" +
                    std::string(value) + "\"");
      }
      config.max_header_count = n;
    } else if (arg == "--workers") {
      if (!take_value()) return needs("a number");
      unsigned n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || n < 1 || n > 256) {
        return fail("--workers: expected a number from 1 to 256, got \"" + std::string(value) +
                    "\"");
      }
      config.workers = n;
    } else if (arg == "--user") {
      if (!take_value()) return needs("a user name");
      config.user = std::string(value);
    } else if (arg == "--max-buffer") {
      if (!take_value()) return needs("a size");
      auto size = parse_size(value);
      if (!size || *size < 16 * 1024 || *size > 64 * 1024 * 1024) {
        return fail("--max-buffer: expected a size from 16k to 64m, got \"" + std::string(value) +
                    "\"");
      }
      config.max_buffer = *size;
    } else if (arg == "--max-connections") {
      if (!take_value()) return needs("a number");
      unsigned n = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || ptr != value.data() + value.size() || n < 1 || n > 1000000) {
        return fail("--max-connections: expected a number from 1 to 1000000, got \"" +
                    std::string(value) + "\"");
      }
      config.max_connections = n;
    } else {
      return fail("unknown option \"" + std::string(arg) + "\" (see --help)");
    }
  }

  if (config.routes_path.empty()) return fail("--routes FILE is required (see --help)");
  // No certificate at all is the development mode (main makes a self-signed one).
  if (certs.size() != keys.size()) {
    return fail("--cert and --key must be given in pairs (got " + std::to_string(certs.size()) +
                " --cert and " + std::to_string(keys.size()) + " --key)");
  }
  for (size_t i = 0; i < certs.size(); ++i) config.certificates.push_back({certs[i], keys[i]});
  if (config.probe && !config.check_only) return fail("--probe needs --check");
  if (!config.admin_allow.empty() && config.admin_address.empty()) {
    return fail("--admin-allow needs --admin");
  }
  // Challenges are served on the HTTP port only: without it the flag would be parsed and do
  // nothing, and certbot's validation would fail with no word from portico.
  if (!config.acme_webroot.empty() && config.http_port == 0) {
    return fail("--acme-webroot needs the HTTP listener, but --http-port is 0");
  }
  if (config.http_port != 0 && config.http_port == config.https_port) {
    return fail("--http-port and --https-port must differ");
  }
  result.action = ConfigResult::Action::kRun;
  return result;
}

std::string site_response_headers(const Config& config) {
  if (!config.hsts_max_age) return "";
  return "Strict-Transport-Security: max-age=" + std::to_string(*config.hsts_max_age) + "\r\n";
}

}  // namespace portico

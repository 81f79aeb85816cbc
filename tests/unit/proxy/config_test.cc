// parse_command_line: every flag, every error message, the defaults.

#include "proxy/config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/check.h"

namespace portico {
namespace {

using namespace std::chrono_literals;

ConfigResult parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"portico"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// The flags every run needs, then `extra`.
ConfigResult parse_with_required(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--routes", "r.txt", "--cert", "c.pem", "--key", "k.pem"};
  args.insert(args.end(), extra.begin(), extra.end());
  return parse(args);
}

std::string error_of(std::vector<std::string> args) {
  ConfigResult r = parse(std::move(args));
  REQUIRE(r.action == ConfigResult::Action::kError);
  return r.error;
}

std::string error_with_required(std::vector<std::string> extra) {
  ConfigResult r = parse_with_required(std::move(extra));
  REQUIRE(r.action == ConfigResult::Action::kError);
  return r.error;
}

TEST_CASE("config: defaults", "[config]") {
  ConfigResult r = parse_with_required({});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  const Config& c = r.config;
  CHECK(c.routes_path == "r.txt");
  REQUIRE(c.certificates.size() == 1);
  CHECK(c.certificates[0].cert == "c.pem");
  CHECK(c.certificates[0].key == "k.pem");
  CHECK(c.listen_address == "0.0.0.0");
  CHECK(c.https_port == 443);
  CHECK(c.http_port == 80);
  CHECK(c.trusted_proxies.empty());
  CHECK(c.access_log == "-");
  CHECK(c.log_level == LogLevel::kInfo);
  CHECK_FALSE(c.check_only);
  CHECK_FALSE(c.probe);
  CHECK(c.probe_timeout == 3s);
  CHECK(c.handshake_timeout == 10s);
  CHECK(c.header_timeout == 30s);
  CHECK(c.keepalive_timeout == 75s);
  CHECK(c.send_timeout == 60s);
  CHECK(c.max_header_bytes == 32 * 1024);
  CHECK(c.max_header_count == 100);
  CHECK(c.max_buffer == 256 * 1024);
  CHECK(c.max_connections == 0);  // main.cc: 10,000 or what the open files limit carries
  CHECK(c.connection_limit() == 10'000);
}

TEST_CASE("config: --help, -h and --version win over everything else", "[config]") {
  CHECK(parse({"--help"}).action == ConfigResult::Action::kHelp);
  CHECK(parse({"-h"}).action == ConfigResult::Action::kHelp);
  CHECK(parse({"--version"}).action == ConfigResult::Action::kVersion);
  // Stops at the first of them: later errors are not reported.
  CHECK(parse({"--help", "--bogus"}).action == ConfigResult::Action::kHelp);
  CHECK(std::string(usage_text()).find("--check") != std::string::npos);
  CHECK(std::string(usage_text()).find("--probe") != std::string::npos);
}

TEST_CASE("config: each flag, with a separate and an inline value", "[config]") {
  ConfigResult r = parse_with_required({"--https-port",
                                        "8443",
                                        "--http-port=8080",
                                        "--listen",
                                        "::",
                                        "--trusted-proxies",
                                        "10.0.0.0/8,192.168.1.1",
                                        "--access-log=off",
                                        "--log-level",
                                        "debug",
                                        "--handshake-timeout",
                                        "2s",
                                        "--header-timeout=500ms",
                                        "--keepalive-timeout",
                                        "2m",
                                        "--max-header-bytes",
                                        "64k",
                                        "--max-headers=50",
                                        "--check",
                                        "--probe",
                                        "--probe-timeout",
                                        "750ms"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  const Config& c = r.config;
  CHECK(c.https_port == 8443);
  CHECK(c.http_port == 8080);
  CHECK(c.listen_address == "::");
  CHECK(c.trusted_proxies.size() == 2);
  CHECK(c.access_log == "off");
  CHECK(c.log_level == LogLevel::kDebug);
  CHECK(c.handshake_timeout == 2s);
  CHECK(c.header_timeout == 500ms);
  CHECK(c.keepalive_timeout == 2min);
  CHECK(c.max_header_bytes == 64 * 1024);
  CHECK(c.max_header_count == 50);
  CHECK(c.check_only);
  CHECK(c.probe);
  CHECK(c.probe_timeout == 750ms);
}

TEST_CASE("config: ports 0 and the limits of each range", "[config]") {
  ConfigResult r = parse_with_required({"--https-port", "0", "--http-port", "0"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.https_port == 0);
  CHECK(r.config.http_port == 0);  // no redirect listener; equal ports are then fine
  r = parse_with_required(
      {"--https-port", "65535", "--max-header-bytes", "1k", "--max-headers", "10000"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.https_port == 65535);
  CHECK(r.config.max_header_bytes == 1024);
  CHECK(r.config.max_header_count == 10000);
  r = parse_with_required({"--max-header-bytes", "1m", "--max-headers", "1"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.max_header_bytes == 1024 * 1024);
  CHECK(r.config.max_header_count == 1);
  r = parse_with_required({"--max-buffer", "16k", "--max-connections", "1"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.max_buffer == 16 * 1024);
  CHECK(r.config.connection_limit() == 1);
  r = parse_with_required({"--max-buffer", "64m", "--max-connections", "1000000"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  CHECK(r.config.max_buffer == 64 * 1024 * 1024);
  CHECK(r.config.max_connections == 1'000'000);
  CHECK(error_with_required({"--max-buffer", "8k"}) ==
        "--max-buffer: expected a size from 16k to 64m, got \"8k\"");
  CHECK(error_with_required({"--max-buffer", "65m"}) ==
        "--max-buffer: expected a size from 16k to 64m, got \"65m\"");
  CHECK(error_with_required({"--max-connections", "1000001"}) ==
        "--max-connections: expected a number from 1 to 1000000, got \"1000001\"");
  CHECK(error_with_required({"--max-buffer"}) == "--max-buffer needs a size");
  CHECK(parse_with_required({"--workers", "3"}).config.worker_count() == 3);
  CHECK(parse_with_required({}).config.worker_count() >= 1);  // one per core
  CHECK(error_with_required({"--workers", "257"}) ==
        "--workers: expected a number from 1 to 256, got \"257\"");
  CHECK(error_with_required({"--max-connections"}) == "--max-connections needs a number");
}

TEST_CASE("config: several --cert/--key pairs are kept in order", "[config]") {
  ConfigResult r = parse(
      {"--routes", "r", "--cert", "a.pem", "--key", "a.key", "--cert", "b.pem", "--key", "b.key"});
  REQUIRE(r.action == ConfigResult::Action::kRun);
  REQUIRE(r.config.certificates.size() == 2);
  CHECK(r.config.certificates[1].cert == "b.pem");
  CHECK(r.config.certificates[1].key == "b.key");
}

TEST_CASE("config: every error message", "[config]") {
  // A flag at the end without its value.
  CHECK(error_of({"--routes"}) == "--routes needs a file");
  CHECK(error_of({"--cert"}) == "--cert needs a PEM file");
  CHECK(error_of({"--key"}) == "--key needs a PEM file");
  CHECK(error_of({"--https-port"}) == "--https-port needs a port number");
  CHECK(error_of({"--http-port"}) == "--http-port needs a port number");
  CHECK(error_of({"--listen"}) == "--listen needs an address");
  CHECK(error_of({"--trusted-proxies"}) == "--trusted-proxies needs a list of CIDR ranges");
  CHECK(error_of({"--access-log"}) == "--access-log needs a file, - or off");
  CHECK(error_of({"--log-level"}) == "--log-level needs a level");
  CHECK(error_of({"--handshake-timeout"}) == "--handshake-timeout needs a duration such as 10s");
  CHECK(error_of({"--header-timeout"}) == "--header-timeout needs a duration such as 10s");
  CHECK(error_of({"--keepalive-timeout"}) == "--keepalive-timeout needs a duration such as 10s");
  CHECK(error_of({"--probe-timeout"}) == "--probe-timeout needs a duration such as 10s");
  CHECK(error_of({"--max-header-bytes"}) == "--max-header-bytes needs a size such as 32k");
  CHECK(error_of({"--max-headers"}) == "--max-headers needs a number");

  // Bad values.
  CHECK(error_with_required({"--https-port", "65536"}) ==
        "--https-port: not a port number: \"65536\"");
  CHECK(error_with_required({"--http-port", "8o"}) == "--http-port: not a port number: \"8o\"");
  CHECK(error_with_required({"--https-port", ""}) == "--https-port needs a port number");
  CHECK(
      error_with_required({"--trusted-proxies", "10.0.0.0/33"}).starts_with("--trusted-proxies: "));
  CHECK(error_with_required({"--log-level", "loud"}) ==
        "--log-level: expected debug, info, warn or error, got \"loud\"");
  CHECK(error_with_required({"--handshake-timeout", "10"}) ==
        "--handshake-timeout: not a duration (e.g. 500ms, 10s, 2m): \"10\"");
  CHECK(error_with_required({"--keepalive-timeout", "0s"}) ==
        "--keepalive-timeout: not a duration (e.g. 500ms, 10s, 2m): \"0s\"");
  CHECK(error_with_required({"--check", "--probe-timeout", "soon"}) ==
        "--probe-timeout: not a duration (e.g. 500ms, 10s, 2m): \"soon\"");
  CHECK(error_with_required({"--max-header-bytes", "512"}) ==
        "--max-header-bytes: expected a size from 1k to 1m, got \"512\"");
  CHECK(error_with_required({"--max-header-bytes", "2m"}) ==
        "--max-header-bytes: expected a size from 1k to 1m, got \"2m\"");
  CHECK(error_with_required({"--max-headers", "0"}) ==
        "--max-headers: expected a number from 1 to 10000, got \"0\"");
  CHECK(error_with_required({"--max-headers", "10001"}) ==
        "--max-headers: expected a number from 1 to 10000, got \"10001\"");
  CHECK(error_with_required({"--bogus"}) == "unknown option \"--bogus\" (see --help)");
  CHECK(error_with_required({"stray"}) == "unknown option \"stray\" (see --help)");

  // Checks over the whole command line.
  CHECK(error_of({"--cert", "c", "--key", "k"}) == "--routes FILE is required (see --help)");
  // No certificate at all is the development-certificate mode (docs/tls.md), not an error.
  CHECK(parse({"--routes", "r"}).action == ConfigResult::Action::kRun);
  CHECK(parse({"--routes", "r"}).config.certificates.empty());
  CHECK(error_of({"--routes", "r", "--cert", "c"}) ==
        "--cert and --key must be given in pairs (got 1 --cert and 0 --key)");
  CHECK(error_of({"--routes", "r", "--key", "k", "--key", "k2", "--cert", "c"}) ==
        "--cert and --key must be given in pairs (got 1 --cert and 2 --key)");
  CHECK(error_with_required({"--probe"}) == "--probe needs --check");
  CHECK(error_with_required({"--https-port", "8443", "--http-port", "8443"}) ==
        "--http-port and --https-port must differ");
}

TEST_CASE("check: certificate names covering route hosts (RFC 6125)", "[config][check]") {
  CHECK(certificate_name_covers("api.example.com", "api.example.com"));
  CHECK(certificate_name_covers("*.example.com", "api.example.com"));
  CHECK_FALSE(certificate_name_covers("*.example.com", "a.b.example.com"));  // one label only
  CHECK_FALSE(certificate_name_covers("*.example.com", "example.com"));
  CHECK(certificate_name_covers("*.example.com", "*.example.com"));
  CHECK_FALSE(certificate_name_covers("api.example.com", "*.example.com"));
  CHECK_FALSE(certificate_name_covers("*.com", "example.com"));
  CHECK_FALSE(certificate_name_covers("other.example.com", "api.example.com"));
  CHECK_FALSE(certificate_name_covers("", "api.example.com"));
}

TEST_CASE("config: on/off flags take no value, and no flag takes an empty one", "[config]") {
  for (const char* flag : {"--strict=off", "--proxy-protocol=off", "--probe=0", "--check=no"}) {
    INFO(flag);
    CHECK(error_with_required({flag}).find("takes no value") != std::string::npos);
  }
  CHECK(error_with_required({"--access-log", ""}) == "--access-log needs a file, - or off");
  CHECK(error_with_required({"--cert-dir="}) == "--cert-dir needs a directory");
  CHECK(error_with_required({"--user", ""}).starts_with("--user needs"));
  CHECK(parse_with_required({"--send-timeout", "5s"}).config.send_timeout == 5s);
}

TEST_CASE("config: --dev-name is a host name or an address", "[config]") {
  ConfigResult ok = parse({"--routes", "r.txt", "--dev-name", "app.test", "--dev-name",
                           "*.app.test", "--dev-name", "10.0.0.7", "--dev-name", "::1"});
  REQUIRE(ok.action == ConfigResult::Action::kRun);
  CHECK(ok.config.dev_names.size() == 4);
  for (const char* bad : {"a.test,IP:1.2.3.4", "bad name!", "-a.test", "a..test", "a.test:443"}) {
    INFO(bad);
    CHECK(error_of({"--routes", "r.txt", "--dev-name", bad}).starts_with("--dev-name: expected"));
  }
}

}  // namespace
}  // namespace portico

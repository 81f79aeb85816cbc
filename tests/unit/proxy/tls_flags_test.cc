// The TLS flags of the command line (docs/tls.md).

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/config.h"

using namespace portico;

namespace {
ConfigResult parse_tls(std::vector<std::string> extra) {
  std::vector<std::string> args = {"portico", "--routes", "r.txt"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}
}  // namespace

TEST_CASE("TLS flags parse into Config", "[config][tls]") {
  ConfigResult plain = parse_tls({});
  REQUIRE(plain.action == ConfigResult::Action::kRun);
  CHECK(plain.config.tls_min_version == 0x0303);
  CHECK_FALSE(plain.config.hsts_max_age.has_value());
  CHECK(site_response_headers(plain.config).empty());
  CHECK_FALSE(plain.config.strict);

  ConfigResult all =
      parse_tls({"--cert",     "a.pem",    "--key",          "a.key",      "--cert",     "b.pem",
                 "--key",      "b.key",    "--cert-dir",     "/etc/certs", "--tls-min",  "1.3",
                 "--strict",   "--hsts",   "--acme-webroot", "/var/acme",  "--dev-name", "x.test",
                 "--dev-name", "10.0.0.1", "--state-dir",    "/tmp/s"});
  REQUIRE(all.action == ConfigResult::Action::kRun);
  REQUIRE(all.config.certificates.size() == 2);
  CHECK(all.config.certificates[1].cert == "b.pem");
  CHECK(all.config.certificates[1].key == "b.key");
  CHECK(all.config.cert_dir == "/etc/certs");
  CHECK(all.config.tls_min_version == 0x0304);
  CHECK(all.config.strict);
  CHECK(all.config.hsts_max_age == 31536000u);
  CHECK(site_response_headers(all.config) == "Strict-Transport-Security: max-age=31536000\r\n");
  CHECK(all.config.acme_webroot == "/var/acme");
  CHECK(all.config.dev_names == std::vector<std::string>{"x.test", "10.0.0.1"});
  CHECK(all.config.state_dir == "/tmp/s");

  CHECK(parse_tls({"--hsts=600"}).config.hsts_max_age == 600u);
  // max-age=0 is how a site makes browsers forget HSTS (RFC 6797 6.1.1): a header, not none.
  ConfigResult forget = parse_tls({"--hsts=0"});
  REQUIRE(forget.action == ConfigResult::Action::kRun);
  CHECK(forget.config.hsts_max_age == 0u);
  CHECK(site_response_headers(forget.config) == "Strict-Transport-Security: max-age=0\r\n");
  CHECK(parse_tls({"--tls-min=1.2"}).config.tls_min_version == 0x0303);
}

TEST_CASE("TLS flag errors", "[config][tls]") {
  auto error = [](std::vector<std::string> extra) {
    ConfigResult r = parse_tls(std::move(extra));
    REQUIRE(r.action == ConfigResult::Action::kError);
    return r.error;
  };
  CHECK(error({"--tls-min", "1.1"}) == "--tls-min: expected 1.2 or 1.3, got \"1.1\"");
  CHECK(error({"--tls-min"}) == "--tls-min needs 1.2 or 1.3");
  CHECK(error({"--hsts=-1"}) ==
        "--hsts: expected a max-age in seconds (e.g. --hsts=31536000), got \"-1\"");
  CHECK(error({"--hsts="}) ==
        "--hsts: expected a max-age in seconds (e.g. --hsts=31536000), got \"\"");
  CHECK(error({"--hsts=1y"}) ==
        "--hsts: expected a max-age in seconds (e.g. --hsts=31536000), got \"1y\"");
  CHECK(error({"--cert-dir"}) == "--cert-dir needs a directory");
  CHECK(error({"--acme-webroot"}) == "--acme-webroot needs a directory");
  CHECK(error({"--acme-webroot", "/var/acme", "--http-port", "0"}) ==
        "--acme-webroot needs the HTTP listener, but --http-port is 0");
  CHECK(error({"--http-port", "0", "--acme-webroot", "/var/acme"}) ==
        "--acme-webroot needs the HTTP listener, but --http-port is 0");
  CHECK(error({"--dev-name"}) == "--dev-name needs a host name or address");
  CHECK(error({"--state-dir"}) == "--state-dir needs a directory");
}

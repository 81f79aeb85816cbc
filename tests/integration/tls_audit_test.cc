// The TLS audit: sslscan (scripts/install-deps.sh installs it) against the real portico, with an
// ECDSA and an RSA certificate so that the cipher suites of both key types are offered. Fails on
// any protocol below TLS 1.2, any TLS 1.2 suite without forward secrecy (ECDHE) or without AEAD
// (GCM, ChaCha20-Poly1305), compression, or insecure renegotiation; with --tls-min 1.3, on any
// TLS 1.2 at all.

#include <catch2/catch.hpp>
#include <regex>
#include <string>

#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

struct Scan {
  std::vector<std::string> protocols;  // enabled: "tls1.2", "tls1.3", "ssl3", ...
  std::vector<std::pair<std::string, std::string>> ciphers;  // (sslversion, cipher)
  bool compression = false;
  bool insecure_renegotiation = false;
};

std::string attribute(const std::string& element, const std::string& name) {
  std::smatch m;
  if (std::regex_search(element, m, std::regex(" " + name + "=\"([^\"]*)\""))) return m[1];
  return "";
}

Scan sslscan(uint16_t port) {
  CommandResult r = run_command({"sslscan", "--xml=-", "--no-colour", "--sni-name=localhost",
                                 "127.0.0.1:" + std::to_string(port)},
                                "", 120s);
  INFO(r.describe());
  REQUIRE(r.exit_code != 127);  // not installed: run scripts/install-deps.sh
  REQUIRE(r.exit_code == 0);
  REQUIRE(r.stdout.find("<ssltest ") != std::string::npos);
  Scan scan;
  const std::regex element(R"(<(protocol|cipher|compression|renegotiation)\b[^>]*>)");
  for (auto it = std::sregex_iterator(r.stdout.begin(), r.stdout.end(), element);
       it != std::sregex_iterator(); ++it) {
    const std::string text = (*it)[0];
    const std::string kind = (*it)[1];
    if (kind == "protocol" && attribute(text, "enabled") == "1") {
      scan.protocols.push_back(attribute(text, "type") + attribute(text, "version"));
    } else if (kind == "cipher") {
      scan.ciphers.emplace_back(attribute(text, "sslversion"), attribute(text, "cipher"));
    } else if (kind == "compression" && attribute(text, "supported") == "1") {
      scan.compression = true;
    } else if (kind == "renegotiation" && attribute(text, "supported") == "1" &&
               attribute(text, "secure") != "1") {
      scan.insecure_renegotiation = true;
    }
  }
  return scan;
}

bool forward_secret_aead(const std::string& version, const std::string& cipher) {
  // Every TLS 1.3 suite is AEAD with an ephemeral key exchange (RFC 8446).
  if (version == "TLSv1.3") return cipher.rfind("TLS_", 0) == 0;
  const bool fs = cipher.rfind("ECDHE-", 0) == 0 || cipher.rfind("DHE-", 0) == 0;
  const bool aead = cipher.find("-GCM-") != std::string::npos ||
                    cipher.find("CHACHA20-POLY1305") != std::string::npos;
  return fs && aead;
}

struct AuditTarget {
  AuditTarget(std::vector<std::string> extra_args)
      : ec(issue_cert(dir, ca, {{"localhost"}, "ec"})),
        rsa(issue_cert(dir, ca, rsa_options())),
        portico(dir, "/ http://127.0.0.1:9\n",
                TlsArgs{{"--cert", ec.fullchain, "--key", ec.key, "--cert", rsa.fullchain, "--key",
                         rsa.key}},
                extra_args) {}
  static CertOptions rsa_options() {
    CertOptions options{{"localhost"}, "rsa"};
    options.key_type = KeyType::kRsa2048;
    return options;
  }
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert ec;
  TestCert rsa;
  PorticoProcess portico;
};

}  // namespace

TEST_CASE(
    "tls audit: only TLS 1.2/1.3, forward-secret AEAD suites, no compression or "
    "insecure renegotiation",
    "[tls][audit]") {
  AuditTarget target({"--http-port", "0"});
  Scan scan = sslscan(target.portico.https_port());
  CHECK(scan.protocols == std::vector<std::string>{"tls1.2", "tls1.3"});
  REQUIRE(!scan.ciphers.empty());
  bool ecdsa = false, rsa = false;
  for (const auto& [version, cipher] : scan.ciphers) {
    INFO(version << " " << cipher);
    CHECK((version == "TLSv1.2" || version == "TLSv1.3"));
    CHECK(forward_secret_aead(version, cipher));
    ecdsa = ecdsa || cipher.rfind("ECDHE-ECDSA-", 0) == 0;
    rsa = rsa || cipher.rfind("ECDHE-RSA-", 0) == 0;
  }
  CHECK(ecdsa);  // both certificates were offered
  CHECK(rsa);
  CHECK_FALSE(scan.compression);
  CHECK_FALSE(scan.insecure_renegotiation);
}

TEST_CASE("tls audit: --tls-min 1.3 offers TLS 1.3 only", "[tls][audit]") {
  AuditTarget target({"--http-port", "0", "--tls-min", "1.3"});
  Scan scan = sslscan(target.portico.https_port());
  CHECK(scan.protocols == std::vector<std::string>{"tls1.3"});
  REQUIRE(!scan.ciphers.empty());
  for (const auto& [version, cipher] : scan.ciphers) {
    INFO(version << " " << cipher);
    CHECK(version == "TLSv1.3");
  }
  CHECK_FALSE(scan.compression);
  CHECK_FALSE(scan.insecure_renegotiation);
}

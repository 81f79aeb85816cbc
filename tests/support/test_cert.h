#pragma once

// Certificates for tests, made with the OpenSSL API (fast, no CLI output to parse): a CA and
// leaves it signs, with the SANs the test needs, written as PEM files into a TempDir.

#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace portico::test {

enum class KeyType { kEcdsaP256, kRsa2048 };

// Paths of PEM files. For a self-signed certificate ca_cert == cert.
struct TestCert {
  std::string ca_cert;    // the CA certificate: what clients trust (curl --cacert)
  std::string cert;       // the leaf only
  std::string fullchain;  // leaf then CA: what a server presents
  std::string key;        // the leaf's private key
};

// A CA that can sign several leaves (e.g. two SNI names trusted through one CA file).
struct TestCa {
  std::string cert;
  std::string key;
};

struct CertOptions {
  // Each becomes a subjectAltName: IP if it parses as an address, else DNS. The first is also the
  // subject CN.
  std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"};
  std::string prefix = "server";  // files are <prefix>-cert.pem, <prefix>-key.pem, ...
  KeyType key_type = KeyType::kEcdsaP256;
  bool expired = false;  // valid now-30d .. now-1d instead of now-1d .. now+30d
  bool self_signed = false;
};

TestCa make_test_ca(const TempDir& dir, const std::string& prefix = "ca");
// Signs a leaf with `ca` (ignored when options.self_signed).
TestCert issue_cert(const TempDir& dir, const TestCa& ca, const CertOptions& options);
// A new CA (<prefix>-ca-*.pem) and a leaf signed by it.
TestCert make_cert(const TempDir& dir, const CertOptions& options);

TestCert make_test_cert(const TempDir& dir,
                        std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"},
                        std::string prefix = "server");
TestCert make_self_signed(const TempDir& dir,
                          std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"},
                          std::string prefix = "selfsigned");

// A server SSL_CTX for in-test TLS servers: the certificate chain and key, ALPN http/1.1.
// The caller frees it with SSL_CTX_free.
SSL_CTX* make_test_server_context(const TestCert& cert);

}  // namespace portico::test

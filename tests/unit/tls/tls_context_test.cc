// make_server_tls_context: SNI selection, ECDSA+RSA pairs, and one clear line per file error.

#include "tls/tls_context.h"

#include <openssl/x509.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"

using namespace portico;
using namespace portico::test;

namespace {

std::string subject_cn(SSL_CTX* ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  if (!cert) return "";
  char buf[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

// The CN of the certificate a client sending `sni` gets (the first name of CertOptions).
std::string served_for(const TlsContextResult& r, const std::string& sni) {
  SSL_CTX* chosen = TlsContextSet::of(r.ctx.get())->select(sni);
  return subject_cn(chosen ? chosen : r.ctx.get());
}

// The CN this thread's own copy of the context serves for `sni` ("" for none).
std::string served_by_copy_for(const TlsContextResult& r, const std::string& sni) {
  SSL_CTX* own = TlsContextSet::of(r.ctx.get())->context_for_this_thread(sni);
  REQUIRE(own != nullptr);
  CHECK(TlsContextSet::is_thread_own(own));
  return subject_cn(own);
}

int certificate_slots(SSL_CTX* ctx) {
  int slots = 0;
  for (int rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_FIRST); rc == 1;
       rc = SSL_CTX_set_current_cert(ctx, SSL_CERT_SET_NEXT)) {
    if (SSL_CTX_get0_certificate(ctx)) ++slots;
  }
  return slots;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

CertificateFiles files_of(const TestCert& cert) { return {cert.fullchain, cert.key}; }

}  // namespace

TEST_CASE("SNI picks exact names, then one-label wildcards, else the first certificate", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert first = issue_cert(dir, ca, {{"first.test", "localhost"}, "first"});
  TestCert a = issue_cert(dir, ca, {{"a.example.com"}, "a"});
  TestCert wild = issue_cert(dir, ca, {{"w.example.com", "*.example.com"}, "wild"});
  TlsContextResult r = make_server_tls_context({files_of(first), files_of(a), files_of(wild)});
  REQUIRE(r.error == "");
  REQUIRE(r.ctx);
  CHECK(served_for(r, "a.example.com") == "a.example.com");
  CHECK(served_for(r, "A.Example.COM") == "a.example.com");
  CHECK(served_for(r, "b.example.com") == "w.example.com");
  CHECK(served_for(r, "x.y.example.com") == "first.test");  // a wildcard covers one label
  CHECK(served_for(r, "example.com") == "first.test");
  CHECK(served_for(r, "localhost") == "first.test");
  CHECK(served_for(r, "unknown.test") == "first.test");
  // A thread's own copies serve the same certificates as the shared contexts.
  for (const char* name : {"a.example.com", "A.Example.COM", "b.example.com", "x.y.example.com",
                           "localhost", "unknown.test", ""}) {
    INFO(name);
    CHECK(served_by_copy_for(r, name) == served_for(r, *name ? name : "unknown.test"));
  }
  CHECK_FALSE(TlsContextSet::is_thread_own(r.ctx.get()));
  REQUIRE(r.certificates.size() == 3);
  CHECK(r.certificates[2].names ==
        std::vector<std::string>{"DNS:w.example.com", "DNS:*.example.com"});
  CHECK(r.certificates[0].key_type == "ECDSA");
}

TEST_CASE("sessions are scoped per certificate group, the same across rebuilds", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert first = issue_cert(dir, ca, {{"localhost"}, "first"});
  TestCert ab = issue_cert(dir, ca, {{"a.test", "*.b.test"}, "ab"});
  TestCert c = issue_cert(dir, ca, {{"c.test"}, "c"});
  TlsContextResult r = make_server_tls_context({files_of(first), files_of(ab), files_of(c)});
  REQUIRE(r.ctx);
  const TlsContextSet& set = *TlsContextSet::of(r.ctx.get());
  CHECK(set.session_id_context("a.test") == set.session_id_context("x.b.test"));
  CHECK(set.session_id_context("A.TEST.") == set.session_id_context("a.test"));
  CHECK(set.session_id_context("a.test") != set.session_id_context("c.test"));
  CHECK(set.session_id_context("a.test") != set.session_id_context("localhost"));
  CHECK(set.session_id_context("unknown.test") == set.session_id_context("localhost"));
  CHECK(set.session_id_context("") == set.session_id_context("localhost"));
  // Another set with the same names in another order (a reload): the same scopes.
  TlsContextResult again = make_server_tls_context({files_of(c), files_of(ab), files_of(first)});
  REQUIRE(again.ctx);
  const TlsContextSet& other = *TlsContextSet::of(again.ctx.get());
  for (const char* name : {"a.test", "c.test", "localhost"}) {
    INFO(name);
    CHECK(other.session_id_context(name) == set.session_id_context(name));
  }
}

TEST_CASE("an ECDSA and an RSA certificate for the same names share one context", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert ec = issue_cert(dir, ca, {{"localhost"}, "ec"});
  CertOptions rsa_options{{"localhost"}, "rsa"};
  rsa_options.key_type = KeyType::kRsa2048;
  TestCert rsa = issue_cert(dir, ca, rsa_options);
  TlsContextResult r = make_server_tls_context({files_of(ec), files_of(rsa)});
  REQUIRE(r.error == "");
  CHECK(r.certificates[1].key_type == "RSA");
  // Both slots filled in the default context, and in this thread's copy of it.
  CHECK(certificate_slots(r.ctx.get()) == 2);
  CHECK(certificate_slots(TlsContextSet::of(r.ctx.get())->context_for_this_thread("")) == 2);

  TestCert ec2 = issue_cert(dir, ca, {{"localhost"}, "ec2"});
  TlsContextResult dup = make_server_tls_context({files_of(ec), files_of(ec2)});
  CHECK_FALSE(dup.ctx);
  CHECK(dup.error == ec2.fullchain + ": same names and key type (ECDSA) as " + ec.fullchain +
                         ": one of them would never be served");
}

TEST_CASE("certificate errors are one line naming the file", "[tls]") {
  TempDir dir;
  TestCert good = make_test_cert(dir);
  TestCert other = make_test_cert(dir, {"localhost"}, "other");

  SECTION("missing file") {
    TlsContextResult r = make_server_tls_context({{dir.file("nope.pem"), good.key}});
    CHECK(r.error == dir.file("nope.pem") + ": cannot read: No such file or directory");
  }
  SECTION("not PEM") {
    std::string junk = dir.write_file("junk.pem", "hello\n");
    CHECK(make_server_tls_context({{junk, good.key}}).error == junk + ": not a PEM certificate");
    CHECK(make_server_tls_context({{good.fullchain, junk}}).error ==
          junk + ": not a PEM private key (or it is encrypted)");
  }
  SECTION("key does not match") {
    CHECK(make_server_tls_context({{good.fullchain, other.key}}).error ==
          other.key + ": private key does not match the certificate in " + good.fullchain);
  }
  SECTION("chain out of order") {
    // CA first, then the leaf: the leaf's key does not match what comes first...
    std::string reversed =
        dir.write_file("reversed.pem", read_all(good.cert) + read_all(other.ca_cert));
    TlsContextResult r = make_server_tls_context({{reversed, good.key}});
    CHECK(r.error.rfind(reversed + ": chain out of order: certificate 2 (", 0) == 0);
    CHECK(r.error.find("did not issue certificate 1") != std::string::npos);
    std::string ca_first =
        dir.write_file("ca-first.pem", read_all(good.ca_cert) + read_all(good.cert));
    CHECK(make_server_tls_context({{ca_first, good.key}}).error ==
          ca_first + ": chain out of order: the certificate of " + good.key +
              " is number 2; the leaf must come first");
  }
  SECTION("expired: a warning, or an error with --strict") {
    TestCa ca = make_test_ca(dir, "old");
    CertOptions options{{"localhost"}, "expired"};
    options.expired = true;
    TestCert expired = issue_cert(dir, ca, options);
    TlsContextResult r = make_server_tls_context({files_of(expired)});
    REQUIRE(r.ctx);
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].rfind(expired.fullchain + ": certificate expired on 20", 0) == 0);
    CHECK(r.certificates[0].expired);
    TlsOptions strict;
    strict.strict = true;
    TlsContextResult s = make_server_tls_context({files_of(expired)}, strict);
    CHECK_FALSE(s.ctx);
    CHECK(s.error.rfind(expired.fullchain + ": certificate expired on 20", 0) == 0);
    CHECK(s.error.ends_with("(--strict)"));
  }
}

TEST_CASE("tls context: --tls-min 1.3 sets the context's lowest version", "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  CHECK(SSL_CTX_get_min_proto_version(make_server_tls_context({files_of(cert)}).ctx.get()) ==
        TLS1_2_VERSION);
  TlsOptions options;
  options.min_version = TLS1_3_VERSION;
  CHECK(SSL_CTX_get_min_proto_version(
            make_server_tls_context({files_of(cert)}, options).ctx.get()) == TLS1_3_VERSION);
}

TEST_CASE("certificate times print as UTC ISO 8601, unreadable ones as ?", "[tls]") {
  ASN1_TIME* time = ASN1_TIME_set(nullptr, 1769860800);  // 2026-01-31 12:00:00 UTC
  REQUIRE(time != nullptr);
  CHECK(format_asn1_time(time) == "2026-01-31T12:00:00Z");
  // A GeneralizedTime (after 2049) goes through the same path.
  REQUIRE(ASN1_TIME_set_string(time, "20510102030405Z") == 1);
  CHECK(format_asn1_time(time) == "2051-01-02T03:04:05Z");
  // Bytes that are no time at all: the log says "?" rather than a made-up date.
  REQUIRE(ASN1_STRING_set(time, "not a time", -1) == 1);
  CHECK(format_asn1_time(time) == "?");
  ASN1_TIME_free(time);
}

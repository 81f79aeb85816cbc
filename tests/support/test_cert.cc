#include "tests/support/test_cert.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace portico::test {

namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using Cert = std::unique_ptr<X509, X509Free>;
using Bio = std::unique_ptr<BIO, BioFree>;

[[noreturn]] void fail(const std::string& what) {
  char buf[256] = "";
  ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
  throw std::runtime_error("test cert: " + what + ": " + buf);
}

Pkey generate_key(KeyType type) {
  EVP_PKEY* key =
      type == KeyType::kRsa2048 ? EVP_RSA_gen(2048) : EVP_EC_gen(const_cast<char*>("P-256"));
  if (key == nullptr) fail("key generation");
  return Pkey(key);
}

bool is_ip(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) fail("extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

Pkey read_key(const std::string& path) {
  Bio bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) fail("open " + path);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (key == nullptr) fail("read " + path);
  return Pkey(key);
}

Cert read_cert(const std::string& path) {
  Bio bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) fail("open " + path);
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) fail("read " + path);
  return Cert(cert);
}

std::string cert_pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert)) fail("PEM_write_bio_X509");
  char* data;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string key_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr)) {
    fail("PEM_write_bio_PrivateKey");
  }
  char* data;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// Builds a certificate for `key` named `cn`; signed by issuer_key, with issuer_cert's name (or
// its own name when issuer_cert is null: self-signed).
Cert build_cert(EVP_PKEY* key, const std::string& cn, X509* issuer_cert, EVP_PKEY* issuer_key,
                bool ca, const std::vector<std::string>& names, bool expired, KeyType type) {
  Cert cert(X509_new());
  X509* x = cert.get();
  X509_set_version(x, 2);  // v3
  // Random serials: browsers and OpenSSL reject two different certs with one issuer+serial.
  unsigned char serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
  BN_free(bn);

  const long day = 24 * 3600;
  X509_gmtime_adj(X509_getm_notBefore(x), expired ? -30 * day : -day);
  X509_gmtime_adj(X509_getm_notAfter(x), expired ? -day : 30 * day);
  X509_set_pubkey(x, key);

  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("portico tests"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer = issuer_cert != nullptr ? issuer_cert : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer));

  add_ext(x, issuer, NID_subject_key_identifier, "hash");
  if (issuer_cert != nullptr) add_ext(x, issuer, NID_authority_key_identifier, "keyid:always");
  if (ca) {
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, issuer, NID_key_usage,
            type == KeyType::kRsa2048 ? "critical,digitalSignature,keyEncipherment"
                                      : "critical,digitalSignature");
    add_ext(x, issuer, NID_ext_key_usage, "serverAuth");
  }
  if (!names.empty()) {
    std::string san;
    for (const auto& n : names) {
      if (!san.empty()) san += ',';
      san += (is_ip(n) ? "IP:" : "DNS:") + n;
    }
    add_ext(x, issuer, NID_subject_alt_name, san);
  }
  if (X509_sign(x, issuer_key, EVP_sha256()) == 0) fail("X509_sign");
  return cert;
}

}  // namespace

TestCa make_test_ca(const TempDir& dir, const std::string& prefix) {
  Pkey key = generate_key(KeyType::kEcdsaP256);
  Cert cert = build_cert(key.get(), "portico test CA " + prefix, nullptr, key.get(), true, {},
                         false, KeyType::kEcdsaP256);
  TestCa ca;
  ca.cert = dir.write_file(prefix + "-cert.pem", cert_pem(cert.get()));
  ca.key = dir.write_file(prefix + "-key.pem", key_pem(key.get()));
  return ca;
}

TestCert issue_cert(const TempDir& dir, const TestCa& ca, const CertOptions& options) {
  Pkey key = generate_key(options.key_type);
  std::string cn = options.names.empty() ? options.prefix : options.names.front();
  TestCert out;
  std::string leaf;
  if (options.self_signed) {
    Cert cert = build_cert(key.get(), cn, nullptr, key.get(), false, options.names, options.expired,
                           options.key_type);
    leaf = cert_pem(cert.get());
    out.fullchain = dir.write_file(options.prefix + "-fullchain.pem", leaf);
    out.ca_cert = out.cert = dir.write_file(options.prefix + "-cert.pem", leaf);
  } else {
    Pkey ca_key = read_key(ca.key);
    Cert ca_cert = read_cert(ca.cert);
    Cert cert = build_cert(key.get(), cn, ca_cert.get(), ca_key.get(), false, options.names,
                           options.expired, options.key_type);
    leaf = cert_pem(cert.get());
    out.cert = dir.write_file(options.prefix + "-cert.pem", leaf);
    out.fullchain =
        dir.write_file(options.prefix + "-fullchain.pem", leaf + cert_pem(ca_cert.get()));
    out.ca_cert = ca.cert;
  }
  out.key = dir.write_file(options.prefix + "-key.pem", key_pem(key.get()));
  return out;
}

TestCert make_cert(const TempDir& dir, const CertOptions& options) {
  if (options.self_signed) return issue_cert(dir, TestCa{}, options);
  TestCa ca = make_test_ca(dir, options.prefix + "-ca");
  return issue_cert(dir, ca, options);
}

TestCert make_test_cert(const TempDir& dir, std::vector<std::string> names, std::string prefix) {
  CertOptions options;
  options.names = std::move(names);
  options.prefix = std::move(prefix);
  return make_cert(dir, options);
}

TestCert make_self_signed(const TempDir& dir, std::vector<std::string> names, std::string prefix) {
  CertOptions options;
  options.names = std::move(names);
  options.prefix = std::move(prefix);
  options.self_signed = true;
  return make_cert(dir, options);
}

SSL_CTX* make_test_server_context(const TestCert& cert) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  REQUIRE(SSL_CTX_use_certificate_chain_file(ctx, cert.fullchain.c_str()) == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(ctx, cert.key.c_str(), SSL_FILETYPE_PEM) == 1);
  SSL_CTX_set_alpn_select_cb(
      ctx,
      [](SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
         unsigned inlen, void*) {
        static const unsigned char kHttp11[] = "\x08http/1.1";
        unsigned char* selected;
        if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11 - 1, in, inlen) !=
            OPENSSL_NPN_NEGOTIATED) {
          return SSL_TLSEXT_ERR_NOACK;
        }
        *out = selected;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
  return ctx;
}

}  // namespace portico::test

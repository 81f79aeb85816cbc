#include "tls/tls_context.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace portico {
namespace {

std::string openssl_error_text() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : buf;
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

FilePtr open_file(const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) *error = path + ": cannot read: " + std::strerror(errno);
  return FilePtr(f);
}

// RFC 7301: pick http/1.1 when offered; with no overlap, go on without ALPN rather than fail,
// so that clients which offer only other protocols still get a clear HTTP/1.1 answer.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned int i = 0;
  while (i < inlen) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == sizeof kHttp11 && std::memcmp(in + i + 1, kHttp11, len) == 0) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

bool load_pair(SSL_CTX* ctx, const CertificateFiles& files, std::string* error) {
  // Read both files ourselves first, so that each failure names its file precisely.
  FilePtr cert_file = open_file(files.cert_path, error);
  if (!cert_file) return false;
  std::unique_ptr<X509, X509Free> leaf(PEM_read_X509(cert_file.get(), nullptr, nullptr, nullptr));
  if (!leaf) {
    ERR_clear_error();
    *error = files.cert_path + ": not a PEM certificate";
    return false;
  }
  FilePtr key_file = open_file(files.key_path, error);
  if (!key_file) return false;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_PrivateKey(key_file.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    *error = files.key_path + ": not a PEM private key (or it is encrypted)";
    return false;
  }
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    ERR_clear_error();
    *error = files.key_path + ": private key does not match the certificate in " + files.cert_path;
    return false;
  }
  // The whole chain file, as OpenSSL sends it: leaf first, then intermediates.
  if (SSL_CTX_use_certificate_chain_file(ctx, files.cert_path.c_str()) != 1) {
    *error = files.cert_path + ": bad certificate chain: " + openssl_error_text();
    return false;
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    *error = files.key_path + ": cannot use private key: " + openssl_error_text();
    return false;
  }
  return true;
}

}  // namespace

TlsContextResult make_server_tls_context(const std::vector<CertificateFiles>& certificates) {
  TlsContextResult result;
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    result.error = "cannot create TLS context: " + openssl_error_text();
    return result;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(
      c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Mozilla "intermediate" for TLS 1.2: forward secrecy and AEAD only.
  SSL_CTX_set_cipher_list(c,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  SSL_CTX_set1_groups_list(c, "X25519:P-256:P-384");
  // Idle connections give their 34 KiB of record buffers back; partial writes may move.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);

  if (certificates.empty()) {
    result.error = "no certificate given";
    return result;
  }
  for (const CertificateFiles& files : certificates) {
    if (!load_pair(c, files, &result.error)) return result;
  }
  result.ctx = std::move(ctx);
  return result;
}

}  // namespace portico

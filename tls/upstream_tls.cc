#include "tls/upstream_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace portico {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

SslCtxPtr make_upstream_tls_context(const std::string& ca_file, std::string* error) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    *error = "cannot create TLS context: " + openssl_error_text();
    return ctx;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(c, kAlpn, sizeof kAlpn);
  if (ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(c) != 1) {
      *error = "cannot load the system CA certificates: " + openssl_error_text();
      return nullptr;
    }
    return ctx;
  }
  // OpenSSL's own message for an unreadable file is "system lib"; say what is wrong instead.
  std::unique_ptr<FILE, FileCloser> file(std::fopen(ca_file.c_str(), "rb"));
  if (!file) {
    *error = std::strerror(errno);
    return nullptr;
  }
  file.reset();
  ERR_clear_error();
  if (SSL_CTX_load_verify_file(c, ca_file.c_str()) != 1) {
    *error = "no PEM certificate could be read (" + openssl_error_text() + ")";
    return nullptr;
  }
  return ctx;
}

bool configure_upstream_ssl(SSL* ssl, const std::string& host, bool host_is_ip) {
  if (host_is_ip) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1;
  }
  return SSL_set_tlsext_host_name(ssl, host.c_str()) == 1 && SSL_set1_host(ssl, host.c_str()) == 1;
}

std::string upstream_verify_failure(const SSL* ssl) {
  long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return "";
  return X509_verify_cert_error_string(result);
}

}  // namespace portico

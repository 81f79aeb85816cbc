#pragma once

// The server-side TLS configuration: certificates, protocol versions, ciphers, ALPN.
// Knows nothing of sockets or HTTP.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

namespace portico {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

struct CertificateFiles {
  std::string cert_path;  // PEM: the certificate, then its chain (fullchain.pem)
  std::string key_path;   // PEM private key
};

struct TlsContextResult {
  SslCtxPtr ctx;      // null on error
  std::string error;  // one line naming the file and what is wrong
};

// Builds an SSL_CTX with the "intermediate" profile: TLS 1.2 and 1.3 only, ECDHE+AEAD ciphers for
// 1.2, server cipher preference, no compression, no renegotiation, X25519/P-256/P-384 groups,
// ALPN http/1.1. Every certificate file is read and checked against its key.
TlsContextResult make_server_tls_context(const std::vector<CertificateFiles>& certificates);

}  // namespace portico

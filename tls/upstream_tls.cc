#include "tls/upstream_tls.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

namespace portico {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

// The latest resumable session per backend key, owned by the client context (ex_data): one
// entry per backend of the configuration that made the context, freed with it.
struct SessionCache {
  std::mutex mutex;
  std::map<std::string, SSL_SESSION*, std::less<>> latest;
  ~SessionCache() {
    for (auto& [key, session] : latest) SSL_SESSION_free(session);
  }
};

int cache_index() {
  static const int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr, [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<SessionCache*>(ptr);
      });
  return index;
}

int key_index() {  // the backend key of a connection (not owned)
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

SessionCache* cache_of(const SSL* ssl) {
  return static_cast<SessionCache*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), cache_index()));
}

// OpenSSL hands over each new session (after a TLS 1.2 handshake; with each TLS 1.3 ticket);
// returning 1 keeps its reference.
int remember_session(SSL* ssl, SSL_SESSION* session) {
  const auto* key = static_cast<const std::string*>(SSL_get_ex_data(ssl, key_index()));
  SessionCache* cache = cache_of(ssl);
  if (key == nullptr || cache == nullptr || !SSL_SESSION_is_resumable(session)) return 0;
  std::lock_guard lock(cache->mutex);
  SSL_SESSION*& slot = cache->latest[*key];
  if (slot != nullptr) SSL_SESSION_free(slot);
  slot = session;
  return 1;
}

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
  // Sessions go to SessionCache by backend, not to OpenSSL's store (which a client does not
  // look sessions up in anyway).
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(c, remember_session);
  SSL_CTX_set_ex_data(c, cache_index(), new SessionCache);
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

void offer_upstream_session(SSL* ssl, const std::string* key) {
  SessionCache* cache = cache_of(ssl);
  if (cache == nullptr) return;
  SSL_set_ex_data(ssl, key_index(), const_cast<std::string*>(key));
  std::lock_guard lock(cache->mutex);
  auto found = cache->latest.find(*key);
  if (found != cache->latest.end()) SSL_set_session(ssl, found->second);  // takes a reference
}

bool configure_upstream_ssl(SSL* ssl, const std::string& host, bool host_is_ip) {
  // The name must be in subjectAltName (docs/tls.md), as browsers require since 2017 (RFC 6125
  // 6.4.4 left the CN as a fallback; OpenSSL still uses it when a certificate has no DNS name).
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
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

#include "tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>

namespace portico {
namespace {

int ticket_key_callback(SSL* ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                        EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc) {
  int rc = TicketKeyStore::process().handle(key_name, iv, cipher, mac, enc,
                                            TicketKeyStore::Clock::now());
  // TLS 1.3 tickets are meant for one use (RFC 8446, section 8.1), and OpenSSL sends a new one
  // after a resumption only when told to renew: without it a client that reconnects in a loop
  // resumes every other time, and pays a full handshake in between.
  if (enc == 0 && rc == 1 && SSL_version(ssl) == TLS1_3_VERSION) rc = 2;
  return rc;
}

bool init_mac(EVP_MAC_CTX* mac, unsigned char* key, size_t len) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, len),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

TicketKeyStore::TicketKeyStore(std::chrono::seconds rotation) : rotation_(rotation) {
  rotate_locked(Clock::now());
}

TicketKeyStore& TicketKeyStore::process() {
  static TicketKeyStore store;  // never destroyed before the SSL_CTXs that call it
  return store;
}

void TicketKeyStore::install(SSL_CTX* ctx) {
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_callback);
}

TicketKeyStore::Key TicketKeyStore::random_key() {
  Key key;
  key.valid = RAND_bytes(key.name.data(), static_cast<int>(key.name.size())) == 1 &&
              RAND_bytes(key.aes.data(), static_cast<int>(key.aes.size())) == 1 &&
              RAND_bytes(key.hmac.data(), static_cast<int>(key.hmac.size())) == 1;
  return key;
}

void TicketKeyStore::rotate_locked(Clock::time_point now) {
  previous_ = current_;
  current_ = random_key();
  current_since_ = now;
}

void TicketKeyStore::rotate() {
  std::lock_guard lock(mutex_);
  rotate_locked(Clock::now());
}

int TicketKeyStore::handle(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                           EVP_MAC_CTX* mac, int enc, Clock::time_point now) {
  Key key;
  int found = 1;
  {
    std::lock_guard lock(mutex_);
    if (now - current_since_ >= rotation_) rotate_locked(now);
    if (enc == 1) {
      key = current_;
    } else if (std::memcmp(key_name, current_.name.data(), 16) == 0) {
      key = current_;
    } else if (previous_.valid && std::memcmp(key_name, previous_.name.data(), 16) == 0) {
      key = previous_;
      found = 2;  // still good, but issue a ticket under the current key
    } else {
      return 0;
    }
  }
  if (!key.valid) return enc == 1 ? -1 : 0;
  if (enc == 1) {
    // A fresh IV per ticket; AES-256-CBC plus HMAC-SHA256, as OpenSSL's own default tickets.
    const int iv_len = EVP_CIPHER_get_iv_length(EVP_aes_256_cbc());
    if (RAND_bytes(iv, iv_len) != 1) return -1;
    std::memcpy(key_name, key.name.data(), 16);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) return -1;
    return init_mac(mac, key.hmac.data(), key.hmac.size()) ? 1 : -1;
  }
  if (!init_mac(mac, key.hmac.data(), key.hmac.size())) return 0;
  if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes.data(), iv) != 1) return 0;
  return found;
}

}  // namespace portico

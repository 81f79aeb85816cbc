#pragma once

// Session ticket keys (RFC 5077, and TLS 1.3 PSK tickets), shared by every SSL_CTX of the process
// so that a ticket issued under one certificate set (or before a reload) still resumes after it.
//
// Keys rotate every `rotation` (12 h by default): a new key encrypts new tickets and the previous
// one is kept to decrypt, so a ticket is accepted for 12 to 24 hours and then forward secrecy of
// old sessions is restored when its key is forgotten. A ticket under the previous key is accepted
// and renewed (the callback returns 2). Rotation is lazy, checked when a ticket is made or read:
// no timer, nothing to do on an idle process. Keys are random and never leave the process, so a
// restart invalidates every ticket (safe; clients do a full handshake).
//
// Thread-safe: workers on several threads share one store; a mutex guards the two keys (held for
// a copy of 80 bytes per handshake).

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <mutex>

namespace portico {

class TicketKeyStore {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds kDefaultRotation{12 * 3600};

  explicit TicketKeyStore(std::chrono::seconds rotation = kDefaultRotation);

  // The store every server SSL_CTX of this process uses.
  static TicketKeyStore& process();

  // Installs the process store's callback on `ctx` (SSL_CTX_set_tlsext_ticket_key_evp_cb).
  static void install(SSL_CTX* ctx);

  // The body of the OpenSSL ticket key callback, with the time passed in (for tests): enc 1 makes
  // a ticket with the current key (1, or -1 on failure); enc 0 finds the key by name: 1 current,
  // 2 previous (accept and renew), 0 unknown (full handshake).
  int handle(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
             EVP_MAC_CTX* mac, int enc, Clock::time_point now);

  // Starts a new key now (the current one becomes the previous one).
  void rotate();

 private:
  struct Key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
    bool valid = false;
  };
  static Key random_key();
  void rotate_locked(Clock::time_point now);

  const std::chrono::seconds rotation_;
  std::mutex mutex_;
  Key current_;
  Key previous_;
  Clock::time_point current_since_;
};

}  // namespace portico

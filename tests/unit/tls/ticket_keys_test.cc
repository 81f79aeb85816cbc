// TicketKeyStore: a ticket made under the current key is accepted; after one rotation it is
// accepted and renewed; after two it is refused.

#include "tls/ticket_keys.h"

#include <catch2/catch.hpp>

using namespace portico;

namespace {

struct Contexts {
  Contexts()
      : mac_algo(EVP_MAC_fetch(nullptr, "HMAC", nullptr)),
        cipher(EVP_CIPHER_CTX_new()),
        mac(EVP_MAC_CTX_new(mac_algo)) {}
  ~Contexts() {
    EVP_MAC_CTX_free(mac);
    EVP_CIPHER_CTX_free(cipher);
    EVP_MAC_free(mac_algo);
  }
  EVP_MAC* mac_algo;
  EVP_CIPHER_CTX* cipher;
  EVP_MAC_CTX* mac;
};

}  // namespace

TEST_CASE("ticket keys rotate and the previous key still decrypts", "[tls]") {
  using namespace std::chrono_literals;
  TicketKeyStore store(std::chrono::seconds(3600));
  const auto t0 = TicketKeyStore::Clock::now();
  unsigned char name[16];
  unsigned char iv[EVP_MAX_IV_LENGTH];
  {
    Contexts c;
    REQUIRE(store.handle(name, iv, c.cipher, c.mac, 1, t0) == 1);
  }
  auto decrypt = [&](TicketKeyStore::Clock::time_point now) {
    Contexts c;
    return store.handle(name, iv, c.cipher, c.mac, 0, now);
  };
  CHECK(decrypt(t0 + 10min) == 1);
  CHECK(decrypt(t0 + 61min) == 2);  // rotated on this call: now the previous key
  unsigned char other[16] = {0};
  {
    Contexts c;
    CHECK(store.handle(other, iv, c.cipher, c.mac, 0, t0 + 62min) == 0);
  }
  store.rotate();
  CHECK(decrypt(t0 + 63min) == 0);  // two rotations: forgotten
}

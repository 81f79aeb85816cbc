// tls_floor: the heap OpenSSL itself holds for one idle server-side TLS connection, with no
// proxy around it. This is the floor under S7 (memory per idle wss connection): no proxy built
// on this OpenSSL can hold an idle TLS connection in less.
//
// It makes N client/server pairs in memory (memory BIOs, no sockets), completes each handshake
// (the client's default offer: TLS 1.3, X25519; the server picks as portico does), lets the
// client read its session tickets, swaps the memory BIOs for one null BIO per connection and frees
// the clients, and reports the growth of the heap in use divided by N. The server context is set up
// like portico's for what changes memory: TLS 1.2 and 1.3, its TLS 1.3 suites in its order,
// SSL_MODE_RELEASE_BUFFERS, a server session cache.
//
//   tls_floor --cert CERT.pem --key KEY.pem [--connections N]
//   -> result mode=tls_floor connections=N protocol=TLSv1.3 cipher=... bytes_per_connection=...

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "proxy/heap_usage.h"
#include "tls/tls_context.h"

namespace {

// portico's own reading (its /metrics portico_heap_bytes), which also works under the
// sanitizers' allocators, so that the integration tests can hold portico's heap against it.
size_t heap_in_use() { return static_cast<size_t>(portico::heap_bytes_in_use()); }

void pump(BIO* from, BIO* to) {
  char buf[16384];
  int n;
  while ((n = BIO_read(from, buf, sizeof buf)) > 0) BIO_write(to, buf, n);
}

struct Pair {
  SSL* server;
  SSL* client;
};

// One handshake in memory; the server side is left idle with no BIO buffers of its own.
bool handshake(SSL_CTX* server_ctx, SSL_CTX* client_ctx, Pair* pair) {
  SSL* server = SSL_new(server_ctx);
  SSL* client = SSL_new(client_ctx);
  BIO* server_in = BIO_new(BIO_s_mem());
  BIO* server_out = BIO_new(BIO_s_mem());
  BIO* client_in = BIO_new(BIO_s_mem());
  BIO* client_out = BIO_new(BIO_s_mem());
  SSL_set_bio(server, server_in, server_out);
  SSL_set_bio(client, client_in, client_out);
  SSL_set_accept_state(server);
  SSL_set_connect_state(client);
  for (int step = 0; step < 8 && !(SSL_is_init_finished(server) && SSL_is_init_finished(client));
       ++step) {
    SSL_do_handshake(client);
    pump(client_out, server_in);
    SSL_do_handshake(server);
    pump(server_out, client_in);
  }
  char byte;
  SSL_read(client, &byte, 1);  // takes the TLS 1.3 session tickets
  pair->server = server;
  pair->client = client;
  if (!SSL_is_init_finished(server) || !SSL_is_init_finished(client)) return false;
  // A connection needs one BIO, for reading and writing both (portico's custom BIO, or a socket
  // BIO: the same BIO object); a null BIO stands for it without counting memory-BIO buffers.
  BIO* server_bio = BIO_new(BIO_s_null());
  SSL_set_bio(server, server_bio, server_bio);
  BIO* client_bio = BIO_new(BIO_s_null());
  SSL_set_bio(client, client_bio, client_bio);
  return true;
}

[[noreturn]] void usage() {
  std::fprintf(stderr, "usage: tls_floor --cert CERT.pem --key KEY.pem [--connections N]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  std::string cert, key;
  int connections = 1000;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage();
    if (arg == "--cert") {
      cert = argv[++i];
    } else if (arg == "--key") {
      key = argv[++i];
    } else if (arg == "--connections") {
      connections = std::atoi(argv[++i]);
    } else {
      usage();
    }
  }
  if (cert.empty() || key.empty() || connections <= 0) usage();

  SSL_CTX* server_ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX* client_ctx = SSL_CTX_new(TLS_client_method());
  if (!server_ctx || !client_ctx ||
      SSL_CTX_use_certificate_chain_file(server_ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(server_ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    std::fprintf(stderr, "tls_floor: cannot load %s / %s\n", cert.c_str(), key.c_str());
    ERR_print_errors_fp(stderr);
    return 1;
  }
  SSL_CTX_set_min_proto_version(server_ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(server_ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_ciphersuites(server_ctx, portico::kTls13Ciphersuites);
  SSL_CTX_set_mode(server_ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(server_ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_mode(client_ctx, SSL_MODE_RELEASE_BUFFERS);

  // A first round initialises OpenSSL's lazily built global state (providers, method caches),
  // which the second, measured round then does not count.
  std::vector<Pair> pairs(static_cast<size_t>(connections));
  size_t per_connection = 0;
  std::string protocol, cipher;
  for (int round = 0; round < 2; ++round) {
    const size_t before = heap_in_use();
    for (Pair& pair : pairs) {
      if (!handshake(server_ctx, client_ctx, &pair)) {
        std::fprintf(stderr, "tls_floor: a handshake did not complete\n");
        ERR_print_errors_fp(stderr);
        return 1;
      }
    }
    for (Pair& pair : pairs) SSL_free(pair.client);
    per_connection = (heap_in_use() - before) / pairs.size();
    protocol = SSL_get_version(pairs[0].server);
    cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(pairs[0].server));
    for (Pair& pair : pairs) SSL_free(pair.server);
  }
  std::printf(
      "result mode=tls_floor connections=%d protocol=%s cipher=%s bytes_per_connection=%zu\n",
      connections, protocol.c_str(), cipher.c_str(), per_connection);
  SSL_CTX_free(client_ctx);  // a leak check (the sanitizer build's tests run this) stays quiet
  SSL_CTX_free(server_ctx);
  return 0;
}

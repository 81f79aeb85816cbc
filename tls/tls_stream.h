#pragma once

// One TLS session driven by the caller's I/O: ciphertext goes in through set_input() and comes
// out through output(); plaintext goes through read() and write(). It knows nothing of sockets,
// so the connection owns the socket and this owns the SSL*.
//
// A custom BIO (not a pair of memory BIOs) moves ciphertext: reads come straight from the
// caller's receive buffer and writes append to output(), so each byte is copied once each way.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

namespace portico {

struct SslFree {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslFree>;

class TlsStream {
 public:
  enum class Status {
    kOk,        // progress made (handshake done, bytes read or written)
    kWantRead,  // more ciphertext input is needed
    kClosed,    // the peer sent close_notify
    kError,     // protocol error; error_reason() says which
  };

  // Server side when `server` is true, client side otherwise.
  TlsStream(SSL_CTX* ctx, bool server);
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // The ciphertext received from the network, consumed by the next calls. OpenSSL keeps any
  // partial record internally, so after a call that returns kWantRead the input is used up.
  void set_input(const char* data, size_t len) { input_ = std::string_view(data, len); }
  size_t input_left() const { return input_.size(); }
  // True while read() could still return plaintext without new input: ciphertext not yet
  // consumed, or whole records OpenSSL holds. After a successful read() that leaves neither,
  // the next read() can only say kWantRead, so callers skip it.
  bool has_buffered_input() const { return !input_.empty() || SSL_has_pending(ssl_.get()) == 1; }

  Status handshake();
  bool handshake_done() const { return SSL_is_init_finished(ssl_.get()) == 1; }

  // Decrypts up to `cap` bytes; *n is set when the status is kOk.
  Status read(char* buf, size_t cap, size_t* n);
  // Encrypts all of `data` into output().
  Status write(const char* data, size_t len);
  // Queues close_notify into output().
  void shutdown();
  // OpenSSL's record buffers (up to 33 KiB). The server context has SSL_MODE_RELEASE_BUFFERS:
  // OpenSSL frees them whenever they are empty, which on a busy connection means a free and a
  // malloc around every record. keep_buffers() turns that off for this connection;
  // release_buffers() turns it back on and gives them back now, unless something is still in
  // them (false; they stay until OpenSSL empties them).
  void keep_buffers();
  bool release_buffers();

  // Ciphertext waiting to be sent; the caller takes it (swap or clear) after sending.
  std::string& output() { return output_; }

  SSL* ssl() const { return ssl_.get(); }
  const std::string& error_reason() const { return error_reason_; }
  // True when the input did not look like TLS at all (e.g. plain HTTP on the TLS port).
  bool peer_spoke_plaintext() const { return plaintext_peer_; }

 private:
  static BIO_METHOD* bio_method();
  static int bio_write(BIO* bio, const char* data, int len);
  static int bio_read(BIO* bio, char* data, int len);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  Status map_error(int ret);

  SslPtr ssl_;
  std::string_view input_;
  std::string output_;
  std::string error_reason_;
  bool plaintext_peer_ = false;
  bool keeping_buffers_ = false;
};

}  // namespace portico

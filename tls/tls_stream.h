#pragma once

// One TLS session driven by the caller's I/O: ciphertext goes in through set_input() and comes
// out through output(); plaintext goes through read() and write(). It knows nothing of sockets,
// so the connection owns the socket and this owns the SSL*.
//
// A custom BIO (not a pair of memory BIOs) moves ciphertext: reads come straight from the
// caller's receive buffer and writes append to output(), so each byte is copied once each way.
//
// A TLS 1.3 server-side stream can leave OpenSSL after its handshake (hand_over_records): its
// records are then sealed and opened by Tls13Records and the SSL* is freed.

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "tls/tls13_records.h"

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
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // The ciphertext received from the network, consumed by the next calls. OpenSSL keeps any
  // partial record internally, so after a call that returns kWantRead the input is used up.
  void set_input(const char* data, size_t len) { input_ = std::string_view(data, len); }
  size_t input_left() const { return input_.size(); }
  // True while read() could still return plaintext without new input: ciphertext not yet
  // consumed, or whole records OpenSSL holds. After a successful read() that leaves neither,
  // the next read() can only say kWantRead, so callers skip it.
  bool has_buffered_input() const {
    return !input_.empty() || (ssl_ && SSL_has_pending(ssl_.get()) == 1);
  }
  // has_buffered_input(), or OpenSSL holds the start of a record it cannot open yet. Without
  // read-ahead OpenSSL reads a record's 5-byte header, then its body: with exactly the header
  // read, SSL_has_pending says 0 and only the record layer's state ("RB", reading the body)
  // tells that bytes of the stream are inside OpenSSL.
  bool holds_input() const {
    return has_buffered_input() ||
           (ssl_ && std::string_view(SSL_rstate_string(ssl_.get())) == "RB");
  }

  Status handshake();
  bool handshake_done() const { return !ssl_ || SSL_is_init_finished(ssl_.get()) == 1; }

  // Server side, TLS 1.3, handshake done: takes the record layer over from OpenSSL
  // (Tls13Records) and frees the SSL, which is most of an idle connection's memory. Refused
  // (false) for TLS 1.2, after a KeyUpdate, after close_notify, and while OpenSSL holds
  // unread input. Nothing changes for the caller: read(), write() and shutdown() go on as
  // before; ssl() is null afterwards. True when the records are (or already were) portico's.
  bool hand_over_records();
  bool records_handed_over() const { return records_ != nullptr; }
  // After the hand-over: the start of a record is held, its rest not yet received.
  bool holds_partial_record() const { return records_ && records_->has_partial_record(); }

  // Decrypts up to `cap` bytes; *n is set when the status is kOk.
  Status read(char* buf, size_t cap, size_t* n);
  // Encrypts all of `data` into output(). On the server side the first records after
  // restart_record_ramp() (and after the handshake) are small and grow, see kRampRecordBytes.
  Status write(const char* data, size_t len);
  // The next records start small again: for a connection that has been quiet, whose TCP
  // congestion window has shrunk back (Linux restarts slow start after an idle RTO).
  void restart_record_ramp() { ramp_records_ = 0; }

  // Dynamic record sizing. A TLS record can be decrypted only once all of it has arrived, so a
  // 16 KiB record spread over a dozen TCP segments holds back its first byte until its last
  // segment is in, a round trip or more while the congestion window is small, and longer when
  // one segment is lost. So record n (from 0) of a ramp carries at most (n + 1) x 1,360 bytes:
  // the first fits one segment (1,500-byte MTU, IPv6 or PPPoE, TCP timestamps, TLS 1.2 AES-GCM
  // overhead), and each record completes within the flight the window allows. After
  // kRampRecords records they are full size (16 KiB), where the per-record cost is lowest.
  // Go's crypto/tls ramps this way; NGINX and HAProxy use one fixed size.
  static constexpr size_t kRampRecordBytes = 1360;
  static constexpr uint8_t kRampRecords = 12;  // 12 x 1,360 = 16,320: the next one is 16 KiB
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

  SSL* ssl() const { return ssl_.get(); }  // null once the records are handed over
  const std::string& error_reason() const { return error_reason_; }
  // True when the input did not look like TLS at all (e.g. plain HTTP on the TLS port).
  bool peer_spoke_plaintext() const { return plaintext_peer_; }

 private:
  static BIO_METHOD* bio_method();
  static int bio_write(BIO* bio, const char* data, int len);
  static int bio_read(BIO* bio, char* data, int len);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  Status map_error(int ret);

  // What hand_over_records needs, gathered during a TLS 1.3 handshake: the application traffic
  // secrets (from OpenSSL's keylog callback) and, through its message callback, how many
  // records each direction has protected with them. Made when the server's Finished is written.
  struct HandoverState {
    Tls13Records::TrafficSecret client;  // what the client writes with: portico reads
    Tls13Records::TrafficSecret server;
    bool client_finished_read = false;     // the records read after this are counted
    bool server_finished_written = false;  // the records written after this are counted
    bool key_updated = false;              // a KeyUpdate made the secrets stale
    ~HandoverState();
  };
  static int ex_index();
  static void on_keylog(const SSL* ssl, const char* line);
  // The keylog callback is on only from a Finished message to the secret derived right after
  // it, and only on the thread's own context (TlsContextSet::context_for_this_thread).
  void arm_keylog();
  void disarm_keylog() {
    if (keylog_armed_) disarm_keylog_now();
  }
  void disarm_keylog_now();
  static void on_tls_message(int write_p, int version, int content_type, const void* buf,
                             size_t len, SSL* ssl, void* arg);
  Status read_records(char* buf, size_t cap, size_t* n);

  SslPtr ssl_;
  std::unique_ptr<HandoverState> handover_;
  std::unique_ptr<Tls13Records> records_;  // set by hand_over_records, when ssl_ is gone
  std::string_view input_;
  std::string output_;
  std::string error_reason_;
  bool plaintext_peer_ = false;
  bool keeping_buffers_ = false;
  bool keylog_armed_ = false;
  uint8_t ramp_records_;  // records written in the current ramp; kRampRecords: ramp over
};

}  // namespace portico

#pragma once

// TLS 1.3 record protection (RFC 8446 section 5) for a connection whose handshake OpenSSL has
// finished: what OpenSSL hands to the kernel when kTLS takes a connection over, done here in
// user space. OpenSSL's SSL object holds about 14 KB per connection for as long as the
// connection lives (the handshake's key shares, the session, the peer's lists, 32 record
// pipeline slots, two cipher contexts); an established connection needs only the two
// directions' traffic secrets, keys, IVs and sequence numbers. It is also less work per record
// than OpenSSL's record layer (no BIO copy, no per-record packet buffers).
// TlsStream::hand_over_records builds this from the secrets OpenSSL reported (its keylog callback)
// and the records counted since they came into use, then frees the SSL.
//
// Handles what a TLS 1.3 peer may send after the handshake: application data, alerts
// (close_notify ends the stream, user_canceled is ignored, any other is fatal), KeyUpdate
// (the read key moves on; when the peer asks, a KeyUpdate goes out before the next application
// data and the write key moves on too: one for any number of requests, which RFC 8446 4.6.3
// allows). Empty records and user_canceled alerts are skipped, up to OpenSSL's own limits in a
// row (32 and 5). Anything
// else (a post-handshake NewSessionTicket or CertificateRequest from a client, a record of a type
// other than application_data, a record too long, a tag that does not verify) is an error that ends
// the connection.

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace portico {

class Tls13Records {
 public:
  // The longest record body (TLSCiphertext.length) a peer may send, and so the plaintext
  // buffer open() needs: the content, its type byte and padding, all within 2^14 + 256.
  static constexpr size_t kMaxCiphertext = 16384 + 256;
  static constexpr size_t kMaxPlaintext = 16384;  // what seal() puts in one record
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kHeaderBytes = 5;
  static constexpr size_t kMaxSecret = 48;  // SHA-384

  // One direction's traffic secret (RFC 8446 7.1), and how many records it has protected.
  struct TrafficSecret {
    uint8_t bytes[kMaxSecret];
    uint8_t len = 0;
    uint64_t records = 0;
  };

  // For the TLS 1.3 cipher suite `suite` (its two-byte code: 0x1301 AES-128-GCM, 0x1302
  // AES-256-GCM, 0x1303 ChaCha20-Poly1305), reading with the client's secret and writing with
  // the server's. Null for another suite, a secret of the wrong length, or a failed derivation.
  static std::unique_ptr<Tls13Records> make(uint16_t suite, const TrafficSecret& read,
                                            const TrafficSecret& write);
  ~Tls13Records();
  Tls13Records(const Tls13Records&) = delete;
  Tls13Records& operator=(const Tls13Records&) = delete;

  enum class Status {
    kData,      // *n bytes of application data (n > 0) were written to `out`
    kNeedMore,  // the input is used up; a partial record is kept for the next call
    kClosed,    // the peer sent close_notify
    kError,     // error() says what was wrong
  };
  // Opens records from the front of *input until one carries application data (or the input
  // runs out), skipping what needs no caller: a KeyUpdate, an empty record, user_canceled.
  // `out` must hold kMaxCiphertext bytes.
  Status open(std::string_view* input, char* out, size_t* n);
  // Appends `len` (at most kMaxPlaintext) bytes of application data as one record to *out,
  // after the KeyUpdate the client asked for, if one is owed.
  bool seal(const char* data, size_t len, std::string* out);
  // Appends a close_notify alert, once.
  bool seal_close_notify(std::string* out);
  // After open() failed on something the peer sent: appends the fatal alert RFC 8446 names for
  // it (bad_record_mac, record_overflow, unexpected_message, decode_error, illegal_parameter),
  // once. False when there is none to send (the peer's own fatal alert ended the stream).
  bool seal_fatal_alert(std::string* out);

  // Frees the cipher contexts (made again on the next record) and the partial-record buffer
  // when it holds nothing: what an idle connection keeps is then about 250 bytes. False when a
  // partial record must stay.
  bool release();
  bool has_partial_record() const { return !partial_.empty(); }
  const std::string& error() const { return error_; }

 private:
  struct Direction {
    TrafficSecret secret;
    uint8_t key[32];
    uint8_t iv[12];
    EVP_CIPHER_CTX* ctx = nullptr;  // made on first use with `key`, freed by release()
  };

  Tls13Records(const EVP_CIPHER* cipher, const char* digest, size_t key_len);
  bool set_keys(Direction* d);
  bool next_secret(Direction* d);
  bool ready(Direction* d, bool encrypt);
  bool seal_record(uint8_t content_type, const char* data, size_t len, std::string* out);
  // Decrypts the whole record at `record` (header included) into `out`; returns the content
  // type, or -1 with error_ set.
  int open_record(const uint8_t* record, size_t body_len, char* out, size_t* n);
  Status fail(const char* why, uint8_t alert);
  friend struct Tls13RecordsTestAccess;  // seals records a client may get wrong, for the tests

  const EVP_CIPHER* cipher_;
  const char* digest_;  // "SHA256" or "SHA384"
  uint8_t key_len_;
  Direction read_;
  Direction write_;
  std::string partial_;  // the start of a record split across reads
  std::string error_;
  bool close_notify_sent_ = false;
  // The client asked for a KeyUpdate (update_requested): owed before the next application data
  // record (RFC 8446 4.6.3: requests received while silent may get a single answer), so that a
  // client that sends them without reading cannot make portico queue answers. (OpenSSL answers
  // each, and stops reading when its answers back up.)
  bool key_update_owed_ = false;
  // Records in a row that carried nothing for the caller: empty application data, and
  // user_canceled alerts. Bounded as OpenSSL bounds them (MAX_EMPTY_RECORDS,
  // MAX_WARN_ALERT_COUNT), so that a stream of them cannot hold a connection busy for free.
  unsigned empty_records_in_a_row_ = 0;
  unsigned warning_alerts_in_a_row_ = 0;
  uint8_t alert_ = 0;  // the fatal alert for the last error, until seal_fatal_alert() sends it
};

}  // namespace portico

#pragma once

// The server-side TLS configuration: certificates chosen by SNI, protocol versions, ciphers,
// ALPN, session resumption. Knows nothing of sockets or HTTP.

#include <openssl/ssl.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
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

struct TlsOptions {
  int min_version = TLS1_2_VERSION;  // TLS1_2_VERSION or TLS1_3_VERSION (--tls-min)
  bool strict = false;               // --strict: an expired certificate is an error
};

// What was loaded, for --check and the start-up log.
struct CertificateInfo {
  std::string cert_path;
  std::string key_path;
  std::string key_type;            // "ECDSA", "RSA" or another OpenSSL key type name
  std::vector<std::string> names;  // "DNS:example.com", "IP:127.0.0.1"
  std::string not_after;           // 2026-01-31T12:00:00Z
  bool expired = false;
};

// A certificate time as UTC ISO 8601 ("2026-01-31T12:00:00Z"), as the start-up log and
// `portico check` print it; "?" if OpenSSL cannot read it.
std::string format_asn1_time(const ASN1_TIME* time);

struct TlsContextResult {
  SslCtxPtr ctx;                      // the default context (SNI selection inside); null on error
  std::string error;                  // one line naming the file and what is wrong
  std::vector<std::string> warnings;  // one line each (an expired certificate without --strict)
  std::vector<CertificateInfo> certificates;
};

// The SNI table of one configuration: host name -> the SSL_CTX holding that name's
// certificates. It is owned by the default SSL_CTX (ex_data, freed with it), so every SSL made
// from that context keeps the whole set alive for its whole handshake, whatever a reload swaps in
// meanwhile; the named contexts never point back at the default one, so there is no reference
// cycle.
//
// Every handshake is served from a context of its thread's own: a copy of the shared context for
// its name, with the same certificate and key objects, made on the thread's first handshake. A
// connection is still made from the shared default context, whose session cache stays one for
// all workers; the SNI callback then moves it to the thread's copy. What that buys: a thread may
// change a setting of its own copy in the middle of a handshake without racing another worker
// (TlsStream turns OpenSSL's keylog callback on only around the secrets it needs). Apart from
// that copy table, the set is immutable once built.
class TlsContextSet {
 public:
  TlsContextSet();
  ~TlsContextSet();
  TlsContextSet(const TlsContextSet&) = delete;
  TlsContextSet& operator=(const TlsContextSet&) = delete;

  // The certificate group that serves `server_name` (exact name first, then "*.rest" for one
  // label; any case, a trailing dot ignored); 0, the default context's, for no name or a name
  // no certificate covers. A handshake finds it once, from its ClientHello.
  size_t group_of(std::string_view server_name) const;

  // A group's shared context, or null for the default context (group 0).
  SSL_CTX* shared_context(size_t group) const;
  SSL_CTX* select(std::string_view server_name) const {
    return shared_context(group_of(server_name));
  }

  // A group's session id context: sessions resume only within the group that made them.
  using SessionIdContext = std::array<unsigned char, SSL_MAX_SID_CTX_LENGTH>;
  const SessionIdContext& session_id_context(size_t group) const;
  const SessionIdContext& session_id_context(std::string_view server_name) const {
    return session_id_context(group_of(server_name));
  }

  // The calling thread's own copy of a group's context, made on the first call from this
  // thread; null if it cannot be made (then the shared context serves, and TlsStream leaves the
  // keylog callback alone).
  SSL_CTX* context_for_this_thread(size_t group) const;
  SSL_CTX* context_for_this_thread(std::string_view server_name) const {
    return context_for_this_thread(group_of(server_name));
  }

  // True for a context made by context_for_this_thread: one thread handshakes with it.
  static bool is_thread_own(const SSL_CTX* ctx);

  // The set attached to a default context by make_server_tls_context, or null.
  static const TlsContextSet* of(SSL_CTX* default_ctx);

 private:
  friend TlsContextResult make_server_tls_context(const std::vector<CertificateFiles>&,
                                                  const TlsOptions&);
  struct Group;  // one shared context's certificates, to make the threads' copies from
  SslCtxPtr make_copy(const Group& group) const;

  TlsOptions options_;
  // Lower-case name -> index into groups_ (0: the default context claimed the name first).
  std::map<std::string, size_t, std::less<>> by_name_;
  std::vector<std::unique_ptr<Group>> groups_;
  // Each thread's copies, one per group; a thread that has ended leaves its copies here until
  // the set goes (a new thread may get its id and them, and is then their one user).
  mutable std::mutex copies_mutex_;
  mutable std::map<std::thread::id, std::vector<SslCtxPtr>> copies_;
};

// The TLS 1.3 suites in portico's order of preference: AES-128-GCM first, as for TLS 1.2
// (OpenSSL's own order puts AES-256-GCM first). tls_floor sets the same.
inline constexpr char kTls13Ciphersuites[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";

// Builds the contexts with the "intermediate" profile: TLS 1.2 (unless options.min_version is
// 1.3) and 1.3, ECDHE+AEAD ciphers for 1.2, kTls13Ciphersuites for 1.3, server cipher
// preference (ChaCha20 first for a client that puts it first), no compression, no
// renegotiation, X25519/P-256/P-384 groups, ALPN http/1.1, session cache and rotating tickets.
//
// Certificates with the same set of names share one context (one ECDSA and one RSA: OpenSSL
// serves each client the one its signature algorithms allow). The first certificate's context
// is the default: for clients without SNI or with a name nothing covers. Every file is checked:
// readable, PEM, key matches, chain in order (leaf first, each next one the issuer of the one
// before), not expired (a warning, or an error with options.strict).
TlsContextResult make_server_tls_context(const std::vector<CertificateFiles>& certificates,
                                         const TlsOptions& options = {});

// The reason of the last OpenSSL error in this thread's queue (which it clears), for one-line
// messages.
std::string openssl_error_text();

// The passphrase callback for every PEM read: there is none. OpenSSL's default asks on the
// terminal (or reads stdin), which at a reload would stop the worker's loop for good; an
// encrypted key is an error like any unreadable one.
int no_passphrase(char* buf, int size, int rwflag, void* userdata);

// The subjectAltName entries of a certificate.
struct CertificateNames {
  std::vector<std::string> dns;    // lower case
  std::vector<std::string> ips;    // raw bytes: 4 (IPv4) or 16 (IPv6)
  std::vector<std::string> shown;  // "DNS:name" / "IP:addr", in certificate order
};
CertificateNames certificate_names(X509* leaf);

}  // namespace portico

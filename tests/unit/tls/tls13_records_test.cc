// TlsStream::hand_over_records and Tls13Records: after the hand-over, records go both ways
// between portico's own record layer and a real OpenSSL client, for each TLS 1.3 suite, through
// KeyUpdates, partial records and close_notify; what must be refused is refused. The two ends
// talk through memory BIOs in this process: the record bytes are exactly those a socket would
// carry.

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"
#include "tls/tls_context.h"
#include "tls/tls_stream.h"

using namespace portico;
using namespace portico::test;

namespace {

// portico's server context (the one the proxy uses, SNI set and per-thread copies included) for
// a test cert.
SslCtxPtr server_context() {
  static TempDir dir;
  static TestCert cert = make_test_cert(dir);
  TlsContextResult r = make_server_tls_context({{cert.fullchain, cert.key}});
  REQUIRE(r.ctx);
  return std::move(r.ctx);
}

struct Link {
  explicit Link(SSL_CTX* server_ctx, SSL_CTX* client_ctx, SSL_SESSION* session = nullptr)
      : client(SSL_new(client_ctx)), server(server_ctx, /*server=*/true) {
    to_client = BIO_new(BIO_s_mem());
    from_client = BIO_new(BIO_s_mem());
    SSL_set_bio(client, to_client, from_client);
    SSL_set_connect_state(client);
    if (session != nullptr) REQUIRE(SSL_set_session(client, session) == 1);
  }
  ~Link() { SSL_free(client); }

  // The client's ciphertext so far, all of it.
  std::string client_output() {
    std::string out;
    char buf[16384];
    int n;
    while ((n = BIO_read(from_client, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<size_t>(n));
    return out;
  }

  // Gives the server `bytes` in pieces of at most `piece` bytes, as reads from a socket would,
  // handshaking and then reading what it can; plaintext collects in `received`.
  void to_server(const std::string& bytes, size_t piece = SIZE_MAX) {
    for (size_t at = 0; at < bytes.size(); at += piece) {
      inbox = bytes.substr(at, piece);
      server.set_input(inbox.data(), inbox.size());
      if (!server.handshake_done()) {
        status = server.handshake();
        if (status == TlsStream::Status::kError || !server.handshake_done()) continue;
      }
      std::vector<char> plain(64 * 1024);
      for (;;) {
        size_t n = 0;
        status = server.read(plain.data(), plain.size(), &n);
        if (status != TlsStream::Status::kOk) break;
        received.append(plain.data(), n);
        if (!server.has_buffered_input()) break;
      }
      if (status == TlsStream::Status::kError || status == TlsStream::Status::kClosed) return;
    }
  }
  void pump_to_server(size_t piece = SIZE_MAX) { to_server(client_output(), piece); }

  void pump_to_client() {
    std::string& out = server.output();
    if (!out.empty()) BIO_write(to_client, out.data(), static_cast<int>(out.size()));
    out.clear();
  }

  void handshake() {
    for (int i = 0; i < 10 && !(SSL_is_init_finished(client) && server.handshake_done()); ++i) {
      SSL_do_handshake(client);
      pump_to_server();
      pump_to_client();
    }
    REQUIRE(SSL_is_init_finished(client));
    REQUIRE(server.handshake_done());
  }

  void client_write(const std::string& data) {
    size_t written = 0;
    REQUIRE(SSL_write_ex(client, data.data(), data.size(), &written) == 1);
    REQUIRE(written == data.size());
  }

  // Everything the client can read now; *closed when it read close_notify.
  std::string client_read(bool* closed = nullptr) {
    std::string got;
    char buf[16384];
    for (;;) {
      size_t n = 0;
      if (SSL_read_ex(client, buf, sizeof buf, &n) == 1) {
        got.append(buf, n);
        continue;
      }
      int err = SSL_get_error(client, 0);
      if (closed != nullptr) *closed = err == SSL_ERROR_ZERO_RETURN;
      if (err != SSL_ERROR_ZERO_RETURN) REQUIRE(err == SSL_ERROR_WANT_READ);
      return got;
    }
  }

  // What the server sent is given to the client, whose read must fail on a fatal alert: its
  // number (OpenSSL's error reason is 1000 + the alert), or -1 when the read did not fail.
  int client_reads_fatal_alert() {
    pump_to_client();
    ERR_clear_error();
    char buf[64];
    size_t n = 0;
    if (SSL_read_ex(client, buf, sizeof buf, &n) != 0) return -1;
    return ERR_GET_REASON(ERR_peek_last_error()) - SSL_AD_REASON_OFFSET;
  }

  void server_write(const std::string& data) {
    REQUIRE(server.write(data.data(), data.size()) == TlsStream::Status::kOk);
    pump_to_client();
  }

  SSL* client;
  BIO* to_client;
  BIO* from_client;
  TlsStream server;
  std::string inbox;
  std::string received;
  TlsStream::Status status = TlsStream::Status::kOk;
};

SslCtxPtr client_context(const char* suite, int max_version = TLS1_3_VERSION) {
  SslCtxPtr owner(SSL_CTX_new(TLS_client_method()));
  SSL_CTX* ctx = owner.get();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_max_proto_version(ctx, max_version);
  if (suite != nullptr) REQUIRE(SSL_CTX_set_ciphersuites(ctx, suite) == 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  return owner;
}

std::string pattern(size_t len, unsigned seed) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>((i * 131 + seed) % 251);
  return s;
}

// Both ways, sizes that take one record, several, and a few bytes.
void exchange(Link& link, unsigned seed) {
  for (size_t len : {size_t{5}, size_t{16384}, size_t{100000}}) {
    std::string up = pattern(len, seed);
    link.received.clear();
    link.client_write(up);
    link.pump_to_server();
    REQUIRE(link.status != TlsStream::Status::kError);
    CHECK(link.received == up);
    std::string down = pattern(len, seed + 7);
    link.server_write(down);
    CHECK(link.client_read() == down);
  }
}

// A client with OpenSSL's default suites, the handshake done and the records handed over.
struct HandedOver {
  HandedOver()
      : server_ctx(server_context()),
        client_ctx(client_context(nullptr)),
        link(server_ctx.get(), client_ctx.get()) {
    link.handshake();
    REQUIRE(link.server.hand_over_records());
  }
  SslCtxPtr server_ctx;
  SslCtxPtr client_ctx;
  Link link;
};

// What the client's keylog callback reported: its traffic secrets, from which the tests build
// the client's side of the record layer to seal records a real client would not send.
std::vector<std::string>& client_keylog() {
  static std::vector<std::string> lines;
  return lines;
}

void collect_client_keylog(const SSL*, const char* line) { client_keylog().emplace_back(line); }

Tls13Records::TrafficSecret secret_from_client_keylog(const std::string& label) {
  Tls13Records::TrafficSecret secret;
  for (const std::string& line : client_keylog()) {
    if (line.rfind(label + " ", 0) != 0) continue;
    const std::string hex = line.substr(line.rfind(' ') + 1);
    secret.len = static_cast<uint8_t>(hex.size() / 2);
    for (size_t i = 0; i < secret.len; ++i) {
      secret.bytes[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
    }
  }
  REQUIRE(secret.len > 0);
  return secret;
}

// A client context for hand_over_and_mirror: TLS_AES_128_GCM_SHA256 only, keys logged to
// client_keylog.
SslCtxPtr mirrored_client_context() {
  SslCtxPtr ctx = client_context("TLS_AES_128_GCM_SHA256");
  SSL_CTX_set_keylog_callback(ctx.get(), &collect_client_keylog);
  return ctx;
}

// Handshakes `link` (whose client context is a mirrored_client_context()), hands the server's
// records over, and returns the client's side of the record layer: reading with the server's
// secret, writing with its own.
std::unique_ptr<Tls13Records> hand_over_and_mirror(Link& link) {
  client_keylog().clear();
  link.handshake();
  REQUIRE(link.server.hand_over_records());
  std::unique_ptr<Tls13Records> client_records =
      Tls13Records::make(0x1301, secret_from_client_keylog("SERVER_TRAFFIC_SECRET_0"),
                         secret_from_client_keylog("CLIENT_TRAFFIC_SECRET_0"));
  REQUIRE(client_records);
  return client_records;
}

}  // namespace

namespace portico {
struct Tls13RecordsTestAccess {
  static bool seal(Tls13Records& records, uint8_t content_type, const std::string& content,
                   std::string* out) {
    return records.seal_record(content_type, content.data(), content.size(), out);
  }
};
}  // namespace portico

TEST_CASE("tls handover: records go both ways after OpenSSL hands them over, for each suite",
          "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  const char* suite =
      GENERATE("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256");
  INFO(suite);
  SslCtxPtr client_ctx = client_context(suite);
  {
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    CHECK(SSL_CIPHER_get_name(SSL_get_current_cipher(link.client)) == std::string(suite));
    // Some records under OpenSSL first: the counts it leaves must carry on.
    exchange(link, 1);
    REQUIRE(link.server.hand_over_records());
    CHECK(link.server.ssl() == nullptr);
    CHECK(link.server.records_handed_over());
    exchange(link, 2);
    // Idle: the cipher contexts go, and come back for the next record.
    CHECK(link.server.release_buffers());
    exchange(link, 3);
  }
}

TEST_CASE("tls handover: data sent with the client's Finished, and a hand-over before any data",
          "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  SslCtxPtr client_ctx = client_context(nullptr);
  Link link(server_ctx.get(), client_ctx.get());
  // The client's Finished and its first request reach the server in one read.
  SSL_do_handshake(link.client);
  link.pump_to_server();
  link.pump_to_client();
  REQUIRE(SSL_do_handshake(link.client) == 1);
  link.client_write("GET / HTTP/1.1\r\n\r\n");
  link.pump_to_server();
  REQUIRE(link.server.handshake_done());
  CHECK(link.received == "GET / HTTP/1.1\r\n\r\n");
  link.pump_to_client();  // the session tickets
  REQUIRE(link.server.hand_over_records());
  exchange(link, 4);

  Link second(server_ctx.get(), client_ctx.get());
  second.handshake();
  REQUIRE(second.server.hand_over_records());  // before any application record either way
  exchange(second, 5);
}

TEST_CASE("tls handover: a resumed session is handed over too", "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  SslCtxPtr client_ctx = client_context(nullptr);
  SSL_SESSION* session = nullptr;
  {
    Link first(server_ctx.get(), client_ctx.get());
    first.handshake();
    first.server_write("x");
    CHECK(first.client_read() == "x");  // reads the tickets too
    session = SSL_get1_session(first.client);
    REQUIRE(session != nullptr);
    CHECK(SSL_SESSION_has_ticket(session) == 1);
    SSL_shutdown(first.client);  // a connection freed without it spoils its session
  }
  Link second(server_ctx.get(), client_ctx.get(), session);
  second.handshake();
  CHECK(SSL_session_reused(second.client) == 1);
  REQUIRE(second.server.hand_over_records());
  exchange(second, 6);
  SSL_SESSION_free(session);
}

TEST_CASE("tls handover: KeyUpdate from the client, asked to answer or not", "[tls][handover]") {
  HandedOver handed;
  Link& link = handed.link;
  for (int round = 0; round < 3; ++round) {
    const int how = round == 1 ? SSL_KEY_UPDATE_NOT_REQUESTED : SSL_KEY_UPDATE_REQUESTED;
    REQUIRE(SSL_key_update(link.client, how) == 1);
    link.received.clear();
    link.client_write("after update");  // sends the KeyUpdate, then data under the new key
    link.pump_to_server();
    REQUIRE(link.status != TlsStream::Status::kError);
    CHECK(link.received == "after update");
    // When asked, the server's KeyUpdate goes out before its data; the client reads both.
    link.server_write("reply");
    CHECK(link.client_read() == "reply");
    exchange(link, 10 + static_cast<unsigned>(round));
  }
}

TEST_CASE("tls handover: KeyUpdates asked for while the server is silent get one answer",
          "[tls][handover]") {
  HandedOver handed;
  Link& link = handed.link;
  // A client that asks again and again and reads nothing: the answer is owed, not queued once
  // per request (RFC 8446 4.6.3), so such a client cannot make the server's output grow.
  for (int i = 0; i < 200; ++i) {
    REQUIRE(SSL_key_update(link.client, SSL_KEY_UPDATE_REQUESTED) == 1);
    link.client_write("x");
  }
  link.received.clear();
  link.pump_to_server();
  REQUIRE(link.status != TlsStream::Status::kError);
  CHECK(link.received == std::string(200, 'x'));
  CHECK(link.server.output().empty());
  // The one KeyUpdate goes out before the next data, and both ends carry on under the new keys.
  link.server_write("reply");
  CHECK(link.client_read() == "reply");
  exchange(link, 14);
}

TEST_CASE("tls handover: a KeyUpdate the client gets wrong ends the stream with its alert",
          "[tls][handover]") {
  struct Bad {
    const char* name;
    std::string message;
    const char* reason;
    int alert;
  };
  const Bad bads[] = {
      {"request_update neither 0 nor 1", std::string("\x18\x00\x00\x01\x02", 5), "bad_key_update",
       SSL_AD_ILLEGAL_PARAMETER},
      {"a KeyUpdate of two bytes", std::string("\x18\x00\x00\x02\x01\x00", 6),
       "unexpected_handshake_message", SSL_AD_UNEXPECTED_MESSAGE},
      {"a NewSessionTicket from the client", std::string("\x04\x00\x00\x01\x00", 5),
       "unexpected_handshake_message", SSL_AD_UNEXPECTED_MESSAGE},
  };
  SslCtxPtr server_ctx = server_context();
  SslCtxPtr client_ctx = mirrored_client_context();
  for (const Bad& bad : bads) {
    INFO(bad.name);
    Link link(server_ctx.get(), client_ctx.get());
    std::unique_ptr<Tls13Records> client_records = hand_over_and_mirror(link);
    std::string record;
    REQUIRE(Tls13RecordsTestAccess::seal(*client_records, 22, bad.message, &record));
    link.to_server(record);
    CHECK(link.status == TlsStream::Status::kError);
    CHECK(link.server.error_reason() == bad.reason);
    CHECK(link.client_reads_fatal_alert() == bad.alert);
  }
}

TEST_CASE("tls handover: records that carry nothing are skipped, up to OpenSSL's limits",
          "[tls][handover]") {
  struct Filler {
    const char* name;
    uint8_t content_type;
    std::string content;
    unsigned allowed_in_a_row;
    const char* reason;
  };
  const Filler fillers[] = {
      {"empty application data", 23, "", 32, "too_many_empty_records"},
      {"user_canceled", 21, std::string("\x01\x5a", 2), 5, "too_many_warning_alerts"},
  };
  SslCtxPtr server_ctx = server_context();
  SslCtxPtr client_ctx = mirrored_client_context();
  for (const Filler& filler : fillers) {
    INFO(filler.name);
    Link link(server_ctx.get(), client_ctx.get());
    std::unique_ptr<Tls13Records> client_records = hand_over_and_mirror(link);
    // `count` of them in a row, sealed as the client would.
    auto fillers_in_a_row = [&](unsigned count) {
      std::string records;
      for (unsigned i = 0; i < count; ++i) {
        REQUIRE(Tls13RecordsTestAccess::seal(*client_records, filler.content_type, filler.content,
                                             &records));
      }
      return records;
    };
    // As many as allowed, then data (which starts the count again), twice over: all fine.
    for (int round = 0; round < 2; ++round) {
      std::string records = fillers_in_a_row(filler.allowed_in_a_row);
      REQUIRE(Tls13RecordsTestAccess::seal(*client_records, 23, "data", &records));
      link.received.clear();
      link.to_server(records);
      REQUIRE(link.status != TlsStream::Status::kError);
      CHECK(link.received == "data");
    }
    // One more than allowed in a row ends the stream.
    link.to_server(fillers_in_a_row(filler.allowed_in_a_row + 1));
    CHECK(link.status == TlsStream::Status::kError);
    CHECK(link.server.error_reason() == filler.reason);
    CHECK(link.client_reads_fatal_alert() == SSL_AD_UNEXPECTED_MESSAGE);
  }
}

TEST_CASE("tls handover: records split anywhere are put back together", "[tls][handover]") {
  HandedOver handed;
  Link& link = handed.link;
  std::string data = pattern(40000, 9);  // three records
  for (size_t piece : {size_t{1}, size_t{3}, size_t{5}, size_t{4096}, size_t{16406}}) {
    INFO("pieces of " << piece);
    link.received.clear();
    link.client_write(data);
    link.pump_to_server(piece);
    CHECK(link.received == data);
    // The partial record held between pieces is given back once it completes.
    CHECK(link.server.release_buffers());
  }
  // Half a record held: release keeps it, and the rest completes it.
  link.received.clear();
  link.client_write("split");
  std::string bytes = link.client_output();
  link.to_server(bytes.substr(0, 10));
  CHECK_FALSE(link.server.release_buffers());
  link.to_server(bytes.substr(10));
  CHECK(link.received == "split");
}

TEST_CASE("tls handover: close_notify both ways", "[tls][handover]") {
  {
    HandedOver handed;
    Link& link = handed.link;
    link.client_write("last words");
    SSL_shutdown(link.client);
    link.pump_to_server();
    CHECK(link.received == "last words");
    CHECK(link.status == TlsStream::Status::kClosed);
  }
  {
    HandedOver handed;
    Link& link = handed.link;
    link.server.write("bye", 3);
    link.server.shutdown();
    link.server.shutdown();  // once only
    link.pump_to_client();
    bool closed = false;
    CHECK(link.client_read(&closed) == "bye");
    CHECK(closed);
  }
}

TEST_CASE("tls handover: a damaged or foreign record ends the stream with a reason",
          "[tls][handover]") {
  struct Damage {
    const char* name;
    void (*apply)(std::string*);
    const char* reason;
    int alert;  // the fatal alert the client must receive (RFC 8446 sections 5 and 6.2)
  };
  const Damage damages[] = {
      {"a flipped ciphertext bit", [](std::string* r) { (*r)[8] ^= 0x01; }, "bad_record_mac",
       SSL_AD_BAD_RECORD_MAC},
      {"a flipped tag bit", [](std::string* r) { r->back() ^= 0x80; }, "bad_record_mac",
       SSL_AD_BAD_RECORD_MAC},
      {"a header that is not application_data", [](std::string* r) { (*r)[0] = 22; },
       "unexpected_record_type", SSL_AD_UNEXPECTED_MESSAGE},
      {"a length over 2^14 + 256", [](std::string* r) { (*r)[3] = 0x41, (*r)[4] = 0x01; },
       "record_overflow", SSL_AD_RECORD_OVERFLOW},
      {"a body shorter than a tag",
       [](std::string* r) { *r = std::string("\x17\x03\x03\x00\x05hello", 10); },
       "record_too_short", SSL_AD_DECODE_ERROR},
  };
  for (const Damage& damage : damages) {
    INFO(damage.name);
    HandedOver handed;
    Link& link = handed.link;
    link.client_write("payload");
    std::string record = link.client_output();
    damage.apply(&record);
    link.to_server(record);
    CHECK(link.status == TlsStream::Status::kError);
    CHECK(link.server.error_reason() == damage.reason);
    CHECK(link.received.empty());
    // The client reads the fatal alert that says why.
    CHECK(link.client_reads_fatal_alert() == damage.alert);
  }
  {
    // A replayed record: its sequence number is behind, so its nonce is wrong.
    HandedOver handed;
    Link& link = handed.link;
    link.client_write("once");
    std::string record = link.client_output();
    link.to_server(record + record);
    CHECK(link.received == "once");
    CHECK(link.status == TlsStream::Status::kError);
    CHECK(link.server.error_reason() == "bad_record_mac");
  }
}

TEST_CASE("tls handover: refused for TLS 1.2, after a KeyUpdate, with input unread",
          "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  SECTION("TLS 1.2 stays with OpenSSL and keeps working") {
    SslCtxPtr client_ctx = client_context(nullptr, TLS1_2_VERSION);
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    CHECK_FALSE(link.server.hand_over_records());
    CHECK(link.server.ssl() != nullptr);
    exchange(link, 20);
    CHECK_FALSE(link.server.hand_over_records());  // for good, and OpenSSL keeps working
    exchange(link, 23);
  }
  SECTION("a KeyUpdate under OpenSSL made the secrets stale") {
    SslCtxPtr client_ctx = client_context(nullptr);
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    REQUIRE(SSL_key_update(link.client, SSL_KEY_UPDATE_NOT_REQUESTED) == 1);
    link.client_write("x");
    link.pump_to_server();
    CHECK(link.received == "x");
    CHECK_FALSE(link.server.hand_over_records());
    exchange(link, 21);
    CHECK_FALSE(link.server.hand_over_records());  // for good, and OpenSSL keeps working
    exchange(link, 24);
  }
  SECTION("a record's header read by OpenSSL, its body not yet") {
    // Without read-ahead OpenSSL takes the 5-byte header first; then SSL_has_pending is 0 while
    // the header is inside OpenSSL, and a hand-over would lose it.
    SslCtxPtr client_ctx = client_context(nullptr);
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    link.client_write("split after its header");
    std::string bytes = link.client_output();
    link.to_server(bytes.substr(0, Tls13Records::kHeaderBytes));
    REQUIRE(link.status == TlsStream::Status::kWantRead);
    CHECK(link.received.empty());
    CHECK_FALSE(link.server.hand_over_records());
    link.to_server(bytes.substr(Tls13Records::kHeaderBytes));
    CHECK(link.received == "split after its header");
    CHECK(link.server.hand_over_records());
    exchange(link, 25);
  }
  SECTION("ciphertext given but not yet read") {
    SslCtxPtr client_ctx = client_context(nullptr);
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    link.client_write("pending");
    link.inbox = link.client_output();
    link.server.set_input(link.inbox.data(), link.inbox.size());
    CHECK_FALSE(link.server.hand_over_records());
    char buf[Tls13Records::kMaxCiphertext];
    size_t n = 0;
    REQUIRE(link.server.read(buf, sizeof buf, &n) == TlsStream::Status::kOk);
    CHECK(std::string(buf, n) == "pending");
    CHECK(link.server.hand_over_records());
    exchange(link, 22);
  }
}

// The keylog callback is a setting of the SSL_CTX: it may be switched on and off during a
// handshake only because each thread handshakes with a context of its own.
TEST_CASE("tls handover: one context copy per thread, keylog off between calls",
          "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  const std::string sni = GENERATE(std::string(), std::string("localhost"));
  const int version = GENERATE(TLS1_3_VERSION, TLS1_2_VERSION);
  INFO("sni=" << sni << " version=" << version);
  SslCtxPtr client_ctx = client_context(nullptr, version);
  SSL_CTX* own = nullptr;
  for (int round = 0; round < 2; ++round) {
    Link link(server_ctx.get(), client_ctx.get());
    if (!sni.empty()) SSL_set_tlsext_host_name(link.client, sni.c_str());
    link.handshake();
    SSL_CTX* used = SSL_get_SSL_CTX(link.server.ssl());
    CHECK(used != server_ctx.get());
    CHECK(TlsContextSet::is_thread_own(used));
    CHECK_FALSE(TlsContextSet::is_thread_own(server_ctx.get()));
    CHECK(SSL_CTX_get_keylog_callback(used) == nullptr);
    if (own == nullptr) own = used;
    CHECK(used == own);  // the same copy for every handshake of this thread
    // The keylog callback was on for exactly the secrets the hand-over needs (TLS 1.3), and
    // never on for TLS 1.2.
    CHECK(link.server.hand_over_records() == (version == TLS1_3_VERSION));
    exchange(link, 6);
    CHECK(SSL_CTX_get_keylog_callback(own) == nullptr);
  }

  SSL_CTX* other_thread_own = nullptr;
  bool other_handed_over = false;
  std::thread other([&] {
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    other_thread_own = SSL_get_SSL_CTX(link.server.ssl());
    other_handed_over = link.server.hand_over_records();
  });
  other.join();
  CHECK(other_thread_own != nullptr);
  CHECK(other_thread_own != own);
  CHECK(other_handed_over == (version == TLS1_3_VERSION));
}

// The copies are per thread; what resumes a session is not: a session cached on one worker's
// thread (TLS 1.2 without tickets: the shared default context's cache) or a ticket it issued
// (the process's ticket keys) resumes on another's.
TEST_CASE("tls handover: a session made on one thread resumes on another", "[tls][handover]") {
  SslCtxPtr server_ctx = server_context();
  const int version = GENERATE(TLS1_3_VERSION, TLS1_2_VERSION);
  INFO("version=" << version);
  SslCtxPtr client_ctx = client_context(nullptr, version);
  if (version == TLS1_2_VERSION) SSL_CTX_set_options(client_ctx.get(), SSL_OP_NO_TICKET);
  SSL_SESSION* session = nullptr;
  std::thread first([&] {
    Link link(server_ctx.get(), client_ctx.get());
    link.handshake();
    link.server_write("x");
    CHECK(link.client_read() == "x");  // reads a TLS 1.3 ticket too
    session = SSL_get1_session(link.client);
    // Both ends close cleanly: OpenSSL drops a session from its cache when a connection ends
    // without close_notify.
    SSL_shutdown(link.client);
    link.server.shutdown();
  });
  first.join();
  REQUIRE(session != nullptr);
  CHECK(SSL_SESSION_has_ticket(session) == (version == TLS1_3_VERSION ? 1 : 0));
  Link second(server_ctx.get(), client_ctx.get(), session);
  second.handshake();
  CHECK(SSL_session_reused(second.client) == 1);
  CHECK(SSL_version(second.client) == version);
  CHECK(second.server.hand_over_records() == (version == TLS1_3_VERSION));
  SSL_SESSION_free(session);
}

#include "tls/tls13_records.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>

#include <algorithm>
#include <cstring>

namespace portico {
namespace {

constexpr uint8_t kTypeAlert = 21;
constexpr uint8_t kTypeHandshake = 22;
constexpr uint8_t kTypeApplicationData = 23;
constexpr uint8_t kHandshakeKeyUpdate = 24;
constexpr uint8_t kAlertCloseNotify = 0;
constexpr uint8_t kAlertUserCanceled = 90;
// The fatal alerts RFC 8446 names for what a peer may get wrong after the handshake.
constexpr uint8_t kAlertUnexpectedMessage = 10;
constexpr uint8_t kAlertBadRecordMac = 20;
constexpr uint8_t kAlertRecordOverflow = 22;
constexpr uint8_t kAlertIllegalParameter = 47;
constexpr uint8_t kAlertDecodeError = 50;
constexpr uint8_t kAlertInternalError = 80;
// OpenSSL's limits on records in a row that carry nothing (ssl/record/record_local.h).
constexpr unsigned kMaxEmptyRecordsInARow = 32;
constexpr unsigned kMaxWarningAlertsInARow = 5;

// Fetched once for the process: an EVP_CIPHER from EVP_aes_128_gcm() would be looked up in the
// provider tables again on every key set-up.
const EVP_CIPHER* fetched_cipher(const char* name) {
  return EVP_CIPHER_fetch(nullptr, name, nullptr);
}

// HKDF-Expand-Label(secret, label, "", out_len) of RFC 8446 7.1.
bool expand_label(const char* digest, const uint8_t* secret, size_t secret_len, const char* label,
                  uint8_t* out, size_t out_len) {
  static EVP_KDF* const hkdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (hkdf == nullptr) return false;
  // struct { uint16 length; opaque label<7..255> = "tls13 " + label; opaque context<0..255>; }
  uint8_t info[2 + 1 + 255 + 1];
  const size_t label_len = std::strlen(label);
  size_t i = 0;
  info[i++] = static_cast<uint8_t>(out_len >> 8);
  info[i++] = static_cast<uint8_t>(out_len);
  info[i++] = static_cast<uint8_t>(6 + label_len);
  std::memcpy(info + i, "tls13 ", 6);
  i += 6;
  std::memcpy(info + i, label, label_len);
  i += label_len;
  info[i++] = 0;  // empty context

  EVP_KDF_CTX* kctx = EVP_KDF_CTX_new(hkdf);
  if (kctx == nullptr) return false;
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, const_cast<char*>(digest), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret),
                                        secret_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, i),
      OSSL_PARAM_construct_end(),
  };
  const bool ok = EVP_KDF_derive(kctx, out, out_len, params) == 1;
  EVP_KDF_CTX_free(kctx);
  return ok;
}

// The per-record nonce: the IV with the 64-bit sequence number XORed into its last 8 bytes.
void record_nonce(const uint8_t iv[12], uint64_t seq, uint8_t nonce[12]) {
  std::memcpy(nonce, iv, 12);
  for (int i = 0; i < 8; ++i) nonce[11 - i] ^= static_cast<uint8_t>(seq >> (8 * i));
}

}  // namespace

Tls13Records::Tls13Records(const EVP_CIPHER* cipher, const char* digest, size_t key_len)
    : cipher_(cipher), digest_(digest), key_len_(static_cast<uint8_t>(key_len)) {}

std::unique_ptr<Tls13Records> Tls13Records::make(uint16_t suite, const TrafficSecret& read,
                                                 const TrafficSecret& write) {
  static const EVP_CIPHER* const aes128 = fetched_cipher("AES-128-GCM");
  static const EVP_CIPHER* const aes256 = fetched_cipher("AES-256-GCM");
  static const EVP_CIPHER* const chacha = fetched_cipher("ChaCha20-Poly1305");
  const EVP_CIPHER* cipher = nullptr;
  const char* digest = "SHA256";
  size_t key_len = 0;
  size_t secret_len = 32;
  switch (suite) {
    case 0x1301:
      cipher = aes128;
      key_len = 16;
      break;
    case 0x1302:
      cipher = aes256;
      digest = "SHA384";
      key_len = 32;
      secret_len = 48;
      break;
    case 0x1303:
      cipher = chacha;
      key_len = 32;
      break;
    default:
      return nullptr;
  }
  if (cipher == nullptr || read.len != secret_len || write.len != secret_len) return nullptr;
  std::unique_ptr<Tls13Records> records(new Tls13Records(cipher, digest, key_len));
  records->read_.secret = read;
  records->write_.secret = write;
  if (!records->set_keys(&records->read_) || !records->set_keys(&records->write_)) return nullptr;
  return records;
}

Tls13Records::~Tls13Records() {
  EVP_CIPHER_CTX_free(read_.ctx);
  EVP_CIPHER_CTX_free(write_.ctx);
  OPENSSL_cleanse(&read_, sizeof read_);
  OPENSSL_cleanse(&write_, sizeof write_);
}

// The key and IV of a direction's current secret (RFC 8446 7.3); the next record is number 0
// when the secret is new, or continues the count OpenSSL began.
bool Tls13Records::set_keys(Direction* d) {
  EVP_CIPHER_CTX_free(d->ctx);
  d->ctx = nullptr;
  return expand_label(digest_, d->secret.bytes, d->secret.len, "key", d->key, key_len_) &&
         expand_label(digest_, d->secret.bytes, d->secret.len, "iv", d->iv, sizeof d->iv);
}

// KeyUpdate: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "",
// Hash.length), and its record count starts again from zero.
bool Tls13Records::next_secret(Direction* d) {
  uint8_t next[kMaxSecret];
  if (!expand_label(digest_, d->secret.bytes, d->secret.len, "traffic upd", next, d->secret.len)) {
    return false;
  }
  std::memcpy(d->secret.bytes, next, d->secret.len);
  OPENSSL_cleanse(next, sizeof next);
  d->secret.records = 0;
  return set_keys(d);
}

bool Tls13Records::ready(Direction* d, bool encrypt) {
  if (d->ctx != nullptr) return true;
  d->ctx = EVP_CIPHER_CTX_new();
  if (d->ctx == nullptr) return false;
  if (EVP_CipherInit_ex2(d->ctx, cipher_, d->key, nullptr, encrypt ? 1 : 0, nullptr) != 1) {
    EVP_CIPHER_CTX_free(d->ctx);
    d->ctx = nullptr;
    return false;
  }
  return true;
}

bool Tls13Records::release() {
  EVP_CIPHER_CTX_free(read_.ctx);
  read_.ctx = nullptr;
  EVP_CIPHER_CTX_free(write_.ctx);
  write_.ctx = nullptr;
  if (!partial_.empty()) return false;
  std::string().swap(partial_);
  return true;
}

Tls13Records::Status Tls13Records::fail(const char* why, uint8_t alert) {
  error_ = why;
  alert_ = alert;
  return Status::kError;
}

bool Tls13Records::seal_record(uint8_t content_type, const char* data, size_t len,
                               std::string* out) {
  if (len > kMaxPlaintext || !ready(&write_, true)) return false;
  const size_t body = len + 1 + kTagBytes;  // TLSInnerPlaintext (no padding) and the tag
  const size_t start = out->size();
  out->resize(start + kHeaderBytes + body);
  auto* record = reinterpret_cast<uint8_t*>(out->data() + start);
  record[0] = kTypeApplicationData;  // every protected record says application_data outside
  record[1] = 0x03;
  record[2] = 0x03;
  record[3] = static_cast<uint8_t>(body >> 8);
  record[4] = static_cast<uint8_t>(body);
  uint8_t nonce[12];
  record_nonce(write_.iv, write_.secret.records, nonce);
  uint8_t* cipher_text = record + kHeaderBytes;
  int outl = 0;
  EVP_CIPHER_CTX* c = write_.ctx;
  bool ok = EVP_CipherInit_ex2(c, nullptr, nullptr, nonce, 1, nullptr) == 1 &&
            EVP_CipherUpdate(c, nullptr, &outl, record, kHeaderBytes) == 1 &&
            EVP_CipherUpdate(c, cipher_text, &outl, reinterpret_cast<const uint8_t*>(data),
                             static_cast<int>(len)) == 1 &&
            EVP_CipherUpdate(c, cipher_text + len, &outl, &content_type, 1) == 1 &&
            EVP_CipherFinal_ex(c, cipher_text + len + 1, &outl) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kTagBytes, cipher_text + len + 1) == 1;
  if (!ok) {
    out->resize(start);
    return false;
  }
  ++write_.secret.records;
  return true;
}

bool Tls13Records::seal(const char* data, size_t len, std::string* out) {
  if (key_update_owed_) {
    // update_not_requested, under the old key; what follows goes under the next one.
    const char update[5] = {static_cast<char>(kHandshakeKeyUpdate), 0, 0, 1, 0};
    if (!seal_record(kTypeHandshake, update, sizeof update, out) || !next_secret(&write_)) {
      return false;
    }
    key_update_owed_ = false;
  }
  return seal_record(kTypeApplicationData, data, len, out);
}

bool Tls13Records::seal_close_notify(std::string* out) {
  if (close_notify_sent_) return true;
  const char alert[2] = {1, kAlertCloseNotify};  // warning, close_notify
  close_notify_sent_ = seal_record(kTypeAlert, alert, sizeof alert, out);
  return close_notify_sent_;
}

bool Tls13Records::seal_fatal_alert(std::string* out) {
  if (alert_ == 0) return false;
  const char alert[2] = {2, static_cast<char>(alert_)};  // fatal
  alert_ = 0;                                            // once: the connection ends with it
  return seal_record(kTypeAlert, alert, sizeof alert, out);
}

int Tls13Records::open_record(const uint8_t* record, size_t body_len, char* out, size_t* n) {
  if (!ready(&read_, false)) {
    error_ = "cipher_setup_failed";
    alert_ = kAlertInternalError;
    return -1;
  }
  uint8_t nonce[12];
  record_nonce(read_.iv, read_.secret.records, nonce);
  const size_t text_len = body_len - kTagBytes;
  auto* tag = const_cast<uint8_t*>(record + kHeaderBytes + text_len);
  auto* plain = reinterpret_cast<uint8_t*>(out);
  int outl = 0;
  int final_len = 0;
  EVP_CIPHER_CTX* c = read_.ctx;
  bool ok =
      EVP_CipherInit_ex2(c, nullptr, nullptr, nonce, 0, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTagBytes, tag) == 1 &&
      EVP_CipherUpdate(c, nullptr, &outl, record, kHeaderBytes) == 1 &&
      EVP_CipherUpdate(c, plain, &outl, record + kHeaderBytes, static_cast<int>(text_len)) == 1 &&
      EVP_CipherFinal_ex(c, plain + outl, &final_len) == 1;
  if (!ok) {
    error_ = "bad_record_mac";
    alert_ = kAlertBadRecordMac;
    return -1;
  }
  ++read_.secret.records;
  // TLSInnerPlaintext: the content, its type, then zero padding; the type is the last non-zero.
  size_t len = text_len;
  while (len > 0 && plain[len - 1] == 0) --len;
  if (len == 0) {
    error_ = "record_without_content_type";
    alert_ = kAlertUnexpectedMessage;
    return -1;
  }
  *n = len - 1;
  if (*n > kMaxPlaintext) {
    error_ = "record_overflow";
    alert_ = kAlertRecordOverflow;
    return -1;
  }
  return plain[len - 1];
}

Tls13Records::Status Tls13Records::open(std::string_view* input, char* out, size_t* n) {
  for (;;) {
    // One whole record: straight from the input when it is all there, else gathered in
    // partial_, taking only up to its end (what follows is opened later, from the input).
    const uint8_t* record = nullptr;
    size_t body_len = 0;
    if (partial_.empty() && input->size() >= kHeaderBytes) {
      auto* p = reinterpret_cast<const uint8_t*>(input->data());
      body_len = (static_cast<size_t>(p[3]) << 8) | p[4];
      if (p[0] != kTypeApplicationData)
        return fail("unexpected_record_type", kAlertUnexpectedMessage);
      if (body_len > kMaxCiphertext) return fail("record_overflow", kAlertRecordOverflow);
      if (input->size() >= kHeaderBytes + body_len) {
        record = p;
        input->remove_prefix(kHeaderBytes + body_len);
      }
    }
    if (record == nullptr) {
      for (;;) {
        size_t want = kHeaderBytes;
        if (partial_.size() >= kHeaderBytes) {
          auto* p = reinterpret_cast<const uint8_t*>(partial_.data());
          body_len = (static_cast<size_t>(p[3]) << 8) | p[4];
          // A bad header is refused before its body is gathered.
          if (p[0] != kTypeApplicationData)
            return fail("unexpected_record_type", kAlertUnexpectedMessage);
          if (body_len > kMaxCiphertext) return fail("record_overflow", kAlertRecordOverflow);
          want += body_len;
        }
        if (partial_.size() >= kHeaderBytes && partial_.size() == want) break;
        if (input->empty()) return Status::kNeedMore;
        const size_t take = std::min(input->size(), want - partial_.size());
        partial_.append(input->data(), take);
        input->remove_prefix(take);
      }
      record = reinterpret_cast<const uint8_t*>(partial_.data());
    }

    if (body_len < kTagBytes + 1) return fail("record_too_short", kAlertDecodeError);
    size_t len = 0;
    const int type = open_record(record, body_len, out, &len);
    partial_.clear();
    if (type < 0) return Status::kError;

    switch (type) {
      case kTypeApplicationData:
        if (len == 0) {  // allowed, and nothing to hand on; but not without end
          if (++empty_records_in_a_row_ > kMaxEmptyRecordsInARow) {
            return fail("too_many_empty_records", kAlertUnexpectedMessage);
          }
          continue;
        }
        empty_records_in_a_row_ = 0;
        warning_alerts_in_a_row_ = 0;
        *n = len;
        return Status::kData;
      case kTypeAlert:
        if (len != 2) return fail("bad_alert", kAlertDecodeError);
        if (static_cast<uint8_t>(out[1]) == kAlertCloseNotify) return Status::kClosed;
        if (static_cast<uint8_t>(out[1]) == kAlertUserCanceled) {
          if (++warning_alerts_in_a_row_ > kMaxWarningAlertsInARow) {
            return fail("too_many_warning_alerts", kAlertUnexpectedMessage);
          }
          continue;
        }
        error_ = "peer_alert_" + std::to_string(static_cast<uint8_t>(out[1]));
        return Status::kError;
      case kTypeHandshake: {
        // Only KeyUpdate may come from a client now, and it changes the key, so it must end
        // its record (RFC 8446 5.1): exactly one 5-byte message.
        auto* m = reinterpret_cast<const uint8_t*>(out);
        if (len != 5 || m[0] != kHandshakeKeyUpdate || m[1] != 0 || m[2] != 0 || m[3] != 1) {
          return fail("unexpected_handshake_message", kAlertUnexpectedMessage);
        }
        // request_update is update_not_requested (0) or update_requested (1), nothing else.
        if (m[4] > 1) return fail("bad_key_update", kAlertIllegalParameter);
        if (!next_secret(&read_)) return fail("key_update_failed", kAlertInternalError);
        if (m[4] == 1) key_update_owed_ = true;
        continue;
      }
      default:
        return fail("unexpected_content_type", kAlertUnexpectedMessage);
    }
  }
}

}  // namespace portico

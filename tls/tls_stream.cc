#include "tls/tls_stream.h"

#include <openssl/crypto.h>
#include <openssl/err.h>

#include <algorithm>
#include <cstring>

#include "tls/tls_context.h"

namespace portico {

BIO_METHOD* TlsStream::bio_method() {
  // Created once for the process; BIO_METHODs are immutable after setup and shared by threads.
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portico");
    BIO_meth_set_write(m, &TlsStream::bio_write);
    BIO_meth_set_read(m, &TlsStream::bio_read);
    BIO_meth_set_ctrl(m, &TlsStream::bio_ctrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int TlsStream::bio_write(BIO* bio, const char* data, int len) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  self->output_.append(data, static_cast<size_t>(len));
  return len;
}

int TlsStream::bio_read(BIO* bio, char* data, int len) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->input_.empty()) {
    BIO_set_retry_read(bio);
    return -1;
  }
  size_t n = std::min(self->input_.size(), static_cast<size_t>(len));
  std::memcpy(data, self->input_.data(), n);
  self->input_.remove_prefix(n);
  return static_cast<int>(n);
}

long TlsStream::bio_ctrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    default:
      return 0;
  }
}

// Only the server side ramps: portico's own client side talks to backends, usually nearby, where
// small records would cost CPU and buy nothing.
TlsStream::TlsStream(SSL_CTX* ctx, bool server)
    : ssl_(SSL_new(ctx)), ramp_records_(server ? 0 : kRampRecords) {
  BIO* bio = BIO_new(bio_method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_.get(), bio, bio);
  if (server) {
    SSL_set_accept_state(ssl_.get());
    SSL_set_ex_data(ssl_.get(), ex_index(), this);
    SSL_set_msg_callback(ssl_.get(), &TlsStream::on_tls_message);
    SSL_set_msg_callback_arg(ssl_.get(), this);
  } else {
    SSL_set_connect_state(ssl_.get());
  }
}

TlsStream::~TlsStream() = default;

TlsStream::HandoverState::~HandoverState() {
  OPENSSL_cleanse(&client, sizeof client);
  OPENSSL_cleanse(&server, sizeof server);
}

int TlsStream::ex_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// With a keylog callback set, OpenSSL 3.0 formats every secret it derives as a hex line, one
// sprintf per byte (about 45,000 instructions a line), and a TLS 1.3 handshake derives five:
// both handshake traffic secrets, both application traffic secrets and the exporter secret.
// Portico needs the two application ones, and OpenSSL 3.0 has no other way to give them. Each is
// derived right after a Finished message (the server's written, the client's read), in the same
// OpenSSL call, so the message callback turns the callback on at a Finished and on_keylog turns
// it off at the secret: three lines formatted instead of five (OpenSSL logs the exporter secret
// just before the server's application secret, with nothing of ours called in between), none
// for TLS 1.2. The switch is a setting of the SSL_CTX, so it is made only on the thread's own
// copy of the context, which no other thread handshakes with; and every call into OpenSSL ends
// with it off.
void TlsStream::arm_keylog() {
  SSL_CTX* ctx = SSL_get_SSL_CTX(ssl_.get());
  if (!TlsContextSet::is_thread_own(ctx)) return;
  SSL_CTX_set_keylog_callback(ctx, &TlsStream::on_keylog);
  keylog_armed_ = true;
}

void TlsStream::disarm_keylog_now() {
  SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl_.get()), nullptr);
  keylog_armed_ = false;
}

// OpenSSL reports each secret as an NSS key log line, "LABEL <client random in hex> <secret in
// hex>". The two application traffic secrets are kept.
void TlsStream::on_keylog(const SSL* ssl, const char* line) {
  auto* self = static_cast<TlsStream*>(SSL_get_ex_data(ssl, ex_index()));
  if (self == nullptr || !self->handover_) return;
  std::string_view text(line);
  const size_t label_end = text.find(' ');
  if (label_end == std::string_view::npos) return;
  const std::string_view label = text.substr(0, label_end);
  Tls13Records::TrafficSecret* secret = nullptr;
  if (label == "CLIENT_TRAFFIC_SECRET_0") secret = &self->handover_->client;
  if (label == "SERVER_TRAFFIC_SECRET_0") secret = &self->handover_->server;
  if (secret == nullptr) return;
  self->disarm_keylog();
  const size_t hex_start = text.rfind(' ') + 1;
  const std::string_view hex = text.substr(hex_start);
  if (hex.size() % 2 != 0 || hex.size() / 2 > Tls13Records::kMaxSecret) return;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = nibble(hex[2 * i]);
    const int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    secret->bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  secret->len = static_cast<uint8_t>(hex.size() / 2);
}

// Counts the records protected with the application traffic secrets. The server's Finished is
// the last record under its handshake key and the client's Finished the last under its own, so
// every record header after them is one more record under the application secrets. OpenSSL
// reports a record's header before the handshake message inside it, and a message before it
// derives the keys that follow it.
void TlsStream::on_tls_message(int write_p, int, int content_type, const void* buf, size_t len,
                               SSL* ssl, void* arg) {
  auto* self = static_cast<TlsStream*>(arg);
  HandoverState* h = self->handover_.get();
  if (content_type == SSL3_RT_HEADER) {
    if (h == nullptr) return;
    if (write_p != 0) {
      if (h->server_finished_written) ++h->server.records;
    } else if (h->client_finished_read) {
      ++h->client.records;
    }
    return;
  }
  if (content_type != SSL3_RT_HANDSHAKE || len == 0) return;
  const auto type = static_cast<const uint8_t*>(buf)[0];
  if (type == SSL3_MT_FINISHED) {
    if (write_p != 0) {
      // The server's Finished comes first in TLS 1.3; in TLS 1.2 nothing is kept.
      if (h != nullptr || SSL_version(ssl) != TLS1_3_VERSION) return;
      self->handover_ = std::make_unique<HandoverState>();
      self->handover_->server_finished_written = true;
    } else {
      if (h == nullptr) return;
      h->client_finished_read = true;
    }
    self->arm_keylog();
  } else if (type == SSL3_MT_KEY_UPDATE && h != nullptr) {
    h->key_updated = true;
  }
}

bool TlsStream::hand_over_records() {
  if (records_) return true;
  SSL* ssl = ssl_.get();
  HandoverState* h = handover_.get();
  // A connection that can never be handed over (TLS 1.2, or secrets a KeyUpdate made stale)
  // stops the bookkeeping for good: no message callback per record, no secrets kept.
  if (SSL_is_init_finished(ssl) && (SSL_version(ssl) != TLS1_3_VERSION || (h && h->key_updated))) {
    handover_.reset();
    SSL_set_msg_callback(ssl, nullptr);
    return false;
  }
  if (h == nullptr || !h->client_finished_read || !h->server_finished_written ||
      h->client.len == 0 || h->server.len == 0 || !SSL_is_init_finished(ssl) ||
      SSL_get_shutdown(ssl) != 0 || holds_input()) {
    return false;
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  if (cipher == nullptr) return false;
  records_ = Tls13Records::make(SSL_CIPHER_get_protocol_id(cipher), h->client, h->server);
  if (!records_) return false;
  handover_.reset();
  ssl_.reset();
  return true;
}

namespace {
// SSL_get_error needs the thread's error queue empty before each SSL call. ERR_clear_error
// walks all 16 slots of the queue every time (about 400 instructions, twice per relayed
// WebSocket message); the queue is nearly always empty already, which ERR_peek_error tells
// for a fraction of that.
void clear_error_queue() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}
}  // namespace

TlsStream::Status TlsStream::map_error(int ret) {
  int err = SSL_get_error(ssl_.get(), ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return Status::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      // Our BIO never refuses a write.
      return Status::kOk;
    case SSL_ERROR_ZERO_RETURN:
      return Status::kClosed;
    default: {
      unsigned long code = ERR_peek_last_error();
      if (code != 0) {
        if (ERR_GET_REASON(code) == SSL_R_HTTP_REQUEST ||
            ERR_GET_REASON(code) == SSL_R_HTTPS_PROXY_REQUEST) {
          plaintext_peer_ = true;
        }
        const char* reason = ERR_reason_error_string(code);
        error_reason_ = reason ? reason : "tls error";
      } else if (error_reason_.empty()) {
        error_reason_ = err == SSL_ERROR_SYSCALL ? "unexpected eof" : "tls error";
      }
      // Replace spaces so the reason is one token in key=value log lines.
      for (char& c : error_reason_) {
        if (c == ' ') c = '_';
      }
      ERR_clear_error();
      return Status::kError;
    }
  }
}

TlsStream::Status TlsStream::handshake() {
  clear_error_queue();
  int ret = SSL_do_handshake(ssl_.get());
  disarm_keylog();
  if (ret == 1) return Status::kOk;
  return map_error(ret);
}

TlsStream::Status TlsStream::read_records(char* buf, size_t cap, size_t* n) {
  if (cap < Tls13Records::kMaxCiphertext) {
    error_reason_ = "read_buffer_too_small";
    return Status::kError;
  }
  switch (records_->open(&input_, buf, n)) {
    case Tls13Records::Status::kData:
      return Status::kOk;
    case Tls13Records::Status::kNeedMore:
      return Status::kWantRead;
    case Tls13Records::Status::kClosed:
      return Status::kClosed;
    case Tls13Records::Status::kError:
      break;
  }
  error_reason_ = records_->error();
  // The fatal alert goes into output(), as OpenSSL's own does on its record layer.
  records_->seal_fatal_alert(&output_);
  return Status::kError;
}

TlsStream::Status TlsStream::read(char* buf, size_t cap, size_t* n) {
  if (records_) return read_records(buf, cap, n);
  clear_error_queue();
  size_t got = 0;
  int ret = SSL_read_ex(ssl_.get(), buf, cap, &got);
  disarm_keylog();
  if (ret == 1) {
    *n = got;
    return Status::kOk;
  }
  return map_error(ret);
}

TlsStream::Status TlsStream::write(const char* data, size_t len) {
  while (len > 0) {
    size_t record = len;
    if (ramp_records_ < kRampRecords) {
      record = std::min(len, kRampRecordBytes * (ramp_records_ + 1u));
      ++ramp_records_;
    }
    if (records_) {
      record = std::min(record, Tls13Records::kMaxPlaintext);
      if (!records_->seal(data, record, &output_)) {
        error_reason_ = "seal_failed";
        return Status::kError;
      }
      data += record;
      len -= record;
      continue;
    }
    clear_error_queue();
    size_t written = 0;
    int ret = SSL_write_ex(ssl_.get(), data, record, &written);
    disarm_keylog();
    if (ret != 1) return map_error(ret);
    data += written;
    len -= written;
  }
  return Status::kOk;
}

void TlsStream::keep_buffers() {
  if (keeping_buffers_ || records_) return;
  SSL_clear_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  keeping_buffers_ = true;
}

bool TlsStream::release_buffers() {
  if (records_) return records_->release();
  if (keeping_buffers_) {
    SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
    keeping_buffers_ = false;
  }
  // OpenSSL refuses (0) while a record is partly read or written; those buffers must stay.
  return !has_buffered_input() && SSL_free_buffers(ssl_.get()) == 1;
}

void TlsStream::shutdown() {
  if (records_) {
    records_->seal_close_notify(&output_);
    return;
  }
  ERR_clear_error();
  if (SSL_is_init_finished(ssl_.get())) SSL_shutdown(ssl_.get());
  disarm_keylog();
  ERR_clear_error();
}

}  // namespace portico

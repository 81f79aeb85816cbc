#include "tls/tls_stream.h"

#include <openssl/err.h>

#include <algorithm>
#include <cstring>

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
  } else {
    SSL_set_connect_state(ssl_.get());
  }
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
  if (ret == 1) return Status::kOk;
  return map_error(ret);
}

TlsStream::Status TlsStream::read(char* buf, size_t cap, size_t* n) {
  clear_error_queue();
  size_t got = 0;
  int ret = SSL_read_ex(ssl_.get(), buf, cap, &got);
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
    clear_error_queue();
    size_t written = 0;
    int ret = SSL_write_ex(ssl_.get(), data, record, &written);
    if (ret != 1) return map_error(ret);
    data += written;
    len -= written;
  }
  return Status::kOk;
}

void TlsStream::keep_buffers() {
  if (keeping_buffers_) return;
  SSL_clear_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
  keeping_buffers_ = true;
}

bool TlsStream::release_buffers() {
  if (keeping_buffers_) {
    SSL_set_mode(ssl_.get(), SSL_MODE_RELEASE_BUFFERS);
    keeping_buffers_ = false;
  }
  // OpenSSL refuses (0) while a record is partly read or written; those buffers must stay.
  return !has_buffered_input() && SSL_free_buffers(ssl_.get()) == 1;
}

void TlsStream::shutdown() {
  ERR_clear_error();
  if (SSL_is_init_finished(ssl_.get())) SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

}  // namespace portico

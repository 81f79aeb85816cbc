#include "proxy/upstream_pool.h"

#include <algorithm>
#include <cstring>

#include "proxy/cidr.h"
#include "proxy/log.h"
#include "tls/upstream_tls.h"

namespace portico {

UpstreamConnection::UpstreamConnection(uv_loop_t* loop, std::string key) : key_(std::move(key)) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  pending_callbacks_ = 1;  // the close callback
  writer_.init(reinterpret_cast<uv_stream_t*>(&tcp_), this);
}

void UpstreamConnection::start(const BackendAddress& address, SSL_CTX* tls) {
  if (tls) {
    tls_ = std::make_unique<TlsStream>(tls, /*server=*/false);
    if (!configure_upstream_ssl(tls_->ssl(), address.host, address.host_is_ip)) {
      tls_failure_ = "cannot set the backend name for verification";
      fail(UV_EINVAL);
      return;
    }
    // The pool key names the backend and the context (its CA bundle): where a session was
    // verified, and so where it may be offered again.
    offer_upstream_session(tls_->ssl(), &key_);
  }
  if (address.host_is_ip) {
    sockaddr_storage addr{};
    int rc = address.host.find(':') != std::string::npos
                 ? uv_ip6_addr(address.host.c_str(), address.port,
                               reinterpret_cast<sockaddr_in6*>(&addr))
                 : uv_ip4_addr(address.host.c_str(), address.port,
                               reinterpret_cast<sockaddr_in*>(&addr));
    if (rc != 0) {
      fail(rc);
      return;
    }
    connect_to(reinterpret_cast<const sockaddr*>(&addr));
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string port = std::to_string(address.port);
  // The request lives on the heap until its callback, which takes it back: a connection's
  // memory should not carry what only its first moments need.
  auto req = std::make_unique<uv_getaddrinfo_t>();
  req->data = this;
  ++pending_callbacks_;
  int rc = uv_getaddrinfo(tcp_.loop, req.get(), &UpstreamConnection::on_resolved,
                          address.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    --pending_callbacks_;
    fail(rc);
    return;
  }
  resolving_ = req.release();
}

void UpstreamConnection::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<uv_getaddrinfo_t> owned(req);
  auto* conn = static_cast<UpstreamConnection*>(req->data);
  conn->resolving_ = nullptr;
  if (conn->closing_) {
    if (res) uv_freeaddrinfo(res);
    conn->release_callback();
    return;
  }
  --conn->pending_callbacks_;
  if (status < 0 || !res) {
    if (res) uv_freeaddrinfo(res);
    conn->fail(status < 0 ? status : UV_EAI_NONAME);
    return;
  }
  std::vector<sockaddr_storage> order = backend_address_order(res);
  uv_freeaddrinfo(res);
  conn->connect_in_order(std::move(order));
}

void UpstreamConnection::connect_in_order(std::vector<sockaddr_storage> addresses) {
  if (addresses.empty()) {
    fail(UV_EAI_ADDRFAMILY);
    return;
  }
  next_addresses_.assign(addresses.rbegin(), addresses.rend() - 1);
  connect_to(reinterpret_cast<const sockaddr*>(&addresses.front()));
}

std::vector<sockaddr_storage> backend_address_order(const addrinfo* resolved) {
  std::vector<sockaddr_storage> order;
  for (int family : {AF_INET, AF_INET6}) {
    for (const addrinfo* ai = resolved; ai && order.size() < kMaxBackendAddresses;
         ai = ai->ai_next) {
      if (ai->ai_family != family || ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
      sockaddr_storage addr{};
      std::memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
      // An address listed twice (in /etc/hosts and by DNS, say) is tried once.
      const auto same = [&](const sockaddr_storage& seen) {
        return std::memcmp(&seen, &addr, ai->ai_addrlen) == 0;
      };
      if (std::none_of(order.begin(), order.end(), same)) order.push_back(addr);
    }
  }
  return order;
}

std::string UpstreamConnection::address() const {
  if (address_.ss_family == AF_UNSPEC) return "";
  return passed_over_.empty() ? address_text(address_)
                              : str_cat(passed_over_, ",", address_text(address_));
}

void UpstreamConnection::connect_to(const sockaddr* addr) {
  std::memcpy(&address_, addr,
              addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
  uv_tcp_nodelay(&tcp_, 1);
  // On the heap like the resolve request. libuv calls on_connected for it (UV_ECANCELED when
  // the handle closes first) before the handle's close callback, so it never outlives `this`.
  auto req = std::make_unique<uv_connect_t>();
  req->data = this;
  int rc = uv_tcp_connect(req.get(), &tcp_, addr, &UpstreamConnection::on_connected);
  if (rc != 0) {
    connect_failed(rc);  // at once: an unreachable network (no IPv6 route), no free port, ...
    return;
  }
  req.release();  // on_connected takes it back
}

// The attempt on address_ failed: the next address, or the delegate hears of it.
void UpstreamConnection::connect_failed(int status) {
  note_connect_error(status);
  if (next_addresses_.empty()) {
    fail(status);
    return;
  }
  const std::string failed = address_text(address_);
  log_debug("upstream", "connect failed backend=", key_.substr(0, key_.find('#')),
            " address=", failed, " error=", uv_err_name(status), ", trying the next address");
  if (!passed_over_.empty()) passed_over_ += ',';
  passed_over_ += failed;
  try_next_address();
}

void UpstreamConnection::note_connect_error(int status) {
  if (!connect_errors_.empty()) connect_errors_ += ',';
  connect_errors_ += uv_err_name(status);
}

bool UpstreamConnection::move_past_unanswered_address() {
  if (closing_ || resolving_) return false;
  if (reopening_) return true;  // already on its way to the next address
  if (next_addresses_.empty()) {
    note_connect_error(UV_ETIMEDOUT);
    return false;
  }
  // Closing the handle cancels the connect (on_connected hears UV_ECANCELED and leaves it).
  connect_failed(UV_ETIMEDOUT);
  return true;
}

void UpstreamConnection::on_connected(uv_connect_t* req, int status) {
  std::unique_ptr<uv_connect_t> owned(req);
  auto* conn = static_cast<UpstreamConnection*>(req->data);
  if (conn->closing_ || status == UV_ECANCELED) return;
  if (status < 0) {
    conn->connect_failed(status);
    return;
  }
  conn->next_addresses_.clear();
  conn->next_addresses_.shrink_to_fit();
  if (status == 0 && conn->tls_) {
    // The ClientHello; the delegate hears of the connection when the handshake is done.
    TlsStream::Status handshake = conn->tls_->handshake();
    if (!conn->send_tls_output()) return;
    if (handshake == TlsStream::Status::kError) {
      conn->tls_failed();
      return;
    }
    conn->read_start();
    return;
  }
  if (conn->delegate_) conn->delegate_->on_upstream_connected(*conn, status);
}

// A socket whose connect failed cannot connect again portably (and the next address may be of
// the other family): the handle is closed and made anew, in place, once libuv is done with it.
void UpstreamConnection::try_next_address() {
  reopening_ = true;
  ++pending_callbacks_;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UpstreamConnection::on_closed_for_next_address);
}

void UpstreamConnection::on_closed_for_next_address(uv_handle_t* handle) {
  auto* conn = static_cast<UpstreamConnection*>(handle->data);
  conn->reopening_ = false;
  --conn->pending_callbacks_;
  if (conn->closing_) {
    // close() came meanwhile and left the closing handle alone: this was its close callback.
    conn->release_callback();
    return;
  }
  uv_tcp_init(handle->loop, &conn->tcp_);
  conn->tcp_.data = conn;
  conn->writer_.init(reinterpret_cast<uv_stream_t*>(&conn->tcp_), conn);
  sockaddr_storage next = conn->next_addresses_.back();
  conn->next_addresses_.pop_back();
  conn->connect_to(reinterpret_cast<const sockaddr*>(&next));
}

// Ciphertext from a TLS backend: the handshake first, then records decrypted into the loop's
// plaintext buffer and handed on. Records that carry no data (session tickets, key updates)
// hand on nothing, so an idle pooled connection survives them.
void UpstreamConnection::on_ciphertext(const char* data, size_t len) {
  tls_->set_input(data, len);
  if (!tls_->handshake_done()) {
    TlsStream::Status status = tls_->handshake();
    if (!send_tls_output()) return;
    if (status == TlsStream::Status::kError) {
      tls_failed();
      return;
    }
    if (status != TlsStream::Status::kOk) return;
    if (delegate_) delegate_->on_upstream_connected(*this, 0);
    if (closing_) return;
  }
  char* plain = loop_buffers(tcp_.loop).plaintext;
  for (;;) {
    size_t n = 0;
    TlsStream::Status status = tls_->read(plain, LoopBuffers::kReadSize, &n);
    if (status == TlsStream::Status::kOk) {
      if (delegate_) delegate_->on_upstream_data(*this, plain, n);
      if (closing_) return;
      if (!tls_->has_buffered_input()) break;
      continue;
    }
    if (status == TlsStream::Status::kWantRead) break;
    // close_notify reads as the end of the stream; a broken record as a failed connection.
    read_stop();
    if (delegate_) {
      delegate_->on_upstream_closed(*this,
                                    status == TlsStream::Status::kClosed ? UV_EOF : UV_EPROTO);
    }
    return;
  }
  send_tls_output();  // what reading produced (a key update answer)
}

bool UpstreamConnection::send_tls_output() {
  if (tls_->output().empty()) return true;
  int rc = writer_.write_owned(std::move(tls_->output()));
  tls_->output().clear();
  if (rc == 0) return true;
  read_stop();
  if (delegate_) delegate_->on_upstream_closed(*this, rc);
  return false;
}

void UpstreamConnection::tls_failed() {
  tls_failure_ = upstream_verify_failure(tls_->ssl());
  if (tls_failure_.empty()) tls_failure_ = tls_->error_reason();
  read_stop();
  if (delegate_) delegate_->on_upstream_connected(*this, UV_EPROTO);
}

int UpstreamConnection::write(const uv_buf_t* bufs, unsigned count) {
  if (!tls_) return writer_.write(bufs, count);
  for (unsigned i = 0; i < count; ++i) {
    if (tls_->write(bufs[i].base, bufs[i].len) != TlsStream::Status::kOk) return UV_EPROTO;
  }
  int rc = writer_.write_owned(std::move(tls_->output()));
  tls_->output().clear();
  return rc;
}

void UpstreamConnection::fail(int status) {
  if (delegate_) delegate_->on_upstream_connected(*this, status);
}

void UpstreamConnection::read_start() {
  if (reading_ || closing_) return;
  reading_ = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &alloc_from_loop_buffer,
                           &UpstreamConnection::on_read) == 0;
}

void UpstreamConnection::read_stop() {
  if (!reading_) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  reading_ = false;
}

void UpstreamConnection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* conn = static_cast<UpstreamConnection*>(stream->data);
  if (conn->closing_) return;
  if (nread > 0) {
    conn->last_read_filled_buffer_ = static_cast<size_t>(nread) == buf->len;
    if (conn->tls_) {
      conn->on_ciphertext(buf->base, static_cast<size_t>(nread));
    } else if (conn->delegate_) {
      conn->delegate_->on_upstream_data(*conn, buf->base, static_cast<size_t>(nread));
    }
    flush_gathered_writes(stream->loop);
  } else if (nread < 0) {
    conn->read_stop();
    if (conn->tls_ && nread == UV_EOF) conn->tls_cut_ = true;  // close_notify comes as data
    if (conn->delegate_) conn->delegate_->on_upstream_closed(*conn, static_cast<int>(nread));
  }
}

void UpstreamConnection::on_write_done(int status) {
  if (closing_ || !delegate_) return;
  if (status < 0) {
    delegate_->on_upstream_closed(*this, status);
  } else if (writer_.below_low_water()) {
    delegate_->on_upstream_drained(*this);
  }
}

void UpstreamConnection::close() {
  if (closing_) return;
  closing_ = true;
  delegate_ = nullptr;
  if (reopening_) return;  // the handle is closing already; on_closed_for_next_address ends it
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(resolving_));
  if (tls_ && tls_->handshake_done()) {
    tls_->shutdown();  // close_notify: the backend can tell our close from a cut connection
    writer_.write_owned(std::move(tls_->output()));
  }
  writer_.flush_before_close();
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &UpstreamConnection::on_closed);
}

void UpstreamConnection::on_closed(uv_handle_t* handle) {
  static_cast<UpstreamConnection*>(handle->data)->release_callback();
}

void UpstreamConnection::release_callback() {
  if (--pending_callbacks_ == 0) delete this;
}

UpstreamPool::UpstreamPool(uv_loop_t* loop, size_t max_idle_per_backend,
                           std::chrono::seconds idle_timeout)
    : loop_(loop),
      sweep_timer_(new uv_timer_t),
      max_idle_per_backend_(max_idle_per_backend),
      idle_timeout_(idle_timeout) {
  uv_timer_init(loop, sweep_timer_);
  sweep_timer_->data = this;
  uv_timer_start(sweep_timer_, &UpstreamPool::on_sweep, 5000, 5000);
  uv_unref(reinterpret_cast<uv_handle_t*>(sweep_timer_));
}

UpstreamPool::~UpstreamPool() { close_all(); }

UpstreamConnection* UpstreamPool::take_idle(const std::string& key,
                                            const UpstreamConnection* not_this) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  for (auto conn_it = list.rbegin(); conn_it != list.rend(); ++conn_it) {
    UpstreamConnection* conn = *conn_it;
    if (conn == not_this) continue;
    list.erase(std::next(conn_it).base());
    conn->set_delegate(nullptr);
    return conn;
  }
  return nullptr;
}

UpstreamConnection* UpstreamPool::create(std::string key) {
  return new UpstreamConnection(loop_, std::move(key));
}

void UpstreamPool::release(UpstreamConnection* conn) {
  auto& list = idle_[conn->key()];
  if (closed_ || list.size() >= max_idle_per_backend_ || conn->queued() != 0) {
    conn->close();
    return;
  }
  conn->set_delegate(this);
  conn->idle_since_ = std::chrono::steady_clock::now();
  conn->read_start();
  list.push_back(conn);
}

void UpstreamPool::drop_idle(UpstreamConnection& conn) {
  auto it = idle_.find(conn.key());
  if (it != idle_.end()) std::erase(it->second, &conn);
  conn.close();
}

// An idle connection has no exchange in flight: any byte or EOF from it means the backend gave
// up on it (or misbehaves); either way it must not be reused.
void UpstreamPool::on_upstream_data(UpstreamConnection& conn, const char*, size_t) {
  drop_idle(conn);
}

void UpstreamPool::on_upstream_closed(UpstreamConnection& conn, int) { drop_idle(conn); }

void UpstreamPool::on_sweep(uv_timer_t* timer) {
  auto* pool = static_cast<UpstreamPool*>(timer->data);
  auto now = std::chrono::steady_clock::now();
  for (auto& [key, list] : pool->idle_) {
    std::erase_if(list, [&](UpstreamConnection* conn) {
      if (now - conn->idle_since_ < pool->idle_timeout_) return false;
      conn->close();
      return true;
    });
  }
}

void UpstreamPool::on_timer_closed(uv_handle_t* handle) {
  delete reinterpret_cast<uv_timer_t*>(handle);
}

void UpstreamPool::close_all() {
  if (closed_) return;
  closed_ = true;
  for (auto& [key, list] : idle_) {
    for (UpstreamConnection* conn : list) conn->close();
  }
  idle_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(sweep_timer_), &UpstreamPool::on_timer_closed);
}

size_t UpstreamPool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

}  // namespace portico

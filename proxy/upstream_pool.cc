#include "proxy/upstream_pool.h"

#include <algorithm>
#include <cstring>

#include "proxy/log.h"

namespace portico {

UpstreamConnection::UpstreamConnection(uv_loop_t* loop, std::string key) : key_(std::move(key)) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  pending_callbacks_ = 1;  // the close callback
  writer_.init(reinterpret_cast<uv_stream_t*>(&tcp_), this);
}

void UpstreamConnection::start(const BackendAddress& address) {
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
  resolve_req_.data = this;
  ++pending_callbacks_;
  int rc = uv_getaddrinfo(tcp_.loop, &resolve_req_, &UpstreamConnection::on_resolved,
                          address.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    --pending_callbacks_;
    fail(rc);
  }
}

void UpstreamConnection::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* conn = static_cast<UpstreamConnection*>(req->data);
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
  // One address is tried: the first IPv4 one when there is one, since backends behind a proxy
  // mostly listen on 127.0.0.1 or a private IPv4 address while "localhost" resolves to ::1
  // first. (NGINX likewise settles a name's addresses once; a backend that needs every
  // address tried should be listed once per address.)
  const addrinfo* chosen = res;
  for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) {
      chosen = ai;
      break;
    }
  }
  conn->connect_to(chosen->ai_addr);
  uv_freeaddrinfo(res);
}

void UpstreamConnection::connect_to(const sockaddr* addr) {
  uv_tcp_nodelay(&tcp_, 1);
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, &UpstreamConnection::on_connected);
  if (rc != 0) fail(rc);
}

void UpstreamConnection::on_connected(uv_connect_t* req, int status) {
  auto* conn = static_cast<UpstreamConnection*>(req->data);
  if (conn->closing_ || status == UV_ECANCELED) return;
  if (conn->delegate_) conn->delegate_->on_upstream_connected(*conn, status);
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
    if (conn->delegate_) conn->delegate_->on_upstream_data(*conn, buf->base, nread);
  } else if (nread < 0) {
    conn->read_stop();
    if (conn->delegate_) conn->delegate_->on_upstream_closed(*conn, static_cast<int>(nread));
  }
}

void UpstreamConnection::on_write_done(int status) {
  if (closing_ || !delegate_) return;
  if (status < 0) {
    delegate_->on_upstream_closed(*this, status);
  } else if (writer_.queued() <= kWriteLowWater) {
    delegate_->on_upstream_drained(*this);
  }
}

void UpstreamConnection::close() {
  if (closing_) return;
  closing_ = true;
  delegate_ = nullptr;
  if (pending_callbacks_ > 1) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
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

UpstreamConnection* UpstreamPool::take_idle(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end() || it->second.empty()) return nullptr;
  UpstreamConnection* conn = it->second.back();
  it->second.pop_back();
  conn->set_delegate(nullptr);
  return conn;
}

UpstreamConnection* UpstreamPool::create(std::string key) {
  return new UpstreamConnection(loop_, std::move(key));
}

void UpstreamPool::release(UpstreamConnection* conn) {
  auto& list = idle_[conn->key()];
  if (closed_ || list.size() >= max_idle_per_backend_ || conn->writer().queued() != 0) {
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

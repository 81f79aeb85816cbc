#include "proxy/tcp_listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "proxy/cidr.h"
#include "proxy/log.h"

namespace portico {

namespace {

// An IPv6 socket that also takes IPv4 clients (as IPv4-mapped addresses), whatever the system's
// default. For `::1` or another single IPv6 address it changes nothing.
void set_dual_stack(int fd) {
  int zero = 0;
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
}

}  // namespace

bool parse_listen_address(const std::string& address, uint16_t port, sockaddr_storage* out) {
  return address.find(':') != std::string::npos
             ? uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(out)) == 0
             : uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(out)) == 0;
}

bool listen_tcp(uv_tcp_t* handle, const std::string& address, uint16_t port, int backlog,
                uv_connection_cb on_connection, std::string_view flag, std::string* error,
                bool reuse_port) {
  sockaddr_storage addr{};
  const bool v6 = address.find(':') != std::string::npos;
  if (!parse_listen_address(address, port, &addr)) {
    *error = std::string(flag) + ": not an IP address: \"" + address + "\"";
    return false;
  }
  int rc = 0;
  // The socket is made here rather than by uv_tcp_bind, for SO_REUSEPORT (libuv 1.44 has no
  // flag for it): a new portico can bind the same port while the old one still serves, which is
  // how a restart refuses nothing (docs/operations.md).
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc = -errno;
  } else {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    // `::` takes IPv4 clients too (docs/configuration.md), also where the system's default
    // (net.ipv6.bindv6only=1) would make it IPv6 only.
    if (v6) set_dual_stack(fd);
    const socklen_t len = v6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0 ? 0 : -errno;
    if (rc == 0) rc = uv_tcp_open(handle, fd);
    if (rc == 0) {
      fd = -1;  // the handle owns it now
      rc = uv_listen(reinterpret_cast<uv_stream_t*>(handle), backlog, on_connection);
    }
    if (fd >= 0) ::close(fd);
  }
  if (rc != 0) {
    *error = "cannot listen on " + (v6 ? "[" + address + "]" : address) + ":" +
             std::to_string(port) + " (" + std::string(flag) + "): " + uv_strerror(rc);
    return false;
  }
  return true;
}

bool port_has_listener(const std::string& address, uint16_t port) {
  sockaddr_storage addr{};
  if (port == 0 || !parse_listen_address(address, port, &addr)) return false;
  int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // SO_REUSEADDR and not SO_REUSEPORT: the bind fails only where a socket listens, not for
  // connections in TIME_WAIT, and no SO_REUSEPORT socket lets this one share its port.
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.ss_family == AF_INET6) set_dual_stack(fd);  // as the listener itself binds
  const socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  const bool in_use =
      ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0 && errno == EADDRINUSE;
  ::close(fd);
  return in_use;
}

uint16_t log_listening(uv_tcp_t* handle, std::string_view kind) {
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(handle, reinterpret_cast<sockaddr*>(&bound), &len);
  std::string shown = address_text(bound);
  if (bound.ss_family == AF_INET6) shown = "[" + shown + "]";
  log_info("listener", "listening kind=", kind, " addr=", shown, ":", address_port(bound));
  return address_port(bound);
}

}  // namespace portico

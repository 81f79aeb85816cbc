#include "proxy/tcp_listener.h"

#include "proxy/cidr.h"
#include "proxy/log.h"

namespace portico {

bool listen_tcp(uv_tcp_t* handle, const std::string& address, uint16_t port, int backlog,
                uv_connection_cb on_connection, std::string_view flag, std::string* error) {
  sockaddr_storage addr{};
  bool v6 = address.find(':') != std::string::npos;
  int rc = v6 ? uv_ip6_addr(address.c_str(), port, reinterpret_cast<sockaddr_in6*>(&addr))
              : uv_ip4_addr(address.c_str(), port, reinterpret_cast<sockaddr_in*>(&addr));
  if (rc != 0) {
    *error = std::string(flag) + ": not an IP address: \"" + address + "\"";
    return false;
  }
  // libuv binds lazily: uv_tcp_bind may defer EADDRINUSE to uv_listen, so both happen here.
  rc = uv_tcp_bind(handle, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(handle), backlog, on_connection);
  if (rc != 0) {
    *error = "cannot listen on " + (v6 ? "[" + address + "]" : address) + ":" +
             std::to_string(port) + " (" + std::string(flag) + "): " + uv_strerror(rc);
    return false;
  }
  return true;
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

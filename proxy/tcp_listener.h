#pragma once

// Opening a listening TCP socket on a libuv loop, with errors as one line, and announcing it.
// Shared by the proxy's listeners and the admin listener.

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace portico {

// Fills *out with `address` (an IPv4 or IPv6 literal, no brackets) and `port`; false when
// `address` is not such a literal. Flags that name a listen address are checked with it.
bool parse_listen_address(const std::string& address, uint16_t port, sockaddr_storage* out);

// Binds `address`:`port` (an IPv4 or IPv6 literal; port 0 picks one) and listens. On failure
// returns false and sets *error to one line; `flag` names the option the address came from.
// With `reuse_port`, SO_REUSEPORT: other sockets with it (a second portico, during a restart)
// may listen on the same port, and the kernel spreads new connections among them.
bool listen_tcp(uv_tcp_t* handle, const std::string& address, uint16_t port, int backlog,
                uv_connection_cb on_connection, std::string_view flag, std::string* error,
                bool reuse_port = false);

// True when a socket already listens on `address`:`port` (port 0: false). Asked before a
// SO_REUSEPORT bind, which would then share the port with it without a word.
bool port_has_listener(const std::string& address, uint16_t port);

// Logs "listening kind=KIND addr=ADDR:PORT" with the bound address; returns the bound port.
uint16_t log_listening(uv_tcp_t* handle, std::string_view kind);

}  // namespace portico

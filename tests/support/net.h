#pragma once

// Loopback socket helpers shared by the test clients and servers.

#include <chrono>
#include <cstdint>
#include <string>

namespace portico::test {

// A port that was free a moment ago on 127.0.0.1: bind port 0, read it, close. Only for programs
// that cannot be given port 0 (another process could take it in between; on loopback in a test
// run this is rare enough).
uint16_t free_port();

// A listening TCP socket on 127.0.0.1 and a port the kernel picks; returns the fd (-1 on error)
// and sets *port.
int listen_loopback(int backlog, uint16_t* port);

// A port on 127.0.0.1 where nothing listens, held for the object's lifetime: the socket is bound
// but never listens, so connections are refused and no other test can take the port meanwhile
// (free_port() only promises the port was free a moment ago).
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A blocking TCP connection to host:port (host: an IPv4 or IPv6 literal). Returns the fd, or -1
// with `error` set. TCP_NODELAY is on: tests send small messages and must not wait for Nagle.
int connect_tcp(const std::string& host, uint16_t port, std::chrono::milliseconds timeout,
                std::string* error);

// Parses an IPv4 or IPv6 literal and port into `storage` (a sockaddr_storage); returns the length
// of the address, or 0 if `host` is not a literal.
unsigned fill_sockaddr(const std::string& host, uint16_t port, void* storage);

// Closes `fd` with a TCP reset (SO_LINGER 0) instead of a FIN: a client whose network failed.
void close_with_reset(int fd);

}  // namespace portico::test

#pragma once

// Address ranges for --trusted-proxies: which peers may pass X-Forwarded-For/Forwarded on.

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico {

// An IPv4 or IPv6 socket address in the 28 bytes it needs (a sockaddr_storage takes 128): what
// every client connection keeps of its peer.
union IpAddress {
  sockaddr any;
  sockaddr_in v4;
  sockaddr_in6 v6;
};

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network address, IPv4 in the first 4 bytes
  int prefix_len = 0;

  static std::optional<Cidr> parse(std::string_view text);  // "10.0.0.0/8", "::1", "192.0.2.7"
  bool contains(const sockaddr& addr) const;  // false for families other than IPv4 and IPv6
  bool contains(const sockaddr_storage& addr) const {
    return contains(reinterpret_cast<const sockaddr&>(addr));
  }
};

// Parses "CIDR,CIDR,...". On error returns nullopt and sets *error.
std::optional<std::vector<Cidr>> parse_cidr_list(std::string_view text, std::string* error);

// "192.0.2.7" or "2001:db8::1" (no port, no brackets).
std::string address_text(const sockaddr& addr);
inline std::string address_text(const sockaddr_storage& addr) {
  return address_text(reinterpret_cast<const sockaddr&>(addr));
}
uint16_t address_port(const sockaddr_storage& addr);

}  // namespace portico

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

struct Cidr {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // network address, IPv4 in the first 4 bytes
  int prefix_len = 0;

  static std::optional<Cidr> parse(std::string_view text);  // "10.0.0.0/8", "::1", "192.0.2.7"
  bool contains(const sockaddr_storage& addr) const;
};

// Parses "CIDR,CIDR,...". On error returns nullopt and sets *error.
std::optional<std::vector<Cidr>> parse_cidr_list(std::string_view text, std::string* error);

// "192.0.2.7" or "2001:db8::1" (no port, no brackets).
std::string address_text(const sockaddr_storage& addr);
uint16_t address_port(const sockaddr_storage& addr);

}  // namespace portico

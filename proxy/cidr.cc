#include "proxy/cidr.h"

#include <arpa/inet.h>

#include <cstring>

namespace portico {

std::optional<Cidr> Cidr::parse(std::string_view text) {
  Cidr cidr;
  std::string_view address = text;
  int prefix_len = -1;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    address = text.substr(0, slash);
    std::string_view len_text = text.substr(slash + 1);
    if (len_text.empty() || len_text.size() > 3) return std::nullopt;
    prefix_len = 0;
    for (char c : len_text) {
      if (c < '0' || c > '9') return std::nullopt;
      prefix_len = prefix_len * 10 + (c - '0');
    }
  }
  std::string address_str(address);
  if (inet_pton(AF_INET, address_str.c_str(), cidr.bytes.data()) == 1) {
    cidr.v6 = false;
    if (prefix_len < 0) prefix_len = 32;
    if (prefix_len > 32) return std::nullopt;
  } else if (inet_pton(AF_INET6, address_str.c_str(), cidr.bytes.data()) == 1) {
    cidr.v6 = true;
    if (prefix_len < 0) prefix_len = 128;
    if (prefix_len > 128) return std::nullopt;
  } else {
    return std::nullopt;
  }
  cidr.prefix_len = prefix_len;
  return cidr;
}

namespace {
bool prefix_equal(const uint8_t* a, const uint8_t* b, int bits) {
  int full = bits / 8;
  if (std::memcmp(a, b, static_cast<size_t>(full)) != 0) return false;
  int rest = bits % 8;
  if (rest == 0) return true;
  uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (a[full] & mask) == (b[full] & mask);
}
}  // namespace

bool Cidr::contains(const sockaddr& addr) const {
  if (addr.sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    const auto* b = reinterpret_cast<const uint8_t*>(&in->sin_addr);
    if (!v6) return prefix_equal(bytes.data(), b, prefix_len);
    return false;
  }
  if (addr.sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    const auto* b = reinterpret_cast<const uint8_t*>(&in6->sin6_addr);
    if (v6) return prefix_equal(bytes.data(), b, prefix_len);
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (std::memcmp(b, mapped, 12) == 0) return prefix_equal(bytes.data(), b + 12, prefix_len);
  }
  return false;
}

std::optional<std::vector<Cidr>> parse_cidr_list(std::string_view text, std::string* error) {
  std::vector<Cidr> out;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    auto cidr = Cidr::parse(item);
    if (!cidr) {
      *error = "not an address or CIDR range: \"" + std::string(item) + "\"";
      return std::nullopt;
    }
    out.push_back(*cidr);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string address_text(const sockaddr& addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, buf, sizeof buf);
  } else if (addr.sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      inet_ntop(AF_INET, reinterpret_cast<const uint8_t*>(&in6->sin6_addr) + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof buf);
    }
  }
  return buf;
}

uint16_t address_port(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return 0;
}

}  // namespace portico

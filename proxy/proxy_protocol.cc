#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "proxy/release_memory.h"

namespace portico {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Signature{"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12};
constexpr size_t kV2FixedBytes = 16;  // signature, version/command, family, length

// Ports are 0..65535 in decimal (spec 2.1); five digits at most so the value cannot overflow.
bool parse_port(std::string_view text, uint16_t* out) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return false;
  *out = static_cast<uint16_t>(value);
  return true;
}

bool parse_address(std::string_view text, bool v6, uint16_t port, sockaddr_storage* out) {
  if (text.size() > INET6_ADDRSTRLEN) return false;
  // inet_pton stops at a NUL: "203.0.113.1\0junk" would pass for its first part.
  if (text.find('\0') != std::string_view::npos) return false;
  std::string z(text);  // inet_pton wants a terminated string
  *out = sockaddr_storage{};
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(out);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    return inet_pton(AF_INET6, z.c_str(), &a->sin6_addr) == 1;
  }
  auto* a = reinterpret_cast<sockaddr_in*>(out);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  return inet_pton(AF_INET, z.c_str(), &a->sin_addr) == 1;
}

uint16_t read_be16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

}  // namespace

ProxyProtocolParser::Result ProxyProtocolParser::fail(std::string_view reason) {
  status_ = Status::kError;
  reason_ = reason;
  release_memory(buf_);
  return {Status::kError, 0, reason};
}

ProxyProtocolParser::Result ProxyProtocolParser::feed(const char* data, size_t len) {
  if (status_ != Status::kNeedMore) return {status_, 0, reason_};
  size_t used = 0;
  while (true) {
    if (buf_.empty() && used == len) break;
    const bool v1 = !buf_.empty() ? buf_[0] == 'P' : data[used] == 'P';
    const std::string_view prefix = v1 ? kV1Prefix : kV2Signature;
    // The fixed prefix is checked byte by byte, so that a TLS ClientHello (or anything else
    // that is not a PROXY header) is refused on its first byte rather than after a timeout.
    if (buf_.size() < prefix.size()) {
      if (used == len) break;
      if (data[used] != prefix[buf_.size()]) return fail("not_proxy_protocol");
      buf_.push_back(data[used++]);
      continue;
    }
    if (v1) {
      if (buf_.back() == '\n') {
        std::string_view reason = parse_v1();
        if (!reason.empty()) return fail(reason);
        break;
      }
      if (buf_.size() >= kMaxV1Bytes) return fail("v1_header_too_long");
      if (used == len) break;
      size_t room = std::min(len - used, kMaxV1Bytes - buf_.size());
      const char* lf = static_cast<const char*>(std::memchr(data + used, '\n', room));
      size_t take = lf ? static_cast<size_t>(lf - (data + used)) + 1 : room;
      buf_.append(data + used, take);
      used += take;
      continue;
    }
    if (buf_.size() < kV2FixedBytes) {
      if (used == len) break;
      size_t take = std::min(len - used, kV2FixedBytes - buf_.size());
      buf_.append(data + used, take);
      used += take;
      if (buf_.size() < kV2FixedBytes) continue;
      // The fixed part decides everything but the addresses: refuse early, before waiting for a
      // length's worth of bytes.
      uint8_t ver_cmd = static_cast<uint8_t>(buf_[12]);
      uint8_t fam = static_cast<uint8_t>(buf_[13]);
      if ((ver_cmd >> 4) != 2) return fail("v2_bad_version");
      if ((ver_cmd & 0x0F) > 1) return fail("v2_bad_command");
      if ((fam >> 4) > 3) return fail("v2_bad_family");
      if ((fam & 0x0F) > 2) return fail("v2_bad_transport");
      if (kV2FixedBytes + read_be16(buf_.data() + 14) > kMaxV2Bytes) {
        return fail("v2_header_too_long");
      }
      continue;
    }
    size_t total = kV2FixedBytes + read_be16(buf_.data() + 14);
    if (buf_.size() == total) {
      std::string_view reason = parse_v2();
      if (!reason.empty()) return fail(reason);
      break;
    }
    if (used == len) break;
    size_t take = std::min(len - used, total - buf_.size());
    buf_.append(data + used, take);
    used += take;
  }
  if (status_ == Status::kDone) return {Status::kDone, used, {}};
  return {Status::kNeedMore, used, {}};
}

std::string_view ProxyProtocolParser::parse_v1() {
  std::string_view line = buf_;
  if (line.size() < kV1Prefix.size() + 2 || line.substr(line.size() - 2) != "\r\n") {
    return "v1_missing_crlf";
  }
  line = line.substr(kV1Prefix.size(), line.size() - kV1Prefix.size() - 2);
  std::vector<std::string_view> fields;
  while (true) {
    size_t space = line.find(' ');
    fields.push_back(line.substr(0, space));
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  header_ = ProxyHeader{};
  header_.version = 1;
  if (fields[0] == "UNKNOWN") {
    // The sender could not tell (spec 2.1): the rest of the line is ignored.
    header_.keep_peer = true;
    status_ = Status::kDone;
    return {};
  }
  if (fields[0] != "TCP4" && fields[0] != "TCP6") return "v1_bad_protocol";
  if (fields.size() != 5) return "v1_malformed";
  const bool v6 = fields[0] == "TCP6";
  uint16_t sport = 0, dport = 0;
  if (!parse_address(fields[1], v6, 0, &header_.source)) return "bad_source_address";
  if (!parse_address(fields[2], v6, 0, &header_.destination)) return "bad_destination_address";
  if (!parse_port(fields[3], &sport)) return "bad_source_port";
  if (!parse_port(fields[4], &dport)) return "bad_destination_port";
  parse_address(fields[1], v6, sport, &header_.source);
  parse_address(fields[2], v6, dport, &header_.destination);
  status_ = Status::kDone;
  return {};
}

std::string_view ProxyProtocolParser::parse_v2() {
  const uint8_t command = static_cast<uint8_t>(buf_[12]) & 0x0F;
  const uint8_t family = static_cast<uint8_t>(buf_[13]) >> 4;
  const uint8_t transport = static_cast<uint8_t>(buf_[13]) & 0x0F;
  const char* body = buf_.data() + kV2FixedBytes;
  const size_t body_len = buf_.size() - kV2FixedBytes;
  header_ = ProxyHeader{};
  header_.version = 2;
  // LOCAL: the balancer's own connection (a health check); the address block is ignored.
  // AF_UNSPEC, AF_UNIX and an unspecified transport carry no client IP: keep the real peer
  // (spec 2.2 lets a receiver accept these and use the connection's endpoints).
  if (command == 0 || family == 0 || family == 3 || transport == 0) {
    header_.keep_peer = true;
    status_ = Status::kDone;
    return {};
  }
  if (transport != 1) return "v2_not_stream";
  const size_t need = family == 1 ? 12 : 36;
  if (body_len < need) return "v2_short_address_block";
  // What follows the addresses (TLVs) is skipped: portico uses none of them.
  if (family == 1) {
    auto* src = reinterpret_cast<sockaddr_in*>(&header_.source);
    auto* dst = reinterpret_cast<sockaddr_in*>(&header_.destination);
    src->sin_family = dst->sin_family = AF_INET;
    std::memcpy(&src->sin_addr, body, 4);
    std::memcpy(&dst->sin_addr, body + 4, 4);
    std::memcpy(&src->sin_port, body + 8, 2);  // both in network order already
    std::memcpy(&dst->sin_port, body + 10, 2);
  } else {
    auto* src = reinterpret_cast<sockaddr_in6*>(&header_.source);
    auto* dst = reinterpret_cast<sockaddr_in6*>(&header_.destination);
    src->sin6_family = dst->sin6_family = AF_INET6;
    std::memcpy(&src->sin6_addr, body, 16);
    std::memcpy(&dst->sin6_addr, body + 16, 16);
    std::memcpy(&src->sin6_port, body + 32, 2);
    std::memcpy(&dst->sin6_port, body + 34, 2);
  }
  status_ = Status::kDone;
  return {};
}

}  // namespace portico

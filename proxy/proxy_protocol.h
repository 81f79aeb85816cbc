#pragma once

// The PROXY protocol (HAProxy, versions 1 and 2): the header an L4 load balancer sends before
// the client's own bytes to say who the client is. Pure code, no I/O: bytes go in, a verdict
// comes out, and what follows the header stays with the caller (it is the TLS ClientHello).
//
// Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico {

// What the header said. For v1 UNKNOWN, v2 LOCAL, and v2 families that carry no IP address
// (AF_UNSPEC, AF_UNIX), `keep_peer` is true: the connection's real peer stays its address.
struct ProxyHeader {
  int version = 0;  // 1 or 2
  bool keep_peer = false;
  sockaddr_storage source{};
  sockaddr_storage destination{};
};

class ProxyProtocolParser {
 public:
  enum class Status { kNeedMore, kDone, kError };
  struct Result {
    Status status = Status::kNeedMore;
    // Bytes of this call's input that belonged to the header. On kDone, the rest of the input
    // is the next layer's; on kNeedMore it is all of it.
    size_t consumed = 0;
    std::string_view reason;  // on kError: a short token-like reason ("bad_source_address")
  };

  // v1 lines are at most 107 bytes (spec section 2.1). v2 allows 64 KiB of TLVs, but nothing a
  // balancer sends in practice comes near 4 KiB, and a bound keeps a slow peer from making the
  // proxy hold much memory before its TLS handshake even starts.
  static constexpr size_t kMaxV1Bytes = 107;
  static constexpr size_t kMaxV2Bytes = 4096;

  // Feeds the next bytes. After kDone or kError, further calls return the same status and
  // consume nothing.
  Result feed(const char* data, size_t len);
  const ProxyHeader& header() const { return header_; }

 private:
  Result fail(std::string_view reason);
  std::string_view parse_v1();  // "" when the complete line in buf_ is valid
  std::string_view parse_v2();

  std::string buf_;  // the header so far (never more than the header itself)
  Status status_ = Status::kNeedMore;
  std::string_view reason_;
  ProxyHeader header_;
};

}  // namespace portico

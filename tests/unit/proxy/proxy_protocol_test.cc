// ProxyProtocolParser: every field and every error of v1 and v2, IPv4 and IPv6, each header fed
// whole, split at every byte, and byte by byte, always followed by "TLS" bytes that must be left
// to the caller.

#include "proxy/proxy_protocol.h"

#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "proxy/cidr.h"

namespace portico {
namespace {

using Status = ProxyProtocolParser::Status;

const std::string kSig("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);
const std::string kTls("\x16\x03\x01\x02\x00", 5);  // the start of a ClientHello

std::string be16(size_t v) {
  return {static_cast<char>((v >> 8) & 0xFF), static_cast<char>(v & 0xFF)};
}

std::string ip4(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return std::string(reinterpret_cast<const char*>(&a), 4);
}

std::string ip6(const char* text) {
  in6_addr a{};
  inet_pton(AF_INET6, text, &a);
  return std::string(reinterpret_cast<const char*>(&a), 16);
}

std::string v2(uint8_t ver_cmd, uint8_t fam, const std::string& body) {
  return kSig + std::string(1, static_cast<char>(ver_cmd)) +
         std::string(1, static_cast<char>(fam)) + be16(body.size()) + body;
}

std::string v2_tcp4(const char* src, const char* dst, uint16_t sport, uint16_t dport,
                    const std::string& tlvs = "") {
  return v2(0x21, 0x11, ip4(src) + ip4(dst) + be16(sport) + be16(dport) + tlvs);
}

std::string v2_tcp6(const char* src, const char* dst, uint16_t sport, uint16_t dport) {
  return v2(0x21, 0x21, ip6(src) + ip6(dst) + be16(sport) + be16(dport));
}

struct Outcome {
  Status status = Status::kNeedMore;
  size_t header_bytes = 0;  // total consumed
  std::string reason;
  ProxyHeader header;
};

// Feeds `input` in pieces cut at `cuts` (offsets), stopping at the first verdict.
Outcome run(const std::string& input, const std::vector<size_t>& cuts) {
  ProxyProtocolParser parser;
  Outcome out;
  size_t pos = 0;
  std::vector<size_t> ends = cuts;
  ends.push_back(input.size());
  for (size_t end : ends) {
    if (end < pos) continue;
    auto r = parser.feed(input.data() + pos, end - pos);
    out.header_bytes += r.consumed;
    if (r.status != Status::kNeedMore) {
      out.status = r.status;
      out.reason = std::string(r.reason);
      if (r.status == Status::kDone) out.header = parser.header();
      // Once decided, the parser answers the same and consumes nothing.
      auto again = parser.feed("x", 1);
      CHECK(again.status == r.status);
      CHECK(again.consumed == 0);
      return out;
    }
    CHECK(r.consumed == end - pos);
    pos = end;
  }
  return out;
}

struct Case {
  const char* name;
  std::string header;
  Status status;
  std::string reason;       // for kError
  std::string source = "";  // "addr port" for kDone without keep_peer
  std::string destination = "";
  bool keep_peer = false;
  int version = 0;
};

std::string endpoint(const sockaddr_storage& a) {
  return address_text(a) + " " + std::to_string(address_port(a));
}

std::vector<Case> cases() {
  std::string v1_max = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  REQUIRE(v1_max.size() == 107);
  std::string too_long_tlvs(ProxyProtocolParser::kMaxV2Bytes, 'T');
  return {
      // v1: the good ones.
      {"v1 tcp4", "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n", Status::kDone, "",
       "192.0.2.7 56324", "198.51.100.1 443", false, 1},
      {"v1 tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n", Status::kDone, "",
       "2001:db8::7 1", "2001:db8::1 65535", false, 1},
      {"v1 port 0", "PROXY TCP4 1.2.3.4 5.6.7.8 0 0\r\n", Status::kDone, "", "1.2.3.4 0",
       "5.6.7.8 0", false, 1},
      {"v1 unknown", "PROXY UNKNOWN\r\n", Status::kDone, "", "", "", true, 1},
      {"v1 unknown with addresses", "PROXY UNKNOWN ::1 ::1 1 2\r\n", Status::kDone, "", "", "",
       true, 1},
      {"v1 at the 107-byte limit", v1_max, Status::kDone, "", "", "", true, 1},
      // v1: every error.
      {"not proxy (TLS)", kTls, Status::kError, "not_proxy_protocol"},
      {"not proxy (HTTP)", "GET / HTTP/1.1\r\n", Status::kError, "not_proxy_protocol"},
      {"lowercase proxy", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", Status::kError,
       "not_proxy_protocol"},
      {"no space after PROXY", "PROXYTCP4\r\n", Status::kError, "not_proxy_protocol"},
      {"v1 too long", "PROXY UNKNOWN " + std::string(200, 'x') + "\r\n", Status::kError,
       "v1_header_too_long"},
      {"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", Status::kError, "v1_missing_crlf"},
      {"v1 bad protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", Status::kError, "v1_bad_protocol"},
      {"v1 empty protocol", "PROXY \r\n", Status::kError, "v1_bad_protocol"},
      {"v1 too few fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", Status::kError, "v1_malformed"},
      {"v1 too many fields", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", Status::kError,
       "v1_malformed"},
      {"v1 double space", "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", Status::kError, "v1_malformed"},
      {"v1 bad source", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", Status::kError, "bad_source_address"},
      // inet_pton would stop at the NUL and take the address before it.
      {"v1 NUL in the source", std::string("PROXY TCP4 203.0.113.1\0junk 5.6.7.8 1 2\r\n", 41),
       Status::kError, "bad_source_address"},
      {"v1 NUL in the destination", std::string("PROXY TCP4 1.2.3.4 5.6.7.8\0x 1 2\r\n", 34),
       Status::kError, "bad_destination_address"},
      {"v1 tcp4 with v6 source", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n", Status::kError,
       "bad_source_address"},
      {"v1 tcp6 with v4 source", "PROXY TCP6 1.2.3.4 ::1 1 2\r\n", Status::kError,
       "bad_source_address"},
      {"v1 bad destination", "PROXY TCP4 1.2.3.4 5.6.7.256 1 2\r\n", Status::kError,
       "bad_destination_address"},
      {"v1 bad source port", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", Status::kError,
       "bad_source_port"},
      {"v1 signed source port", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", Status::kError,
       "bad_source_port"},
      {"v1 long source port", "PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", Status::kError,
       "bad_source_port"},
      {"v1 bad destination port", "PROXY TCP4 1.2.3.4 5.6.7.8 1 x\r\n", Status::kError,
       "bad_destination_port"},
      {"v1 empty destination port", "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", Status::kError,
       "bad_destination_port"},
      // v2: the good ones.
      {"v2 tcp4", v2_tcp4("192.0.2.7", "198.51.100.1", 56324, 443), Status::kDone, "",
       "192.0.2.7 56324", "198.51.100.1 443", false, 2},
      {"v2 tcp6", v2_tcp6("2001:db8::7", "2001:db8::1", 40000, 8443), Status::kDone, "",
       "2001:db8::7 40000", "2001:db8::1 8443", false, 2},
      {"v2 tcp4 with TLVs",
       v2_tcp4("10.1.2.3", "10.0.0.1", 1, 2,
               std::string("\x04\x00\x03"
                           "abc",
                           6)),
       Status::kDone, "", "10.1.2.3 1", "10.0.0.1 2", false, 2},
      {"v2 local", v2(0x20, 0x00, ""), Status::kDone, "", "", "", true, 2},
      {"v2 local ignores its addresses", v2(0x20, 0x11, std::string(12, '\x01')), Status::kDone, "",
       "", "", true, 2},
      {"v2 proxy unspec", v2(0x21, 0x00, ""), Status::kDone, "", "", "", true, 2},
      {"v2 proxy unix", v2(0x21, 0x31, std::string(216, '\0')), Status::kDone, "", "", "", true, 2},
      {"v2 proxy inet unspecified transport", v2(0x21, 0x10, ""), Status::kDone, "", "", "", true,
       2},
      // v2: every error.
      {"v2 bad signature", kSig.substr(0, 11) + "X" + std::string(4, '\0'), Status::kError,
       "not_proxy_protocol"},
      {"v2 version 1", v2(0x11, 0x11, std::string(12, '\0')), Status::kError, "v2_bad_version"},
      {"v2 version 3", v2(0x31, 0x11, std::string(12, '\0')), Status::kError, "v2_bad_version"},
      {"v2 command 2", v2(0x22, 0x11, std::string(12, '\0')), Status::kError, "v2_bad_command"},
      {"v2 family 4", v2(0x21, 0x41, std::string(12, '\0')), Status::kError, "v2_bad_family"},
      {"v2 transport 3", v2(0x21, 0x13, std::string(12, '\0')), Status::kError, "v2_bad_transport"},
      {"v2 datagram", v2(0x21, 0x12, std::string(12, '\0')), Status::kError, "v2_not_stream"},
      {"v2 short ipv4 block", v2(0x21, 0x11, std::string(11, '\0')), Status::kError,
       "v2_short_address_block"},
      {"v2 short ipv6 block", v2(0x21, 0x21, std::string(35, '\0')), Status::kError,
       "v2_short_address_block"},
      {"v2 too long", v2(0x21, 0x11, too_long_tlvs), Status::kError, "v2_header_too_long"},
  };
}

void check_outcome(const Case& c, const Outcome& out, size_t input_size) {
  REQUIRE(out.status == c.status);
  if (c.status == Status::kError) {
    CHECK(out.reason == c.reason);
    return;
  }
  CHECK(out.header_bytes == input_size - kTls.size());
  CHECK(out.header.version == c.version);
  CHECK(out.header.keep_peer == c.keep_peer);
  if (!c.keep_peer) {
    CHECK(endpoint(out.header.source) == c.source);
    CHECK(endpoint(out.header.destination) == c.destination);
  }
}

TEST_CASE("proxy protocol: every case, whole, split at every byte, byte by byte",
          "[proxy-protocol]") {
  for (const Case& c : cases()) {
    SECTION(c.name) {
      const std::string input = c.header + kTls;
      INFO("case: " << c.name);
      check_outcome(c, run(input, {}), input.size());
      for (size_t cut = 1; cut < input.size(); ++cut) {
        INFO("split at " << cut);
        check_outcome(c, run(input, {cut}), input.size());
      }
      std::vector<size_t> every;
      for (size_t i = 1; i < input.size(); ++i) every.push_back(i);
      check_outcome(c, run(input, every), input.size());
    }
  }
}

TEST_CASE("proxy protocol: an incomplete header needs more and keeps nothing back",
          "[proxy-protocol]") {
  for (std::string partial :
       {std::string("PROXY TCP4 1.2.3.4"), std::string("P"), kSig.substr(0, 5),
        v2_tcp4("1.2.3.4", "5.6.7.8", 1, 2).substr(0, 20)}) {
    ProxyProtocolParser parser;
    auto r = parser.feed(partial.data(), partial.size());
    CHECK(r.status == Status::kNeedMore);
    CHECK(r.consumed == partial.size());
  }
  ProxyProtocolParser parser;
  auto r = parser.feed("", 0);
  CHECK(r.status == Status::kNeedMore);
  CHECK(r.consumed == 0);
}

TEST_CASE("proxy protocol: a v2 header with no address block completes without more input",
          "[proxy-protocol]") {
  ProxyProtocolParser parser;
  std::string local = v2(0x20, 0x00, "");
  auto r = parser.feed(local.data(), local.size());
  CHECK(r.status == Status::kDone);
  CHECK(r.consumed == 16);
}

}  // namespace
}  // namespace portico

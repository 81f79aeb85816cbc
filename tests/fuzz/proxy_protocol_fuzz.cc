// libFuzzer target for ProxyProtocolParser: random bytes, fed whole and in random splits.
//
// Invariants checked: feed() never consumes more than it was given; kNeedMore consumes
// everything; a header is never longer than its version's limit; after a verdict nothing more is
// consumed and the verdict stays; a split stream reaches the same verdict, the same header
// length, the same reason and the same addresses as the whole stream.

#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "proxy/proxy_protocol.h"

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

struct Outcome {
  portico::ProxyProtocolParser::Status status;
  size_t consumed;
  std::string_view reason;
  portico::ProxyHeader header;
};

Outcome run(const char* data, size_t size, uint8_t knobs, bool split) {
  using Status = portico::ProxyProtocolParser::Status;
  portico::ProxyProtocolParser parser;
  size_t pos = 0;
  uint32_t rng = knobs * 2654435761u + static_cast<uint32_t>(size);
  while (true) {
    size_t n = size - pos;
    if (split) {
      rng = rng * 1664525u + 1013904223u;
      n = std::min<size_t>(n, (rng >> 16) % ((knobs & 1) ? 3 : 40));
    }
    auto r = parser.feed(data + pos, n);
    check(r.consumed <= n);
    if (r.status == Status::kNeedMore) {
      check(r.consumed == n);
      pos += n;
      if (pos == size) return {Status::kNeedMore, pos, {}, {}};
      continue;
    }
    pos += r.consumed;
    check(r.status != Status::kError || !r.reason.empty());
    auto again = parser.feed(data, size);
    check(again.status == r.status && again.consumed == 0);
    return {r.status, pos, r.reason,
            r.status == Status::kDone ? parser.header() : portico::ProxyHeader{}};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  using Status = portico::ProxyProtocolParser::Status;
  if (size < 1) {
    return 0;
  }
  const uint8_t knobs = bytes[0];
  const char* data = reinterpret_cast<const char*>(bytes + 1);
  --size;
  const Outcome whole = run(data, size, knobs, false);
  const Outcome split = run(data, size, knobs, true);
  check(whole.status == split.status);
  check(whole.reason == split.reason);
  if (whole.status == Status::kDone) {
    check(whole.consumed == split.consumed);
    check(whole.header.version == 1 || whole.header.version == 2);
    check(whole.consumed <= (whole.header.version == 1
                                 ? portico::ProxyProtocolParser::kMaxV1Bytes
                                 : portico::ProxyProtocolParser::kMaxV2Bytes));
    check(whole.header.keep_peer == split.header.keep_peer);
    check(std::memcmp(&whole.header.source, &split.header.source, sizeof(sockaddr_storage)) == 0);
    check(std::memcmp(&whole.header.destination, &split.header.destination,
                      sizeof(sockaddr_storage)) == 0);
    if (!whole.header.keep_peer) {
      check(whole.header.source.ss_family == AF_INET || whole.header.source.ss_family == AF_INET6);
    }
  }
  return 0;
}

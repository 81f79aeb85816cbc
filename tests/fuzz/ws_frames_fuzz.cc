// libFuzzer target for WsFrameTracker: random bytes, fed in random split sizes, to both directions.
//
// Invariants checked: feed() never reports more bytes than it was given; once a violation is
// recorded it stays and nothing more is accepted; once a Close has passed nothing more is
// accepted (RFC 6455 5.5.1); bytes() is the sum of what feed() returned; a direction that
// never violated accepted everything up to its first Close; a split stream yields the same
// verdict and the same counters as the whole stream fed at once.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "proxy/ws_frames.h"

namespace {

void check(bool ok) {
  if (!ok) {
    std::abort();
  }
}

struct Outcome {
  portico::WsViolation violation;
  uint64_t forwarded;
  uint64_t frames;
  uint64_t messages;
  uint16_t close_code;
};

// The first input byte picks the limit and the chunk sizes so that the fuzzer can steer them.
Outcome run(portico::WsDirection dir, const uint8_t* data, size_t size, uint8_t knobs, bool split) {
  const uint64_t limit = uint64_t{1} << (knobs & 0x1F);
  portico::WsFrameTracker tracker(dir, limit);
  tracker.allow_rsv1((knobs & 0x20) != 0);
  uint64_t forwarded = 0;
  size_t pos = 0;
  uint32_t rng = knobs * 2654435761u + static_cast<uint32_t>(size);
  while (pos < size) {
    size_t n = size - pos;
    if (split) {
      rng = rng * 1664525u + 1013904223u;
      n = std::min<size_t>(n, 1 + (rng >> 16) % ((knobs & 0x40) ? 3 : 64));
    }
    const bool was_violated = tracker.violation() != portico::WsViolation::kNone;
    const bool was_closed = tracker.saw_close();
    const size_t got = tracker.feed(data + pos, n);
    check(got <= n);
    if (was_violated) {
      check(got == 0);
      check(tracker.violation() != portico::WsViolation::kNone);
    }
    if (was_closed) check(got == 0 && tracker.violation() == portico::WsViolation::kNone);
    if (tracker.violation() == portico::WsViolation::kNone) {
      check(got == n || tracker.saw_close());
    } else {
      check(tracker.close_code_for_violation() == 1002 ||
            tracker.close_code_for_violation() == 1009);
    }
    forwarded += got;
    pos += n;
  }
  check(tracker.bytes() == forwarded);
  check(tracker.messages() <= tracker.frames());
  check(tracker.pings() + tracker.pongs() <= tracker.frames());
  if (tracker.violation() == portico::WsViolation::kNone && !tracker.saw_close()) {
    check(forwarded == size);
  }
  return {tracker.violation(), forwarded, tracker.frames(), tracker.messages(),
          tracker.close_code()};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const uint8_t knobs = data[0];
  ++data;
  --size;
  for (auto dir : {portico::WsDirection::kClientToServer, portico::WsDirection::kServerToClient}) {
    const Outcome whole = run(dir, data, size, knobs, false);
    const Outcome split = run(dir, data, size, knobs, true);
    check(whole.violation == split.violation);
    check(whole.frames == split.frames);
    check(whole.messages == split.messages);
    check(whole.close_code == split.close_code);
    // A split stream may have forwarded the start of the offending header, never more.
    check(split.forwarded >= whole.forwarded);
    check(split.forwarded <= whole.forwarded + portico::kWsMaxHeaderBytes);
  }
  return 0;
}

#include "proxy/ws_frames.h"

#include <wslay/wslay.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace portico::test {
namespace {

// A frame header to encode; the payload is filler unless given.
struct FrameSpec {
  uint8_t opcode = kWsOpText;
  bool fin = true;
  bool masked = true;
  uint64_t length = 0;
  uint8_t rsv = 0;
  // Length-field encoding: 0 = minimal, 2 = force 16-bit, 8 = force 64-bit (to build bad frames).
  int length_bytes = 0;
};

// Encodes the header and, when with_payload, `length` payload bytes (masked if the frame is).
std::string encode(const FrameSpec& f, std::string_view payload = {}, bool with_payload = true) {
  std::string out;
  out.push_back(static_cast<char>((f.fin ? 0x80 : 0) | (f.rsv << 4) | f.opcode));
  const uint8_t mask_bit = f.masked ? 0x80 : 0;
  int length_bytes = f.length_bytes;
  if (length_bytes == 0) {
    length_bytes = f.length < 126 ? 0 : f.length <= 0xFFFF ? 2 : 8;
  }
  if (length_bytes == 0) {
    out.push_back(static_cast<char>(mask_bit | f.length));
  } else {
    out.push_back(static_cast<char>(mask_bit | (length_bytes == 2 ? 126 : 127)));
    for (int i = length_bytes - 1; i >= 0; --i) {
      out.push_back(static_cast<char>((f.length >> (8 * i)) & 0xFF));
    }
  }
  const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
  if (f.masked) {
    out.append(reinterpret_cast<const char*>(key), 4);
  }
  if (with_payload) {
    std::string body(payload);
    body.resize(static_cast<size_t>(f.length), 'x');
    if (f.masked) {
      for (size_t i = 0; i < body.size(); ++i) {
        body[i] = static_cast<char>(body[i] ^ key[i % 4]);
      }
    }
    out += body;
  }
  return out;
}

const uint8_t* bytes_of(const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); }

struct Run {
  std::vector<WsFrameEvent> events;
  size_t forwarded = 0;
};

// Feeds `wire` in chunks of the given sizes (cycled), collecting events and forwarded bytes.
Run feed_chunked(WsFrameTracker& t, const std::string& wire, const std::vector<size_t>& chunks) {
  Run run;
  t.set_frame_observer(
      [](void* context, const WsFrameEvent& e) { static_cast<Run*>(context)->events.push_back(e); },
      &run);
  size_t pos = 0;
  size_t i = 0;
  while (pos < wire.size()) {
    const size_t n = std::min(chunks[i++ % chunks.size()], wire.size() - pos);
    const size_t got = t.feed(bytes_of(wire) + pos, n);
    REQUIRE(got <= n);
    run.forwarded += got;
    pos += n;
  }
  return run;
}

bool same_events(const std::vector<WsFrameEvent>& a, const std::vector<WsFrameEvent>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].opcode != b[i].opcode || a[i].fin != b[i].fin || a[i].masked != b[i].masked ||
        a[i].rsv != b[i].rsv || a[i].payload_length != b[i].payload_length) {
      return false;
    }
  }
  return true;
}

WsDirection dir_for(bool masked) {
  return masked ? WsDirection::kClientToServer : WsDirection::kServerToClient;
}

TEST_CASE("ws frames: 7-, 16- and 64-bit lengths, split at every byte", "[ws_frames]") {
  const uint64_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 70000};
  for (bool masked : {true, false}) {
    for (uint64_t len : lengths) {
      CAPTURE(masked, len);
      const std::string wire = encode({kWsOpBinary, true, masked, len});
      WsFrameTracker whole(dir_for(masked), 1 << 20);
      const Run expected = feed_chunked(whole, wire, {wire.size()});
      REQUIRE(expected.forwarded == wire.size());
      REQUIRE(expected.events.size() == 1);
      CHECK(expected.events[0].payload_length == len);
      CHECK(expected.events[0].masked == masked);
      CHECK(expected.events[0].fin);
      CHECK(whole.messages() == 1);
      CHECK(whole.frames() == 1);
      CHECK(whole.bytes() == wire.size());
      CHECK(whole.at_frame_boundary());
      CHECK_FALSE(whole.in_fragmented_message());
      CHECK(whole.violation() == WsViolation::kNone);

      WsFrameTracker bytewise(dir_for(masked), 1 << 20);
      const Run one = feed_chunked(bytewise, wire, {1});
      CHECK(one.forwarded == wire.size());
      CHECK(same_events(one.events, expected.events));
      CHECK(bytewise.messages() == 1);

      for (size_t split = 1; split < wire.size(); ++split) {
        WsFrameTracker t(dir_for(masked), 1 << 20);
        const Run r = feed_chunked(t, wire, {split, wire.size()});
        REQUIRE(r.forwarded == wire.size());
        REQUIRE(same_events(r.events, expected.events));
        REQUIRE(t.messages() == 1);
        REQUIRE(t.at_frame_boundary());
        if (split < wire.size()) {
          WsFrameTracker half(dir_for(masked), 1 << 20);
          half.feed(bytes_of(wire), split);
          REQUIRE_FALSE(half.at_frame_boundary());
        }
      }
    }
  }
}

TEST_CASE("ws frames: 64-bit lengths up to 2^63-1 are tracked without the payload", "[ws_frames]") {
  WsFrameTracker t(WsDirection::kServerToClient, UINT64_MAX);
  const uint64_t huge = (uint64_t{1} << 63) - 1;
  const std::string header = encode({kWsOpBinary, true, false, huge}, {}, false);
  REQUIRE(t.feed(bytes_of(header), header.size()) == header.size());
  CHECK(t.violation() == WsViolation::kNone);
  CHECK_FALSE(t.at_frame_boundary());
  const std::string chunk(1 << 16, 'x');
  REQUIRE(t.feed(bytes_of(chunk), chunk.size()) == chunk.size());
  CHECK(t.frames() == 0);

  WsFrameTracker small(WsDirection::kServerToClient, 1 << 20);
  CHECK(small.feed(bytes_of(header), header.size()) == 0);
  CHECK(small.violation() == WsViolation::kMessageTooBig);
  CHECK(small.close_code_for_violation() == 1009);
}

TEST_CASE("ws frames: random chunking gives the same events as one feed", "[ws_frames]") {
  std::string wire;
  for (bool masked : {true, false}) {
    wire.clear();
    wire += encode({kWsOpText, false, masked, 10});
    wire += encode({kWsOpPing, true, masked, 5});
    wire += encode({kWsOpContinuation, false, masked, 300});
    wire += encode({kWsOpPong, true, masked, 0});
    wire += encode({kWsOpContinuation, true, masked, 70000});
    wire += encode({kWsOpBinary, true, masked, 0});
    wire += encode({kWsOpClose, true, masked, 2}, "\x03\xe8");
    WsFrameTracker whole(dir_for(masked), 1 << 20);
    const Run expected = feed_chunked(whole, wire, {wire.size()});
    REQUIRE(expected.events.size() == 7);
    std::mt19937 rng(42);
    for (int round = 0; round < 200; ++round) {
      std::vector<size_t> chunks;
      for (int i = 0; i < 16; ++i) {
        chunks.push_back(1 + rng() % (round % 2 ? 7 : 4000));
      }
      WsFrameTracker t(dir_for(masked), 1 << 20);
      const Run r = feed_chunked(t, wire, chunks);
      REQUIRE(r.forwarded == wire.size());
      REQUIRE(same_events(r.events, expected.events));
      REQUIRE(t.messages() == 2);
      REQUIRE(t.frames() == 7);
      REQUIRE(t.pings() == 1);
      REQUIRE(t.pongs() == 1);
      REQUIRE(t.close_code() == 1000);
    }
  }
}

TEST_CASE("ws frames: fragmented message with an interleaved ping", "[ws_frames]") {
  WsFrameTracker t(WsDirection::kClientToServer, 100);
  struct Step {
    FrameSpec frame;
    bool fragmented_after;
    uint64_t messages_after;
  };
  const Step steps[] = {
      {{kWsOpText, false, true, 40}, true, 0},
      {{kWsOpPing, true, true, 125}, true, 0},  // control frames do not count toward the limit
      {{kWsOpContinuation, false, true, 40}, true, 0},
      {{kWsOpContinuation, true, true, 20}, false, 1},  // exactly 100 bytes: at the limit
      {{kWsOpBinary, true, true, 100}, false, 2},
  };
  for (const Step& s : steps) {
    const std::string wire = encode(s.frame);
    REQUIRE(t.feed(bytes_of(wire), wire.size()) == wire.size());
    CHECK(t.in_fragmented_message() == s.fragmented_after);
    CHECK(t.messages() == s.messages_after);
    CHECK(t.at_frame_boundary());
  }
  CHECK(t.pings() == 1);
  CHECK(t.frames() == 5);
  CHECK(t.violation() == WsViolation::kNone);
}

TEST_CASE("ws frames: message size limit, one frame and fragmented", "[ws_frames]") {
  const uint64_t limit = 1000;
  struct Case {
    const char* name;
    std::vector<FrameSpec> frames;
    bool ok;
    size_t offending;  // index of the frame that must be refused
  };
  const Case cases[] = {
      {"single at limit", {{kWsOpBinary, true, true, 1000}}, true, 0},
      {"single one over", {{kWsOpBinary, true, true, 1001}}, false, 0},
      {"fragments at limit",
       {{kWsOpText, false, true, 500}, {kWsOpContinuation, true, true, 500}},
       true,
       0},
      {"fragments one over",
       {{kWsOpText, false, true, 500},
        {kWsOpPing, true, true, 3},
        {kWsOpContinuation, false, true, 500},
        {kWsOpContinuation, true, true, 1}},
       false,
       3},
      {"limit resets per message",
       {{kWsOpText, true, true, 1000}, {kWsOpText, true, true, 1000}},
       true,
       0},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    std::string wire;
    size_t offending_start = 0;
    for (size_t i = 0; i < c.frames.size(); ++i) {
      if (!c.ok && i == c.offending) offending_start = wire.size();
      wire += encode(c.frames[i]);
    }
    WsFrameTracker t(WsDirection::kClientToServer, limit);
    const size_t got = t.feed(bytes_of(wire), wire.size());
    if (c.ok) {
      CHECK(got == wire.size());
      CHECK(t.violation() == WsViolation::kNone);
    } else {
      CHECK(got == offending_start);
      CHECK(t.violation() == WsViolation::kMessageTooBig);
      CHECK(t.close_code_for_violation() == 1009);
      CHECK(t.at_frame_boundary());
    }
  }
}

TEST_CASE("ws frames: violations stop at the offending frame's start", "[ws_frames]") {
  struct Case {
    const char* name;
    WsDirection dir;
    FrameSpec bad;
    WsViolation violation;
    bool allow_rsv1 = false;
    bool in_message = false;  // precede with a non-FIN text frame
  };
  const auto c2s = WsDirection::kClientToServer;
  const auto s2c = WsDirection::kServerToClient;
  std::vector<Case> cases = {
      {"unmasked client frame",
       c2s,
       {kWsOpText, true, false, 5},
       WsViolation::kUnmaskedClientFrame},
      {"masked server frame", s2c, {kWsOpText, true, true, 5}, WsViolation::kMaskedServerFrame},
      {"rsv1", c2s, {kWsOpText, true, true, 5, 4}, WsViolation::kReservedBits},
      {"rsv2", s2c, {kWsOpBinary, true, false, 5, 2}, WsViolation::kReservedBits},
      {"rsv3", s2c, {kWsOpPing, true, false, 0, 1}, WsViolation::kReservedBits},
      {"rsv1 on ping with deflate",
       c2s,
       {kWsOpPing, true, true, 0, 4},
       WsViolation::kReservedBits,
       true},
      {"rsv1 on continuation with deflate",
       c2s,
       {kWsOpContinuation, true, true, 1, 4},
       WsViolation::kReservedBits,
       true,
       true},
      {"control frame of 126 (16-bit)",
       c2s,
       {kWsOpPing, true, true, 126},
       WsViolation::kControlFrameTooLong},
      {"close of 126 (16-bit)",
       s2c,
       {kWsOpClose, true, false, 126},
       WsViolation::kControlFrameTooLong},
      {"pong with 64-bit length",
       s2c,
       {kWsOpPong, true, false, 5, 0, 8},
       WsViolation::kControlFrameTooLong},
      {"fragmented ping", c2s, {kWsOpPing, false, true, 1}, WsViolation::kFragmentedControl},
      {"fragmented close", s2c, {kWsOpClose, false, false, 2}, WsViolation::kFragmentedControl},
      {"continuation first",
       c2s,
       {kWsOpContinuation, true, true, 1},
       WsViolation::kUnexpectedContinuation},
      {"text inside a message",
       c2s,
       {kWsOpText, true, true, 1},
       WsViolation::kMissingContinuation,
       false,
       true},
      {"16-bit length below 126",
       s2c,
       {kWsOpBinary, true, false, 125, 0, 2},
       WsViolation::kBadLength},
      {"64-bit length below 65536",
       c2s,
       {kWsOpBinary, true, true, 65535, 0, 8},
       WsViolation::kBadLength},
      {"64-bit length with MSB set",
       s2c,
       {kWsOpBinary, true, false, uint64_t{1} << 63, 0, 8},
       WsViolation::kBadLength},
      {"close with a 1-byte body", c2s, {kWsOpClose, true, true, 1}, WsViolation::kBadLength},
  };
  for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF}) {
    cases.push_back({"bad opcode", c2s, {op, true, true, 0}, WsViolation::kBadOpcode});
  }
  for (const Case& c : cases) {
    CAPTURE(c.name, int(c.bad.opcode));
    const bool masked = c.dir == c2s;
    std::string good = encode({kWsOpBinary, true, masked, 200});
    if (c.in_message) good += encode({kWsOpText, false, masked, 3});
    const bool huge = c.bad.length > 1000000;
    const std::string wire = good + encode(c.bad, {}, !huge) + encode({kWsOpText, true, masked, 1});

    WsFrameTracker t(c.dir, 1 << 20);
    t.allow_rsv1(c.allow_rsv1);
    CHECK(t.feed(bytes_of(wire), wire.size()) == good.size());
    CHECK(t.violation() == c.violation);
    CHECK(t.close_code_for_violation() == 1002);
    CHECK(t.at_frame_boundary());
    CHECK(t.bytes() == good.size());
    CHECK(t.messages() == 1);
    // Once violated, nothing more is accepted.
    CHECK(t.feed(bytes_of(wire), wire.size()) == 0);
    CHECK(t.violation() == c.violation);

    // Byte by byte: the same violation. The forwarded bytes may include the start of the
    // offending header (already relayed), and then at_frame_boundary() must say so.
    WsFrameTracker b(c.dir, 1 << 20);
    b.allow_rsv1(c.allow_rsv1);
    const Run r = feed_chunked(b, wire, {1});
    CHECK(b.violation() == c.violation);
    CHECK(r.forwarded >= good.size());
    CHECK(r.forwarded < good.size() + kWsMaxHeaderBytes);
    CHECK(b.at_frame_boundary() == (r.forwarded == good.size()));
  }
}

TEST_CASE("ws frames: RSV1 is accepted on data frames when deflate was negotiated", "[ws_frames]") {
  WsFrameTracker t(WsDirection::kServerToClient, 1 << 20);
  t.allow_rsv1(true);
  const std::string wire = encode({kWsOpText, false, false, 3, 4}) +
                           encode({kWsOpContinuation, true, false, 3}) +
                           encode({kWsOpBinary, true, false, 3, 4});
  CHECK(t.feed(bytes_of(wire), wire.size()) == wire.size());
  CHECK(t.violation() == WsViolation::kNone);
  CHECK(t.messages() == 2);
}

TEST_CASE("ws frames: close code extraction", "[ws_frames]") {
  struct Case {
    const char* name;
    std::string payload;
    uint16_t code;
  };
  const Case cases[] = {
      {"no body", "", 1005},
      {"1000", std::string("\x03\xe8", 2), 1000},
      {"1001 with reason", std::string("\x03\xe9going away", 12), 1001},
      {"4000", std::string("\x0f\xa0", 2), 4000},
      {"code 0 on the wire", std::string("\x00\x00", 2), 0},
  };
  for (const Case& c : cases) {
    for (bool masked : {true, false}) {
      CAPTURE(c.name, masked);
      const std::string close = encode({kWsOpClose, true, masked, c.payload.size()}, c.payload);
      const std::string wire = close + encode({kWsOpClose, true, masked, 2}, "\x0b\xb8");
      for (size_t chunk : {wire.size(), size_t{1}, size_t{3}}) {
        WsFrameTracker t(dir_for(masked), 1 << 20);
        CHECK_FALSE(t.saw_close());
        const Run r = feed_chunked(t, wire, {chunk});
        // The second Close is dropped: nothing may follow a Close (RFC 6455 5.5.1).
        CHECK(r.forwarded == close.size());
        CHECK(t.saw_close());
        CHECK(t.close_code() == c.code);
        CHECK(t.frames() == 1);
        CHECK(t.messages() == 0);
      }
    }
  }
}

TEST_CASE("ws frames: nothing after a Close is forwarded, in the same read or a later one",
          "[ws_frames]") {
  for (bool masked : {true, false}) {
    CAPTURE(masked);
    const std::string before = encode({kWsOpText, true, masked, 5}, "hello");
    const std::string close = encode({kWsOpClose, true, masked, 2}, "\x03\xe8");
    const std::string after =
        encode({kWsOpText, true, masked, 5}, "after") + encode({kWsOpPing, true, masked, 0}, "");
    const std::string wire = before + close + after;
    for (size_t chunk : {wire.size(), size_t{1}, size_t{4}}) {
      CAPTURE(chunk);
      WsFrameTracker t(dir_for(masked), 1 << 20);
      const Run r = feed_chunked(t, wire, {chunk});
      CHECK(r.forwarded == before.size() + close.size());
      CHECK(t.violation() == WsViolation::kNone);
      CHECK(t.messages() == 1);
      CHECK(t.pings() == 0);
      CHECK(t.bytes() == before.size() + close.size());
      CHECK(t.at_frame_boundary());
    }
  }
}

// Parses `wire` with wslay's event API (the server side when masked) and returns what it saw.
struct WslayResult {
  std::vector<wslay_event_on_msg_recv_arg> msgs;
  std::vector<std::string> payloads;
  bool error = false;
};

WslayResult parse_with_wslay(const std::string& wire, bool masked) {
  struct Io {
    const std::string* wire;
    size_t pos = 0;
    WslayResult result;
  } io{&wire, 0, {}};
  wslay_event_callbacks cb{};
  cb.recv_callback = [](wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int,
                        void* user) -> ssize_t {
    auto* io = static_cast<Io*>(user);
    const size_t n = std::min(len, io->wire->size() - io->pos);
    if (n == 0) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    std::memcpy(buf, io->wire->data() + io->pos, n);
    io->pos += n;
    return static_cast<ssize_t>(n);
  };
  cb.send_callback = [](wslay_event_context_ptr, const uint8_t*, size_t len, int,
                        void*) -> ssize_t { return static_cast<ssize_t>(len); };
  cb.on_msg_recv_callback = [](wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg,
                               void* user) {
    auto* io = static_cast<Io*>(user);
    io->result.msgs.push_back(*arg);
    io->result.payloads.emplace_back(reinterpret_cast<const char*>(arg->msg), arg->msg_length);
  };
  wslay_event_context_ptr ctx = nullptr;
  if (masked) {
    wslay_event_context_server_init(&ctx, &cb, &io);
  } else {
    wslay_event_context_client_init(&ctx, &cb, &io);
  }
  io.result.error = wslay_event_recv(ctx) != 0;
  wslay_event_context_free(ctx);
  return io.result;
}

TEST_CASE("ws frames: builders round-trip through the tracker and wslay", "[ws_frames]") {
  uint8_t buf[kWsMaxControlFrameBytes];
  const std::string long_reason(200, 'r');
  for (bool masked : {true, false}) {
    CAPTURE(masked);
    const uint32_t key = masked ? 0xA1B2C3D4 : 0;
    std::string wire;
    wire.append(reinterpret_cast<const char*>(buf), ws_build_ping_frame(buf, "hello", masked, key));
    wire.append(reinterpret_cast<const char*>(buf),
                ws_build_ping_frame(buf, long_reason, masked, key));
    wire.append(reinterpret_cast<const char*>(buf),
                ws_build_close_frame(buf, 1001, long_reason, masked, key));
    const size_t n = ws_build_close_frame(buf, 1000, "bye", masked, key);
    CHECK(n == 2 + (masked ? 4u : 0u) + 5);

    WsFrameTracker t(dir_for(masked), 1 << 20);
    const Run r = feed_chunked(t, wire, {1});
    CHECK(r.forwarded == wire.size());
    CHECK(t.violation() == WsViolation::kNone);
    REQUIRE(r.events.size() == 3);
    CHECK(r.events[0].opcode == kWsOpPing);
    CHECK(r.events[0].payload_length == 5);
    CHECK(r.events[1].payload_length == 125);
    CHECK(r.events[2].opcode == kWsOpClose);
    CHECK(r.events[2].payload_length == 125);
    CHECK(t.close_code() == 1001);
    CHECK(t.pings() == 2);

    const WslayResult w = parse_with_wslay(wire, masked);
    REQUIRE(w.msgs.size() == 3);
    CHECK(w.msgs[0].opcode == WSLAY_PING);
    CHECK(w.payloads[0] == "hello");
    CHECK(w.payloads[1] == long_reason.substr(0, 125));
    CHECK(w.msgs[2].opcode == WSLAY_CONNECTION_CLOSE);
    CHECK(w.msgs[2].status_code == 1001);
    CHECK(w.payloads[2].substr(2) == long_reason.substr(0, 123));
  }
  // Code 0 builds a Close without a body.
  const size_t n = ws_build_close_frame(buf, 0, "ignored", false, 0);
  REQUIRE(n == 2);
  WsFrameTracker t(WsDirection::kServerToClient, 1 << 20);
  t.feed(buf, n);
  CHECK(t.close_code() == 1005);
}

TEST_CASE("ws frames: handshake key validation and accept value", "[ws_frames]") {
  // RFC 6455 1.3's example.
  CHECK(ws_key_is_valid("dGhlIHNhbXBsZSBub25jZQ=="));
  CHECK(ws_accept_for_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  const char* bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",       // too short
      "dGhlIHNhbXBsZSBub25jZQ===",     // too long
      "dGhlIHNhbXBsZSBub25jZQ",        // no padding
      "dGhlIHNhbXBsZSBub25jZSBhYQ==",  // 19 bytes
      "dGhlIHNhbXBsZSBub25j*Q==",      // not base64
      " dGhlIHNhbXBsZSBub25jZQ==",     // whitespace is the parser's job
      "dGhlIHNhbXBsZSBub25jZQ=a",
  };
  for (const char* k : bad) {
    CAPTURE(k);
    CHECK_FALSE(ws_key_is_valid(k));
  }
  CHECK(ws_violation_name(WsViolation::kMessageTooBig) == "message_too_big");
}

}  // namespace
}  // namespace portico::test

#pragma once

// WebSocket frame tracking for the proxy's tunnel (RFC 6455 section 5).
//
// The tunnel relays WebSocket bytes between client and backend without unmasking, copying or
// reassembling payloads. It only needs to follow the frame headers of each direction so that it
// can stop at a frame boundary, enforce a maximum message size, reject frames that break the
// masking rules, and count messages. WsFrameTracker is that follower: a pure incremental parser
// with no I/O and no allocation, fed with the bytes as they are relayed.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico {

enum class WsDirection : uint8_t { kClientToServer, kServerToClient };

// One frame header, reported when it has been parsed and accepted (before its payload).
struct WsFrameEvent {
  uint8_t opcode = 0;
  bool fin = false;
  bool masked = false;
  uint8_t rsv = 0;  // RSV1..RSV3 as bits 2..0 (only RSV1 can be non-zero, see allow_rsv1)
  uint64_t payload_length = 0;
};

// Why a direction was stopped. All map to 1002 (protocol error) except kMessageTooBig (1009).
enum class WsViolation : uint8_t {
  kNone,
  kUnmaskedClientFrame,     // RFC 6455 5.1: a client MUST mask every frame
  kMaskedServerFrame,       // RFC 6455 5.1: a server MUST NOT mask any frame
  kReservedBits,            // RSV set without a negotiated extension
  kBadOpcode,               // opcodes 0x3-0x7, 0xB-0xF
  kControlFrameTooLong,     // RFC 6455 5.5: control payloads are at most 125 bytes
  kFragmentedControl,       // RFC 6455 5.5: control frames MUST NOT be fragmented
  kUnexpectedContinuation,  // a continuation frame with no fragmented message in progress
  kMessageTooBig,           // the message exceeds max_message_bytes (1009)
  kBadLength,               // non-minimal extended length, MSB set in the 64-bit length, or a
                            // Close payload of exactly 1 byte (RFC 6455 5.5.1)
  kMissingContinuation,     // a new text/binary frame while a fragmented message is unfinished
};

// A short stable name for logs and metrics ("unmasked_client_frame", ...).
std::string_view ws_violation_name(WsViolation v);

// WebSocket opcodes (RFC 6455 5.2).
inline constexpr uint8_t kWsOpContinuation = 0x0;
inline constexpr uint8_t kWsOpText = 0x1;
inline constexpr uint8_t kWsOpBinary = 0x2;
inline constexpr uint8_t kWsOpClose = 0x8;
inline constexpr uint8_t kWsOpPing = 0x9;
inline constexpr uint8_t kWsOpPong = 0xA;

// Longest frame header: 2 bytes + 8-byte extended length + 4-byte masking key.
inline constexpr size_t kWsMaxHeaderBytes = 14;
// A buffer this large holds any control frame the builders below produce.
inline constexpr size_t kWsMaxControlFrameBytes = 2 + 4 + 125;

class WsFrameTracker {
 public:
  // max_message_bytes bounds the sum of payload lengths of one data message (all its fragments);
  // a message of exactly max_message_bytes is accepted. Control frames do not count.
  WsFrameTracker(WsDirection dir, uint64_t max_message_bytes);

  // permessage-deflate (RFC 7692) sets RSV1 on the first frame of a compressed message. Call with
  // true when the handshake negotiated it; RSV1 is then accepted on text/binary frames only.
  void allow_rsv1(bool allow) { allow_rsv1_ = allow; }

  // Called for each accepted frame header, from inside feed(), with `context`. Optional. A plain
  // function pointer, not a std::function: every tunnel holds two trackers, and an idle tunnel
  // should cost as few bytes as possible.
  using FrameObserver = void (*)(void* context, const WsFrameEvent& frame);
  void set_frame_observer(FrameObserver observer, void* context) {
    observer_ = observer;
    observer_context_ = context;
  }

  // Consumes bytes as they are relayed. Returns how many bytes of `data` may be forwarded.
  // Normally all of them. After a Close frame, none: RFC 6455 section 5.5.1 lets nothing follow
  // it, and the bytes that do are dropped (not a violation: the sender is already closing). On
  // a violation, the bytes up to the start of the offending frame, so
  // that the proxy forwards whole frames only; violation() then becomes non-kNone and every later
  // call returns 0.
  //
  // One caveat: the bytes of a frame header that is split across two reads are forwarded as they
  // arrive (the proxy does not copy), so when the offending header began in an earlier call its
  // first bytes are already gone and feed() returns 0. at_frame_boundary() tells the two cases
  // apart: when it is false after a violation, the peer has seen part of a header and injecting a
  // Close frame would corrupt the stream, so the proxy must just drop the connection.
  size_t feed(const uint8_t* data, size_t len);

  WsViolation violation() const { return violation_; }
  // 1002 or 1009 for a violation; 0 when there is none.
  uint16_t close_code_for_violation() const;

  // True when everything forwarded so far ends exactly at a frame boundary: a safe point to
  // inject a frame of our own (for example a Close) into this direction.
  bool at_frame_boundary() const { return forwarded_at_boundary_; }
  // Between a non-FIN data frame and its final continuation. An injected data frame here would
  // break the message; control frames may still be injected at a frame boundary.
  bool in_fragmented_message() const { return in_message_; }

  uint64_t messages() const { return messages_; }  // complete data messages (FIN data frames)
  uint64_t frames() const { return frames_; }      // complete frames, control frames included
  uint64_t bytes() const { return bytes_; }        // bytes accepted for forwarding
  uint32_t pings() const { return pings_; }
  uint32_t pongs() const { return pongs_; }

  // The status code of the first complete Close frame in this direction (1005 if it carried
  // none), or 0 when no Close has been seen. The code is not validated: that is the endpoints' job
  // (so a peer that puts 0 on the wire reads as 0 here; saw_close() is the reliable flag).
  uint16_t close_code() const { return close_code_; }
  bool saw_close() const { return saw_close_; }  // a complete Close frame went through

 private:
  // Returns false (and records the violation) when the header is not acceptable.
  bool on_header_byte0(uint8_t b0);
  bool on_header_byte1(uint8_t b1);
  bool on_header_complete();
  void on_frame_complete();
  bool fail(WsViolation v);

  // Members are ordered by size: two of these live in every tunnel (about 120 bytes each).
  uint64_t max_message_bytes_;
  uint64_t payload_left_ = 0;
  uint64_t message_bytes_ = 0;  // of the data message in progress
  uint64_t messages_ = 0;
  uint64_t frames_ = 0;
  uint64_t bytes_ = 0;
  FrameObserver observer_ = nullptr;
  void* observer_context_ = nullptr;
  WsFrameEvent frame_;  // the frame whose payload is passing
  uint32_t pings_ = 0;
  uint32_t pongs_ = 0;
  uint16_t close_code_ = 0;

  // The header being parsed. It is kept here because it may arrive split across reads.
  uint8_t header_[kWsMaxHeaderBytes] = {};
  uint8_t header_have_ = 0;
  uint8_t header_need_ = 2;  // grows once byte 1 tells the length encoding and the mask bit

  // The first two payload bytes of a Close frame, unmasked: the status code.
  uint8_t close_payload_[2] = {};
  uint8_t close_payload_seen_ = 0;

  WsDirection dir_;
  WsViolation violation_ = WsViolation::kNone;
  bool allow_rsv1_ = false;
  bool in_payload_ = false;
  bool in_message_ = false;
  bool forwarded_at_boundary_ = true;
  bool saw_close_ = false;
};

// Builds one complete Close frame (FIN set) into `out`, which must hold kWsMaxControlFrameBytes.
// The payload is the 2-byte code followed by the reason, truncated to 123 bytes (a truncated
// UTF-8 reason may end mid-character: keep reasons ASCII). code 0 builds a Close without a body
// (the peer sees 1005). When mask is true the payload is masked with mask_key, whose most
// significant byte is the first key byte on the wire. Returns the frame's byte count.
size_t ws_build_close_frame(uint8_t* out, uint16_t code, std::string_view reason, bool mask,
                            uint32_t mask_key);
// Builds one Ping frame; the payload is truncated to 125 bytes.
size_t ws_build_ping_frame(uint8_t* out, std::string_view payload, bool mask, uint32_t mask_key);

// RFC 6455 4.2.1: the Sec-WebSocket-Key must be base64 that decodes to exactly 16 bytes. The value
// is checked as given: the HTTP parser has already stripped the header's surrounding whitespace.
bool ws_key_is_valid(std::string_view sec_websocket_key);
// RFC 6455 4.2.2: base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string ws_accept_for_key(std::string_view key);

}  // namespace portico

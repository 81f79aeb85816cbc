#include "proxy/ws_frames.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace portico {

namespace {

bool is_control(uint8_t opcode) { return (opcode & 0x8) != 0; }

bool is_known_opcode(uint8_t opcode) {
  switch (opcode) {
    case kWsOpContinuation:
    case kWsOpText:
    case kWsOpBinary:
    case kWsOpClose:
    case kWsOpPing:
    case kWsOpPong:
      return true;
    default:
      return false;
  }
}

// Writes a FIN control frame whose payload is `head` followed by `tail` (already truncated by the
// caller to at most 125 bytes in total).
size_t build_control_frame(uint8_t* out, uint8_t opcode, const uint8_t* head, size_t head_len,
                           std::string_view tail, bool mask, uint32_t mask_key) {
  const size_t payload_len = head_len + tail.size();
  size_t n = 0;
  out[n++] = static_cast<uint8_t>(0x80 | opcode);
  out[n++] = static_cast<uint8_t>((mask ? 0x80 : 0x00) | payload_len);
  uint8_t key[4] = {static_cast<uint8_t>(mask_key >> 24), static_cast<uint8_t>(mask_key >> 16),
                    static_cast<uint8_t>(mask_key >> 8), static_cast<uint8_t>(mask_key)};
  if (mask) {
    std::memcpy(out + n, key, 4);
    n += 4;
  }
  uint8_t* payload = out + n;
  if (head_len > 0) {
    std::memcpy(payload, head, head_len);
  }
  if (!tail.empty()) {
    std::memcpy(payload + head_len, tail.data(), tail.size());
  }
  if (mask) {
    for (size_t i = 0; i < payload_len; ++i) {
      payload[i] ^= key[i % 4];
    }
  }
  return n + payload_len;
}

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string_view ws_violation_name(WsViolation v) {
  switch (v) {
    case WsViolation::kNone:
      return "none";
    case WsViolation::kUnmaskedClientFrame:
      return "unmasked_client_frame";
    case WsViolation::kMaskedServerFrame:
      return "masked_server_frame";
    case WsViolation::kReservedBits:
      return "reserved_bits";
    case WsViolation::kBadOpcode:
      return "bad_opcode";
    case WsViolation::kControlFrameTooLong:
      return "control_frame_too_long";
    case WsViolation::kFragmentedControl:
      return "fragmented_control";
    case WsViolation::kUnexpectedContinuation:
      return "unexpected_continuation";
    case WsViolation::kMessageTooBig:
      return "message_too_big";
    case WsViolation::kBadLength:
      return "bad_length";
    case WsViolation::kMissingContinuation:
      return "missing_continuation";
  }
  return "unknown";
}

WsFrameTracker::WsFrameTracker(WsDirection dir, uint64_t max_message_bytes)
    : max_message_bytes_(max_message_bytes), dir_(dir) {}

uint16_t WsFrameTracker::close_code_for_violation() const {
  switch (violation_) {
    case WsViolation::kNone:
      return 0;
    case WsViolation::kMessageTooBig:
      return 1009;
    default:
      return 1002;
  }
}

size_t WsFrameTracker::feed(const uint8_t* data, size_t len) {
  if (violation_ != WsViolation::kNone || saw_close_) {
    return 0;
  }
  size_t pos = 0;
  size_t header_start = 0;
  bool header_started_here = false;
  while (pos < len) {
    if (in_payload_) {
      // The hot path: skip payload bytes without looking at them, except the first two bytes of
      // a Close frame, which hold its status code.
      const size_t take = static_cast<size_t>(std::min<uint64_t>(payload_left_, len - pos));
      if (frame_.opcode == kWsOpClose && close_payload_seen_ < 2) {
        const size_t want = std::min<size_t>(take, 2 - close_payload_seen_);
        for (size_t i = 0; i < want; ++i) {
          const size_t at = static_cast<size_t>(close_payload_seen_);
          uint8_t b = data[pos + i];
          if (frame_.masked) {
            b ^= header_[header_need_ - 4 + at % 4];
          }
          close_payload_[at] = b;
          ++close_payload_seen_;
        }
      }
      pos += take;
      payload_left_ -= take;
      if (payload_left_ == 0) {
        on_frame_complete();
        if (saw_close_) break;
      }
      continue;
    }

    if (header_have_ == 0) {
      header_start = pos;
      header_started_here = true;
    }
    const uint8_t b = data[pos++];
    header_[header_have_++] = b;
    bool ok = true;
    if (header_have_ == 1) {
      ok = on_header_byte0(b);
    } else if (header_have_ == 2) {
      ok = on_header_byte1(b);
    }
    if (ok && header_have_ == header_need_) {
      ok = on_header_complete();
    }
    if (!ok) {
      // Stop before the offending frame. If its header began in an earlier call, those bytes
      // are already forwarded and the stream no longer ends at a boundary.
      forwarded_at_boundary_ = header_started_here;
      const size_t forwarded = header_started_here ? header_start : 0;
      bytes_ += forwarded;
      return forwarded;
    }
    if (saw_close_) break;  // a Close without payload
  }
  // RFC 6455 section 5.5.1: nothing may follow a Close in its direction; what does is dropped.
  forwarded_at_boundary_ = !in_payload_ && header_have_ == 0;
  bytes_ += pos;
  return pos;
}

bool WsFrameTracker::fail(WsViolation v) {
  violation_ = v;
  return false;
}

bool WsFrameTracker::on_header_byte0(uint8_t b0) {
  const uint8_t opcode = b0 & 0x0F;
  const uint8_t rsv = (b0 >> 4) & 0x07;
  const bool fin = (b0 & 0x80) != 0;
  uint8_t allowed_rsv = 0;
  if (allow_rsv1_ && (opcode == kWsOpText || opcode == kWsOpBinary)) {
    allowed_rsv = 0x4;  // RFC 7692 6.1: RSV1 only on the first frame of a message
  }
  if ((rsv & ~allowed_rsv) != 0) {
    return fail(WsViolation::kReservedBits);
  }
  if (!is_known_opcode(opcode)) {
    return fail(WsViolation::kBadOpcode);
  }
  if (is_control(opcode)) {
    if (!fin) {
      return fail(WsViolation::kFragmentedControl);
    }
  } else if (opcode == kWsOpContinuation) {
    if (!in_message_) {
      return fail(WsViolation::kUnexpectedContinuation);
    }
  } else if (in_message_) {
    return fail(WsViolation::kMissingContinuation);
  }
  return true;
}

bool WsFrameTracker::on_header_byte1(uint8_t b1) {
  const bool masked = (b1 & 0x80) != 0;
  const uint8_t len7 = b1 & 0x7F;
  if (dir_ == WsDirection::kClientToServer && !masked) {
    return fail(WsViolation::kUnmaskedClientFrame);
  }
  if (dir_ == WsDirection::kServerToClient && masked) {
    return fail(WsViolation::kMaskedServerFrame);
  }
  if (is_control(header_[0] & 0x0F) && len7 > 125) {
    return fail(WsViolation::kControlFrameTooLong);
  }
  header_need_ = static_cast<uint8_t>(2 +
                                      (len7 == 126   ? 2
                                       : len7 == 127 ? 8
                                                     : 0) +
                                      (masked ? 4 : 0));
  return true;
}

bool WsFrameTracker::on_header_complete() {
  const uint8_t b0 = header_[0];
  const uint8_t b1 = header_[1];
  WsFrameEvent ev;
  ev.opcode = b0 & 0x0F;
  ev.fin = (b0 & 0x80) != 0;
  ev.rsv = (b0 >> 4) & 0x07;
  ev.masked = (b1 & 0x80) != 0;
  const uint8_t len7 = b1 & 0x7F;
  if (len7 == 126) {
    ev.payload_length = (uint64_t{header_[2]} << 8) | header_[3];
    if (ev.payload_length < 126) {
      return fail(WsViolation::kBadLength);  // RFC 6455 5.2: the minimal encoding MUST be used
    }
  } else if (len7 == 127) {
    ev.payload_length = 0;
    for (size_t i = 2; i < 10; ++i) {
      ev.payload_length = (ev.payload_length << 8) | header_[i];
    }
    if ((ev.payload_length >> 63) != 0 || ev.payload_length < 65536) {
      return fail(WsViolation::kBadLength);
    }
  } else {
    ev.payload_length = len7;
  }
  if (ev.opcode == kWsOpClose && ev.payload_length == 1) {
    // RFC 6455 5.5.1: a Close body starts with a 2-byte code, so one byte cannot be valid.
    return fail(WsViolation::kBadLength);
  }
  if (!is_control(ev.opcode)) {
    // Written as a subtraction so that a 2^63-byte frame cannot wrap the sum around.
    if (ev.payload_length > max_message_bytes_ ||
        message_bytes_ > max_message_bytes_ - ev.payload_length) {
      return fail(WsViolation::kMessageTooBig);
    }
    message_bytes_ += ev.payload_length;
    in_message_ = true;
  }

  frame_ = ev;
  payload_left_ = ev.payload_length;
  close_payload_seen_ = 0;
  if (observer_) {
    observer_(observer_context_, frame_);
  }
  if (payload_left_ == 0) {
    on_frame_complete();
  } else {
    in_payload_ = true;
  }
  return true;
}

void WsFrameTracker::on_frame_complete() {
  in_payload_ = false;
  header_have_ = 0;
  header_need_ = 2;
  ++frames_;
  switch (frame_.opcode) {
    case kWsOpClose:
      if (!saw_close_) {
        saw_close_ = true;
        close_code_ =
            close_payload_seen_ >= 2
                ? static_cast<uint16_t>((uint16_t{close_payload_[0]} << 8) | close_payload_[1])
                : uint16_t{1005};
      }
      break;
    case kWsOpPing:
      ++pings_;
      break;
    case kWsOpPong:
      ++pongs_;
      break;
    default:
      if (frame_.fin) {
        ++messages_;
        in_message_ = false;
        message_bytes_ = 0;
      }
      break;
  }
}

size_t ws_build_close_frame(uint8_t* out, uint16_t code, std::string_view reason, bool mask,
                            uint32_t mask_key) {
  if (code == 0) {
    return build_control_frame(out, kWsOpClose, nullptr, 0, {}, mask, mask_key);
  }
  const uint8_t code_bytes[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
  return build_control_frame(out, kWsOpClose, code_bytes, 2, reason.substr(0, 123), mask, mask_key);
}

size_t ws_build_ping_frame(uint8_t* out, std::string_view payload, bool mask, uint32_t mask_key) {
  return build_control_frame(out, kWsOpPing, nullptr, 0, payload.substr(0, 125), mask, mask_key);
}

bool ws_key_is_valid(std::string_view key) {
  // 16 bytes encode to 22 base64 characters and "==" padding: exactly 24 characters.
  if (key.size() != 24 || key[22] != '=' || key[23] != '=') {
    return false;
  }
  for (size_t i = 0; i < 22; ++i) {
    if (base64_value(key[i]) < 0) {
      return false;
    }
  }
  return true;
}

std::string ws_accept_for_key(std::string_view key) {
  static constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string input;
  input.reserve(key.size() + kGuid.size());
  input.append(key);
  input.append(kGuid);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(input.data(), input.size(), digest, &digest_len, EVP_sha1(), nullptr) != 1) {
    return {};
  }
  unsigned char encoded[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(encoded, digest, static_cast<int>(digest_len));
  return std::string(reinterpret_cast<const char*>(encoded), static_cast<size_t>(n));
}

}  // namespace portico

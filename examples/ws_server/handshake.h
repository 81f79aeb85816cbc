#pragma once

// HTTP/1.1 and RFC 6455 handshake helpers for ws_server.
//
// Deliberately independent of portico's proxy/ws_frames.cc: a backend that shared the proxy's
// Sec-WebSocket-Accept code would agree with the proxy's bugs instead of catching them.

#include <string>
#include <string_view>

namespace ws_server {

bool iequals(std::string_view a, std::string_view b);
// True when the comma-separated header value holds `token` (case-insensitive), e.g.
// "keep-alive, Upgrade" holds "upgrade".
bool has_token(std::string_view value, std::string_view token);
// RFC 6455 4.2.1: the key is base64 of 16 bytes, i.e. 22 characters and "==".
bool key_is_valid(std::string_view key);
// RFC 6455 4.2.2: base64(SHA-1(key + the protocol GUID)).
std::string accept_for_key(std::string_view key);

}  // namespace ws_server

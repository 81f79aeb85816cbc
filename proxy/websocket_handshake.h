#pragma once

// The checks on a WebSocket opening handshake (RFC 6455 section 4) that portico makes before it
// forwards one: pure functions over the parsed head, unit-tested on their own.

#include <string>
#include <string_view>
#include <vector>

#include "proxy/http_head.h"

namespace portico {

// True when the request asks for a WebSocket upgrade (Upgrade: websocket, Connection: upgrade).
bool is_websocket_upgrade(const HttpHead& request);

// Checks method, version, Sec-WebSocket-Version and Sec-WebSocket-Key, and that there is no
// body. Returns 0 when the request is a valid opening handshake, else the status to answer (400)
// with *why set.
int check_websocket_request(const HttpHead& request, std::string* why);

// True when one of the response's Sec-WebSocket-Extensions headers names the extension `name`
// (RFC 6455 section 9.1: a comma-separated list of extensions, each with ;-parameters).
bool ws_extension_negotiated(const HttpHead& response, std::string_view name);

// The cross-site WebSocket hijacking check. Browsers always send Origin on WebSocket requests
// and do not apply CORS to them, so a page on another site could otherwise open a socket with
// the user's cookies. Allowed: no Origin (not a browser), an Origin whose host[:port] equals
// Host (default ports ignored), or one in `allowed` ("*", a full origin, or a bare host).
bool websocket_origin_allowed(std::string_view origin, std::string_view host,
                              const std::vector<std::string>& allowed);

}  // namespace portico

#pragma once

// `portico --check [--probe]`: validate the configuration without serving it.
//
// Output: the effective route table (RouteTable::describe) on `out`, then one line per check:
//   cert INFO file=... key=... type=... names=... expires=...  (every loaded certificate)
//   cert PASS|WARN|FAIL file=... detail=...       (expiry, key match)
//   host PASS|FAIL host=... route=FILE:LINE detail=...   (certificate names cover the route host)
//   probe PASS|FAIL route=... backend=... detail=...     (--probe only)
// and a summary line. Configuration errors go to `err`, one "FILE:LINE:COL: reason" (or
// "FILE: reason") per line.

#include <cstdio>
#include <string_view>

#include "proxy/config.h"

namespace portico {

inline constexpr int kCheckOk = 0;
inline constexpr int kCheckFailed = 1;   // a certificate check or a probe failed
inline constexpr int kCheckInvalid = 2;  // the configuration does not load

// A certificate expiring within this many days gets a WARN line.
inline constexpr int kCertificateWarnDays = 14;

int run_check(const Config& config, FILE* out, FILE* err);

// RFC 6125 section 6.4: does a certificate DNS name cover a route host? Both lower case. An
// exact route host is covered by the same name or by a wildcard "*.rest" when the host is one
// label followed by ".rest". A wildcard route host "*.rest" is covered only by "*.rest" itself
// (no single name covers every host it matches).
bool certificate_name_covers(std::string_view certificate_name, std::string_view route_host);

}  // namespace portico

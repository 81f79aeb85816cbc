#pragma once

// `portico --check --probe`: one request to one backend, to tell before start-up (or before a
// reload) that every backend of the route file answers the way the route expects.
//
// Blocking sockets with a deadline: the probes run once, each on its own thread, from a process
// that serves nothing, so an event loop would buy nothing but code. Name resolution
// (getaddrinfo) cannot be given a deadline; the resolver's own timeouts bound it.

#include <openssl/ssl.h>

#include <chrono>
#include <string>

#include "routing/route_table.h"

namespace portico {

struct ProbeRequest {
  BackendAddress backend;
  SSL_CTX* tls = nullptr;   // https:// backends: the route's client context (upstream_tls.h)
  std::string host_header;  // the route host, or "localhost" for host-less routes
  std::string path;         // the route prefix
  bool websocket = false;   // upgrade=only routes: an opening handshake instead of a GET
  std::chrono::milliseconds timeout{3000};
};

struct ProbeResult {
  bool pass = false;
  std::string detail;  // one line: "status=200 ..." or what went wrong
};

// An https:// backend must first pass the TLS handshake with the checks the proxy makes (the
// certificate chains to the route's CA and is valid for the host). PASS: any well-formed HTTP
// response head; for `websocket`, a 101 with "Upgrade: websocket" and
// the Sec-WebSocket-Accept that matches the key sent (RFC 6455 section 4.1), after which the
// probe closes with a Close frame (1001).
ProbeResult probe_backend(const ProbeRequest& request);

// The Host header a probe sends for a route host: "" -> "localhost", "*.example.com" ->
// "probe.example.com" (some name the wildcard matches), anything else unchanged.
std::string probe_host_for(const std::string& route_host);

}  // namespace portico

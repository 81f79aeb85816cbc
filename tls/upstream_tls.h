#pragma once

// TLS from portico to a backend (https:// backends in the route file): one client context per
// CA bundle, and the per-connection settings that make verification mean something (SNI and
// the name the certificate must carry).

#include <openssl/ssl.h>

#include <string>

#include "tls/tls_context.h"

namespace portico {

// A client context: TLS 1.2 and 1.3, the peer's certificate verified against `ca_file` (a PEM
// bundle) or, when it is empty, the system's CAs (OpenSSL's default paths: Debian's
// /etc/ssl/certs); ALPN http/1.1. No session resumption: each new backend connection makes a
// full handshake, and pooled keep-alive connections are what saves handshakes. On failure
// returns null and sets *error to a reason (the caller adds the file and line).
SslCtxPtr make_upstream_tls_context(const std::string& ca_file, std::string* error);

// Sets SNI to `host` (names only: RFC 6066 forbids IP literals there) and requires the backend's
// certificate to be valid for `host` (a DNS name, or an IP address in its subjectAltName).
bool configure_upstream_ssl(SSL* ssl, const std::string& host, bool host_is_ip);

// Why the backend's certificate was refused ("self-signed certificate", "hostname mismatch"),
// or "" when verification passed.
std::string upstream_verify_failure(const SSL* ssl);

}  // namespace portico

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
// /etc/ssl/certs); ALPN http/1.1; the latest session of each backend kept for resumption
// (offer_upstream_session). On failure returns null and sets *error to a reason (the caller
// adds the file and line).
SslCtxPtr make_upstream_tls_context(const std::string& ca_file, std::string* error);

// Resumption towards backends, as NGINX's proxy_ssl_session_reuse: a new connection to the
// backend `key` names offers the session its last connection got (a TLS 1.2 session or the
// latest TLS 1.3 ticket), and the sessions this one gets are kept under `key` for the next.
// `key` must outlive `ssl` and name one backend under one trust (host, port, CA bundle): a
// session is only ever offered where it was verified. Thread-safe (workers share contexts).
void offer_upstream_session(SSL* ssl, const std::string* key);

// Sets SNI to `host` (names only: RFC 6066 forbids IP literals there) and requires the backend's
// certificate to be valid for `host` (a DNS name, or an IP address in its subjectAltName).
bool configure_upstream_ssl(SSL* ssl, const std::string& host, bool host_is_ip);

// Why the backend's certificate was refused ("self-signed certificate", "hostname mismatch"),
// or "" when verification passed.
std::string upstream_verify_failure(const SSL* ssl);

}  // namespace portico

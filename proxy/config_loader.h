#pragma once

// Reading and validating what the command line points at: the route file and the certificate/key
// files. Pure of the event loop, so that start-up, `--check` and live reload share one code path,
// and so that a reload can validate on one thread and hand the result to every worker (the
// per-worker swap is Worker::apply_configuration).

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/config.h"
#include "routing/route_table.h"
#include "tls/tls_context.h"

namespace portico {

// The bytes of every file the configuration is built from, read once. Comparing two of these
// tells a real change from an editor or certbot touching files without changing them.
struct ConfigInputs {
  std::string routes_text;
  std::string certificate_bytes;  // every --cert and --key file, length-prefixed, in order
  std::vector<std::string> errors;

  bool same_files(const ConfigInputs& other) const {
    return routes_text == other.routes_text && certificate_bytes == other.certificate_bytes;
  }
};

// A complete, validated configuration: what a worker serves new requests and handshakes with.
// Immutable once built; shared by every worker and by the requests that started under it.
struct ConfigSnapshot {
  std::shared_ptr<const RouteTable> routes;
  std::shared_ptr<SSL_CTX> ssl_ctx;  // SSL objects keep their own reference (SSL_new)
  // Per route (same index as routes->routes()): the client context for its https:// backends,
  // null for routes without any. Routes with the same CA bundle share one.
  std::vector<std::shared_ptr<SSL_CTX>> upstream_tls;
  std::string certificate_bytes;              // what ssl_ctx was built from
  std::vector<CertificateInfo> certificates;  // what ssl_ctx holds, for --check and the log
  std::vector<std::string> warnings;          // e.g. an expired certificate (without --strict)
};

struct ConfigLoadResult {
  std::shared_ptr<const ConfigSnapshot> snapshot;  // null when errors is not empty
  std::vector<std::string> errors;  // one line each: "FILE:LINE:COL: reason" or "FILE: reason"
  bool certificate_changed = true;  // against `current`; true when there was none
};

// Reads the route file and every certificate and key file. Small files, read synchronously: a
// reload runs this on the loop, and a few kilobytes from the page cache take microseconds.
ConfigInputs read_config_inputs(const Config& config);

// Every certificate/key pair: the --cert/--key pairs in order, then --cert-dir's pairs sorted by
// name (NAME.crt + NAME.key, then NAME/fullchain.pem + NAME/privkey.pem). Read again at every
// reload, so a certificate added to the directory is picked up. A NAME.crt without its key is
// an error (one line naming it).
std::vector<CertKeyFiles> certificate_files(const Config& config, std::vector<std::string>* errors);

// Parses and validates `inputs` into a snapshot: all or nothing. When the certificate files are
// byte-for-byte those of `current`, its SSL_CTX is reused (keeping its session cache); otherwise
// a new one is built from the files with make_server_tls_context.
ConfigLoadResult build_config_snapshot(const Config& config, const ConfigInputs& inputs,
                                       const ConfigSnapshot* current = nullptr);

}  // namespace portico

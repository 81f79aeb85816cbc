#pragma once

// The instant development certificate: with no certificate configured, portico serves a
// self-signed ECDSA P-256 certificate for localhost, 127.0.0.1, ::1 and any --dev-name, kept in
// the state directory so that a browser exception or a `curl --cacert` made once keeps working
// across restarts. Made with the OpenSSL API (no CLI, no shell).

#include <string>
#include <vector>

namespace portico {

struct DevCertificate {
  std::string cert_path;   // STATE_DIR/dev-cert.pem (also what clients trust: it is self-signed)
  std::string key_path;    // STATE_DIR/dev-key.pem, mode 0600
  bool generated = false;  // false: an existing one was still valid and covered the names
  std::string error;       // one line; the paths are meaningless when set
};

// The default state directory: $XDG_STATE_HOME/portico, else $HOME/.local/state/portico.
std::string default_state_dir();

// The names every dev certificate covers, plus `extra_names` (DNS names or IP addresses).
std::vector<std::string> dev_certificate_names(const std::vector<std::string>& extra_names);

// Reuses STATE_DIR's certificate when it parses, matches its key, is valid for at least another
// day and covers every name; otherwise makes a new one (valid 90 days). Creates `state_dir`
// (0700) as needed.
DevCertificate ensure_dev_certificate(const std::string& state_dir,
                                      const std::vector<std::string>& names);

}  // namespace portico

#include "proxy/config_loader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "tls/tls_context.h"
#include "tls/upstream_tls.h"

namespace portico {
namespace {

// `run_as`: the --user portico switched to; a permission error then says whose permission.
bool read_file(const std::string& path, std::string* out, std::string* error,
               const std::string& run_as) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // An ifstream opens a directory and then reads it as an empty file.
    *error = path + ": cannot read: " + std::strerror(EISDIR);
    return false;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    *error = path + ": cannot read: " + std::strerror(err);
    if (err == EACCES && !run_as.empty() && geteuid() != 0) {
      *error += " (portico runs as user " + run_as +
                " after --user: the file must be readable by " + run_as + ")";
    }
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

}  // namespace

std::vector<CertKeyFiles> certificate_files(const Config& config,
                                            std::vector<std::string>* errors) {
  std::vector<CertKeyFiles> files = config.certificates;
  if (config.cert_dir.empty()) return files;
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(config.cert_dir, ec), end; !ec && it != end; it.increment(ec)) {
    entries.push_back(it->path());
  }
  if (ec) {
    errors->push_back(config.cert_dir + ": cannot list the certificate directory: " + ec.message());
    return files;
  }
  // Sorted, so that the default certificate (the first) does not depend on directory order.
  std::sort(entries.begin(), entries.end());
  const size_t before = files.size();
  for (const fs::path& entry : entries) {
    std::error_code type_ec;
    // A link that points nowhere is kept, not skipped: reading it then names the file and the
    // error, where skipping it would drop a certificate without a word (a broken certbot
    // renewal). Likewise live/NAME/ counts when its fullchain.pem link exists at all.
    if (entry.extension() == ".crt" && !fs::is_directory(entry, type_ec)) {
      fs::path key = entry;
      key.replace_extension(".key");
      if (!fs::exists(key, type_ec)) {
        errors->push_back(entry.string() + ": no matching key file " + key.string());
        continue;
      }
      files.push_back({entry.string(), key.string()});
    } else if (fs::is_directory(entry, type_ec) &&
               fs::exists(fs::symlink_status(entry / "fullchain.pem", type_ec))) {
      // certbot's live/NAME/: the links point into archive/ and are re-pointed at renewal.
      files.push_back({(entry / "fullchain.pem").string(), (entry / "privkey.pem").string()});
    }
  }
  if (files.size() == before && config.certificates.empty()) {
    errors->push_back(config.cert_dir +
                      ": no certificate found (expected NAME.crt with NAME.key, or "
                      "NAME/fullchain.pem with NAME/privkey.pem)");
  }
  return files;
}

ConfigInputs read_config_inputs(const Config& config) {
  ConfigInputs inputs;
  std::string error;
  if (!read_file(config.routes_path, &inputs.routes_text, &error, config.user)) {
    inputs.errors.push_back(error);
  }
  if (config.dev_certificate) {
    // Read by path when the first snapshot is built, then kept (config.h).
    inputs.certificate_bytes = "development certificate";
    return inputs;
  }
  for (const CertKeyFiles& pair : certificate_files(config, &inputs.errors)) {
    for (const std::string* path : {&pair.cert, &pair.key}) {
      // The path too: a pair moved or renamed in --cert-dir is a change.
      inputs.certificate_bytes += *path;
      inputs.certificate_bytes += '\n';
      std::string bytes;
      if (!read_file(*path, &bytes, &error, config.user)) {
        inputs.errors.push_back(error);
        continue;
      }
      // Length-prefixed, so that moving bytes from one file to the next is still a change.
      inputs.certificate_bytes += std::to_string(bytes.size());
      inputs.certificate_bytes += ':';
      inputs.certificate_bytes += bytes;
    }
  }
  return inputs;
}

namespace {

// One client context per distinct CA bundle among the routes with https:// backends (null for
// the other routes). A relative ca= path is taken from the route file's directory, so a route
// file and its CA can move together.
std::vector<std::shared_ptr<SSL_CTX>> upstream_tls_contexts(const std::string& routes_path,
                                                            const RouteTable& table,
                                                            std::vector<std::string>* errors) {
  std::vector<std::shared_ptr<SSL_CTX>> contexts;
  std::map<std::string, std::shared_ptr<SSL_CTX>> by_ca;
  const std::filesystem::path routes_dir = std::filesystem::path(routes_path).parent_path();
  for (const Route& route : table.routes()) {
    const bool https = std::any_of(route.backends.begin(), route.backends.end(),
                                   [](const BackendAddress& b) { return b.scheme == "https"; });
    if (!https) {
      contexts.emplace_back();
      continue;
    }
    std::string ca = route.options.ca_file;
    if (!ca.empty() && std::filesystem::path(ca).is_relative()) ca = (routes_dir / ca).string();
    auto found = by_ca.find(ca);
    if (found == by_ca.end()) {
      std::string error;
      SslCtxPtr ctx = make_upstream_tls_context(ca, &error);
      if (!ctx) {
        errors->push_back(routes_path + ":" + std::to_string(route.line) + ": " +
                          (ca.empty() ? std::string("system CA certificates") : "ca " + ca) + ": " +
                          error);
        contexts.emplace_back();
        continue;
      }
      found = by_ca.emplace(ca, std::shared_ptr<SSL_CTX>(ctx.release(), SSL_CTX_free)).first;
    }
    contexts.push_back(found->second);
  }
  return contexts;
}

}  // namespace

ConfigLoadResult build_config_snapshot(const Config& config, const ConfigInputs& inputs,
                                       const ConfigSnapshot* current) {
  ConfigLoadResult result;
  result.errors = inputs.errors;
  if (!result.errors.empty()) return result;

  auto snapshot = std::make_shared<ConfigSnapshot>();
  RouteParseResult routes = RouteTable::parse(inputs.routes_text, config.routes_path);
  for (const RouteError& e : routes.errors) result.errors.push_back(e.to_string());
  if (routes.table) {
    snapshot->upstream_tls =
        upstream_tls_contexts(config.routes_path, *routes.table, &result.errors);
    if (!result.errors.empty()) routes.table = nullptr;
  }
  snapshot->routes = routes.table;

  snapshot->certificate_bytes = inputs.certificate_bytes;
  if (current && current->ssl_ctx && current->certificate_bytes == inputs.certificate_bytes) {
    snapshot->ssl_ctx = current->ssl_ctx;
    snapshot->certificates = current->certificates;
    snapshot->warnings = current->warnings;
    result.certificate_changed = false;
  } else {
    // make_server_tls_context reads the files again by path (once each: every context it makes
    // shares what it read). Should they change in between, the change also raised a new file
    // event, so the next reload settles on the newest files.
    std::vector<CertificateFiles> files;
    for (const CertKeyFiles& pair : certificate_files(config, &result.errors)) {
      files.push_back({pair.cert, pair.key});
    }
    TlsOptions options;
    options.min_version = config.tls_min_version;
    options.strict = config.strict;
    TlsContextResult tls = make_server_tls_context(files, options);
    if (!tls.ctx) {
      result.errors.push_back(tls.error);
    } else {
      // The default context owns the SNI set (tls_context.h), so this one pointer keeps every
      // certificate of this configuration alive for as long as a worker or a handshake uses it.
      snapshot->ssl_ctx = std::shared_ptr<SSL_CTX>(tls.ctx.release(), SSL_CTX_free);
      snapshot->certificates = std::move(tls.certificates);
      snapshot->warnings = std::move(tls.warnings);
    }
  }
  if (result.errors.empty()) result.snapshot = std::move(snapshot);
  return result;
}

}  // namespace portico

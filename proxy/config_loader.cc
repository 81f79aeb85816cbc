#include "proxy/config_loader.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "tls/tls_context.h"

namespace portico {
namespace {

bool read_file(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  *out = text.str();
  return true;
}

}  // namespace

ConfigInputs read_config_inputs(const Config& config) {
  ConfigInputs inputs;
  std::string error;
  if (!read_file(config.routes_path, &inputs.routes_text, &error)) {
    inputs.errors.push_back(error);
  }
  for (const CertKeyFiles& pair : config.certificates) {
    for (const std::string* path : {&pair.cert, &pair.key}) {
      std::string bytes;
      if (!read_file(*path, &bytes, &error)) {
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

ConfigLoadResult build_config_snapshot(const Config& config, const ConfigInputs& inputs,
                                       const ConfigSnapshot* current) {
  ConfigLoadResult result;
  result.errors = inputs.errors;
  if (!result.errors.empty()) return result;

  auto snapshot = std::make_shared<ConfigSnapshot>();
  RouteParseResult routes = RouteTable::parse(inputs.routes_text, config.routes_path);
  for (const RouteError& e : routes.errors) result.errors.push_back(e.to_string());
  snapshot->routes = routes.table;

  if (config.certificates.size() > 1) {
    result.errors.push_back(
        "several --cert/--key pairs need SNI selection, which this version lacks");
    return result;
  }
  snapshot->certificate_bytes = inputs.certificate_bytes;
  if (current && current->ssl_ctx && current->certificate_bytes == inputs.certificate_bytes) {
    snapshot->ssl_ctx = current->ssl_ctx;
    result.certificate_changed = false;
  } else {
    // make_server_tls_context reads the files again by path. Should they change in between, the
    // change also raised a new file event, so the next reload settles on the newest files.
    std::vector<CertificateFiles> files;
    for (const CertKeyFiles& pair : config.certificates) files.push_back({pair.cert, pair.key});
    TlsContextResult tls = make_server_tls_context(files);
    if (!tls.ctx) {
      result.errors.push_back(tls.error);
    } else {
      snapshot->ssl_ctx = std::shared_ptr<SSL_CTX>(tls.ctx.release(), SSL_CTX_free);
    }
  }
  if (result.errors.empty()) result.snapshot = std::move(snapshot);
  return result;
}

}  // namespace portico

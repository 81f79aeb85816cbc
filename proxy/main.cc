// portico: wires the pieces together. The only place that reads flags.

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "proxy/access_log.h"
#include "proxy/config.h"
#include "proxy/log.h"
#include "proxy/worker.h"
#include "routing/route_table.h"
#include "tls/tls_context.h"

namespace {

constexpr int kExitConfigError = 2;

int fail(const std::string& message) {
  std::fprintf(stderr, "portico: %s\n", message.c_str());
  return kExitConfigError;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace portico;
  ConfigResult parsed = parse_command_line(argc, argv);
  switch (parsed.action) {
    case ConfigResult::Action::kHelp:
      std::fputs(usage_text(), stdout);
      return 0;
    case ConfigResult::Action::kVersion:
      std::printf("portico %s (%s)\n", PORTICO_VERSION, OpenSSL_version(OPENSSL_VERSION));
      return 0;
    case ConfigResult::Action::kError:
      return fail(parsed.error);
    case ConfigResult::Action::kRun:
      break;
  }
  const Config& config = parsed.config;
  log_set_min_level(config.log_level);

  std::ifstream routes_file(config.routes_path, std::ios::binary);
  if (!routes_file) {
    return fail(config.routes_path + ": cannot read: " + std::strerror(errno));
  }
  std::stringstream routes_text;
  routes_text << routes_file.rdbuf();
  RouteParseResult routes = RouteTable::parse(routes_text.str(), config.routes_path);
  if (!routes.table) {
    for (const RouteError& error : routes.errors) {
      std::fprintf(stderr, "%s\n", error.to_string().c_str());
    }
    return kExitConfigError;
  }

  if (config.certificates.size() > 1) {
    return fail("several --cert/--key pairs need SNI selection, which this version lacks");
  }
  std::vector<CertificateFiles> certificate_files;
  for (const CertKeyFiles& pair : config.certificates) {
    certificate_files.push_back({pair.cert, pair.key});
  }
  TlsContextResult tls = make_server_tls_context(certificate_files);
  if (!tls.ctx) return fail(tls.error);

  if (config.check_only) {
    std::fputs(routes.table->describe().c_str(), stdout);
    std::printf("portico: %s and %zu certificate(s) are valid\n", config.routes_path.c_str(),
                certificate_files.size());
    return 0;
  }

  AccessLog access_log;
  std::string error;
  if (!access_log.open(config.access_log, &error)) return fail(error);

  // A peer that goes away mid-write must be an error code, not a signal that kills the proxy.
  signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<SSL_CTX> ssl_ctx(tls.ctx.release(), SSL_CTX_free);
  Worker worker(config, access_log, ssl_ctx, routes.table);
  if (!worker.listen(&error)) return fail(error);
  worker.handle_signals(config.routes_path);
  log_info("portico", "ready version=", PORTICO_VERSION, " routes=", routes.table->routes().size());
  worker.run();
  log_info("portico", "stopped");
  return 0;
}

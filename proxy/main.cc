// portico: wires the pieces together. The only place that reads flags.

#include <openssl/crypto.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/access_log.h"
#include "proxy/check.h"
#include "proxy/config.h"
#include "proxy/config_loader.h"
#include "proxy/log.h"
#include "proxy/privileges.h"
#include "proxy/redirect_server.h"
#include "proxy/worker.h"
#include "tls/dev_certificate.h"

namespace {

constexpr int kExitConfigError = 2;

// Every client connection is a file descriptor and a tunnel two; the soft limit (often 1024) is
// raised to the hard one, as NGINX's worker_rlimit_nofile would be set. --max-connections is
// per worker; without it the limit is 10,000 or what the open files allow with every
// connection of every worker a tunnel; a --max-connections the open files cannot carry is said
// once at start rather than found as EMFILE under load.
void fit_connections_to_open_files(portico::Config* config) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  // Listeners, logs, admin, reload watches; under a tiny limit, half of it (the rest still
  // carries a few tunnels rather than passing for no limit at all).
  constexpr rlim_t kReserved = 64;
  const rlim_t workers = config->worker_count();
  const rlim_t reserved = std::min(kReserved, limit.rlim_cur / 2);
  const rlim_t fits = limit.rlim_cur == RLIM_INFINITY
                          ? portico::kDefaultMaxConnections
                          : std::max<rlim_t>(1, (limit.rlim_cur - reserved) / 2 / workers);
  if (config->max_connections == 0) {
    config->max_connections =
        std::max<size_t>(1, std::min<size_t>(portico::kDefaultMaxConnections, fits));
  } else if (config->max_connections > fits) {
    portico::log_warn("portico", "open files limit ", static_cast<uint64_t>(limit.rlim_cur),
                      " carries ", static_cast<uint64_t>(fits), " tunnels per worker, fewer than",
                      " --max-connections ", config->max_connections,
                      "; raise it (ulimit -n, LimitNOFILE=) or lower --max-connections");
  }
}

// A start that cannot go on, once the log has begun: one line with its level, as every
// other event. (A bad command line is said before there is a log, as `portico: ...`, and route
// file errors as `file:line: ...`.)
int fail(const std::string& message) {
  portico::log_error("portico", message);
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
      std::fprintf(stderr, "portico: %s\n", parsed.error.c_str());
      return kExitConfigError;
    case ConfigResult::Action::kRun:
      break;
  }
  log_set_min_level(parsed.config.log_level);
  if (parsed.config.certificates.empty() && parsed.config.cert_dir.empty()) {
    // No certificate configured: the development certificate (tls/dev_certificate.h).
    const std::string state_dir =
        parsed.config.state_dir.empty() ? default_state_dir() : parsed.config.state_dir;
    DevCertificate dev =
        ensure_dev_certificate(state_dir, dev_certificate_names(parsed.config.dev_names));
    if (!dev.error.empty()) return fail(dev.error);
    log_warn("tls",
             "no --cert given: serving a self-signed certificate, for development only"
             " cert=",
             dev.cert_path, " generated=", dev.generated ? "yes" : "no");
    parsed.config.certificates.push_back({dev.cert_path, dev.key_path});
    parsed.config.dev_certificate = true;
  }
  fit_connections_to_open_files(&parsed.config);
  const Config& config = parsed.config;
  // The user is looked up before anything is bound: a typo must not leave a root proxy behind.
  // --check looks too, and at the access log: it promises what a start with the same flags does.
  std::string error;
  std::optional<RunAs> run_as;
  if (!config.user.empty()) {
    run_as = resolve_run_as(config.user, &error);
    if (!run_as) return fail(error);
  }
  if (config.check_only) {
    if (!AccessLog::can_open(config.access_log, &error)) return fail(error);
    return run_check(config, stdout, stderr);
  }

  ConfigInputs inputs = read_config_inputs(config);
  ConfigLoadResult loaded = build_config_snapshot(config, inputs);
  if (!loaded.snapshot) {
    for (const std::string& error : loaded.errors) std::fprintf(stderr, "%s\n", error.c_str());
    return kExitConfigError;
  }
  for (const std::string& warning : loaded.snapshot->warnings) log_warn("tls", warning);
  if (!config.acme_webroot.empty()) {
    if (std::string problem = acme_webroot_problem(config.acme_webroot); !problem.empty()) {
      log_warn("acme", "webroot ", problem);
    }
  }
  for (const CertificateInfo& cert : loaded.snapshot->certificates) {
    log_info("tls", "certificate file=", cert.cert_path, " type=", cert.key_type,
             " expires=", cert.not_after, " names=", cert.names.size());
  }

  AccessLog access_log;
  if (!access_log.open(config.access_log, &error)) return fail(error);
  access_log.set_format(config.log_format);

  // A peer that goes away mid-write must be an error code, not a signal that kills the proxy.
  signal(SIGPIPE, SIG_IGN);
  // Until the lead worker handles them: a reload or log-rotation signal sent while portico
  // starts must not end it with the default action.
  signal(SIGHUP, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);

  // The lead worker runs on this thread; the others each on their own (worker.h).
  const unsigned worker_count = config.worker_count();
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < worker_count; ++i) {
    workers.push_back(std::make_unique<Worker>(config, access_log, *loaded.snapshot));
  }
  Worker& lead = *workers.front();
  std::vector<Worker*> peers;
  for (size_t i = 1; i < workers.size(); ++i) peers.push_back(workers[i].get());
  lead.set_peers(peers);
  // Signals and watches first: once the "listening" lines are out, a SIGHUP must reload, not
  // kill the process with the default action.
  lead.handle_signals();
  const size_t route_count = loaded.snapshot->routes->routes().size();
  lead.watch_configuration(std::move(loaded.snapshot), std::move(inputs));
  if (!run_as && geteuid() == 0) {
    log_warn("portico",
             "running as root and staying root: give --user NAME to drop to an unprivileged "
             "user once the ports are bound");
  }
  if (!lead.listen(&error)) return fail(error);
  for (Worker* peer : peers) {
    if (!peer->listen_like(lead, &error)) return fail(error);
    peer->publish_metrics_every_second();
  }
  if (run_as) {
    if (!drop_privileges(*run_as, &error)) return fail(error);
    log_info("portico", "running as user=", run_as->name, " uid=", run_as->uid,
             " gid=", run_as->gid);
  }
  log_info("portico", "ready version=", PORTICO_VERSION, " routes=", route_count,
           " workers=", worker_count);
  std::vector<std::thread> threads;
  for (Worker* peer : peers) threads.emplace_back([peer] { peer->run(); });
  lead.run();
  for (std::thread& thread : threads) thread.join();
  log_info("portico", "stopped");
  return 0;
}

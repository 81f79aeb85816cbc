#include "proxy/check.h"

#include <arpa/inet.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "proxy/config_loader.h"
#include "proxy/probe.h"
#include "proxy/redirect_server.h"
#include "tls/tls_context.h"

namespace portico {
namespace {

// Probes run on threads, this many at a time: enough for any real route file to finish within
// a couple of timeouts, without a thread per backend of a huge one.
constexpr size_t kProbeConcurrency = 32;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

X509Ptr read_leaf(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) return nullptr;
  return X509Ptr(PEM_read_X509(file.get(), nullptr, no_passphrase, nullptr));
}

// The address bytes of an IP route host ("10.0.0.1", "[::1]"); empty for a DNS name.
std::string ip_bytes(const std::string& host) {
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    std::string inner = host.substr(1, host.size() - 2);
    if (inet_pton(AF_INET6, inner.c_str(), buf) == 1) {
      return std::string(reinterpret_cast<char*>(buf), 16);
    }
    return "";
  }
  if (inet_pton(AF_INET, host.c_str(), buf) == 1)
    return std::string(reinterpret_cast<char*>(buf), 4);
  return "";
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out.empty() ? "none" : out;
}

struct Tally {
  int failures = 0;
  int warnings = 0;
};

void check_certificate(const CertKeyFiles& pair, X509* leaf, FILE* out, Tally* tally) {
  const ASN1_TIME* not_after = X509_get0_notAfter(leaf);
  const ASN1_TIME* not_before = X509_get0_notBefore(leaf);
  int days = 0, seconds = 0;
  ASN1_TIME_diff(&days, &seconds, nullptr, not_after);  // from now to the expiry
  const std::string expires = format_asn1_time(not_after);
  if (X509_cmp_current_time(not_after) <= 0) {
    ++tally->failures;
    std::fprintf(out, "cert FAIL file=%s expires=%s days_left=%d detail=expired\n",
                 pair.cert.c_str(), expires.c_str(), days);
  } else if (days < kCertificateWarnDays) {
    ++tally->warnings;
    std::fprintf(out,
                 "cert WARN file=%s expires=%s days_left=%d detail=expires in less than %d days\n",
                 pair.cert.c_str(), expires.c_str(), days, kCertificateWarnDays);
  } else {
    std::fprintf(out, "cert PASS file=%s expires=%s days_left=%d\n", pair.cert.c_str(),
                 expires.c_str(), days);
  }
  if (X509_cmp_current_time(not_before) > 0) {
    ++tally->warnings;
    std::fprintf(out, "cert WARN file=%s detail=not valid before %s\n", pair.cert.c_str(),
                 format_asn1_time(not_before).c_str());
  }
  // The pair was checked when the TLS context was built; a mismatch never gets this far.
  std::fprintf(out, "cert PASS file=%s key=%s detail=the private key matches the certificate\n",
               pair.cert.c_str(), pair.key.c_str());
}

void check_hosts(const RouteTable& table, const std::vector<CertificateNames>& certificates,
                 FILE* out, Tally* tally) {
  std::set<std::string> seen;
  for (const Route& route : table.routes()) {
    if (route.host.empty() || !seen.insert(route.host).second) continue;
    const std::string ip = ip_bytes(route.host);
    std::string covered_by;
    for (const CertificateNames& names : certificates) {
      if (!ip.empty()) {
        for (size_t i = 0; i < names.ips.size() && covered_by.empty(); ++i) {
          // Named as the certificate shows it: an IPv6 address without its brackets.
          if (names.ips[i] == ip) {
            const bool bracketed = route.host.front() == '[';
            covered_by =
                "IP:" + (bracketed ? route.host.substr(1, route.host.size() - 2) : route.host);
          }
        }
      } else {
        for (const std::string& dns : names.dns) {
          if (certificate_name_covers(dns, route.host)) {
            covered_by = "DNS:" + dns;
            break;
          }
        }
      }
      if (!covered_by.empty()) break;
    }
    if (!covered_by.empty()) {
      std::fprintf(out, "host PASS host=%s line=%d detail=covered by %s\n", route.host.c_str(),
                   route.line, covered_by.c_str());
      continue;
    }
    ++tally->failures;
    std::vector<std::string> all;
    for (const CertificateNames& names : certificates) {
      all.insert(all.end(), names.shown.begin(), names.shown.end());
    }
    std::fprintf(out,
                 "host FAIL host=%s line=%d detail=not covered by the certificate's names "
                 "(%s)\n",
                 route.host.c_str(), route.line, joined(all).c_str());
  }
}

void run_probes(const ConfigSnapshot& snapshot, const Config& config, FILE* out, Tally* tally) {
  const RouteTable& table = *snapshot.routes;
  struct Task {
    std::string route;
    std::string backend;
    ProbeRequest request;
    ProbeResult result;
  };
  std::vector<Task> tasks;
  for (const Route& route : table.routes()) {
    for (const BackendAddress& backend : route.backends) {
      Task task;
      task.route = route.host + route.prefix;
      task.backend = backend.scheme + "://" + backend.authority();
      task.request.backend = backend;
      if (backend.scheme == "https") {
        task.request.tls =
            snapshot.upstream_tls[static_cast<size_t>(&route - table.routes().data())].get();
      }
      task.request.host_header = probe_host_for(route.host);
      task.request.path = route.prefix;
      task.request.websocket = route.options.upgrade == UpgradePolicy::kOnly;
      task.request.timeout = config.probe_timeout;
      tasks.push_back(std::move(task));
    }
  }
  for (size_t begin = 0; begin < tasks.size(); begin += kProbeConcurrency) {
    std::vector<std::thread> threads;
    for (size_t i = begin; i < tasks.size() && i < begin + kProbeConcurrency; ++i) {
      threads.emplace_back([task = &tasks[i]] { task->result = probe_backend(task->request); });
    }
    for (std::thread& t : threads) t.join();
  }
  for (const Task& task : tasks) {
    if (!task.result.pass) ++tally->failures;
    std::fprintf(out, "probe %s route=%s backend=%s detail=%s\n",
                 task.result.pass ? "PASS" : "FAIL", task.route.c_str(), task.backend.c_str(),
                 task.result.detail.c_str());
  }
}

}  // namespace

bool certificate_name_covers(std::string_view certificate_name, std::string_view route_host) {
  if (certificate_name.empty() || route_host.empty()) return false;
  if (certificate_name == route_host) return true;
  if (route_host.starts_with("*.")) return false;  // only the same wildcard covers a wildcard
  if (!certificate_name.starts_with("*.")) return false;
  const std::string_view suffix = certificate_name.substr(1);  // ".example.com"
  // At least two labels after the wildcard, so "*.com" style names cover nothing.
  if (suffix.find('.', 1) == std::string_view::npos) return false;
  if (route_host.size() <= suffix.size() || !route_host.ends_with(suffix)) return false;
  const std::string_view label = route_host.substr(0, route_host.size() - suffix.size());
  return label.find('.') == std::string_view::npos;
}

int run_check(const Config& config, FILE* out, FILE* err) {
  ConfigInputs inputs = read_config_inputs(config);
  ConfigLoadResult loaded = build_config_snapshot(config, inputs);
  if (!loaded.snapshot) {
    for (const std::string& error : loaded.errors) std::fprintf(err, "%s\n", error.c_str());
    std::fprintf(err, "portico: configuration is invalid errors=%zu\n", loaded.errors.size());
    return kCheckInvalid;
  }
  const RouteTable& table = *loaded.snapshot->routes;
  std::fputs(table.describe().c_str(), out);

  Tally tally;
  std::vector<CertificateNames> names;
  for (const CertificateInfo& info : loaded.snapshot->certificates) {
    // Every loaded certificate, --cert-dir's included, with what SNI selects it by.
    std::string shown;
    for (const std::string& name : info.names) shown += (shown.empty() ? "" : ",") + name;
    std::fprintf(out, "cert INFO file=%s key=%s type=%s names=%s expires=%s\n",
                 info.cert_path.c_str(), info.key_path.c_str(), info.key_type.c_str(),
                 shown.empty() ? "none" : shown.c_str(), info.not_after.c_str());
  }
  for (const CertificateInfo& info : loaded.snapshot->certificates) {
    const CertKeyFiles pair{info.cert_path, info.key_path};
    X509Ptr leaf = read_leaf(pair.cert);
    if (!leaf) {  // it loaded a moment ago; only a concurrent rewrite gets here
      ++tally.failures;
      std::fprintf(out, "cert FAIL file=%s detail=cannot read the certificate again\n",
                   pair.cert.c_str());
      continue;
    }
    check_certificate(pair, leaf.get(), out, &tally);
    names.push_back(certificate_names(leaf.get()));
  }
  check_hosts(table, names, out, &tally);
  if (!config.acme_webroot.empty()) {
    if (std::string problem = acme_webroot_problem(config.acme_webroot); !problem.empty()) {
      ++tally.warnings;
      std::fprintf(out, "acme WARN detail=%s\n", problem.c_str());
    }
  }
  if (config.probe) run_probes(*loaded.snapshot, config, out, &tally);

  std::fprintf(out, "portico: check %s routes=%zu failures=%d warnings=%d\n",
               tally.failures == 0 ? "passed" : "failed", table.routes().size(), tally.failures,
               tally.warnings);
  std::fflush(out);
  return tally.failures == 0 ? kCheckOk : kCheckFailed;
}

}  // namespace portico

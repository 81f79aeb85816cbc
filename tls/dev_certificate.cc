#include "tls/dev_certificate.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <memory>

#include "tls/tls_context.h"

namespace portico {
namespace {

constexpr int kValidDays = 90;
// Regenerate when less than this is left, so a long-running process does not start with a
// certificate that expires under it within the day.
constexpr long kMinRemainingSeconds = 24 * 3600;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool parse_ip(const std::string& name, std::string* bytes) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, name.c_str(), buf) == 1) {
    bytes->assign(reinterpret_cast<char*>(buf), 4);
    return true;
  }
  if (inet_pton(AF_INET6, name.c_str(), buf) == 1) {
    bytes->assign(reinterpret_cast<char*>(buf), 16);
    return true;
  }
  return false;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool covers(X509* cert, const std::vector<std::string>& names) {
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (!sans) return false;
  std::vector<std::string> dns, ips;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    const ASN1_STRING* s = name->type == GEN_DNS     ? name->d.dNSName
                           : name->type == GEN_IPADD ? name->d.iPAddress
                                                     : nullptr;
    if (!s) continue;
    std::string value(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<size_t>(ASN1_STRING_length(s)));
    (name->type == GEN_DNS ? dns : ips).push_back(name->type == GEN_DNS ? lower(value) : value);
  }
  GENERAL_NAMES_free(sans);
  for (const std::string& name : names) {
    std::string ip;
    const bool ok = parse_ip(name, &ip)
                        ? std::find(ips.begin(), ips.end(), ip) != ips.end()
                        : std::find(dns.begin(), dns.end(), lower(name)) != dns.end();
    if (!ok) return false;
  }
  return true;
}

bool still_usable(const std::string& cert_path, const std::string& key_path,
                  const std::vector<std::string>& names) {
  std::unique_ptr<FILE, int (*)(FILE*)> cf(std::fopen(cert_path.c_str(), "rb"), std::fclose);
  std::unique_ptr<FILE, int (*)(FILE*)> kf(std::fopen(key_path.c_str(), "rb"), std::fclose);
  if (!cf || !kf) return false;
  X509Ptr cert(PEM_read_X509(cf.get(), nullptr, no_passphrase, nullptr));
  PkeyPtr key(PEM_read_PrivateKey(kf.get(), nullptr, no_passphrase, nullptr));
  ERR_clear_error();
  if (!cert || !key || X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return false;
  }
  time_t soon = std::time(nullptr) + kMinRemainingSeconds;
  if (X509_cmp_time(X509_get0_notAfter(cert.get()), &soon) <= 0) return false;
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) return false;
  return covers(cert.get(), names);
}

bool add_ext(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// Written next to the target and renamed over it, so a crash never leaves half a PEM file
// behind; created with `mode` from the start, so the key is never readable by others.
bool write_atomically(const std::string& path, mode_t mode, const std::string& text,
                      std::string* error) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    *error = tmp + ": cannot create: " + std::strerror(errno);
    return false;
  }
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = tmp + ": cannot write: " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = path + ": cannot write: " + std::strerror(errno);
    return false;
  }
  return true;
}

std::string pem_of(X509* cert) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string pem_of(EVP_PKEY* key) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

bool generate(const std::string& cert_path, const std::string& key_path,
              const std::vector<std::string>& names, std::string* error) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  X509Ptr cert(X509_new());
  if (!key || !cert) {
    *error = "cannot generate the development key";
    return false;
  }
  X509* x = cert.get();
  X509_set_version(x, X509_VERSION_3);
  // 159 random bits: unique per certificate, positive (RFC 5280 section 4.1.2.2).
  std::unique_ptr<BIGNUM, void (*)(BIGNUM*)> serial(BN_new(), BN_free);
  BN_rand(serial.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY);
  BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(x));
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);  // a slightly slow client clock still agrees
  X509_gmtime_adj(X509_getm_notAfter(x), 60L * 60 * 24 * kValidDays);
  X509_set_pubkey(x, key.get());
  X509_NAME* subject = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("portico development"), -1, -1,
                             0);
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(names.front().c_str()), -1, -1,
                             0);
  X509_set_issuer_name(x, subject);
  std::string san;
  for (const std::string& name : names) {
    std::string ip;
    if (!san.empty()) san += ',';
    san += (parse_ip(name, &ip) ? "IP:" : "DNS:") + name;
  }
  // A leaf that is its own trust anchor: clients trust exactly this file (curl --cacert).
  if (!add_ext(x, NID_basic_constraints, "critical,CA:FALSE") ||
      !add_ext(x, NID_key_usage, "critical,digitalSignature") ||
      !add_ext(x, NID_ext_key_usage, "serverAuth") ||
      !add_ext(x, NID_subject_key_identifier, "hash") || !add_ext(x, NID_subject_alt_name, san) ||
      X509_sign(x, key.get(), EVP_sha256()) == 0) {
    ERR_clear_error();
    *error = "cannot make the development certificate (names: " + san + ")";
    return false;
  }
  return write_atomically(key_path, 0600, pem_of(key.get()), error) &&
         write_atomically(cert_path, 0644, pem_of(x), error);
}

}  // namespace

std::string default_state_dir() {
  const char* xdg = std::getenv("XDG_STATE_HOME");
  if (xdg && *xdg == '/') return std::string(xdg) + "/portico";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/state/portico";
}

std::vector<std::string> dev_certificate_names(const std::vector<std::string>& extra_names) {
  std::vector<std::string> names = {"localhost", "127.0.0.1", "::1"};
  for (const std::string& name : extra_names) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  return names;
}

DevCertificate ensure_dev_certificate(const std::string& state_dir,
                                      const std::vector<std::string>& names) {
  DevCertificate result;
  std::error_code ec;
  const bool created = std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    result.error = state_dir + ": cannot create the state directory: " + ec.message();
    return result;
  }
  // The directory holds a private key: one portico makes is for its owner alone. One that
  // already existed keeps its mode (--state-dir /var/lib must not become 0700, nor /tmp lose
  // its sticky bit); the key file itself is 0600 either way.
  if (created && ::chmod(state_dir.c_str(), 0700) != 0) {
    result.error = state_dir + ": cannot make it private (0700): " + std::strerror(errno);
    return result;
  }
  result.cert_path = state_dir + "/dev-cert.pem";
  result.key_path = state_dir + "/dev-key.pem";
  if (still_usable(result.cert_path, result.key_path, names)) return result;
  if (!generate(result.cert_path, result.key_path, names, &result.error)) return result;
  result.generated = true;
  return result;
}

}  // namespace portico

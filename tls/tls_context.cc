#include "tls/tls_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string_view>

#include "tls/ticket_keys.h"

namespace portico {

std::string openssl_error_text() {
  unsigned long code = ERR_peek_last_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof buf);
  const char* reason = ERR_reason_error_string(code);
  return reason ? reason : buf;
}

int no_passphrase(char*, int, int, void*) { return -1; }

namespace {

// TLS 1.2 sessions kept in the server-side cache (clients without ticket support), and how
// long a session may be resumed: as long as a ticket key lives at most.
constexpr long kSessionCacheSize = 20'000;
constexpr long kSessionTimeoutSeconds = 12 * 3600;
// The contexts' own id context, the same on all of them. It never decides a resumption: every
// connection gets its certificate group's id context (resume_within_group) before OpenSSL
// looks a session up, and SSL_set_SSL_CTX then leaves it alone (it copies the new context's id
// context only over one still equal to the old context's).
constexpr unsigned char kSessionIdContext[] = "portico";

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// One certificate chain (leaf first) and its key, parsed once and put into every context that
// serves it: the shared one and each thread's copy (TlsContextSet).
struct CertifiedKey {
  std::vector<X509Ptr> chain;
  PkeyPtr key;
};

FilePtr open_file(const std::string& path, std::string* error) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {  // fopen opens one, and it then reads as empty
    *error = path + ": cannot read: " + std::strerror(EISDIR);
    return nullptr;
  }
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) *error = path + ": cannot read: " + std::strerror(errno);
  return FilePtr(f);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string subject_of(X509* cert) {
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  return buf;
}

std::string key_type_of(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
      return "ECDSA";
    case EVP_PKEY_RSA:
      return "RSA";
    default:
      return EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown";
  }
}

// RFC 7301: pick http/1.1 when offered; a client that offers ALPN without it gets the
// no_application_protocol alert (below). One that offers no ALPN at all is served HTTP/1.1.
// The protocol portico speaks that the client offered: http/1.1, else http/1.0 (which
// `curl --http1.0` offers alone; NGINX takes it too, and portico serves HTTP/1.0 requests).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  for (const std::string_view wanted :
       {std::string_view("http/1.1"), std::string_view("http/1.0")}) {
    unsigned int i = 0;
    while (i < inlen) {
      unsigned int len = in[i];
      if (i + 1 + len > inlen) break;
      if (len == wanted.size() && std::memcmp(in + i + 1, wanted.data(), len) == 0) {
        *out = in + i + 1;
        *outlen = static_cast<unsigned char>(len);
        return SSL_TLSEXT_ERR_OK;
      }
      i += 1 + len;
    }
  }
  // RFC 7301 section 3.2: a client that offers only protocols the server does not speak (h2
  // alone, say) gets the no_application_protocol alert, not an HTTP/1.1 it did not ask for.
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

// The certificate group of a handshake, found once from the ClientHello (resume_within_group)
// and kept on the connection for the SNI callback: stored as group + 1, so 0 means not yet.
int group_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

size_t group_of_handshake(SSL* ssl, const TlsContextSet& set) {
  const auto stored = reinterpret_cast<uintptr_t>(SSL_get_ex_data(ssl, group_index()));
  if (stored != 0) return stored - 1;
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  return set.group_of(name != nullptr ? name : "");
}

// No SNI, or a name no certificate covers: the default context answers (RFC 6066 section 3 lets
// the server go on; most clients then fail the name check with a clear error of their own).
// OpenSSL calls this for every ClientHello, with or without a name, so that every handshake
// moves to its thread's own copy of the context.
int select_by_servername(SSL* ssl, int*, void* arg) {
  const auto* set = static_cast<const TlsContextSet*>(arg);
  const size_t group = group_of_handshake(ssl, *set);
  SSL_CTX* chosen = set->context_for_this_thread(group);
  if (chosen == nullptr) chosen = set->shared_context(group);  // null: the default one
  if (chosen != nullptr) SSL_set_SSL_CTX(ssl, chosen);
  return SSL_TLSEXT_ERR_OK;
}

// The host name of a ClientHello's server_name extension (RFC 6066 section 3), or empty: none
// sent, or malformed (OpenSSL refuses those itself, right after this callback).
std::string_view client_hello_server_name(SSL* ssl) {
  const unsigned char* data = nullptr;
  size_t size = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &data, &size) != 1 || size < 2) {
    return {};
  }
  const size_t list_size = (size_t{data[0]} << 8) | data[1];
  if (list_size != size - 2) return {};
  size_t at = 2;
  while (at + 3 <= size) {
    const unsigned char type = data[at];
    const size_t name_size = (size_t{data[at + 1]} << 8) | data[at + 2];
    at += 3;
    if (at + name_size > size) return {};
    if (type == TLSEXT_NAMETYPE_host_name) {
      return {reinterpret_cast<const char*>(data + at), name_size};
    }
    at += name_size;
  }
  return {};
}

// RFC 6066 section 3: a server MUST NOT resume a session under a different name. Sessions are
// kept apart per certificate group instead (as NGINX keeps them per server{}): a client may
// resume under any name the same certificates cover, which is also what TLS 1.3 lets a client
// do (RFC 8446 section 4.6.1), and never under a name another certificate serves. This must run
// from the ClientHello callback: OpenSSL looks the session or ticket up, and checks its id
// context, before the SNI callback would have a say.
int resume_within_group(SSL* ssl, int*, void* arg) {
  const auto* set = static_cast<const TlsContextSet*>(arg);
  const size_t group = set->group_of(client_hello_server_name(ssl));
  SSL_set_ex_data(ssl, group_index(), reinterpret_cast<void*>(uintptr_t{group + 1}));
  const auto& id_context = set->session_id_context(group);
  SSL_set_session_id_context(ssl, id_context.data(), static_cast<unsigned int>(id_context.size()));
  return SSL_CLIENT_HELLO_SUCCESS;
}

int set_index() {
  static const int index = SSL_CTX_get_ex_new_index(
      0, nullptr, nullptr, nullptr, [](void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
        delete static_cast<TlsContextSet*>(ptr);
      });
  return index;
}

// Marks a thread's own copy (TlsContextSet::is_thread_own).
int own_copy_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Everything but the certificates; the same on every context, since after SSL_set_SSL_CTX
// OpenSSL reads some settings (ALPN, certificates) from the new context and others (versions,
// options) from the connection, which copied them from the default one.
SslCtxPtr new_context(const TlsOptions& options, std::string* error) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    *error = "cannot create TLS context: " + openssl_error_text();
    return ctx;
  }
  SSL_CTX* c = ctx.get();
  SSL_CTX_set_min_proto_version(c, options.min_version);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  // The server's order wins, except that a client listing ChaCha20-Poly1305 first gets it: such
  // a client (a phone without AES instructions) says AES would be slow for it. Caddy (Go's
  // crypto/tls) and BoringSSL servers choose the same way.
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                             SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
  // Mozilla "intermediate" for TLS 1.2: forward secrecy and AEAD only.
  SSL_CTX_set_cipher_list(c,
                          "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                          "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                          "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
  // And for TLS 1.3 the same order (Mozilla's too): AES-128-GCM costs less per byte than
  // AES-256-GCM (10 AES rounds instead of 14) and its SHA-256 transcript less than SHA-384.
  SSL_CTX_set_ciphersuites(c, kTls13Ciphersuites);
  SSL_CTX_set1_groups_list(c, "X25519:P-256:P-384");
  // OpenSSL frees its record buffers whenever they are empty: right for the handshake and for
  // connections that are mostly idle (their heap stays compact). A busy connection turns this
  // off for itself (TlsStream::keep_buffers) until it is quiet. Partial writes may move.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                          SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(c, kSessionCacheSize);
  SSL_CTX_set_timeout(c, kSessionTimeoutSeconds);
  SSL_CTX_set_session_id_context(c, kSessionIdContext, sizeof kSessionIdContext - 1);
  TicketKeyStore::install(c);
  // One TLS 1.3 ticket after a full handshake instead of OpenSSL's two (a resumption gets one
  // either way), as Go's crypto/tls, and so Caddy, sends: browsers use a ticket once and get a
  // new one with each resumed connection, so the second mostly goes unused, while each costs
  // the server a session encryption and the client a session copy per handshake.
  SSL_CTX_set_num_tickets(c, 1);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  return ctx;
}

// Every certificate of a chain file must have been issued by the next one: a misordered file
// makes some clients fail and others silently repair it, the worst kind of bug to chase.
bool check_chain_order(const std::string& path, const std::vector<X509Ptr>& chain,
                       std::string* error) {
  for (size_t i = 1; i < chain.size(); ++i) {
    X509* child = chain[i - 1].get();
    X509* issuer = chain[i].get();
    EVP_PKEY* issuer_key = X509_get0_pubkey(issuer);
    if (X509_check_issued(issuer, child) != X509_V_OK || issuer_key == nullptr ||
        X509_verify(child, issuer_key) != 1) {
      ERR_clear_error();
      *error = path + ": chain out of order: certificate " + std::to_string(i + 1) + " (" +
               subject_of(issuer) + ") did not issue certificate " + std::to_string(i) + " (" +
               subject_of(child) + "); the leaf must come first, then each issuer in turn";
      return false;
    }
  }
  return true;
}

struct LoadedPair {
  CertificateFiles files;
  CertificateInfo info;
  std::string names_key;  // the sorted names: certificates with the same key share a context
  std::shared_ptr<const CertifiedKey> certified;  // what the files hold, read once
};

// Reads and checks one pair without touching any context, so that each failure names its file.
bool inspect_pair(const CertificateFiles& files, const TlsOptions& options, LoadedPair* out,
                  TlsContextResult* result) {
  std::string* error = &result->error;
  FilePtr cert_file = open_file(files.cert_path, error);
  if (!cert_file) return false;
  std::vector<X509Ptr> chain;
  while (X509* cert = PEM_read_X509(cert_file.get(), nullptr, no_passphrase, nullptr)) {
    chain.emplace_back(cert);
  }
  // The end of the file reads as "no start line"; any other error is a block that does not
  // parse (a file cut short while it was written): refused, as NGINX does, rather than a chain
  // served without its intermediate. Text between blocks is allowed, as everywhere in PEM.
  const unsigned long last = ERR_peek_last_error();
  ERR_clear_error();
  if (last != 0 &&
      !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
    *error = files.cert_path + ": certificate " + std::to_string(chain.size() + 1) +
             " is not valid PEM (the file may be cut short)";
    return false;
  }
  if (chain.empty()) {
    *error = files.cert_path + ": not a PEM certificate";
    return false;
  }
  X509* leaf = chain.front().get();
  FilePtr key_file = open_file(files.key_path, error);
  if (!key_file) return false;
  std::unique_ptr<EVP_PKEY, PkeyFree> key(
      PEM_read_PrivateKey(key_file.get(), nullptr, no_passphrase, nullptr));
  if (!key) {
    ERR_clear_error();
    *error = files.key_path + ": not a PEM private key (or it is encrypted)";
    return false;
  }
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    for (size_t i = 1; i < chain.size(); ++i) {
      if (X509_check_private_key(chain[i].get(), key.get()) == 1) {
        *error = files.cert_path + ": chain out of order: the certificate of " + files.key_path +
                 " is number " + std::to_string(i + 1) + "; the leaf must come first";
        return false;
      }
    }
    ERR_clear_error();
    *error = files.key_path + ": private key does not match the certificate in " + files.cert_path;
    return false;
  }
  if (!check_chain_order(files.cert_path, chain, error)) return false;

  out->files = files;
  out->info.cert_path = files.cert_path;
  out->info.key_path = files.key_path;
  out->info.key_type = key_type_of(key.get());
  out->info.names = certificate_names(leaf).shown;
  out->info.not_after = format_asn1_time(X509_get0_notAfter(leaf));
  out->info.expired = X509_cmp_current_time(X509_get0_notAfter(leaf)) <= 0;
  if (out->info.expired) {
    std::string line = files.cert_path + ": certificate expired on " + out->info.not_after;
    if (options.strict) {
      *error = line + " (--strict)";
      return false;
    }
    result->warnings.push_back(line + "; clients will refuse it");
  }
  std::vector<std::string> sorted = out->info.names;
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& name : sorted) out->names_key += name + ",";
  auto certified = std::make_shared<CertifiedKey>();
  certified->chain = std::move(chain);
  certified->key = std::move(key);
  out->certified = std::move(certified);
  return true;
}

// The chain as OpenSSL sends it: leaf first, then intermediates. A second pair with another key
// type goes into its own slot (OpenSSL keeps one per type).
bool install_pair(SSL_CTX* ctx, const CertifiedKey& pair) {
  STACK_OF(X509)* intermediates = sk_X509_new_null();
  if (intermediates == nullptr) return false;
  for (size_t i = 1; i < pair.chain.size(); ++i) sk_X509_push(intermediates, pair.chain[i].get());
  // OpenSSL takes its own references to all three.
  const bool ok = SSL_CTX_use_cert_and_key(ctx, pair.chain.front().get(), pair.key.get(),
                                           intermediates, /*override=*/1) == 1;
  sk_X509_free(intermediates);
  return ok;
}

bool load_pair(SSL_CTX* ctx, const LoadedPair& pair, std::string* error) {
  if (!install_pair(ctx, *pair.certified) || SSL_CTX_check_private_key(ctx) != 1) {
    *error = pair.files.cert_path + ": cannot use certificate and key " + pair.files.key_path +
             ": " + openssl_error_text();
    return false;
  }
  return true;
}

}  // namespace

std::string format_asn1_time(const ASN1_TIME* time) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(time, &tm) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

struct TlsContextSet::Group {
  SslCtxPtr shared;  // null for the default context: it owns the set
  std::vector<std::shared_ptr<const CertifiedKey>> pairs;
  // SHA-256 of the names the group's certificates cover: what a session made under this group
  // carries, the same across reloads that keep those names (tickets outlive a reload).
  SessionIdContext session_id_context{};
};

TlsContextSet::TlsContextSet() = default;
TlsContextSet::~TlsContextSet() = default;

size_t TlsContextSet::group_of(std::string_view server_name) const {
  std::string name = lower(server_name);
  if (!name.empty() && name.back() == '.') name.pop_back();  // "example.com." is the same host
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    // RFC 6125 section 6.4.3: a wildcard covers exactly one leftmost label.
    size_t dot = name.find('.');
    if (dot == std::string::npos || dot == 0) return 0;
    it = by_name_.find("*" + name.substr(dot));
    if (it == by_name_.end()) return 0;
  }
  return it->second;
}

const TlsContextSet::SessionIdContext& TlsContextSet::session_id_context(size_t group) const {
  return groups_[group]->session_id_context;
}

SSL_CTX* TlsContextSet::shared_context(size_t group) const { return groups_[group]->shared.get(); }

SslCtxPtr TlsContextSet::make_copy(const Group& group) const {
  std::string error;
  SslCtxPtr ctx = new_context(options_, &error);
  if (!ctx) return ctx;
  for (const auto& pair : group.pairs) {
    if (!install_pair(ctx.get(), *pair)) {
      ERR_clear_error();
      return nullptr;
    }
  }
  static int marker;
  SSL_CTX_set_ex_data(ctx.get(), own_copy_index(), &marker);
  return ctx;
}

// The lock is held for a map lookup per handshake; the copies are made once per thread and
// configuration, on that thread's first handshake.
SSL_CTX* TlsContextSet::context_for_this_thread(size_t group) const {
  std::lock_guard lock(copies_mutex_);
  std::vector<SslCtxPtr>& own = copies_[std::this_thread::get_id()];
  if (own.empty()) {
    for (const auto& g : groups_) own.push_back(make_copy(*g));
  }
  return own[group].get();
}

bool TlsContextSet::is_thread_own(const SSL_CTX* ctx) {
  return SSL_CTX_get_ex_data(ctx, own_copy_index()) != nullptr;
}

const TlsContextSet* TlsContextSet::of(SSL_CTX* default_ctx) {
  return static_cast<const TlsContextSet*>(SSL_CTX_get_ex_data(default_ctx, set_index()));
}

TlsContextResult make_server_tls_context(const std::vector<CertificateFiles>& certificates,
                                         const TlsOptions& options) {
  TlsContextResult result;
  if (certificates.empty()) {
    result.error = "no certificate given";
    return result;
  }
  std::vector<LoadedPair> pairs(certificates.size());
  for (size_t i = 0; i < certificates.size(); ++i) {
    if (!inspect_pair(certificates[i], options, &pairs[i], &result)) return result;
    result.certificates.push_back(pairs[i].info);
  }

  // One context per distinct name set, in the order of first appearance.
  std::vector<std::string> group_keys;
  std::vector<SslCtxPtr> contexts;
  std::vector<std::vector<const LoadedPair*>> members;
  for (const LoadedPair& pair : pairs) {
    auto found = std::find(group_keys.begin(), group_keys.end(), pair.names_key);
    size_t g = static_cast<size_t>(found - group_keys.begin());
    if (found == group_keys.end()) {
      group_keys.push_back(pair.names_key);
      contexts.push_back(new_context(options, &result.error));
      if (!contexts.back()) return result;
      members.emplace_back();
    }
    for (const LoadedPair* other : members[g]) {
      if (other->info.key_type == pair.info.key_type) {
        result.error = pair.files.cert_path + ": same names and key type (" + pair.info.key_type +
                       ") as " + other->files.cert_path + ": one of them would never be served";
        return result;
      }
    }
    members[g].push_back(&pair);
    if (!load_pair(contexts[g].get(), pair, &result.error)) return result;
  }

  auto set = std::make_unique<TlsContextSet>();
  set->options_ = options;
  for (size_t g = 0; g < contexts.size(); ++g) {
    auto group = std::make_unique<TlsContextSet::Group>();
    if (g != 0) {
      SSL_CTX_up_ref(contexts[g].get());
      group->shared.reset(contexts[g].get());
    }
    for (const LoadedPair* pair : members[g]) group->pairs.push_back(pair->certified);
    const std::string id_input = "portico session id context: " + group_keys[g];
    if (EVP_Digest(id_input.data(), id_input.size(), group->session_id_context.data(), nullptr,
                   EVP_sha256(), nullptr) != 1) {
      result.error = "cannot hash the session id context: " + openssl_error_text();
      return result;
    }
    set->groups_.push_back(std::move(group));
    for (const std::string& name : members[g].front()->info.names) {
      if (!name.starts_with("DNS:")) continue;   // SNI never carries an address (RFC 6066)
      set->by_name_.emplace(name.substr(4), g);  // the first certificate for a name wins
    }
  }
  SSL_CTX* default_ctx = contexts.front().get();
  SSL_CTX_set_client_hello_cb(default_ctx, resume_within_group, set.get());
  SSL_CTX_set_tlsext_servername_callback(default_ctx, select_by_servername);
  SSL_CTX_set_tlsext_servername_arg(default_ctx, set.get());
  SSL_CTX_set_ex_data(default_ctx, set_index(), set.release());
  result.ctx = std::move(contexts.front());
  return result;
}

CertificateNames certificate_names(X509* leaf) {
  CertificateNames names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(leaf, NID_subject_alt_name, nullptr, nullptr));
  if (!sans) return names;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(sans, i);
    if (name->type == GEN_DNS) {
      const ASN1_IA5STRING* s = name->d.dNSName;
      std::string dns =
          lower(std::string_view(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                 static_cast<size_t>(ASN1_STRING_length(s))));
      names.shown.push_back("DNS:" + dns);
      names.dns.push_back(std::move(dns));
    } else if (name->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = name->d.iPAddress;
      std::string bytes(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
      char text[INET6_ADDRSTRLEN] = "?";
      if (bytes.size() == 4 || bytes.size() == 16) {
        inet_ntop(bytes.size() == 4 ? AF_INET : AF_INET6, bytes.data(), text, sizeof text);
      }
      names.shown.push_back(std::string("IP:") + text);
      names.ips.push_back(std::move(bytes));
    }
  }
  GENERAL_NAMES_free(sans);
  return names;
}

}  // namespace portico

// TLS done right (docs/tls.md), end to end with the real binary and real clients: certificates by
// SNI (pairs and --cert-dir), ECDSA+RSA for one name, resumption, --tls-min, HSTS, the ACME
// webroot, the development certificate, and one clear line per certificate error.

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

const char kRequest[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

// openssl s_client against portico, sending one request and reading until portico closes (so
// that TLS 1.3 tickets, sent after the handshake, are received). SNI localhost unless `args`
// name another (-servername) or none (-noservername).
CommandResult s_client(uint16_t port, std::vector<std::string> args) {
  std::vector<std::string> argv = {"openssl", "s_client", "-connect",
                                   "127.0.0.1:" + std::to_string(port), "-ign_eof"};
  if (std::find(args.begin(), args.end(), "-servername") == args.end() &&
      std::find(args.begin(), args.end(), "-noservername") == args.end()) {
    argv.insert(argv.end(), {"-servername", "localhost"});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, kRequest);
}

// What `portico ARGS` says when it refuses to start.
CommandResult run_portico(const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  argv.reserve(args.size() + 1);
  argv.emplace_back(PORTICO_BINARY);
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, "", 20s);
}

std::string subject_for(uint16_t port, const std::string& ca, const std::string& sni) {
  TlsClientOptions options;
  options.sni = sni;
  options.ca_file = ca;
  options.verify_hostname = false;
  RawTlsClient client(port, options);
  return client.peer_subject();
}

}  // namespace

TEST_CASE("tls: several --cert/--key pairs are chosen by SNI, wildcards cover one label", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert first = issue_cert(dir, ca, {{"localhost", "127.0.0.1"}, "first"});
  TestCert a = issue_cert(dir, ca, {{"a.test"}, "a"});
  TestCert wild = issue_cert(dir, ca, {{"*.wild.test"}, "wild"});
  PorticoProcess portico(
      dir, "/ http://127.0.0.1:9\n",
      TlsArgs{{"--cert", first.fullchain, "--key", first.key, "--cert", a.fullchain, "--key", a.key,
               "--cert", wild.fullchain, "--key", wild.key}},
      {"--http-port", "0"});
  const uint16_t port = portico.https_port();
  CHECK(subject_for(port, ca.cert, "a.test").find("CN=a.test") != std::string::npos);
  CHECK(subject_for(port, ca.cert, "x.wild.test").find("CN=*.wild.test") != std::string::npos);
  CHECK(subject_for(port, ca.cert, "x.y.wild.test").find("CN=localhost") != std::string::npos);
  CHECK(subject_for(port, ca.cert, "other.test").find("CN=localhost") != std::string::npos);
  CHECK(subject_for(port, ca.cert, "").find("CN=localhost") != std::string::npos);  // no SNI

  // A verifying client gets a valid chain for its name.
  CommandResult r =
      run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca.cert,
                   "--resolve", "a.test:" + std::to_string(port) + ":127.0.0.1",
                   "https://a.test:" + std::to_string(port) + "/"});
  INFO(r.describe());
  CHECK(r.exit_code == 0);
  CHECK(r.stdout == "502");  // the route's backend is down: TLS itself verified

  // --check lists every certificate with its names and expiry.
  CommandResult check =
      run_portico({"--check", "--routes", portico.routes_path(), "--cert", first.fullchain, "--key",
                   first.key, "--cert", a.fullchain, "--key", a.key});
  INFO(check.describe());
  CHECK(check.stdout.find("cert INFO file=" + a.fullchain + " key=" + a.key +
                          " type=ECDSA names=DNS:a.test expires=") != std::string::npos);
  CHECK(check.stdout.find("cert INFO file=" + first.fullchain + " key=" + first.key +
                          " type=ECDSA names=DNS:localhost,IP:127.0.0.1 expires=") !=
        std::string::npos);
}

TEST_CASE("tls: an ECDSA and an RSA certificate for one name: each client gets what it supports",
          "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert ec = issue_cert(dir, ca, {{"localhost"}, "ec"});
  CertOptions rsa_options{{"localhost"}, "rsa"};
  rsa_options.key_type = KeyType::kRsa2048;
  TestCert rsa = issue_cert(dir, ca, rsa_options);
  PorticoProcess portico(
      dir, "/ http://127.0.0.1:9\n",
      TlsArgs{{"--cert", ec.fullchain, "--key", ec.key, "--cert", rsa.fullchain, "--key", rsa.key}},
      {"--http-port", "0"});
  for (const char* version : {"-tls1_2", "-tls1_3"}) {
    INFO(version);
    CommandResult any = s_client(portico.https_port(), {version, "-CAfile", ca.cert});
    CHECK(any.stdout.find("Server public key is 256 bit") != std::string::npos);
    CHECK(any.stdout.find("Verify return code: 0 (ok)") != std::string::npos);
    CommandResult rsa_only =
        s_client(portico.https_port(),
                 {version, "-CAfile", ca.cert, "-sigalgs", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256"});
    INFO(rsa_only.describe());
    CHECK(rsa_only.stdout.find("Server public key is 2048 bit") != std::string::npos);
    CHECK(rsa_only.stdout.find("Verify return code: 0 (ok)") != std::string::npos);
  }
}

TEST_CASE("tls: --cert-dir loads NAME.crt/NAME.key pairs and certbot live/NAME/ folders", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert a = issue_cert(dir, ca, {{"a.test"}, "a"});
  TestCert b = issue_cert(dir, ca, {{"b.test"}, "b"});
  namespace fs = std::filesystem;
  const fs::path certs = dir.file("certs");
  fs::create_directories(certs / "b.test");
  fs::copy_file(a.fullchain, certs / "a.crt");
  fs::copy_file(a.key, certs / "a.key");
  // certbot: live/NAME/{fullchain,privkey}.pem are links into archive/.
  fs::create_symlink(b.fullchain, certs / "b.test" / "fullchain.pem");
  fs::create_symlink(b.key, certs / "b.test" / "privkey.pem");
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", TlsArgs{{"--cert-dir", certs.string()}},
                         {"--http-port", "0"});
  CHECK(subject_for(portico.https_port(), ca.cert, "a.test").find("CN=a.test") !=
        std::string::npos);
  CHECK(subject_for(portico.https_port(), ca.cert, "b.test").find("CN=b.test") !=
        std::string::npos);
  CHECK(subject_for(portico.https_port(), ca.cert, "").find("CN=a.test") != std::string::npos);

  // A live/NAME/ folder made first and filled later (by hand, or by a slow tool) is loaded
  // once its files arrive: the folder is watched from when it appears.
  TestCert c = issue_cert(dir, ca, {{"c.test"}, "c"});
  fs::create_directories(certs / "c.test");
  std::this_thread::sleep_for(1s);  // the folder's reload ("nothing to do") comes and goes
  fs::copy_file(c.key, certs / "c.test" / "privkey.pem");
  fs::copy_file(c.fullchain, certs / "c.test" / "fullchain.pem");
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served =
        subject_for(portico.https_port(), ca.cert, "c.test").find("CN=c.test") != std::string::npos;
    if (!served) std::this_thread::sleep_for(100ms);
  }
  CHECK(served);

  // A certificate without its key is refused at start, naming the file.
  const fs::path lonely = dir.file("lonely");
  fs::create_directories(lonely);
  fs::copy_file(a.fullchain, lonely / "c.crt");
  CommandResult r = run_portico({"--routes", portico.routes_path(), "--cert-dir", lonely.string(),
                                 "--https-port", "0", "--http-port", "0"});
  INFO(r.describe());
  CHECK(r.exit_code == 2);
  CHECK(r.stderr.find((lonely / "c.crt").string() + ": no matching key file") != std::string::npos);

  // Links that point nowhere (a broken renewal) are errors naming the file, not skipped.
  for (const char* layout : {"pair", "certbot"}) {
    INFO(layout);
    const fs::path broken = dir.file(std::string("broken-") + layout);
    fs::create_directories(broken / "d.test");
    fs::path crt =
        std::string(layout) == "pair" ? broken / "d.crt" : broken / "d.test" / "fullchain.pem";
    fs::path key =
        std::string(layout) == "pair" ? broken / "d.key" : broken / "d.test" / "privkey.pem";
    fs::create_symlink(dir.file("gone.pem"), crt);
    fs::create_symlink(a.key, key);
    fs::copy_file(a.fullchain, broken / "a.crt");
    fs::copy_file(a.key, broken / "a.key");
    CommandResult broken_run =
        run_portico({"--routes", portico.routes_path(), "--cert-dir", broken.string(),
                     "--https-port", "0", "--http-port", "0"});
    INFO(broken_run.describe());
    CHECK(broken_run.exit_code == 2);
    CHECK(broken_run.stderr.find(crt.string() + ": cannot read: No such file or directory") !=
          std::string::npos);
  }
}

TEST_CASE("tls: sessions resume, TLS 1.2 (cache and tickets) and TLS 1.3 (tickets)", "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", cert, {"--http-port", "0"});
  for (const std::string version : {"-tls1_2", "-tls1_3"}) {
    INFO(version);
    const std::string session = dir.file("session" + version);
    CommandResult first = s_client(portico.https_port(), {version, "-sess_out", session});
    INFO(first.describe());
    CHECK(first.stdout.find("New, TLSv1.") != std::string::npos);
    CommandResult second = s_client(portico.https_port(), {version, "-sess_in", session});
    INFO(second.describe());
    const std::string expected = version == "-tls1_2" ? "Reused, TLSv1.2" : "Reused, TLSv1.3";
    CHECK(second.stdout.find(expected) != std::string::npos);
    if (version == "-tls1_3") {
      // One ticket after a full handshake (OpenSSL would send two), and a resumed TLS 1.3
      // connection gets a fresh one, so a client reconnecting in a loop resumes every time,
      // not every other time.
      CHECK(count_of(first.stdout, "Post-Handshake New Session Ticket arrived") == 1);
      CHECK(count_of(second.stdout, "Post-Handshake New Session Ticket arrived") == 1);
    }
  }
  // TLS 1.2 without tickets: the server-side session cache.
  const std::string session = dir.file("session-cache");
  s_client(portico.https_port(), {"-tls1_2", "-no_ticket", "-sess_out", session});
  CommandResult cached =
      s_client(portico.https_port(), {"-tls1_2", "-no_ticket", "-sess_in", session});
  CHECK(cached.stdout.find("Reused, TLSv1.2") != std::string::npos);
}

TEST_CASE("tls: a session resumes only under a name its certificate covers (RFC 6066 3)", "[tls]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  TestCert first = issue_cert(dir, ca, {{"localhost", "127.0.0.1"}, "first"});
  TestCert ab = issue_cert(dir, ca, {{"a.test", "b.test"}, "ab"});
  TestCert c = issue_cert(dir, ca, {{"c.test"}, "c"});
  PorticoProcess portico(
      dir, "/ http://127.0.0.1:9\n",
      TlsArgs{{"--cert", first.fullchain, "--key", first.key, "--cert", ab.fullchain, "--key",
               ab.key, "--cert", c.fullchain, "--key", c.key}},
      {"--http-port", "0"});
  const uint16_t port = portico.https_port();
  // What a client offering the session saved under a.test gets when it asks for `name`.
  auto resumed_as = [&](const std::vector<std::string>& version, const std::string& name) {
    const std::string session = dir.file("session-a");
    std::vector<std::string> out = version;
    out.insert(out.end(), {"-servername", "a.test", "-sess_out", session});
    CommandResult made = s_client(port, out);
    INFO(made.describe());
    CHECK(made.stdout.find("New, TLSv1.") != std::string::npos);
    std::vector<std::string> in = version;
    in.insert(in.end(), {"-sess_in", session});
    if (name.empty()) {
      in.push_back("-noservername");
    } else {
      in.insert(in.end(), {"-servername", name});
    }
    CommandResult again = s_client(port, in);
    INFO(again.describe());
    if (again.stdout.find("Reused, TLSv1.") != std::string::npos) return std::string("reused");
    if (again.stdout.find("New, TLSv1.") != std::string::npos) return std::string("new");
    return std::string("failed");
  };
  const std::vector<std::vector<std::string>> versions = {
      {"-tls1_3"}, {"-tls1_2"}, {"-tls1_2", "-no_ticket"}};
  for (const auto& version : versions) {
    INFO((version.size() == 2 ? std::string("TLS 1.2, session cache") : version[0]));
    CHECK(resumed_as(version, "a.test") == "reused");
    CHECK(resumed_as(version, "B.test") == "reused");  // the same certificate covers it
    // Another certificate's name, the default certificate's, or none: a full handshake.
    CHECK(resumed_as(version, "c.test") == "new");
    CHECK(resumed_as(version, "localhost") == "new");
    CHECK(resumed_as(version, "") == "new");
  }

  // A reload that changes a certificate keeps the other groups' sessions and tickets: the id
  // context follows a group's names, not its place in the new set.
  const std::string session = dir.file("session-before-reload");
  CommandResult before = s_client(port, {"-tls1_3", "-servername", "a.test", "-sess_out", session});
  CHECK(before.stdout.find("New, TLSv1.3") != std::string::npos);
  TestCert c_renewed = issue_cert(dir, ca, {{"c.test"}, "c-renewed"});
  std::filesystem::copy_file(c_renewed.fullchain, c.fullchain,
                             std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(c_renewed.key, c.key,
                             std::filesystem::copy_options::overwrite_existing);
  const size_t from = portico.stderr_text().size();
  REQUIRE(portico.process().signal(SIGHUP));
  portico.process().wait_for_output("configuration reloaded routes=1 certificate=changed", 10s,
                                    Stream::kStderr, from);
  CommandResult after = s_client(port, {"-tls1_3", "-servername", "a.test", "-sess_in", session});
  INFO(after.describe());
  CHECK(after.stdout.find("Reused, TLSv1.3") != std::string::npos);
}

namespace {

// The suite s_client reports for a new session ("New, TLSv1.3, Cipher is NAME").
std::string negotiated_cipher(uint16_t port, std::vector<std::string> args) {
  CommandResult result = s_client(port, std::move(args));
  std::smatch m;
  static const std::regex kNew("New, TLSv1\\.[23], Cipher is ([A-Z0-9_-]+)");
  return std::regex_search(result.stdout, m, kNew) ? m[1].str() : "none: " + result.describe();
}

}  // namespace

TEST_CASE("tls: AES-128-GCM first in 1.3 and 1.2, ChaCha20 for a client that lists it first",
          "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", cert, {"--http-port", "0"});
  const uint16_t port = portico.https_port();
  // OpenSSL's client offers AES-256-GCM first; the server's order wins.
  CHECK(negotiated_cipher(port, {"-tls1_3"}) == "TLS_AES_128_GCM_SHA256");
  CHECK(negotiated_cipher(
            port, {"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"}) ==
        "TLS_AES_128_GCM_SHA256");
  CHECK(negotiated_cipher(port, {"-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"}) ==
        "TLS_AES_256_GCM_SHA384");
  // A client that puts ChaCha20 first (no AES instructions) gets it, in both versions.
  CHECK(negotiated_cipher(port, {"-tls1_3", "-ciphersuites",
                                 "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"}) ==
        "TLS_CHACHA20_POLY1305_SHA256");
  CHECK(negotiated_cipher(port, {"-tls1_2"}) == "ECDHE-ECDSA-AES128-GCM-SHA256");
  CHECK(negotiated_cipher(port, {"-tls1_2", "-cipher",
                                 "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"}) ==
        "ECDHE-ECDSA-AES128-GCM-SHA256");
  CHECK(negotiated_cipher(port, {"-tls1_2", "-cipher",
                                 "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"}) ==
        "ECDHE-ECDSA-CHACHA20-POLY1305");
}

TEST_CASE("tls: --tls-min 1.3 refuses TLS 1.2", "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", cert,
                         {"--http-port", "0", "--tls-min", "1.3"});
  CommandResult tls12 = s_client(portico.https_port(), {"-tls1_2"});
  CHECK(tls12.stdout.find("New, TLSv1.2") == std::string::npos);
  CHECK(tls12.exit_code != 0);
  CommandResult tls13 = s_client(portico.https_port(), {"-tls1_3"});
  CHECK(tls13.stdout.find("New, TLSv1.3") != std::string::npos);
  CHECK(run_portico({"--tls-min", "1.1"}).stderr.find("--tls-min: expected 1.2 or 1.3") !=
        std::string::npos);
}

TEST_CASE("tls: --hsts adds Strict-Transport-Security to proxied responses and to 404s", "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  const std::string routes = "/api/ http://" + backend.address() + "\n";
  auto get = [&](PorticoProcess& portico, const std::string& path) {
    CommandResult r = curl("--cacert", cert.ca_cert, "-i", portico.url(path));
    INFO(r.describe());
    REQUIRE(r.exit_code == 0);
    return r.stdout;
  };
  {
    PorticoProcess off(dir, routes, cert);
    CHECK(get(off, "/api/x").find("Strict-Transport-Security") == std::string::npos);
    CHECK(get(off, "/none").find("Strict-Transport-Security") == std::string::npos);
  }
  {
    PorticoProcess on(dir, routes, cert, {"--hsts"});
    std::string proxied = get(on, "/api/x");
    CHECK(proxied.find("HTTP/1.1 200") == 0);
    CHECK(proxied.find("Strict-Transport-Security: max-age=31536000\r\n") != std::string::npos);
    std::string missing = get(on, "/none");
    CHECK(missing.find("HTTP/1.1 404") == 0);
    CHECK(missing.find("Strict-Transport-Security: max-age=31536000\r\n") != std::string::npos);
    // Never on plain HTTP (RFC 6797 section 7.2: the browser ignores it there anyway).
    CommandResult redirect = curl("-i", on.http_url("/"));
    CHECK(redirect.stdout.find("Strict-Transport-Security") == std::string::npos);
  }
  {
    PorticoProcess custom(dir, routes, cert, {"--hsts=600"});
    CHECK(get(custom, "/none").find("Strict-Transport-Security: max-age=600\r\n") !=
          std::string::npos);
  }
  {
    // max-age=0 makes browsers forget an earlier HSTS (RFC 6797 6.1.1): how it is turned off.
    PorticoProcess forget(dir, routes, cert, {"--hsts=0"});
    CHECK(get(forget, "/api/x").find("Strict-Transport-Security: max-age=0\r\n") !=
          std::string::npos);
  }
  CHECK(run_portico({"--hsts=soon"}).stderr.find("--hsts: expected a max-age in seconds") !=
        std::string::npos);
}

TEST_CASE("tls: --acme-webroot serves challenge tokens on port 80 and nothing else", "[tls]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  namespace fs = std::filesystem;
  const fs::path webroot = dir.file("webroot");
  const fs::path challenges = webroot / ".well-known" / "acme-challenge";
  fs::create_directories(challenges);
  dir.write_file("webroot/.well-known/acme-challenge/tok-EN_1", "tok-EN_1.thumbprint");
  dir.write_file("webroot/secret.txt", "SECRET-OUTSIDE");
  dir.write_file("webroot/.well-known/secret.txt", "SECRET-WELL-KNOWN");
  dir.write_file("outside.txt", "SECRET-FAR");
  fs::create_symlink(dir.file("outside.txt"), challenges / "linked");
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", cert, {"--acme-webroot", webroot.string()});
  auto get = [&](const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"-i", "--path-as-is"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(portico.http_url(path));
    CommandResult r = curl(args);
    INFO(r.describe());
    REQUIRE(r.exit_code == 0);
    CHECK(r.stdout.find("SECRET") == std::string::npos);
    return r.stdout;
  };
  std::string ok = get("/.well-known/acme-challenge/tok-EN_1");
  CHECK(ok.find("HTTP/1.1 200") == 0);
  CHECK(ok.find("Content-Type: text/plain") != std::string::npos);
  CHECK(ok.ends_with("\r\n\r\ntok-EN_1.thumbprint"));
  std::string head = get("/.well-known/acme-challenge/tok-EN_1", {"-I"});
  CHECK(head.find("HTTP/1.1 200") == 0);
  CHECK(head.find("Content-Length: 19\r\n") != std::string::npos);

  CHECK(get("/.well-known/acme-challenge/missing").find("HTTP/1.1 404") == 0);
  CHECK(get("/.well-known/acme-challenge/linked").find("HTTP/1.1 404") == 0);  // no symlinks
  for (const char* attack :
       {"/.well-known/acme-challenge/../secret.txt", "/.well-known/acme-challenge/../../secret.txt",
        "/.well-known/acme-challenge/%2e%2e/secret.txt",
        "/.well-known/acme-challenge/..%2f..%2fsecret.txt",
        "/.well-known/acme-challenge/..%2F..%2F..%2Foutside.txt",
        "/.well-known/acme-challenge/.%2e/.%2e/secret.txt", "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge/tok-EN_1/", "/.well-known/acme-challenge/..%5csecret.txt"}) {
    INFO(attack);
    std::string answer = get(attack);
    CHECK((answer.find("HTTP/1.1 404") == 0 || answer.find("HTTP/1.1 400") == 0));
  }
  // Everything else still redirects, including the rest of the webroot.
  CHECK(get("/").find("HTTP/1.1 301") == 0);
  CHECK(get("/secret.txt").find("HTTP/1.1 301") == 0);
  CHECK(get("/.well-known/secret.txt").find("HTTP/1.1 301") == 0);
  CHECK(get("/.well-known/acme-challenge").find("HTTP/1.1 301") == 0);
  // Challenges are requests like any other: an access-log line each (route=acme).
  CHECK(portico.process().try_wait_for_output(
      std::regex("access: .*path=/.well-known/acme-challenge/tok-EN_1 route=acme .*status=200"),
      5s));
}

TEST_CASE("tls: without --cert a development certificate is made once and reused", "[tls]") {
  TempDir dir;
  const std::string state = dir.file("state");
  const std::string dev_cert = state + "/dev-cert.pem";
  auto serial = [&] {
    CommandResult r = run_command({"openssl", "x509", "-noout", "-serial", "-in", dev_cert});
    REQUIRE(r.exit_code == 0);
    return r.stdout;
  };
  std::string first_serial;
  {
    PorticoProcess portico(dir, "/ http://127.0.0.1:9\n",
                           TlsArgs{{"--state-dir", state, "--dev-name", "dev.test"}},
                           {"--http-port", "0"});
    const std::string err = portico.stderr_text();
    CHECK(err.find("warn tls: no --cert given: serving a self-signed certificate, for "
                   "development only cert=" +
                   dev_cert + " generated=yes") != std::string::npos);
    CommandResult r =
        curl("--cacert", dev_cert, "-o", "/dev/null", "-w", "%{http_code}", portico.url("/"));
    INFO(r.describe());
    CHECK(r.exit_code == 0);
    CommandResult ip = curl("--cacert", dev_cert, "-o", "/dev/null", "-w", "%{http_code}",
                            "https://127.0.0.1:" + std::to_string(portico.https_port()) + "/");
    CHECK(ip.exit_code == 0);
    first_serial = serial();
  }
  CommandResult san =
      run_command({"openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", dev_cert});
  CHECK(san.stdout.find("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, "
                        "DNS:dev.test") != std::string::npos);
  CHECK((std::filesystem::status(state).permissions() & std::filesystem::perms::all) ==
        std::filesystem::perms::owner_all);
  {
    PorticoProcess again(dir, "/ http://127.0.0.1:9\n",
                         TlsArgs{{"--state-dir", state, "--dev-name", "dev.test"}},
                         {"--http-port", "0"});
    CHECK(again.stderr_text().find("generated=no") != std::string::npos);
    CHECK(serial() == first_serial);
  }
  {
    // A name the certificate lacks: a new one.
    PorticoProcess more(dir, "/ http://127.0.0.1:9\n",
                        TlsArgs{{"--state-dir", state, "--dev-name", "other.test"}},
                        {"--http-port", "0"});
    CHECK(more.stderr_text().find("generated=yes") != std::string::npos);
    CHECK(serial() != first_serial);
  }
}

TEST_CASE("tls: certificate errors are one line naming the file, exit 2", "[tls]") {
  TempDir dir;
  TestCert good = make_test_cert(dir);
  TestCert other = make_test_cert(dir, {"localhost"}, "other");
  const std::string routes = dir.write_file("routes.conf", "/ http://127.0.0.1:9\n");
  auto start = [&](const std::string& cert, const std::string& key,
                   std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"--routes",    routes, "--cert",       cert,
                                     "--key",       key,    "--https-port", "0",
                                     "--http-port", "0",    "--listen",     "127.0.0.1"};
    args.insert(args.end(), more.begin(), more.end());
    return run_portico(args);
  };
  auto refused = [&](const CommandResult& r, const std::string& line) {
    INFO(r.describe());
    CHECK(r.exit_code == 2);
    CHECK(r.stderr == line + "\n");
  };
  const std::string junk = dir.write_file("junk.pem", "not pem\n");
  refused(start(dir.file("missing.pem"), good.key),
          dir.file("missing.pem") + ": cannot read: No such file or directory");
  refused(start(junk, good.key), junk + ": not a PEM certificate");
  refused(start(good.fullchain, junk), junk + ": not a PEM private key (or it is encrypted)");
  // An encrypted key is refused, never asked about: OpenSSL's default would prompt on the
  // terminal or read stdin (which holds the passphrase here), and at a reload hang the proxy.
  const std::string encrypted = dir.file("encrypted.key");
  const std::vector<std::string> encrypt = {"openssl",  "pkey",        "-in",  good.key, "-aes256",
                                            "-passout", "pass:secret", "-out", encrypted};
  REQUIRE(run_command(encrypt).exit_code == 0);
  const std::vector<std::string> check = {PORTICO_BINARY, "--check",      "--routes", routes,
                                          "--cert",       good.fullchain, "--key",    encrypted};
  CommandResult asked = run_command(check, "secret\n", 20s);
  INFO(asked.describe());
  CHECK(asked.exit_code == 2);
  CHECK(asked.stderr.find(encrypted + ": not a PEM private key (or it is encrypted)") !=
        std::string::npos);
  refused(start(good.fullchain, other.key),
          other.key + ": private key does not match the certificate in " + good.fullchain);
  const std::string reversed =
      dir.write_file("reversed.pem", read_all(good.ca_cert) + read_all(good.cert));
  refused(start(reversed, good.key), reversed + ": chain out of order: the certificate of " +
                                         good.key + " is number 2; the leaf must come first");
  // A fullchain.pem cut short while it was written: its leaf parses, its intermediate does
  // not. Served, the chain would lack the intermediate; refused, as NGINX does.
  const std::string chain = read_all(good.fullchain);
  const std::string leaf = read_all(good.cert);
  const std::string cut = dir.write_file("cut.pem", chain.substr(0, leaf.size() + 120));
  refused(start(cut, good.key),
          cut + ": certificate 2 is not valid PEM (the file may be cut short)");
  // Text between or after blocks is allowed, as everywhere in PEM (and by NGINX).
  const std::string commented = dir.write_file("commented.pem", chain + "# renewed by certbot\n");
  CHECK(run_portico({"--check", "--routes", routes, "--cert", commented, "--key", good.key})
            .exit_code == 0);

  TestCa ca = make_test_ca(dir, "old");
  CertOptions options{{"localhost"}, "expired"};
  options.expired = true;
  TestCert expired = issue_cert(dir, ca, options);
  CommandResult strict = start(expired.fullchain, expired.key, {"--strict"});
  INFO(strict.describe());
  CHECK(strict.exit_code == 2);
  CHECK(std::regex_match(
      strict.stderr, std::regex(std::regex_replace(expired.fullchain,
                                                   std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                                ": certificate expired on \\d{4}-\\d\\d-\\d\\dT\\S+Z "
                                "\\(--strict\\)\n")));
  // Without --strict: a warning with the date, and portico serves.
  PorticoProcess lenient(dir, "/ http://127.0.0.1:9\n", expired, {"--http-port", "0"});
  CHECK(lenient.stderr_text().find("warn tls: " + expired.fullchain +
                                   ": certificate expired on ") != std::string::npos);
}

TEST_CASE("tls: a bad certificate on reload keeps the old one serving", "[tls]") {
  TempDir dir;
  TestCert good = make_test_cert(dir);
  TestCert other = make_test_cert(dir, {"localhost"}, "other");
  const std::string cert = dir.write_file("live-cert.pem", read_all(good.fullchain));
  const std::string key = dir.write_file("live-key.pem", read_all(good.key));
  PorticoProcess portico(dir, "/ http://127.0.0.1:9\n", TlsArgs{{"--cert", cert, "--key", key}},
                         {"--http-port", "0"});
  const std::string before = subject_for(portico.https_port(), good.ca_cert, "localhost");
  dir.write_file("live-key.pem", read_all(other.key));
  portico.process().signal(SIGHUP);
  portico.process().wait_for_output(key + ": private key does not match the certificate in " + cert,
                                    10s);
  portico.process().wait_for_output("keeping the current configuration", 10s);
  TlsClientOptions options;
  options.ca_file = good.ca_cert;
  RawTlsClient client(portico.https_port(), options);
  CHECK(client.verify_result() == 0);
  CHECK(client.peer_subject() == before);
}

// Dynamic record sizing (docs/tls.md): record n of a ramp carries at most (n + 1) x 1,360 bytes,
// up to 16 KiB. A ramp starts with the connection and again after a quiet second.
TEST_CASE("tls: records start small and grow, on a new connection and after a quiet second",
          "[tls][records]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  constexpr size_t kBody = 256 * 1024;
  constexpr size_t kRampStep = 1360;
  constexpr size_t kFullRecord = 16384;
  TestBackend backend([](const ReceivedRequest&) {
    Response r;
    r.generated_body_size = kBody;
    return r;
  });
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert, {"--http-port", "0"});
  RawTlsClient client(portico.https_port(), cert.ca_cert);
  REQUIRE(client.ok());
  REQUIRE(client.tls_version() == "TLSv1.3");

  // One GET of the whole body; returns the sizes of the records that carried the response.
  auto fetch = [&](const std::string& path) {
    client.clear_data_records();
    REQUIRE(client.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n"));
    ReadResult r = client.read_until([](std::string_view got) {
      size_t head_end = got.find("\r\n\r\n");
      return head_end != std::string_view::npos && got.size() >= head_end + 4 + kBody;
    });
    REQUIRE(r.data.find("HTTP/1.1 200") == 0);
    const std::vector<size_t>& records = client.data_records();
    size_t total = 0;
    for (size_t n : records) total += n;
    CHECK(total == r.data.size());
    return records;
  };
  auto check_ramp = [&](const std::vector<size_t>& records) {
    REQUIRE(!records.empty());
    for (size_t i = 0; i < records.size(); ++i) {
      INFO("record " << i);
      CHECK(records[i] <= std::min(kFullRecord, (i + 1) * kRampStep));
    }
    CHECK(*std::max_element(records.begin(), records.end()) == kFullRecord);
  };

  check_ramp(fetch("/first"));

  // Straight after: the ramp is over, so full records come at once.
  auto start = std::chrono::steady_clock::now();
  std::vector<size_t> busy = fetch("/busy");
  if (std::chrono::steady_clock::now() - start < 500ms) {
    REQUIRE(busy.size() >= 4);
    CHECK(*std::max_element(busy.begin(), busy.begin() + 4) > 4 * kRampStep);
  } else {
    WARN("the machine stalled; the no-restart check is skipped");
  }

  // Quiet for more than a second: small records again.
  std::this_thread::sleep_for(1200ms);
  std::vector<size_t> after_quiet = fetch("/after-quiet");
  check_ramp(after_quiet);
  CHECK(after_quiet.front() <= kRampStep);
}

// Live reload: the route file and the certificate are re-read on SIGHUP and when they change on
// disk (editor-style rename, in-place rewrite, certbot-style symlink swap). A valid new
// configuration serves new requests and handshakes; an invalid one changes nothing; requests in
// flight, keep-alive connections and WebSocket tunnels carry on untouched.

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/example_server.h"
#include "tests/support/http_message.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"
#include "tests/support/ws_client.h"

using namespace portico::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::regex kReloaded(R"(info reload: configuration reloaded routes=\d+ certificate=\w+\n)");
const std::regex kKept(R"(error reload: .*keeping the current configuration.*\n)");

// A backend that answers every request with its own name.
Handler named(const std::string& name) {
  return [name](const ReceivedRequest&) {
    Response response;
    response.body = name;
    return response;
  };
}

// Replaces `path` the way editors save: write a temporary file beside it, then rename it over.
void replace_file(const std::string& path, const std::string& content) {
  const std::string temp = path + ".tmp~";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  fs::rename(temp, path);
}

void copy_over(const std::string& from, const std::string& to) {
  const std::string temp = to + ".tmp~";
  fs::copy_file(from, temp, fs::copy_options::overwrite_existing);
  fs::rename(temp, to);
}

// Replaces a symlink atomically, as `ln -sfn` cannot: a new link beside it, renamed over it.
void relink(const std::string& link, const std::string& target) {
  const std::string temp = link + ".new";
  fs::remove(temp);
  fs::create_symlink(target, temp);
  fs::rename(temp, link);
}

size_t stderr_size(PorticoProcess& portico) { return portico.stderr_text().size(); }

// A new connection's GET /whoami: the body names the backend that answered.
std::string whoami(const PorticoProcess& portico, const TestCert& cert) {
  CommandResult r = curl("--cacert", cert.ca_cert, portico.url("/whoami"));
  INFO(r.describe());
  REQUIRE(r.exit_code == 0);
  return r.stdout;
}

// The serial of the certificate a new TLS handshake gets.
std::string served_serial(const PorticoProcess& portico) {
  CommandResult hello = run_command({"openssl", "s_client", "-connect",
                                     "127.0.0.1:" + std::to_string(portico.https_port()),
                                     "-servername", "localhost"});
  INFO(hello.describe());
  REQUIRE(hello.stdout.find("-----BEGIN CERTIFICATE-----") != std::string::npos);
  CommandResult serial = run_command({"openssl", "x509", "-noout", "-serial"}, hello.stdout);
  INFO(serial.describe());
  REQUIRE(serial.exit_code == 0);
  return serial.stdout;
}

std::string file_serial(const std::string& pem) {
  CommandResult serial = run_command({"openssl", "x509", "-noout", "-serial", "-in", pem});
  INFO(serial.describe());
  REQUIRE(serial.exit_code == 0);
  return serial.stdout;
}

// One keep-alive request on an open connection; "" when it failed.
std::string keepalive_get(RawTlsClient& client, const std::string& path) {
  if (!client.send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n")) return "";
  ReadResult read = client.read_until(
      [](std::string_view bytes) {
        auto responses = parse_http_responses(bytes, {}, false);
        return !responses.empty() && (responses[0].complete || !responses[0].error.empty());
      },
      10s);
  auto responses = parse_http_responses(read.data, {}, false);
  if (responses.empty() || !responses[0].complete || responses[0].status != 200) return "";
  return responses[0].body;
}

// Sequential keep-alive requests on one TLS connection, on a thread, until stopped.
class RequestLoop {
 public:
  RequestLoop(uint16_t port, const std::string& ca_file)
      : thread_([this, port, ca_file] { run(port, ca_file); }) {}
  ~RequestLoop() { stop(); }

  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int succeeded() const { return succeeded_; }
  std::vector<std::string> failures() const {
    std::lock_guard lock(mutex_);
    return failures_;
  }

 private:
  void run(uint16_t port, const std::string& ca_file) {
    RawTlsClient client(port, ca_file);
    if (!client.ok()) {
      fail("connect: " + client.error());
      return;
    }
    for (int n = 0; !stopping_; ++n) {
      const std::string body = keepalive_get(client, "/loop/" + std::to_string(n));
      if (body != "A" && body != "B") {
        fail("request " + std::to_string(n) + " got \"" + body + "\"");
        return;
      }
      ++succeeded_;
    }
  }
  void fail(const std::string& why) {
    std::lock_guard lock(mutex_);
    failures_.push_back(why);
  }

  std::atomic<bool> stopping_{false};
  std::atomic<int> succeeded_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> failures_;
  std::thread thread_;
};

void expect_echo(WsClient& ws, const std::string& text) {
  INFO("WebSocket echo of " << text);
  REQUIRE(ws.send_text(text));
  auto message = ws.receive(10s);
  REQUIRE(message);
  CHECK(int(message->opcode) == 1);
  CHECK(message->data == text);
}

// Lands version `i` of 20 of the route file: valid and invalid versions alternate. Half land by
// a rename alone (an editor's save); the other half are rewritten in place and announced with
// SIGHUP (the watcher may see those too: the outcome is the same). Waits for the reload's verdict
// and returns whether the version was valid.
bool land_version(PorticoProcess& portico, const TempDir& dir, int i, const std::string& valid_text,
                  const std::string& invalid_text) {
  const bool valid = i % 2 == 0;
  const bool by_signal = (i / 4) % 2 == 1;
  CAPTURE(i, valid, by_signal);
  const size_t from = stderr_size(portico);
  const std::string& text = valid ? valid_text : invalid_text;
  if (by_signal) {
    dir.write_file("routes.conf", text);
    REQUIRE(portico.process().signal(SIGHUP));
  } else {
    replace_file(portico.routes_path(), text);
  }
  if (valid) {
    portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  } else {
    OutputMatch kept = portico.process().wait_for_output(kKept, 10s, Stream::kStderr, from);
    // Every error is logged with its place before the verdict.
    const std::string log = portico.stderr_text().substr(from, kept.end - from);
    CHECK(std::regex_search(log, std::regex("error reload: " + portico.routes_path() +
                                            R"(:1:\d+: unknown option "strip_prefx")")));
  }
  return valid;
}

}  // namespace

TEST_CASE("reload: 20 rewrites switch routing while keep-alive requests carry on", "[reload]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend a(named("A")), b(named("B"));
  auto routes_to = [&](const TestBackend& backend) {
    return "/ http://" + backend.address() + "\n";
  };
  PorticoProcess portico(dir, routes_to(a), cert);
  REQUIRE(whoami(portico, cert) == "A");

  RequestLoop loop(portico.https_port(), cert.ca_cert);
  std::string expected = "A";
  for (int i = 0; i < 20; ++i) {
    // Valid versions alternate between B and A; each invalid one would have switched again.
    const TestBackend& target = (i / 2) % 2 == 0 ? b : a;
    const std::string invalid = "/ http://" + target.address() + " strip_prefx\n";
    if (land_version(portico, dir, i, routes_to(target), invalid)) {
      expected = &target == &a ? "A" : "B";
    }
    CAPTURE(i);
    CHECK(whoami(portico, cert) == expected);
  }
  // Let the background connection see the last version too, then stop it.
  const int done = loop.succeeded();
  for (int waited = 0; loop.succeeded() < done + 5 && waited < 100; ++waited) {
    std::this_thread::sleep_for(100ms);
  }
  loop.stop();
  for (const std::string& failure : loop.failures()) UNSCOPED_INFO(failure);
  CHECK(loop.failures().empty());
  CHECK(loop.succeeded() > 0);
  // The background requests reached both backends: routing changed under a live connection.
  CHECK(a.request_count() > 0);
  CHECK(b.request_count() > 0);
}

TEST_CASE("reload: a WebSocket tunnel echoes before, during and after 20 rewrites",
          "[reload][ws]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend a(named("A")), b(named("B"));
  WsServer ws_server;
  const std::string ws_route = "/ws http://127.0.0.1:" + std::to_string(ws_server.port) + "\n";
  auto routes_to = [&](const TestBackend& backend) {
    return "/ http://" + backend.address() + "\n" + ws_route;
  };
  PorticoProcess portico(dir, routes_to(a), cert);

  WsClientOptions ws_options;
  ws_options.port = portico.https_port();
  ws_options.ca_file = cert.ca_cert;
  ws_options.path = "/ws";
  auto ws = WsClient::connect(ws_options);
  INFO(ws->error());
  REQUIRE(ws->ok());
  expect_echo(*ws, "before");
  for (int i = 0; i < 20; ++i) {
    const TestBackend& target = (i / 2) % 2 == 0 ? b : a;
    const std::string invalid = "/ http://" + target.address() + " strip_prefx\n" + ws_route;
    land_version(portico, dir, i, routes_to(target), invalid);
    expect_echo(*ws, "during " + std::to_string(i));
  }
  expect_echo(*ws, "after");
  CHECK(ws->close());
  // One tunnel all along: the backend saw a single upgrade.
  const std::string ws_log = ws_server.process->stderr_text();
  size_t upgrades = 0;
  for (size_t at = ws_log.find("upgraded"); at != std::string::npos;
       at = ws_log.find("upgraded", at + 1)) {
    ++upgrades;
  }
  CHECK(upgrades == 1);
}

TEST_CASE("reload: the route file's directory replaced whole, then the file edited", "[reload]") {
  TestBackend a(named("A")), b(named("B")), c(named("C")), d(named("D"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TempDir conf;  // the route file's own directory, replaced as deploy tools do
  PorticoProcess portico(conf, "/ http://" + a.address() + "\n", cert, {"--log-level", "debug"});
  CHECK(whoami(portico, cert) == "A");
  // `rm -rf conf; mv conf.new conf`: the watched directory is gone, another has its path; at
  // once, then with a pause in which a reload finds no route file (and keeps what it has).
  const fs::path staged = fs::path(dir.path()) / "conf.new";
  auto replace_directory = [&](const TestBackend& backend, std::chrono::milliseconds gap) {
    fs::create_directory(staged);
    std::ofstream(staged / "routes.conf") << "/ http://" << backend.address() << "\n";
    const size_t from = stderr_size(portico);
    fs::remove_all(conf.path());
    if (gap > 0ms) {
      portico.process().wait_for_output(kKept, 10s, Stream::kStderr, from);
      std::this_thread::sleep_for(gap);
    }
    const size_t before_rename = stderr_size(portico);
    fs::rename(staged, conf.path());
    portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, before_rename);
  };
  replace_directory(b, 0ms);
  CHECK(whoami(portico, cert) == "B");
  replace_directory(c, 500ms);
  CHECK(whoami(portico, cert) == "C");
  // A later edit lands in the new directory, which must be the one watched now.
  size_t from = stderr_size(portico);
  replace_file(portico.routes_path(), "/ http://" + d.address() + "\n");
  portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "D");
  // A file in it named like the directory is not the directory: writing it reloads nothing
  // (as here the log itself could be, each reload's line the next one's trigger).
  from = stderr_size(portico);
  const std::string same_name = conf.file(fs::path(conf.path()).filename().string());
  for (int i = 0; i < 3; ++i) std::ofstream(same_name) << i;
  std::this_thread::sleep_for(600ms);
  CHECK(portico.stderr_text().substr(from).find("debug reload:") == std::string::npos);
}

TEST_CASE("reload: SIGHUP with unchanged files reloads and says what it did", "[reload]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend a(named("A"));
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", cert);
  const size_t from = stderr_size(portico);
  REQUIRE(portico.process().signal(SIGHUP));
  portico.process().wait_for_output("info reload: reloading trigger=SIGHUP", 10s, Stream::kStderr,
                                    from);
  portico.process().wait_for_output(
      "info reload: configuration reloaded routes=1 certificate=unchanged", 10s, Stream::kStderr,
      from);
  CHECK(whoami(portico, cert) == "A");
}

TEST_CASE("reload: a new certificate serves new handshakes, open connections carry on",
          "[reload]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  CertOptions one_options, two_options, other_options;
  one_options.prefix = "one";
  two_options.prefix = "two";
  other_options.prefix = "other";
  TestCert one = issue_cert(dir, ca, one_options);
  TestCert two = issue_cert(dir, ca, two_options);
  TestCert other = issue_cert(dir, ca, other_options);
  REQUIRE(file_serial(one.cert) != file_serial(two.cert));

  // portico reads the pair from fixed names that the test replaces.
  TestCert current = one;
  current.fullchain = dir.file("tls/fullchain.pem");
  current.key = dir.file("tls/privkey.pem");
  fs::create_directories(dir.file("tls"));
  fs::copy_file(one.fullchain, current.fullchain);
  fs::copy_file(one.key, current.key);

  TestBackend a(named("A")), b(named("B"));
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", current);
  CHECK(served_serial(portico) == file_serial(one.cert));
  RawTlsClient open(portico.https_port(), ca.cert);
  REQUIRE(open.ok());
  REQUIRE(keepalive_get(open, "/first") == "A");

  SECTION("all or nothing: a valid route file with a mismatched key changes neither") {
    size_t from = stderr_size(portico);
    // The key first: whenever a reload runs from here on, the pair does not match.
    copy_over(other.key, current.key);  // a valid key, but not the certificate's
    replace_file(portico.routes_path(), "/ http://" + b.address() + "\n");
    OutputMatch kept = portico.process().wait_for_output(kKept, 10s, Stream::kStderr, from);
    CHECK(portico.stderr_text()
              .substr(from, kept.end - from)
              .find("private key does not match the certificate") != std::string::npos);
    CHECK(whoami(portico, current) == "A");
    CHECK(served_serial(portico) == file_serial(one.cert));

    // Restoring the key lands the routes, with the certificate the worker already has.
    from = stderr_size(portico);
    copy_over(one.key, current.key);
    portico.process().wait_for_output(
        std::regex(R"(info reload: configuration reloaded routes=1 certificate=unchanged\n)"), 10s,
        Stream::kStderr, from);
    CHECK(whoami(portico, current) == "B");
    CHECK(served_serial(portico) == file_serial(one.cert));
    // The connection opened before keeps working, with the new routes.
    CHECK(keepalive_get(open, "/second") == "B");
  }
  SECTION("replacing the pair swaps the certificate") {
    const size_t from = stderr_size(portico);
    // Key first, then certificate: the watcher coalesces both into one reload (and should a
    // reload run in between, it fails, keeps the old pair, and the next event fixes it).
    copy_over(two.key, current.key);
    copy_over(two.fullchain, current.fullchain);
    portico.process().wait_for_output(
        std::regex(R"(info reload: configuration reloaded routes=1 certificate=changed\n)"), 10s,
        Stream::kStderr, from);
    CHECK(served_serial(portico) == file_serial(two.cert));
    CHECK(whoami(portico, current) == "A");
    // The connection opened under the old certificate is still served.
    CHECK(keepalive_get(open, "/second") == "A");
  }
}

TEST_CASE("reload: a certbot-style symlink swap (live/ -> archive/) is seen", "[reload]") {
  TempDir dir;
  TestCa ca = make_test_ca(dir);
  std::vector<TestCert> issued;
  for (const char* prefix : {"c1", "c2", "c3"}) {
    CertOptions options;
    options.prefix = prefix;
    issued.push_back(issue_cert(dir, ca, options));
  }
  // The layout certbot keeps: archive/NAME/fullchainN.pem, and live/NAME/ links to the newest.
  const std::string archive = dir.file("letsencrypt/archive/example");
  const std::string live = dir.file("letsencrypt/live/example");
  fs::create_directories(archive);
  fs::create_directories(live);
  for (int n = 1; n <= 2; ++n) {
    fs::copy_file(issued[n - 1].fullchain, archive + "/fullchain" + std::to_string(n) + ".pem");
    fs::copy_file(issued[n - 1].key, archive + "/privkey" + std::to_string(n) + ".pem");
  }
  fs::create_symlink("../../archive/example/fullchain1.pem", live + "/fullchain.pem");
  fs::create_symlink("../../archive/example/privkey1.pem", live + "/privkey.pem");
  TestCert linked = issued[0];
  linked.fullchain = live + "/fullchain.pem";
  linked.key = live + "/privkey.pem";

  TestBackend a(named("A"));
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", linked);
  CHECK(served_serial(portico) == file_serial(issued[0].cert));

  // Renewal: certbot re-points the links at the new archive files.
  size_t from = stderr_size(portico);
  relink(live + "/fullchain.pem", "../../archive/example/fullchain2.pem");
  relink(live + "/privkey.pem", "../../archive/example/privkey2.pem");
  portico.process().wait_for_output(
      std::regex(R"(info reload: configuration reloaded routes=1 certificate=changed\n)"), 10s,
      Stream::kStderr, from);
  CHECK(served_serial(portico) == file_serial(issued[1].cert));

  // The link targets' directory is watched too: rewriting the current archive files is seen.
  from = stderr_size(portico);
  copy_over(issued[2].key, archive + "/privkey2.pem");
  copy_over(issued[2].fullchain, archive + "/fullchain2.pem");
  portico.process().wait_for_output(
      std::regex(R"(info reload: configuration reloaded routes=1 certificate=changed\n)"), 10s,
      Stream::kStderr, from);
  CHECK(served_serial(portico) == file_serial(issued[2].cert));
  CHECK(whoami(portico, linked) == "A");
}

TEST_CASE("reload: a directory link higher up the path re-pointed (current -> releases/N)",
          "[reload]") {
  TestBackend a(named("A")), b(named("B"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  // A deploy tool's layout: srv/releases/N/, srv/current -> releases/N, and the route file a
  // link through `current`, which a deploy re-points (`ln -s releases/2 tmp; mv -T tmp current`).
  const fs::path srv = fs::path(dir.path()) / "srv";
  fs::create_directories(srv / "releases" / "1");
  fs::create_directories(srv / "releases" / "2");
  std::ofstream(srv / "releases" / "2" / "routes.conf") << "/ http://" << b.address() << "\n";
  fs::create_directory_symlink("releases/1", srv / "current");
  TempDir conf;
  fs::create_symlink(srv / "current" / "routes.conf", conf.file("routes.conf"));
  // Written through the links, into releases/1.
  PorticoProcess portico(conf, "/ http://" + a.address() + "\n", cert);
  CHECK(whoami(portico, cert) == "A");
  const size_t from = stderr_size(portico);
  relink((srv / "current").string(), "releases/2");
  portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "B");
}

TEST_CASE("reload: a Kubernetes ConfigMap update (..data re-pointed at a new folder) is seen",
          "[reload]") {
  TestBackend a(named("A")), b(named("B"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  // The volume's layout: routes.conf -> ..data/routes.conf, ..data -> ..v1 (a dated folder).
  TempDir conf;
  const fs::path mount(conf.path());
  fs::create_directory(mount / "..v1");
  fs::create_directory_symlink("..v1", mount / "..data");
  fs::create_symlink("..data/routes.conf", mount / "routes.conf");
  PorticoProcess portico(conf, "/ http://" + a.address() + "\n", cert);
  CHECK(whoami(portico, cert) == "A");
  // The kubelet's update: a new folder, ..data re-pointed at it by a rename, the old one removed.
  const size_t from = stderr_size(portico);
  fs::create_directory(mount / "..v2");
  std::ofstream(mount / "..v2" / "routes.conf") << "/ http://" << b.address() << "\n";
  relink((mount / "..data").string(), "..v2");
  fs::remove_all(mount / "..v1");
  portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "B");
}

TEST_CASE("reload: a linked route file's edit lands while its link's directory keeps changing",
          "[reload]") {
  TestBackend a(named("A")), b(named("B"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  const std::string target = dir.file("real/routes.conf");
  fs::create_directories(fs::path(target).parent_path());
  TempDir conf;
  fs::create_symlink(target, conf.file("routes.conf"));
  PorticoProcess portico(conf, "/ http://" + a.address() + "\n", cert);
  CHECK(whoami(portico, cert) == "A");
  // Another file beside the link written every 20 ms, as an access log there would be: its
  // events must not keep putting the reload off.
  struct Writer {
    std::atomic<bool> stop{false};
    std::thread thread;
    ~Writer() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } writer;
  const std::string neighbour = conf.file("access.log");
  writer.thread = std::thread([&writer, neighbour] {
    while (!writer.stop) {
      std::ofstream(neighbour, std::ios::app) << "a line\n";
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(300ms);
  const size_t from = stderr_size(portico);
  replace_file(target, "/ http://" + b.address() + "\n");
  portico.process().wait_for_output(
      std::regex("info reload: reloading trigger=file path=" + dir.file("real/routes.conf") + "\n"),
      5s, Stream::kStderr, from);
  portico.process().wait_for_output(kReloaded, 5s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "B");
}

TEST_CASE("reload: while the configuration is broken, a neighbour in --cert-dir rebuilds nothing",
          "[reload]") {
  TestBackend a(named("A"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestCert other = make_test_cert(dir, {"localhost"}, "other");
  const std::string certs = dir.file("certs");
  fs::create_directory(certs);
  fs::copy_file(cert.fullchain, certs + "/site.crt");
  fs::copy_file(cert.key, certs + "/site.key");
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", TlsArgs{{"--cert-dir", certs}});
  size_t from = stderr_size(portico);
  copy_over(other.key, certs + "/site.key");  // a key that does not match: the reload fails
  portico.process().wait_for_output(kKept, 10s, Stream::kStderr, from);
  // A log written beside the certificates changes none of them: no rebuild, no repeated errors.
  from = stderr_size(portico);
  for (int i = 0; i < 15; ++i) {
    std::ofstream(certs + "/app.log", std::ios::app) << i << "\n";
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(1500ms);
  INFO(portico.stderr_text().substr(from));
  CHECK(portico.stderr_text().find("reloading trigger", from) == std::string::npos);
}

TEST_CASE("reload: after a failed reload, saving the same route file again retries it",
          "[reload]") {
  TestBackend a(named("A")), b(named("B"));
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", cert);
  // A ca= bundle that is not there yet: the reload fails, and the table in use stays.
  const std::string text =
      "/ http://" + b.address() + "\n/tls/ https://127.0.0.1:9 ca=bundle.pem\n";
  size_t from = stderr_size(portico);
  replace_file(portico.routes_path(), text);
  portico.process().wait_for_output(kKept, 10s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "A");
  // docs/routes.md: fix it and save the route file again. Its bytes are the same as the failed
  // attempt's; the bundle is what changed.
  fs::copy_file(cert.ca_cert, dir.file("bundle.pem"));
  from = stderr_size(portico);
  replace_file(portico.routes_path(), text);
  portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  CHECK(whoami(portico, cert) == "B");
}

TEST_CASE("reload: the metrics of routes and backends the new table drops are dropped too",
          "[reload][admin]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend a(named("A")), b(named("B"));
  PorticoProcess portico(dir, "/old/ http://" + a.address() + "\n", cert,
                         {"--admin", "127.0.0.1:0"});
  CHECK(curl("--cacert", cert.ca_cert, portico.url("/old/x")).stdout == "A");
  std::string before = portico.admin_get("/metrics");
  CHECK(before.find("route=\"/old/\"") != std::string::npos);

  const size_t from = stderr_size(portico);
  dir.write_file("routes.conf", "/new/ http://" + b.address() + "\n");
  REQUIRE(portico.process().signal(SIGHUP));
  portico.process().wait_for_output(kReloaded, 10s, Stream::kStderr, from);
  CHECK(curl("--cacert", cert.ca_cert, portico.url("/new/x")).stdout == "B");
  std::string after = portico.admin_get("/metrics");
  INFO(after);
  // A file whose prefixes change over time would otherwise grow the maps and every scrape.
  CHECK(after.find("route=\"/old/\"") == std::string::npos);
  CHECK(after.find("route=\"/new/\"") != std::string::npos);
}

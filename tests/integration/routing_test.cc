// The route table at work: several backends, balancing, passive health, route options.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <set>
#include <thread>

#include "tests/support/http_message.h"
#include "tests/support/net.h"
#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"
#include "tests/support/ws_client.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

Handler named(std::string name) {
  return [name](const ReceivedRequest& request) {
    Response r;
    r.body = name + " " + request.target;
    return r;
  };
}

struct Setup {
  explicit Setup(const std::string& routes, std::vector<std::string> extra = {})
      : cert(make_test_cert(dir)), portico(dir, routes, cert, std::move(extra)) {}
  CommandResult get(const std::string& path, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--cacert", cert.ca_cert};
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(portico.url(path));
    return curl(args);
  }
  TempDir dir;
  TestCert cert;
  PorticoProcess portico;
};

}  // namespace

TEST_CASE("host routes win over host-less ones, longest prefix, strip_prefix", "[routing]") {
  TestBackend api(named("api")), site(named("site")), admin(named("admin"));
  Setup setup("/            http://" + site.address() + "\n" + "/api/        http://" +
              api.address() + " strip_prefix\n" + "localhost/admin/ http://" + admin.address() +
              "\n");
  CHECK(setup.get("/index.html").stdout == "site /index.html");
  CHECK(setup.get("/api/users?id=7").stdout == "api /users?id=7");
  CHECK(setup.get("/api").stdout == "site /api");
  CHECK(setup.get("/admin/x").stdout == "admin /admin/x");
  // The same path under another host name does not reach the host route.
  CHECK(setup
            .get("/admin/x",
                 {"--resolve",
                  "other.test:" + std::to_string(setup.portico.https_port()) + ":127.0.0.1", "-k",
                  "-H", "Host: other.test"})
            .stdout == "site /admin/x");
  // Raw UTF-8 is escaped by normalisation: both spellings meet the route written escaped.
  RawTlsClient raw(setup.portico.https_port(), setup.cert.ca_cert);
  REQUIRE(raw.send("GET /admin/\xc3\xbc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
  CHECK(raw.read_all_until_close(5s).data.find("admin /admin/%C3%BC") != std::string::npos);
  // Matching is on the normalised path: dot segments and unreserved escapes.
  CHECK(setup.get("/x/../api/%75sers", {"--path-as-is"}).stdout == "api /users");
  // And merged slashes: "//api/x" is "/api/x" (NGINX's merge_slashes), not a path for "/".
  CHECK(setup.get("//api//users", {"--path-as-is"}).stdout == "api /users");
}

TEST_CASE("HTTP/1.0 without Host is served by host-less routes, or by the absolute-form's host",
          "[routing]") {
  TestBackend site(named("site")), admin(named("admin"));
  Setup setup("/ http://" + site.address() + "\nlocalhost/admin/ http://" + admin.address() + "\n");
  RawTlsClient client(setup.portico.https_port(), setup.cert.ca_cert);
  REQUIRE(client.send("GET /admin/x HTTP/1.0\r\nUser-Agent: checker\r\n\r\n"));
  ReadResult read = client.read_all_until_close(5s);
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  // No host to match the host route: the host-less one serves it.
  CHECK(read.data.find("\r\n\r\nsite /admin/x") != std::string::npos);
  CHECK(admin.request_count() == 0);
  REQUIRE(site.wait_for_requests(1));
  ReceivedRequest received = site.requests().at(0);
  CHECK(received.header("Host") == site.address());
  CHECK_FALSE(received.has_header("X-Forwarded-Host"));
  CHECK(received.header("Forwarded") == "for=127.0.0.1;proto=https");
  CHECK(received.header("User-Agent") == "checker");
  CHECK(setup.portico.process().try_wait_for_output(
      std::regex("access: .*host=- .*path=/admin/x .*status=200"), 5s));
  // HTTP/1.1 still needs exactly one Host, and HTTP/1.0 may not send two.
  for (const char* request :
       {"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"}) {
    INFO(request);
    RawTlsClient bad(setup.portico.https_port(), setup.cert.ca_cert);
    REQUIRE(bad.send(request));
    CHECK(bad.read_all_until_close(5s).data.rfind("HTTP/1.1 400", 0) == 0);
  }
  CHECK(site.request_count() == 1);
  // An absolute-form target names the host itself (RFC 9112 3.2.2), with the scheme in any
  // case (RFC 3986 3.1): the host route serves it, and the backend gets that host.
  // The scheme's default port, written in one and not the other, names the same authority.
  for (const char* request : {"GET http://localhost/admin/y HTTP/1.0\r\n\r\n",
                              "GET HTTP://localhost/admin/z?q HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n",
                              "GET https://localhost:443/admin/w HTTP/1.1\r\nHost: localhost\r\n"
                              "Connection: close\r\n\r\n"}) {
    INFO(request);
    RawTlsClient absolute(setup.portico.https_port(), setup.cert.ca_cert);
    REQUIRE(absolute.send(request));
    CHECK(absolute.read_all_until_close(5s).data.find("\r\n\r\nadmin /admin/") !=
          std::string::npos);
  }
  REQUIRE(admin.wait_for_requests(3));
  CHECK(admin.requests().at(0).target == "/admin/y");
  CHECK(admin.requests().at(0).header("Host") == "localhost");
  CHECK(admin.requests().at(0).header("X-Forwarded-Host") == "localhost");
  CHECK(admin.requests().at(1).target == "/admin/z?q");
  CHECK(admin.requests().at(2).target == "/admin/w");
  CHECK(admin.requests().at(2).header("Host") == "localhost");
  // Another port than the scheme's default is another authority: refused.
  RawTlsClient other_port(setup.portico.https_port(), setup.cert.ca_cert);
  REQUIRE(
      other_port.send("GET https://localhost:8443/admin/v HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  CHECK(other_port.read_all_until_close(5s).data.rfind("HTTP/1.1 400", 0) == 0);
  // Without a Host, an absolute-form target with no host at all is still refused.
  RawTlsClient empty(setup.portico.https_port(), setup.cert.ca_cert);
  REQUIRE(empty.send("GET http:///admin/x HTTP/1.0\r\n\r\n"));
  CHECK(empty.read_all_until_close(5s).data.rfind("HTTP/1.1 400", 0) == 0);
  CHECK(site.request_count() == 1);
  CHECK(admin.request_count() == 3);
}

TEST_CASE("round robin spreads requests evenly, least_conn and ip_hash", "[routing][balance]") {
  TestBackend a(named("a")), b(named("b")), c(named("c"));
  std::string three = "http://" + a.address() + " http://" + b.address() + " http://" + c.address();
  Setup setup("/rr " + three + "\n/hash " + three + " balance=ip_hash\n/least " + three +
              " balance=least_conn\n");
  std::map<std::string, int> counts;
  std::vector<std::string> args = {"--cacert", setup.cert.ca_cert};
  for (int i = 0; i < 30; ++i) {
    args.push_back("-o");
    args.push_back(setup.dir.file("rr" + std::to_string(i)));
    args.push_back(setup.portico.url("/rr"));
  }
  REQUIRE(curl(args).exit_code == 0);
  CHECK(a.request_count() == 10);
  CHECK(b.request_count() == 10);
  CHECK(c.request_count() == 10);

  std::set<std::string> hashed;
  for (int i = 0; i < 10; ++i) hashed.insert(setup.get("/hash").stdout.substr(0, 1));
  CHECK(hashed.size() == 1);  // one client address, one backend

  std::set<std::string> least;
  for (int i = 0; i < 6; ++i) least.insert(setup.get("/least").stdout.substr(0, 1));
  CHECK(least.size() == 3);  // sequential requests: all idle, ties go round
}

TEST_CASE("balance=cookie pins a client with a cookie portico sets", "[routing][balance]") {
  TestBackend a(named("a")), b(named("b"));
  Setup setup("/socket.io/ http://" + a.address() + " http://" + b.address() + " balance=cookie\n");
  CommandResult first = setup.get("/socket.io/?transport=polling", {"-i"});
  auto response = parse_http_responses(first.stdout).at(0);
  std::string set_cookie = response.header("Set-Cookie");
  std::smatch m;
  REQUIRE(std::regex_search(set_cookie, m,
                            std::regex("^portico_backend=(b[01]); Path=/socket.io/; "
                                       "HttpOnly; Secure; SameSite=Lax$")));
  std::string pinned = response.body.substr(0, 1);
  for (int i = 0; i < 6; ++i) {
    CommandResult again = setup.get("/socket.io/?transport=polling",
                                    {"-i", "-H", "Cookie: portico_backend=" + m[1].str()});
    auto r = parse_http_responses(again.stdout).at(0);
    CHECK(r.body.substr(0, 1) == pinned);
    CHECK_FALSE(r.has_header("Set-Cookie"));  // already pinned: nothing to set
  }
  // Without the cookie, requests go round.
  std::set<std::string> spread;
  for (int i = 0; i < 4; ++i) spread.insert(setup.get("/socket.io/").stdout.substr(0, 1));
  CHECK(spread.size() == 2);
}

TEST_CASE("a backend that refuses connections is marked down and skipped", "[routing][health]") {
  TestBackend live(named("live"));
  ClosedPort closed;
  uint16_t dead = closed.port();
  Setup setup("/ http://127.0.0.1:" + std::to_string(dead) + " http://" + live.address() + "\n");
  for (int i = 0; i < 6; ++i) {
    CommandResult r = setup.get("/x" + std::to_string(i));
    INFO(r.describe());
    CHECK(r.stdout == "live /x" + std::to_string(i));  // the failed connect is retried elsewhere
  }
  // The dead backend was tried once, then skipped while marked down.
  CHECK(setup.portico.process().try_wait_for_output(
      "connect failed backend=127.0.0.1:" + std::to_string(dead) + " address=127.0.0.1 ", 5s));
  std::string log = setup.portico.stderr_text();
  size_t failures = 0;
  for (size_t pos = 0; (pos = log.find("connect failed", pos)) != std::string::npos; ++pos) {
    ++failures;
  }
  CHECK(failures == 1);
}

namespace {

// A portico whose resolver gives "dual.portico.test" both 127.0.0.1 and ::1: an /etc/hosts of
// the test's own, bind-mounted in a mount namespace (unshare -m: root only), so the machine's
// resolver is not touched. run() starts it with `routes`, fetches each path once (printing
// "PATH=STATUS"), stops it, then runs --check --probe; portico's log is the result's stderr.
struct DualNameFront {
  static constexpr const char* kName = "dual.portico.test";
  TempDir dir;
  TestCert cert = make_test_cert(dir);

  // Empty `skipped` when it ran.
  CommandResult run(const std::string& routes_text, const std::vector<std::string>& paths,
                    std::string* skipped) {
    const std::string hosts = dir.write_file(
        "hosts", std::string("127.0.0.1 localhost\n127.0.0.1 ") + kName + "\n::1 " + kName + "\n");
    const std::string routes = dir.write_file("routes.conf", routes_text);
    const std::string port = std::to_string(free_port());
    const std::string tls =
        "--routes '" + routes + "' --cert '" + cert.fullchain + "' --key '" + cert.key + "'";
    const std::string fetch = "curl -s -o /dev/null -w '%{http_code}' --cacert '" + cert.ca_cert +
                              "' https://localhost:" + port;
    std::string script = "mount --bind '" + hosts +
                         "' /etc/hosts || exit 90\n'" PORTICO_BINARY "' " + tls +
                         " --listen 127.0.0.1 --https-port " + port +
                         " --http-port 0 --log-level debug &\npid=$!\n"
                         "for i in $(seq 50); do\n"
                         "  curl -s -o /dev/null --cacert '" +
                         cert.ca_cert + "' https://localhost:" + port +
                         "/ready-check && break\n"
                         "  sleep 0.2\n"
                         "done\n";
    for (const std::string& path : paths) {
      script += "echo \"" + path + "=$(" + fetch + path + " 2>/dev/null)\"\n";
    }
    script += "kill $pid; wait $pid\n'" PORTICO_BINARY "' " + tls + " --check --probe\n";
    CommandResult r = run_command({"unshare", "-m", "sh", "-c", script}, "", 90s);
    if (r.exit_code == 90 || r.stderr.find("unshare failed") != std::string::npos ||
        r.stderr.find("Operation not permitted") != std::string::npos) {
      *skipped = "no mount namespace of our own here (needs root): " + r.describe();
    }
    return r;
  }
};

// An address whose connects never complete: a listening socket whose accept queue is full
// (listen backlog 0, filled by connects of its own), so the kernel drops further SYNs, as a
// firewall that drops them or a host that is down would.
class UnansweringAddress {
 public:
  UnansweringAddress(const std::string& host, uint16_t port) {
    sockaddr_storage ss{};
    socklen_t len = fill_sockaddr(host, port, &ss);
    listener_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    REQUIRE(::listen(listener_, 0) == 0);
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    for (int i = 0; i < 4; ++i) {
      int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      REQUIRE(fd >= 0);
      ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);  // EINPROGRESS; some never finish
      fillers_.push_back(fd);
    }
    port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    std::this_thread::sleep_for(200ms);  // the queue fills
  }
  ~UnansweringAddress() {
    for (int fd : fillers_) ::close(fd);
    ::close(listener_);
  }
  uint16_t port() const { return port_; }

 private:
  int listener_ = -1;
  std::vector<int> fillers_;
  uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("every address of a backend name is tried: localhost reaches a backend on ::1 only",
          "[routing][health]") {
  // Node 17+ and Vite bind "localhost" to ::1 alone: 127.0.0.1 first, where nothing listens,
  // then ::1.
  TestBackend on_v6_only(named("v6"), BackendOptions{.host = "::1"});
  ClosedPort closed;  // on 127.0.0.1; nothing listens on [::1] there either (ephemeral, fresh)
  DualNameFront front;
  const std::string name = DualNameFront::kName;
  const std::string live = std::to_string(on_v6_only.port());
  const std::string dead = std::to_string(closed.port());
  std::string skipped;
  CommandResult r =
      front.run("/down/ http://" + name + ":" + dead + "\n/ http://" + name + ":" + live + "\n",
                {"/x", "/down/"}, &skipped);
  if (!skipped.empty()) {
    WARN(skipped);
    return;
  }
  const std::string& log = r.stderr;  // portico's
  INFO(r.describe());
  CHECK(r.stdout.find("/x=200") != std::string::npos);
  REQUIRE(on_v6_only.request_count() == 3);  // the readiness check, the request, the probe's
  CHECK(on_v6_only.requests()[1].target == "/x");
  CHECK(log.find("debug upstream: connect failed backend=" + name + ":" + live +
                 " address=127.0.0.1 error=ECONNREFUSED, trying the next address") !=
        std::string::npos);
  // When every address fails, the one line says each address tried, and why each failed.
  CHECK(r.stdout.find("/down/=502") != std::string::npos);
  CHECK(log.find("warn upstream: connect failed backend=" + name + ":" + dead +
                 " address=127.0.0.1,::1 error=ECONNREFUSED,ECONNREFUSED") != std::string::npos);
  // --check --probe tries them in the same order, and says which one answered and why the one
  // before it did not.
  CHECK(r.stdout.find("probe PASS route=/ backend=http://" + name + ":" + live) !=
        std::string::npos);
  CHECK(r.stdout.find("address=::1 earlier=\"connect 127.0.0.1: Connection refused\"") !=
        std::string::npos);
  CHECK(r.stdout.find("detail=connect 127.0.0.1: Connection refused; connect ::1: Connection "
                      "refused") != std::string::npos);
}

TEST_CASE("an address that never answers costs its own connect_timeout, then the next is tried",
          "[routing][health]") {
  TestBackend on_v6(named("v6"), BackendOptions{.host = "::1"});
  UnansweringAddress v4_silent("127.0.0.1", on_v6.port());  // the same port, on 127.0.0.1
  UnansweringAddress gone_v4("127.0.0.1", 0);
  UnansweringAddress gone_v6("::1", gone_v4.port());
  DualNameFront front;
  const std::string name = DualNameFront::kName;
  const std::string live = std::to_string(on_v6.port());
  const std::string gone = std::to_string(gone_v4.port());
  std::string skipped;
  CommandResult r =
      front.run("/gone/ http://" + name + ":" + gone + " connect_timeout=1s\n/ http://" + name +
                    ":" + live + " connect_timeout=1s\n",
                {"/slow", "/gone/"}, &skipped);
  if (!skipped.empty()) {
    WARN(skipped);
    return;
  }
  const std::string& log = r.stderr;
  INFO(r.describe());
  // 127.0.0.1 had its second, then ::1 answered: the request was served, and the backend is
  // not marked down (no "connect timed out" line for it).
  CHECK(r.stdout.find("/slow=200") != std::string::npos);
  CHECK(log.find("debug upstream: connect failed backend=" + name + ":" + live +
                 " address=127.0.0.1 error=ETIMEDOUT, trying the next address") !=
        std::string::npos);
  CHECK(log.find("connect timed out backend=" + name + ":" + live) == std::string::npos);
  // Both addresses silent: 504, and the line names both and why.
  CHECK(r.stdout.find("/gone/=504") != std::string::npos);
  CHECK(log.find("warn upstream: connect timed out backend=" + name + ":" + gone +
                 " address=127.0.0.1,::1 error=ETIMEDOUT,ETIMEDOUT") != std::string::npos);
  // The probe gives each address its own --probe-timeout, and says why the first failed.
  CHECK(r.stdout.find("address=::1 earlier=\"connect 127.0.0.1: timed out\"") != std::string::npos);
  CHECK(r.stdout.find("detail=connect 127.0.0.1: timed out; connect ::1: timed out") !=
        std::string::npos);
}

TEST_CASE("a backend that closes a new connection unanswered is not sent the request again",
          "[routing][health]") {
  TestBackend silent([](const ReceivedRequest&) {
    Response r;
    r.close_without_response = true;  // reads the request, then closes without a byte
    return r;
  });
  TestBackend live(named("live"));
  // One backend: the request reaches it once (GET and DELETE may be sent twice, but never to
  // a backend that just failed them), the client gets 502, and the log says why.
  {
    Setup setup("/ http://" + silent.address() + "\n");
    CommandResult get = setup.get("/once", {"-i"});
    CHECK(parse_http_responses(get.stdout).at(0).status == 502);
    CommandResult del = setup.get("/item", {"-i", "-X", "DELETE"});
    CHECK(parse_http_responses(del.stdout).at(0).status == 502);
    CHECK(silent.request_count() == 2);
    CHECK(setup.portico.process().try_wait_for_output(
        "exchange failed backend=" + silent.address() + " error=\"backend closed the connection\"",
        5s));
  }
  // Two backends: the next one answers, and the failed one is marked down and skipped.
  Setup setup("/ http://" + silent.address() + " http://" + live.address() + "\n");
  for (int i = 0; i < 4; ++i) {
    CommandResult r = setup.get("/x" + std::to_string(i));
    INFO(r.describe());
    CHECK(r.stdout == "live /x" + std::to_string(i));
  }
  CHECK(silent.request_count() == 3);  // 2 above, then /x0 (or /x1) once
  // A POST is not sent on to the next backend: the failed one may have acted on it.
  TestBackend silent_first([](const ReceivedRequest&) {
    Response r;
    r.close_without_response = true;
    return r;
  });
  Setup post_setup("/ http://" + silent_first.address() + " http://" + live.address() + "\n");
  CommandResult post = post_setup.get("/p", {"-i", "-X", "POST", "--data", "x"});
  // Round robin starts with the first backend, in every worker.
  CHECK(parse_http_responses(post.stdout).at(0).status == 502);
  // The backend that failed it is marked down all the same: the POSTs after it go to the
  // other one (NGINX counts the failure whether or not it passes the request on).
  for (int i = 0; i < 3; ++i) {
    CommandResult next = post_setup.get("/p" + std::to_string(i), {"-X", "POST", "--data", "x"});
    INFO(next.describe());
    CHECK(next.stdout == "live /p" + std::to_string(i));
  }
  CHECK(silent_first.request_count() == 1);
  for (const ReceivedRequest& request : live.requests()) CHECK(request.target != "/p");
}

TEST_CASE("all backends down gives 502 at once", "[routing][health]") {
  ClosedPort a, b;
  Setup setup("/ http://" + a.address() + " http://" + b.address() + "\n");
  CommandResult r = setup.get("/", {"-i"});
  CHECK(parse_http_responses(r.stdout).at(0).status == 502);
  CommandResult again = setup.get("/", {"-i"});
  CHECK(parse_http_responses(again.stdout).at(0).body.find("every backend of the route is down") !=
        std::string::npos);
}

TEST_CASE("max_body: 413 for a declared length and for a chunked body", "[routing][limits]") {
  TestBackend backend;
  Setup setup("/ http://" + backend.address() + " max_body=1k\n");
  std::string small = setup.dir.write_file("small", std::string(1024, 's'));
  std::string big = setup.dir.write_file("big", std::string(1025, 'b'));
  CHECK(setup.get("/", {"--data-binary", "@" + small, "-o", "/dev/null", "-w", "%{http_code}"})
            .stdout == "200");
  CHECK(setup.get("/", {"--data-binary", "@" + big, "-o", "/dev/null", "-w", "%{http_code}"})
            .stdout == "413");
  std::string big_stream = setup.dir.write_file("big2", std::string(200000, 'c'));
  CommandResult chunked =
      setup.get("/", {"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + big_stream, "-o",
                      "/dev/null", "-w", "%{http_code}"});
  CHECK(chunked.stdout == "413");
  REQUIRE(backend.wait_for_requests(1));
  CHECK(backend.requests().at(0).body_size == 1024);
}

TEST_CASE("upgrade=only and upgrade=never", "[routing][websocket]") {
  TestBackend backend;
  Setup setup("/ws http://" + backend.address() + " upgrade=only\n/plain http://" +
              backend.address() + " upgrade=never\n");
  auto refused = parse_http_responses(setup.get("/ws", {"-i"}).stdout).at(0);
  CHECK(refused.status == 426);
  CHECK(refused.header("Upgrade") == "websocket");  // RFC 9110 15.5.22: MUST
  WsClientOptions options;
  options.port = setup.portico.https_port();
  options.ca_file = setup.cert.ca_cert;
  options.path = "/plain";
  auto client = WsClient::connect(options);
  CHECK(client->status() == 403);
  CHECK(backend.request_count() == 0);
}

TEST_CASE("a client that half-closes after its request still gets the answer", "[routing]") {
  TestBackend backend(named("half"));
  Setup setup("/ http://" + backend.address() + "\n");
  RawTlsClient client(setup.portico.https_port(), setup.cert.ca_cert);
  REQUIRE(client.send("GET /h HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  client.shutdown_write();
  ReadResult read = client.read_all_until_close(5s);
  CHECK(read.data.rfind("HTTP/1.1 200", 0) == 0);
  CHECK(read.data.find("half /h") != std::string::npos);

  // Pipelined requests sent before the half-close are all answered, in order, each logged;
  // a trailing partial request (no more can come) just ends the connection.
  RawTlsClient pipelined(setup.portico.https_port(), setup.cert.ca_cert);
  std::string requests;
  for (int i = 0; i < 5; ++i) {
    requests += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  }
  REQUIRE(pipelined.send(requests + "GET /partial HTTP/1.1\r\nHost: loc"));
  pipelined.shutdown_write();
  ReadResult all = pipelined.read_all_until_close(5s);
  CHECK(all.closed != CloseKind::kOpen);
  size_t at = 0;
  for (int i = 0; i < 5; ++i) {
    INFO(i << "\n" << all.data);
    at = all.data.find("half /p" + std::to_string(i), at);
    CHECK(at != std::string::npos);
  }
  CHECK(all.data.find("/partial") == std::string::npos);
  CHECK(setup.portico.process().try_wait_for_output(std::regex("access: .*path=/p4 .*status=200"),
                                                    5s));
}

TEST_CASE("connect_timeout: a backend that never accepts gives 504", "[routing][health]") {
  // A listener whose accept queue is full drops further SYNs (Linux, tcp_abort_on_overflow=0),
  // so a connect to it hangs: the route's connect_timeout must end the wait.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(listener, 0) == 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(fd);
  }
  std::this_thread::sleep_for(100ms);
  Setup setup("/ http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) +
              " connect_timeout=300ms\n");
  CommandResult r = setup.get("/", {"-o", "/dev/null", "-w", "%{http_code}"});
  // As NGINX: the last attempt timed out, so 504 (a refused connect is 502: front_door_test).
  CHECK(r.stdout == "504");
  CHECK(setup.portico.process().try_wait_for_output("connect timed out backend=127.0.0.1:", 5s));
  for (int fd : fillers) close(fd);
  close(listener);
}

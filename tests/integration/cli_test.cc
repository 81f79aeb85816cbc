// Bad command lines and bad files: one clear line on stderr, exit status 2, nothing listening.

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/support/net.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

CommandResult run_portico(std::vector<std::string> args) {
  std::vector<std::string> argv{std::string(PORTICO_BINARY)};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, "", 15s);
}

// Exit 2, exactly one line of explanation, and no listener was ever started.
void check_config_error(const CommandResult& result, const std::string& expected) {
  INFO(result.describe());
  CHECK(result.exit_code == 2);
  CHECK(result.stderr.find(expected) != std::string::npos);
  CHECK(result.stderr.find("listening") == std::string::npos);
}

struct Files {
  Files() : cert(make_test_cert(dir)) {
    routes = dir.write_file("routes.conf", "/ http://127.0.0.1:9\n");
  }
  std::vector<std::string> args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a = {"--routes",     routes,   "--cert",      cert.fullchain,
                                  "--key",        cert.key, "--listen",    "127.0.0.1",
                                  "--https-port", "0",      "--http-port", "0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  TempDir dir;
  TestCert cert;
  std::string routes;
};

}  // namespace

TEST_CASE("cli: --help and --version exit 0", "[cli]") {
  CommandResult help = run_portico({"--help"});
  CHECK(help.exit_code == 0);
  CHECK(help.stdout.find("usage: portico --routes FILE --cert PEM --key PEM") != std::string::npos);
  CommandResult version = run_portico({"--version"});
  CHECK(version.exit_code == 0);
  CHECK(version.stdout.rfind("portico ", 0) == 0);
}

TEST_CASE("missing and unknown flags are refused", "[cli]") {
  Files files;
  check_config_error(run_portico({"--cert", files.cert.fullchain, "--key", files.cert.key}),
                     "--routes FILE is required");
  // (--routes alone is not an error: it serves the development certificate, see tls_test.cc.)
  check_config_error(run_portico({"--routes", files.routes, "--key", files.cert.key}),
                     "--cert and --key must be given in pairs");
  check_config_error(run_portico(files.args({"--frobnicate"})), "unknown option \"--frobnicate\"");
  check_config_error(run_portico(files.args({"--https-port", "99999"})),
                     "--https-port: not a port number: \"99999\"");
  check_config_error(run_portico(files.args({"--trusted-proxies", "10.0.0.0/33"})),
                     "--trusted-proxies: not an address or CIDR range");
  check_config_error(run_portico(files.args({"--keepalive-timeout", "5"})),
                     "--keepalive-timeout: not a duration");
  check_config_error(run_portico(files.args({"--cert", files.cert.fullchain})),
                     "--cert and --key must be given in pairs");
  // A flag that could do nothing: challenges are served on the HTTP port, which is off.
  check_config_error(run_portico(files.args({"--acme-webroot", files.dir.path()})),
                     "--acme-webroot needs the HTTP listener, but --http-port is 0");
}

TEST_CASE("listen addresses must be IP addresses, named by their flag", "[cli]") {
  Files files;
  check_config_error(run_portico(files.args({"--listen", "1.2.3"})),
                     "--listen: not an IP address: \"1.2.3\"");
  check_config_error(run_portico(files.args({"--listen", "localhost"})),
                     "--listen: not an IP address: \"localhost\"");
  check_config_error(run_portico(files.args({"--admin", "localhost:9100"})),
                     "--admin: not an IP address: \"localhost\"");
}

TEST_CASE("listen on :: takes IPv4 clients even where the system default is IPv6 only", "[cli]") {
  // net.ipv6.bindv6only=1 is set in a network namespace of the test's own (unshare -n: root
  // only), so the machine's setting is not touched.
  Files files;
  const std::string script =
      "ip link set lo up && echo 1 > /proc/sys/net/ipv6/bindv6only || exit 90\n"
      "'" PORTICO_BINARY "' --routes '" +
      files.routes + "' --cert '" + files.cert.fullchain + "' --key '" + files.cert.key +
      "' --listen :: --https-port 8443 --http-port 0 --log-level warn 2>/dev/null &\n"
      "pid=$!\n"
      "for i in $(seq 50); do\n"
      "  code=$(curl -s -o /dev/null -w '%{http_code}' --cacert '" +
      files.cert.ca_cert +
      "' https://127.0.0.1:8443/ 2>/dev/null)\n"
      "  [ \"$code\" != 000 ] && break\n"
      "  sleep 0.2\n"
      "done\n"
      "kill $pid; wait $pid\n"
      "echo \"ipv4=$code\"\n";
  CommandResult r = run_command({"unshare", "-n", "sh", "-c", script}, "", 30s);
  if (r.exit_code == 90 || r.stderr.find("unshare failed") != std::string::npos ||
      r.stderr.find("Operation not permitted") != std::string::npos) {
    WARN("no network namespace of our own here (needs root and iproute2): " << r.describe());
    return;
  }
  INFO(r.describe());
  CHECK(r.stdout.find("ipv4=502") != std::string::npos);  // served (its backend is down)
}

TEST_CASE("a tiny open files limit is said at start, not found as EMFILE under load", "[cli]") {
  // 100 open files carry (100 - 50) / 2 = 25 tunnels (the other half is set aside for the
  // listeners, logs and the rest): fewer than the 1,000 asked for.
  Files files;
  std::string command = "ulimit -n 100 && exec '" PORTICO_BINARY "'";
  for (const std::string& arg :
       files.args({"--workers", "1", "--max-connections", "1000", "--check"})) {
    command += " '" + arg + "'";
  }
  CommandResult r = run_command({"bash", "-c", command}, "", 15s);
  INFO(r.describe());
  CHECK(r.stderr.find("open files limit 100 carries 25 tunnels per worker, fewer than "
                      "--max-connections 1000") != std::string::npos);
}

TEST_CASE("check mode refuses what a start with the same flags would refuse", "[cli]") {
  Files files;
  const std::vector<std::string> base = {
      "--check", "--routes", files.routes, "--cert", files.cert.fullchain, "--key", files.cert.key};
  auto check_with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_portico(args);
  };
  CommandResult fine = check_with({});
  INFO(fine.describe());
  CHECK(fine.exit_code == 0);
  check_config_error(check_with({"--listen", "1.2.3"}), "--listen: not an IP address");
  check_config_error(check_with({"--admin", "localhost:9100"}), "--admin: not an IP address");
  check_config_error(check_with({"--http-port", "0", "--acme-webroot", files.dir.path()}),
                     "--acme-webroot needs the HTTP listener, but --http-port is 0");
  check_config_error(check_with({"--user", "no-such-user-portico"}),
                     "error portico: --user: no such user \"no-such-user-portico\"");
  const std::string missing_dir = files.dir.file("no/such/dir/access.log");
  check_config_error(check_with({"--access-log", missing_dir}),
                     missing_dir + ": cannot open access log: No such file or directory");
  // A log file that may be created is fine, and --check does not create it.
  const std::string new_log = files.dir.file("access.log");
  CommandResult creatable = check_with({"--access-log", new_log});
  CHECK(creatable.exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(new_log));
}

TEST_CASE("an unreadable or invalid route file is reported with its line", "[cli]") {
  Files files;
  check_config_error(run_portico({"--routes", files.dir.file("nope.conf"), "--cert",
                                  files.cert.fullchain, "--key", files.cert.key}),
                     "nope.conf: cannot read: No such file or directory");
  // A directory opens like a file and then reads as an empty one: "no routes" would mislead.
  check_config_error(run_portico({"--routes", files.dir.path(), "--cert", files.cert.fullchain,
                                  "--key", files.cert.key}),
                     files.dir.path() + ": cannot read: Is a directory");

  std::string bad = files.dir.write_file(
      "bad.conf", "# comment\n/api/ http://127.0.0.1:3000\n/ws ftp://127.0.0.1:4000\n/x\n");
  CommandResult result = run_portico({"--routes", bad, "--cert", files.cert.fullchain, "--key",
                                      files.cert.key, "--https-port", "0", "--http-port", "0"});
  INFO(result.describe());
  CHECK(result.exit_code == 2);
  CHECK(result.stderr.find(bad + ":3:") != std::string::npos);
  CHECK(result.stderr.find(bad + ":4:") != std::string::npos);
  CHECK(result.stderr.find("listening") == std::string::npos);
}

TEST_CASE("a bad CA bundle for https:// backends is an error at start, naming the line", "[cli]") {
  Files files;
  std::string missing = files.dir.write_file(
      "missing-ca.conf", "/ http://127.0.0.1:9\n/tls/ https://127.0.0.1:9443 ca=nowhere.pem\n");
  check_config_error(
      run_portico({"--routes", missing, "--cert", files.cert.fullchain, "--key", files.cert.key}),
      missing + ":2: ca " + files.dir.file("nowhere.pem") + ": No such file or directory");
  files.dir.write_file("junk-ca.pem", "not a certificate\n");
  std::string junk =
      files.dir.write_file("junk-ca.conf", "/ https://127.0.0.1:9443 ca=junk-ca.pem\n");
  check_config_error(
      run_portico({"--routes", junk, "--cert", files.cert.fullchain, "--key", files.cert.key}),
      junk + ":1: ca " + files.dir.file("junk-ca.pem") + ": no PEM certificate could be read");
  // ca= where it cannot apply is a route-file error with its column.
  std::string plain = files.dir.write_file("plain-ca.conf", "/ http://127.0.0.1:9 ca=x.pem\n");
  check_config_error(
      run_portico({"--routes", plain, "--cert", files.cert.fullchain, "--key", files.cert.key}),
      plain + ":1:22: ca= applies to https:// backends, and this route has none");
}

TEST_CASE("certificate problems are reported naming the file", "[cli]") {
  Files files;
  check_config_error(run_portico({"--routes", files.routes, "--cert", files.dir.file("missing.pem"),
                                  "--key", files.cert.key}),
                     "missing.pem: cannot read: No such file or directory");
  check_config_error(
      run_portico({"--routes", files.routes, "--cert", files.dir.path(), "--key", files.cert.key}),
      files.dir.path() + ": cannot read: Is a directory");
  std::string junk = files.dir.write_file("junk.pem", "not a certificate\n");
  check_config_error(
      run_portico({"--routes", files.routes, "--cert", junk, "--key", files.cert.key}),
      "junk.pem: not a PEM certificate");
  check_config_error(
      run_portico({"--routes", files.routes, "--cert", files.cert.fullchain, "--key", junk}),
      "junk.pem: not a PEM private key");
  TestCert other = make_test_cert(files.dir, {"localhost"}, "other");
  check_config_error(
      run_portico({"--routes", files.routes, "--cert", files.cert.fullchain, "--key", other.key}),
      "private key does not match the certificate in " + files.cert.fullchain);
  std::string unreadable = files.dir.write_file("secret.pem", "x");
  if (geteuid() != 0) {
    chmod(unreadable.c_str(), 0);
    check_config_error(run_portico({"--routes", files.routes, "--cert", files.cert.fullchain,
                                    "--key", unreadable}),
                       "secret.pem: cannot read: Permission denied");
  }
}

TEST_CASE("a port in use is reported before anything listens", "[cli]") {
  Files files;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(fd, 1) == 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string port = std::to_string(ntohs(addr.sin_port));
  std::vector<std::string> args = {
      "--routes",     files.routes,   "--cert",      files.cert.fullchain,
      "--key",        files.cert.key, "--listen",    "127.0.0.1",
      "--https-port", port,           "--http-port", "0"};
  CommandResult result = run_portico(args);
  // A line with its level like every other once the log has begun (certificate lines came first).
  check_config_error(result, "\nerror portico: cannot listen on 127.0.0.1:" + port +
                                 " (--https-port): address already in use\n");
  // The redirect port too: the TLS listener must not stay up when the second bind fails.
  std::vector<std::string> args2 = {
      "--routes",     files.routes, "--cert",    files.cert.fullchain, "--key",
      files.cert.key, "--listen",   "127.0.0.1", "--https-port",       "0",
      "--http-port",  port};
  check_config_error(run_portico(args2), "cannot listen on 127.0.0.1:" + port);
  close(fd);
}

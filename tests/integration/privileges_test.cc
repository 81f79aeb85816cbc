// --user NAME: portico binds and reads its files as root, then runs as NAME. These tests need
// root (the test command runs as root); run by another user they only say so.

#include <pwd.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "tests/support/portico_process.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

namespace {

// The "Uid:" or "Gid:" line of /proc/PID/status: real, effective, saved, filesystem.
std::string status_line(pid_t pid, const std::string& key) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(key, 0) == 0) return line;
  }
  return "";
}

std::string all_four(unsigned id) {
  const std::string n = std::to_string(id);
  return n + "\t" + n + "\t" + n + "\t" + n;
}

CommandResult curl_get(const TestCert& cert, const PorticoProcess& portico) {
  return curl({"--cacert", cert.ca_cert, "-sS", portico.url("/who")});
}

}  // namespace

TEST_CASE("user: portico binds as root, then runs as the user, reload errors name the user",
          "[privileges]") {
  if (geteuid() != 0) {
    WARN("not root: --user cannot be tested");
    return;
  }
  passwd* nobody = getpwnam("nobody");
  REQUIRE(nobody != nullptr);
  TempDir dir;  // 0700 root: after the drop, portico cannot read anything in it
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert, {"--user", "nobody"});
  portico.process().wait_for_output("running as user=nobody uid=" + std::to_string(nobody->pw_uid));
  const pid_t pid = portico.process().pid();
  CHECK(status_line(pid, "Uid:") == "Uid:\t" + all_four(nobody->pw_uid));
  CHECK(status_line(pid, "Gid:") == "Gid:\t" + all_four(nobody->pw_gid));
  CHECK(portico.stderr_text().find("staying root") == std::string::npos);
  // Serving goes on as before, on the ports bound as root.
  CHECK(curl_get(cert, portico).stdout == "ok GET /who");

  // A reload now reads the files as nobody, which may not: the error says whose permission, and
  // the configuration loaded at start keeps serving.
  portico.process().signal(SIGHUP);
  auto failed = portico.process().wait_for_output(
      std::regex("cannot read: Permission denied \\(portico runs as user nobody after --user: "
                 "the file must be readable by nobody\\)"),
      10s);
  CHECK(failed.groups.size() == 1);
  CHECK(curl_get(cert, portico).stdout == "ok GET /who");
}

TEST_CASE("user: with the development certificate, reloads still apply", "[privileges]") {
  if (geteuid() != 0) {
    WARN("not root: --user cannot be tested");
    return;
  }
  auto answering = [](const char* name) {
    return [name](const ReceivedRequest&) {
      Response response;
      response.body = name;
      return response;
    };
  };
  TestBackend a(answering("A")), b(answering("B"));
  TempDir dir;
  // The route file readable by nobody; the development certificate in a state directory that
  // portico makes 0700 for root, out of nobody's reach after the drop.
  std::filesystem::permissions(dir.path(), std::filesystem::perms(0755));
  const std::string state = dir.file("state");
  PorticoProcess portico(dir, "/ http://" + a.address() + "\n", TlsArgs{{}},
                         {"--user", "nobody", "--state-dir", state});
  portico.process().wait_for_output("running as user=nobody");
  std::filesystem::permissions(portico.routes_path(), std::filesystem::perms(0644));
  auto get = [&] {
    return curl({"--cacert", state + "/dev-cert.pem", "-sS", portico.url("/who")}).stdout;
  };
  CHECK(get() == "A");
  const size_t from = portico.stderr_text().size();
  {
    std::ofstream out(portico.routes_path(), std::ios::trunc);
    out << "/ http://" << b.address() << "\n";
  }
  portico.process().wait_for_output(
      std::regex("info reload: configuration reloaded routes=1 certificate=unchanged\n"), 10s,
      Stream::kStderr, from);
  CHECK(portico.stderr_text().find("Permission denied") == std::string::npos);
  CHECK(get() == "B");
}

TEST_CASE("user: an unknown user stops the start before anything listens", "[privileges]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  std::string routes = dir.write_file("routes.conf", "/ http://127.0.0.1:9\n");
  CommandResult r =
      run_command({PORTICO_BINARY, "--routes", routes, "--cert", cert.fullchain, "--key", cert.key,
                   "--https-port", "0", "--http-port", "0", "--user", "no-such-user-x"},
                  "", 30s);
  INFO(r.describe());
  CHECK(r.exit_code == 2);
  CHECK(r.stderr.find("--user: no such user \"no-such-user-x\"") != std::string::npos);
  CHECK(r.stderr.find("listening") == std::string::npos);
}

TEST_CASE("user: started as root without it, portico says once that it keeps root",
          "[privileges]") {
  if (geteuid() != 0) {
    WARN("not root: the warning is not given");
    return;
  }
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  PorticoProcess portico(dir, "/ http://" + backend.address() + "\n", cert);
  CHECK(curl_get(cert, portico).stdout == "ok GET /who");
  const std::string log = portico.stderr_text();
  const std::string warning = "warn portico: running as root and staying root";
  const size_t first = log.find(warning);
  CHECK(first != std::string::npos);
  CHECK(log.find(warning, first + 1) == std::string::npos);
  CHECK(status_line(portico.process().pid(), "Uid:") == "Uid:\t" + all_four(0));
}

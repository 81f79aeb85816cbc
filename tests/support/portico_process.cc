#include "tests/support/portico_process.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <regex>

#include "tests/support/net.h"
#include "tests/support/raw_client.h"

namespace portico::test {

PorticoProcess::PorticoProcess(const TempDir& dir, std::string routes_text, const TestCert& cert,
                               std::vector<std::string> extra_args) {
  start(dir, std::move(routes_text), {"--cert", cert.fullchain, "--key", cert.key},
        std::move(extra_args));
}

PorticoProcess::PorticoProcess(const TempDir& dir, std::string routes_text, const TlsArgs& tls_args,
                               std::vector<std::string> extra_args) {
  start(dir, std::move(routes_text), tls_args.args, std::move(extra_args));
}

void PorticoProcess::start(const TempDir& dir, std::string routes_text,
                           std::vector<std::string> tls_args, std::vector<std::string> extra_args) {
  routes_path_ = dir.write_file("routes.conf", routes_text);
  std::vector<std::string> argv = {PORTICO_BINARY, "--routes"};
  argv.push_back(routes_path_);
  argv.insert(argv.end(), tls_args.begin(), tls_args.end());
  // One worker unless the test asks for more: the assertions about pooled backend connections,
  // connection limits and exact metrics are about one loop (workers_test.cc covers several).
  for (const char* arg : {"--https-port", "0", "--listen", "127.0.0.1", "--workers", "1"}) {
    argv.push_back(arg);
  }
  auto http_flag = std::find(extra_args.begin(), extra_args.end(), "--http-port");
  bool expect_http = true;
  if (http_flag == extra_args.end()) {
    argv.push_back("--http-port");
    argv.push_back(std::to_string(free_port()));
  } else if (http_flag + 1 != extra_args.end() && *(http_flag + 1) == "0") {
    expect_http = false;  // portico: "--http-port 0 turns it off"
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  // In sanitizer builds ASan holds freed memory in a quarantine (256 MiB by default), which
  // would hide what the memory-bound tests measure; a small one keeps their RSS honest.
  ProcessOptions options;
  const char* asan = std::getenv("ASAN_OPTIONS");
  options.env.emplace_back("ASAN_OPTIONS", std::string(asan ? asan : "") +
                                               (asan && *asan ? ":" : "") + "quarantine_size_mb=4");
  process_ = std::make_unique<Process>(argv, options);

  // The address may be IPv4 or [IPv6] if the test passes its own --listen; the port is last.
  auto https = process_->wait_for_output(std::regex(R"(listening kind=https addr=\S*:(\d+))"), 10s);
  https_port_ = static_cast<uint16_t>(std::stoi(https[1]));
  if (expect_http) {
    auto http = process_->wait_for_output(std::regex(R"(listening kind=http addr=\S*:(\d+))"), 10s);
    http_port_ = static_cast<uint16_t>(std::stoi(http[1]));
  }
}

// Every test ends with the proxy's own clean stop: SIGTERM must end it with status 0, and a
// sanitizer build must have reported nothing (LeakSanitizer runs at that exit too).
PorticoProcess::~PorticoProcess() {
  if (!process_ || !process_->running()) {
    check_clean_exit();
    return;
  }
  process_->signal(SIGTERM);
  process_->wait_exit(20s);
  check_clean_exit();
}

void PorticoProcess::check_clean_exit() {
  if (!process_ || std::uncaught_exceptions() > 0) return;
  std::string err = process_->stderr_text();
  INFO("portico stderr:\n" << err);
  CHECK(err.find("AddressSanitizer") == std::string::npos);
  CHECK(err.find("LeakSanitizer") == std::string::npos);
  CHECK(err.find("ThreadSanitizer") == std::string::npos);
  CHECK(err.find("runtime error:") == std::string::npos);
  auto status = process_->exit_status();
  if (status && !expect_nonzero_exit_) {
    INFO("portico " << status->describe());
    CHECK(status->exited_ok());
  }
}

std::string PorticoProcess::url(const std::string& path) const {
  return "https://localhost:" + std::to_string(https_port_) + path;
}

std::string PorticoProcess::http_url(const std::string& path) const {
  return "http://localhost:" + std::to_string(http_port_) + path;
}

uint16_t PorticoProcess::admin_port() {
  if (admin_port_ == 0) {
    auto admin =
        process_->wait_for_output(std::regex(R"(listening kind=admin addr=\S*:(\d+))"), 10s);
    admin_port_ = static_cast<uint16_t>(std::stoi(admin[1]));
  }
  return admin_port_;
}

std::string PorticoProcess::admin_get(const std::string& path, const std::string& method) {
  RawTcpClient client(admin_port());
  INFO(client.error());
  REQUIRE(client.ok());
  client.send(method + " " + path + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
  return client.read_all_until_close(5s).data;
}

}  // namespace portico::test

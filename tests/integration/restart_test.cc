// Zero-downtime restart (docs/operations.md): a new portico binds the same port (SO_REUSEPORT)
// while the old one serves, then the old one gets SIGTERM. Clients that keep opening new
// connections all the while must all get their answer: nothing refused, nothing reset.

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/net.h"
#include "tests/support/portico_process.h"
#include "tests/support/raw_client.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_backend.h"
#include "tests/support/test_cert.h"

using namespace portico::test;
using namespace std::chrono_literals;

TEST_CASE("restart: start the new portico on the same port, SIGTERM the old, nothing is refused",
          "[restart]") {
  TempDir dir;
  TestCert cert = make_test_cert(dir);
  TestBackend backend;
  const uint16_t port = free_port();
  const std::string routes = "/ http://" + backend.address() + "\n";
  // Two workers each: every socket of both processes shares the port.
  const std::vector<std::string> same_port = {
      "--https-port", std::to_string(port), "--http-port", "0", "--workers", "2"};
  auto old_proxy = std::make_unique<PorticoProcess>(dir, routes, cert, same_port);

  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::mutex mutex;
  std::vector<std::string> failures;
  auto client = [&] {
    while (!stop) {
      RawTlsClient tls(port, cert.ca_cert);
      std::string failure;
      if (!tls.ok()) {
        failure = "connect/handshake: " + tls.error();
      } else if (!tls.send(
                     "GET /restart HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")) {
        failure = "send failed";
      } else {
        ReadResult r = tls.read_all_until_close(10s);
        if (r.data.starts_with("HTTP/1.1 200 ")) {
          ++answered;
          continue;
        }
        failure = "answer: " + r.data.substr(0, 40) + " close=" + to_string(r.closed);
      }
      std::lock_guard lock(mutex);
      failures.push_back(failure);
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(client);

  std::this_thread::sleep_for(300ms);
  // The new one binds the port the old one is listening on.
  auto new_proxy = std::make_unique<PorticoProcess>(dir, routes, cert, same_port);
  std::this_thread::sleep_for(300ms);
  const int before_stop = answered.load();
  const bool old_warned = old_proxy->stderr_text().find("port shared") != std::string::npos;
  old_proxy.reset();  // SIGTERM, then it must exit 0 (checked by PorticoProcess)
  const int at_stop = answered.load();
  std::this_thread::sleep_for(500ms);
  stop = true;
  for (std::thread& t : clients) t.join();

  std::string all;
  for (const std::string& f : failures) all += f + "\n";
  INFO("failures:\n" << all << "answered: " << answered.load());
  CHECK(failures.empty());
  CHECK(before_stop > 0);
  CHECK(answered.load() > at_stop);  // the new portico carried on alone
  // Both served: the new one's access log has requests.
  CHECK(new_proxy->stderr_text().find("path=/restart") != std::string::npos);
  // The new one said it shares the port (as a second portico started by mistake would); the
  // old one, alone on it at its start, did not.
  CHECK_FALSE(old_warned);
  CHECK(new_proxy->stderr_text().find("warn listener: port shared with another process "
                                      "flag=--https-port port=" +
                                      std::to_string(port)) != std::string::npos);
}

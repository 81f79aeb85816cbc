#pragma once

// ScriptedBackend: a plain-TCP backend for tests that need exact bytes on the wire in an exact
// order (a connection closed right after a request head, a response followed by bytes no
// request asked for). Each accepted connection runs the test's script on a thread of its own.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace portico::test {

class ScriptedBackend {
 public:
  // `number` counts the connections from 1. The socket is closed when the script returns.
  using Script = std::function<void(int fd, int number)>;
  explicit ScriptedBackend(Script script);
  ~ScriptedBackend();  // stops accepting, shuts down open connections, joins every thread
  ScriptedBackend(const ScriptedBackend&) = delete;
  ScriptedBackend& operator=(const ScriptedBackend&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections_accepted() const { return accepted_; }

  // Reads from `fd` until what was read holds `marker`, the peer closes or the timeout passes;
  // returns all that was read.
  static std::string read_until(int fd, std::string_view marker,
                                std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Everything `fd` receives until the peer closes or `quiet` passes without a byte.
  static std::string read_for(int fd, std::chrono::milliseconds quiet);
  static bool send_all(int fd, std::string_view bytes);

 private:
  void accept_loop();

  Script script_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> accepted_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace portico::test

#pragma once

// An example backend from examples/ (build/examples/NAME) started on a port of its choosing.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/process.h"

namespace portico::test {

struct ExampleServer {
  // Starts build/examples/NAME --port 0 EXTRA... and reads the port it prints on stdout.
  explicit ExampleServer(const std::string& name, std::vector<std::string> extra = {});
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  std::unique_ptr<Process> process;
  uint16_t port = 0;
};

// The example WebSocket server: echo on every path, broadcast on /chat.
struct WsServer : ExampleServer {
  explicit WsServer(std::vector<std::string> extra = {})
      : ExampleServer("ws_server", std::move(extra)) {}
};

}  // namespace portico::test

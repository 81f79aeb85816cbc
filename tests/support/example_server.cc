#include "tests/support/example_server.h"

#include <regex>

namespace portico::test {

ExampleServer::ExampleServer(const std::string& name, std::vector<std::string> extra) {
  std::vector<std::string> argv = {PORTICO_BUILD_DIR "/examples/" + name, "--port", "0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  process = std::make_unique<Process>(argv);
  auto match = process->wait_for_output(std::regex(R"(listening on \S+:(\d+))"),
                                        std::chrono::seconds(10), Stream::kStdout);
  port = static_cast<uint16_t>(std::stoi(match[1]));
}

}  // namespace portico::test

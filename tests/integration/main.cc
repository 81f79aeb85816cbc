#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <csignal>

#include "tests/support/catch_session.h"

int main(int argc, char* argv[]) {
  // Tests write to sockets that the proxy may close first; that must be an error, not a signal.
  std::signal(SIGPIPE, SIG_IGN);
  return portico::test::run_catch_session(argc, argv);
}

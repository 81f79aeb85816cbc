// The Catch2 session every test executable runs.
#pragma once

#include <catch2/catch.hpp>

namespace portico::test {

// Runs the test cases named on the command line. CTest runs one test case per entry, by name: a
// name that matches nothing (CMake cuts a name at ';', Catch2 reads ',' as "or") and a test
// case that asserts nothing must fail rather than pass as "No tests ran". Catch2 v2 takes only
// one --warn on its command line, so both warnings are set here.
inline int run_catch_session(int argc, char* argv[]) {
  Catch::Session session;
  if (int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  session.configData().warnings = static_cast<Catch::WarnAbout::What>(
      session.configData().warnings | Catch::WarnAbout::NoTests | Catch::WarnAbout::NoAssertions);
  return session.run();
}

}  // namespace portico::test

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/support/catch_session.h"

int main(int argc, char* argv[]) { return portico::test::run_catch_session(argc, argv); }

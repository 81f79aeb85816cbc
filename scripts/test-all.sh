#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test.
#   1. gcc build (warnings are errors) and the whole CTest suite;
#   2. the end-to-end browser test (headless Chromium, the same-origin example app);
#   3. clang build with ThreadSanitizer: the tests that run several workers in one process;
#   4. clang build with AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite again,
#      plus the libFuzzer targets, each run for a bounded time.
# The last thing it prints is CTest's summary of the sanitizer run, which includes everything.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
jobs=$(nproc)

echo "== gcc build and tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPORTICO_WERROR=ON >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs" --timeout 600

echo "== the browser test: headless Chromium through portico (tests/e2e)"
PORTICO_BUILD_DIR=build bash tests/e2e/run.sh

echo "== clang ThreadSanitizer build: the tests that run several workers (threads) in one portico"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_FLAGS=-fsanitize=thread \
  -DCMAKE_CXX_FLAGS=-fsanitize=thread -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
cmake --build build-tsan -j "$jobs" --target portico integration_tests api_server ws_server ws_load
# A race report makes portico exit non-zero (TSan's exit code 66), which the tests check.
TSAN_OPTIONS=report_signal_unsafe=0 build-tsan/tests/integration_tests "[workers],[restart]"

echo "== clang ASan+UBSan build, tests and fuzzing"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DPORTICO_SANITIZE=ON -DPORTICO_FUZZ=ON -DPORTICO_WERROR=ON \
  >/dev/null
cmake --build build-asan -j "$jobs"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j "$jobs" --timeout 900

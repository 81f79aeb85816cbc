#!/usr/bin/env bash
# The real-browser end-to-end test, from a clean clone on Debian 12 (as root, or with sudo):
# installs what is missing (Debian's chromium, node and npm, openssl), runs `npm ci` for the test
# and for examples/same-origin, builds portico and the example servers if build/ lacks them, and
# runs tests/e2e/browser.test.mjs. Its exit status is the test's; its last line is the test's
# `N passed, M failed`.
#
#   bash tests/e2e/run.sh
#
# PORTICO_BUILD_DIR (default build) names the build directory to use or create.
set -euo pipefail
cd "$(dirname "$0")/../.."

build_dir=${PORTICO_BUILD_DIR:-build}
export PORTICO_BUILD_DIR=$build_dir

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi

# Runtime packages, by command rather than by package name: node and npm may come from
# NodeSource (whose nodejs bundles npm and conflicts with Debian's npm package).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-liberation fonts-dejavu-core)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

npm_ci() {
  (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
}
npm_ci tests/e2e
npm_ci examples/same-origin

if [ ! -x "$build_dir/portico" ] || [ ! -x "$build_dir/examples/api_server" ] ||
   [ ! -x "$build_dir/examples/ws_server" ]; then
  bash scripts/install-deps.sh
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build_dir" --target portico api_server ws_server
fi

# The test bounds itself (100 s) and stops everything it started; `timeout` is the backstop, and
# it sends SIGTERM first so that the test still cleans up and prints its summary line.
exec timeout -k 10 150 node tests/e2e/browser.test.mjs

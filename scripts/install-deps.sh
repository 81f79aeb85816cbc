#!/usr/bin/env bash
# Installs the Debian 12 packages portico needs to build, test and run its demo.
# Only what is missing is installed; needs root (or sudo).
#   bash scripts/install-deps.sh [--build-only] [EXTRA-PACKAGE ...]
# --build-only: just what a Release build of portico needs (tests/bench/run.sh), not the
# sanitizer compilers and test clients.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config openssl
  libuv1-dev libssl-dev libwslay-dev catch2 node-llhttp   # the fixed stack
)
if [ "${1:-}" = "--build-only" ]; then
  shift
else
  packages+=(
    git
    clang libclang-rt-14-dev                              # sanitizer and libFuzzer builds
    curl sslscan                                          # the real clients the tests use
    iproute2                                              # ip: a test's own network namespace
    mount                                                 # a test's own /etc/hosts (bind mount)
  )
fi
[ $# -gt 0 ] && packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi
echo "installing: ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null

#!/usr/bin/env bash
# Installs the Debian 12 packages portico needs to build, test and run its demo.
# Only what is missing is installed; needs root (or sudo).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libuv1-dev libssl-dev libwslay-dev catch2 node-llhttp   # the fixed stack
  clang libclang-rt-14-dev                                # sanitizer and libFuzzer builds
  curl openssl sslscan                                    # the real clients the tests use
  procps                                                  # ps/pgrep for the demo's clean-up
)
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

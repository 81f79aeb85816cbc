#!/usr/bin/env bash
# The demo: installs what is missing, builds portico, starts the
# example API server (also serving the page) and the WebSocket echo server, and puts portico in
# front of them on https://localhost:8443 (with http://localhost:8080 redirecting to it).
# Stop it with Ctrl-C; everything it started stops with it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target portico api_server ws_server

# No --cert/--key: portico makes (once) and reuses a self-signed development certificate for
# localhost, 127.0.0.1 and ::1 in the state directory.
state=build/demo
mkdir -p "$state"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null; }
trap cleanup EXIT INT TERM

build/examples/api_server --port 3000 --static examples/demo/public --quiet & pids+=($!)
build/examples/ws_server --port 4000 --quiet & pids+=($!)
build/portico --routes examples/demo/routes.conf --state-dir "$state" \
  --https-port 8443 --http-port 8080 & pids+=($!)
sleep 1
cat <<MSG

  portico is running. Open  https://localhost:8443/   (or http://localhost:8080/, which redirects)
  The certificate is a self-signed development one: $state/dev-cert.pem
  Try:  curl --cacert $state/dev-cert.pem https://localhost:8443/api/hello
  Ctrl-C stops portico and the example servers.

MSG
wait "${pids[2]}"

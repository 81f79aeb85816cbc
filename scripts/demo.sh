#!/usr/bin/env bash
# The demo: installs what is missing, builds portico, starts the
# example API server (also serving the page) and the WebSocket echo server, and puts portico in
# front of them on https://localhost:8443 (with http://localhost:8080 redirecting to it).
# Stop it with Ctrl-C (or SIGTERM to the script or its process group); everything it started
# stops with it, portico gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target portico api_server ws_server

# No --cert/--key: portico makes (once) and reuses a self-signed development certificate for
# localhost, 127.0.0.1 and ::1 in the state directory.
state=build/demo
mkdir -p "$state"

listening() { (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

# A port another program holds would have the demo proxy to that program (or portico not
# start) while it said all was well: said, and nothing is started.
for port in 3000 4000 8443 8080; do
  if listening "$port"; then
    echo "demo: port $port is in use by another program (ss -ltnp shows which); stop it first" >&2
    exit 1
  fi
done

pids=()
names=()
stopping=0
# Each child runs in a session of its own (setsid), so a signal to the demo's process group
# (Ctrl-C, kill -- -PGID, a process manager) reaches only this script, which passes one SIGTERM
# to each: a second one would make portico skip its graceful stop.
cleanup() {
  ((stopping)) && return
  stopping=1
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

start() {  # start NAME PORT COMMAND...: runs it, and waits until it listens on PORT
  local name=$1 port=$2 i
  shift 2
  setsid "$@" &
  pids+=($!)
  names+=("$name")
  for i in $(seq 100); do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "demo: $name did not start (its message is above)" >&2
      exit 1
    fi
    listening "$port" && return 0
    sleep 0.1
  done
  echo "demo: $name is not listening on port $port after 10 s" >&2
  exit 1
}

start api_server 3000 build/examples/api_server --port 3000 --static examples/demo/public --quiet
start ws_server 4000 build/examples/ws_server --port 4000 --quiet
start portico 8443 build/portico --routes examples/demo/routes.conf --state-dir "$state" \
  --https-port 8443 --http-port 8080
cat <<MSG

  portico is running. Open  https://localhost:8443/   (or http://localhost:8080/, which redirects)
  The certificate is a self-signed development one: $state/dev-cert.pem
  Try:  curl --cacert $state/dev-cert.pem https://localhost:8443/api/hello
  Ctrl-C stops portico and the example servers.

MSG
# Whichever of the three ends first ends the demo (and the trap stops the other two).
set +e
wait -n "${pids[@]}"
status=$?
set -e
((stopping)) || echo "demo: a process of the demo exited (status $status); stopping the others" >&2
exit "$status"

#!/usr/bin/env bash
# Side-by-side benchmark: portico, NGINX and HAProxy in front of the same backends, on loopback.
#
#   bash tests/bench/run.sh [--quick] [--rounds N]
#   bash tests/bench/run.sh --instructions
#
# Installs what it lacks (Debian packages), builds portico, the example backends and ws_load in
# build-bench/ (Release), makes one ECDSA P-256 certificate, starts api_server and ws_server, then
# each round starts the three proxies in front of them and runs each scenario of
# docs/performance.md against the three in turn (portico, NGINX, HAProxy; NGINX, HAProxy,
# portico; ... one proxy later each scenario and each round). Prints
# the machine and a Markdown table of medians and ratios, also written to
# build-bench/bench-results.md. Every load is bounded in time; every process started here is
# ended on exit.
#
# --instructions counts instead of timing: each proxy runs under callgrind, and the table gives
# the instructions it executes (user space: its own code, OpenSSL, libc) per request, handshake
# or message. Unlike requests/s on a shared 2-core VM, these do not move between runs.
#
# --rounds N alternates the proxies N times instead of 3 (1 with --quick); the medians are then
# taken over N rounds. Each round takes 2.1-2.6 minutes.
#
# --only s2,s2b runs just those scenarios (any of s1..s9; the ceiling loads only for the S1, S3
# and S5 among them): many rounds of one scenario in the time of a few full rounds, where its
# paired median needs more readings than the rest to settle.
set -euo pipefail

COMMAND_ARGS="$*"  # for the report; the loop below consumes the arguments
QUICK=0
INSTR=0
ROUNDS_ASKED=
ONLY=
while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --only)
      [[ "${2:-}" =~ ^(s[1-9]|s2b)(,(s[1-9]|s2b))*$ ]] ||
        { echo "run.sh: --only wants scenario keys such as s2,s2b (s1..s9, s2b)" >&2; exit 2; }
      ONLY=",$2,"
      shift ;;
    --instructions) INSTR=1 ;;
    --rounds)
      [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds wants a number of rounds, 1 or more" >&2; exit 2; }
      ROUNDS_ASKED=$2
      shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (want --quick, --rounds N, --only KEYS or --instructions)" >&2; exit 2 ;;
  esac
  shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD="$ROOT/build-bench"
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

if ((QUICK)); then
  ROUNDS=1; D_S1=3; D_SHORT=2; SPEED_SECONDS=1
else
  ROUNDS=3; D_S1=6; D_SHORT=4; SPEED_SECONDS=2
fi
[[ -n "$ROUNDS_ASKED" ]] && ROUNDS=$ROUNDS_ASKED
S7_FIRST=2000
S7_SECOND=5000
TARGETS=(portico nginx haproxy)

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
wanted() { [[ -z "$ONLY" || "$ONLY" == *",$1,"* ]]; }  # wanted KEY: a scenario this run measures

# ---------------------------------------------------------------------------------------------
# Tools: the benchmark's own (looked for as commands, whichever package brought them), then
# installed with what the build needs through the one install script the test command uses.
need_pkgs=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need_pkgs+=(haproxy)
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v ps >/dev/null 2>&1 || need_pkgs+=(procps)  # a proxy's memory with its workers
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
((INSTR)) && { command -v valgrind >/dev/null 2>&1 || need_pkgs+=(valgrind); }
((${#need_pkgs[@]})) && log "installing ${need_pkgs[*]} (and what the build lacks)"
# nginx-light went away in newer Debian releases; fall back to nginx.
bash "$ROOT/scripts/install-deps.sh" --build-only "${need_pkgs[@]}" ||
  bash "$ROOT/scripts/install-deps.sh" --build-only "${need_pkgs[@]/nginx-light/nginx}"
export PATH="$PATH:/usr/sbin:/sbin"
# Debian's packages start their own services; we want only our foreground copies.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
  log "note: a system nginx service is running; it is left alone (we use our own ports)"
fi

# Thousands of sockets (S7): take the hard limit.
ulimit -n "$(ulimit -Hn)"

# ---------------------------------------------------------------------------------------------
# Build.
log "building portico, api_server, ws_server and ws_load in $BUILD (Release)"
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >"$BUILD.cmake.log" 2>&1 ||
    { cat "$BUILD.cmake.log" >&2; exit 1; }
fi
cmake --build "$BUILD" --target portico api_server ws_server ws_load tls_floor first_byte >"$BUILD/bench-build.log" 2>&1 ||
  { tail -40 "$BUILD/bench-build.log" >&2; exit 1; }
PORTICO="$BUILD/portico"
API_SERVER="$BUILD/examples/api_server"
WS_SERVER="$BUILD/examples/ws_server"
WS_LOAD="$BUILD/bin/ws_load"

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is recorded and ended on exit.
WORK=$(mktemp -d /tmp/portico-bench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget_pid() {
  local keep=() p
  for p in "${PIDS[@]}"; do [[ "$p" != "$1" ]] && keep+=("$p"); done
  PIDS=("${keep[@]}")
}

stop_pid() {  # stop_pid PID: TERM, up to 5 s, then KILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# A free port below the kernel's ephemeral range. Each proxy is restarted on the same ports every
# round, and between its turns the loads open tens of thousands of client connections; a port
# from the ephemeral range can meanwhile be taken as some client socket's source port (and stay
# in TIME_WAIT), which makes the proxy's next bind fail with "address already in use".
USED_PORTS=()
free_port() {  # sets FREE_PORT, never to a port it gave before in this run
  local port
  port=$("$PY" - "${USED_PORTS[@]}" <<'PYEOF'
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
used = {int(p) for p in sys.argv[1:]}
candidates = [p for p in range(10000, max(10001, low)) if p not in used]
random.shuffle(candidates)
for port in candidates:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("run.sh: no free port below the ephemeral range")
PYEOF
  ) || exit 1
  USED_PORTS+=("$port")
  FREE_PORT=$port
}

wait_for_line() {  # wait_for_line FILE REGEX SECONDS
  local i
  for i in $(seq $(($3 * 10))); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------------------------------------------------------------------------------------------
# Certificate: one ECDSA P-256 key and self-signed certificate for all three proxies.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"

# Backends.
free_port; API_PORT=$FREE_PORT
free_port; WS_PORT=$FREE_PORT
"$API_SERVER" --port "$API_PORT" --listen 127.0.0.1 --quiet >"$WORK/api_server.log" 2>&1 &
API_PID=$!; PIDS+=("$API_PID")
"$WS_SERVER" --port "$WS_PORT" --quiet >"$WORK/ws_server.log" 2>&1 &
WS_PID=$!; PIDS+=("$WS_PID")
wait_for_line "$WORK/api_server.log" "listening" 10 || { cat "$WORK/api_server.log" >&2; exit 1; }
wait_for_line "$WORK/ws_server.log" "listening" 10 || { cat "$WORK/ws_server.log" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Proxy configurations (equivalent on purpose; docs/performance.md explains each line).
declare -A HTTPS_PORT HTTP_PORT
for t in "${TARGETS[@]}"; do
  free_port; HTTPS_PORT[$t]=$FREE_PORT
  free_port; HTTP_PORT[$t]=$FREE_PORT
done

# Portico's cipher order (tls/tls_context.h), given to NGINX and HAProxy too, so that all three
# negotiate the same suite with the same clients (NGINX would otherwise take the client's order,
# and OpenSSL's default puts AES-256-GCM first).
TLS13_SUITES="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
TLS12_CIPHERS="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

cat >"$WORK/routes.txt" <<EOF
/ws http://127.0.0.1:$WS_PORT read_timeout=1h ws_idle=1h max_ws_message=16m
/ http://127.0.0.1:$API_PORT
EOF

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 12000; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/client_body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  # Like portico and HAProxy: no cap on requests per connection, bodies stream (no temp files).
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_max_temp_file_size 0;
  upstream api { server 127.0.0.1:$API_PORT; keepalive 64; keepalive_requests 1000000; }
  upstream ws { server 127.0.0.1:$WS_PORT; }
  server {
    listen 127.0.0.1:${HTTPS_PORT[nginx]} ssl;
    server_name localhost;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_conf_command Ciphersuites $TLS13_SUITES;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
    }
    location /ws {
      proxy_pass http://ws;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host \$host;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
  server {
    listen 127.0.0.1:${HTTP_PORT[nginx]};
    return 301 https://\$host\$request_uri;
  }
}
EOF

cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
  ssl-default-bind-ciphers $TLS12_CIPHERS
  ssl-default-bind-ciphersuites $TLS13_SUITES
defaults
  mode http
  maxconn 9000
  option http-keep-alive
  timeout connect 5s
  timeout client 75s
  timeout server 60s
  timeout http-request 30s
  timeout http-keep-alive 75s
  timeout tunnel 1h
frontend https_in
  bind 127.0.0.1:${HTTPS_PORT[haproxy]} ssl crt $WORK/haproxy.pem alpn http/1.1
  use_backend ws if { path_beg /ws }
  default_backend api
frontend http_in
  bind 127.0.0.1:${HTTP_PORT[haproxy]}
  http-request redirect scheme https code 301
backend api
  http-reuse always
  server api 127.0.0.1:$API_PORT
backend ws
  http-reuse always
  server ws 127.0.0.1:$WS_PORT
EOF

nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -t >"$WORK/nginx-test.log" 2>&1 ||
  { cat "$WORK/nginx-test.log" >&2; exit 1; }
haproxy -c -f "$WORK/haproxy.cfg" >"$WORK/haproxy-test.log" 2>&1 ||
  { cat "$WORK/haproxy-test.log" >&2; exit 1; }

TARGET_PID=""
VALGRIND=()  # set by --instructions: the proxy runs under callgrind
start_target() {  # start_target NAME: starts it, waits until it answers; sets TARGET_PID
  local t=$1 i
  case "$t" in
    portico)
      "${VALGRIND[@]}" "$PORTICO" --routes "$WORK/routes.txt" --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
        --https-port "${HTTPS_PORT[portico]}" --http-port "${HTTP_PORT[portico]}" \
        --listen 127.0.0.1 --access-log off --log-level warn --workers 1 >>"$WORK/portico.log" 2>&1 &
      ;;
    nginx)
      # Under callgrind the worker must be the process valgrind runs: no master.
      "${VALGRIND[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
        -g "daemon off;${VALGRIND:+ master_process off;}" >>"$WORK/nginx.log" 2>&1 &
      ;;
    haproxy)
      "${VALGRIND[@]}" haproxy -f "$WORK/haproxy.cfg" -db >>"$WORK/haproxy.log" 2>&1 &
      ;;
  esac
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  for i in $(seq 300); do
    if curl -sk -o /dev/null --max-time 2 "https://127.0.0.1:${HTTPS_PORT[$t]}/small"; then
      return 0
    fi
    kill -0 "$TARGET_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "$t did not start; its output:"
  tail -20 "$WORK/$t.log" >&2 || true
  return 1
}

# Resident memory of a process and its children, in KB.
rss_kb() {
  local total=0 pid kb
  for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# CPU time (user+system, clock ticks) of a process and its children.
cpu_ticks() {
  local total=0 pid t
  for pid in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
    t=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + ${t:-0}))
  done
  echo "$total"
}

# Where the CPU of a load went: the proxy, the load client (wrk or ws_load: this shell's waited-for
# children, so the client must run in the foreground of this shell) and the two backends.
# cpu_mark PROXY_PID before a load, cpu_split TARGET KEY SECONDS PROXY_PID after it: records
# KEY_cpu_pct, KEY_client_cpu_pct and KEY_backend_cpu_pct, in % of one core.
# (The script's own parsing of the client's output, a few centiseconds, counts as client.)
CPU_MARK=()
CPU_NOW=()
cpu_now() {  # sets CPU_NOW; reads this shell's stat itself: $(...) would be another process
  local self
  read -r -a self <"/proc/$BASHPID/stat"
  CPU_NOW=("$(cpu_ticks "$1")" $((self[15] + self[16])) $(($(cpu_ticks "$API_PID") + $(cpu_ticks "$WS_PID"))))
}
cpu_mark() { cpu_now "$1"; CPU_MARK=("${CPU_NOW[@]}"); }
cpu_split() {
  local t=$1 key=$2 secs=$3 now
  cpu_now "$4"
  now=("${CPU_NOW[@]}")
  local tck names=(cpu_pct client_cpu_pct backend_cpu_pct) i
  tck=$(getconf CLK_TCK)
  for i in 0 1 2; do
    record "$t" "${key}_${names[$i]}" "$("$PY" -c "print(round(100*(${now[$i]}-${CPU_MARK[$i]})/$tck/$secs, 1))")"
  done
}

# ---------------------------------------------------------------------------------------------
# Measurements. Each appends "round<TAB>target<TAB>key<TAB>value" to RESULTS.
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
NOTES="$WORK/notes.txt"
: >"$NOTES"
record() { printf '%s\t%s\t%s\t%s\n' "$ROUND" "$1" "$2" "$3" >>"$RESULTS"; }
note() { echo "- $*" >>"$NOTES"; log "note: $*"; }

# wrk_run TARGET KEY_PREFIX WRK_ARGS...: records <prefix>_rps, <prefix>_p99_ms and errors.
wrk_run() {
  local t=$1 prefix=$2; shift 2
  local out="$WORK/wrk-$ROUND-$t-$prefix.txt"
  if ! timeout 120 wrk --latency "$@" >"$out" 2>&1; then
    note "round $ROUND $t $prefix: wrk failed: $(tail -3 "$out" | tr '\n' ' ')"
    record "$t" "${prefix}_rps" fail
    return
  fi
  "$PY" - "$out" "$t" "$prefix" "$ROUND" "$RESULTS" "$NOTES" <<'PYEOF'
import re, sys
out, target, prefix, rnd, results, notes = sys.argv[1:]
text = open(out).read()
def unit_ms(v, u):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[u]
rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
total = re.search(r"(\d+) requests in", text)
p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
rows = []
if rps is None or total is None or int(total.group(1)) == 0:
    rows.append((prefix + "_rps", "fail"))
else:
    rows.append((prefix + "_rps", rps.group(1)))
    if p99:
        rows.append((prefix + "_p99_ms", "%.3f" % unit_ms(*p99.groups())))
    n = int(total.group(1))
    bad = []
    # S4 posts to a path the backend answers 404: non-2xx is the expected answer there.
    if non2xx and prefix != "s4":
        bad.append("%s non-2xx/3xx" % non2xx.group(1))
    if sock:
        c, r, w, t = map(int, sock.groups())
        # With "Connection: close" wrk counts every server close as a read error; ignore those.
        if prefix == "s2":
            r = 0
        if c + r + w + t:
            bad.append("socket errors connect %d read %d write %d timeout %d" % (c, r, w, t))
    if bad:
        with open(notes, "a") as f:
            f.write("- round %s %s %s: %d requests, %s\n" % (rnd, target, prefix, n, "; ".join(bad)))
with open(results, "a") as f:
    for k, v in rows:
        f.write("%s\t%s\t%s\t%s\n" % (rnd, target, k, v))
PYEOF
}

# ws_echo TARGET PREFIX PORT TLS(0/1) CONNECTIONS SIZE SECONDS: records msgs/s, MB/s, p50, p99.
ws_echo() {
  local t=$1 prefix=$2 port=$3 tls=$4 conns=$5 size=$6 secs=$7
  local out="$WORK/ws-$ROUND-$t-$prefix.txt" tlsflag=()
  ((tls)) && tlsflag=(--tls --sni localhost)
  timeout $((secs + 60)) "$WS_LOAD" echo --host 127.0.0.1 --port "$port" "${tlsflag[@]}" \
    --path /ws --connections "$conns" --size "$size" --duration "$secs" >"$out" 2>&1 || true
  local line
  line=$(grep '^result ' "$out" || true)
  if [[ -z "$line" ]] || ! grep -q 'failed=0' <<<"$line" || grep -q ' messages=0 ' <<<"$line"; then
    note "round $ROUND $t $prefix: ws_load failed: $(tr '\n' ' ' <"$out" | cut -c1-300); $t stderr: $(tail -2 "$WORK/$t.log" 2>/dev/null | tr '\n' ' ')"
    record "$t" "${prefix}_msgs" fail
    record "$t" "${prefix}_mbps" fail
    return
  fi

  v() { sed -E "s/.* $1=([^ ]+).*/\\1/" <<<"$line"; }
  record "$t" "${prefix}_msgs" "$(v msgs_per_s)"
  record "$t" "${prefix}_mbps" "$(v mb_per_s)"
  record "$t" "${prefix}_p50_ms" "$("$PY" -c "print($(v p50_us)/1000)")"
  record "$t" "${prefix}_p99_ms" "$("$PY" -c "print($(v p99_us)/1000)")"
  if ! grep -q 'errors=0' <<<"$line"; then note "round $ROUND $t $prefix: $line"; fi
}

# S2b: full TLS handshakes (ws_load never resumes a session), 50 slots, GET /small each.
handshakes() {
  local t=$1 port=$2 out="$WORK/hs-$ROUND-$1.txt" line
  timeout $((D_SHORT + 30)) "$WS_LOAD" handshake --host 127.0.0.1 --port "$port" --tls \
    --sni localhost --path /small --connections 50 --duration "$D_SHORT" >"$out" 2>&1 || true
  line=$(grep '^result ' "$out" || true)
  if [[ -z "$line" ]] || grep -q ' requests=0 ' <<<"$line"; then
    note "round $ROUND $t s2b: ws_load handshake failed: $(tr '\n' ' ' <"$out" | cut -c1-300)"
    record "$t" s2b_rps fail
    return
  fi
  record "$t" s2b_rps "$(sed -E 's/.* per_s=([^ ]+).*/\1/' <<<"$line")"
  grep -q 'errors=0' <<<"$line" || note "round $ROUND $t s2b: $line"
}

# S9: the wait for the first body byte of GET /bytes/1048576 on a 10 Mbit/s link (first_byte.cc
# takes the ciphertext off the socket at 1.25 MB/s); 20 new connections, medians.
first_byte() {
  local t=$1 port=$2 out="$WORK/fb-$ROUND-$1.txt" line
  timeout 60 "$BUILD/bin/first_byte" --host 127.0.0.1 --port "$port" --sni localhost \
    --path /bytes/1048576 --rate 1250000 --trials 20 >"$out" 2>&1 || true
  line=$(grep '^result ' "$out" || true)
  if [[ -z "$line" ]]; then
    note "round $ROUND $t s9: first_byte failed: $(tr '\n' ' ' <"$out" | cut -c1-300)"
    record "$t" s9_ms fail
    record "$t" s9_bytes fail
    return
  fi
  record "$t" s9_ms "$(sed -E 's/.* p50_ms=([^ ]+).*/\1/' <<<"$line")"
  record "$t" s9_bytes "$(sed -E 's/.* p50_bytes=([^ ]+).*/\1/' <<<"$line")"
}

# S7: memory per idle wss connection. Two hold clients: FIRST connections, then SECOND-FIRST more.
mem_per_conn() {
  local t=$1 port=$2 pid=$3
  local base after1 after2 h1 h2 o1 o2
  sleep 0.5
  base=$(rss_kb "$pid")
  "$WS_LOAD" hold --host 127.0.0.1 --port "$port" --tls --sni localhost --path /ws \
    --connections "$S7_FIRST" --hold-seconds 300 >"$WORK/hold1.txt" 2>&1 &
  h1=$!; PIDS+=("$h1")
  if ! wait_for_line "$WORK/hold1.txt" '^ready' 90; then
    note "round $ROUND $t s7: $S7_FIRST connections did not open in 90 s: $(tail -c 300 "$WORK/hold1.txt")"
    stop_pid "$h1"; record "$t" s7_kb_2000 fail; record "$t" s7_kb_5000 fail; return
  fi
  sleep 1
  after1=$(rss_kb "$pid")
  o1=$(sed -nE 's/^ready ([0-9]+).*/\1/p' "$WORK/hold1.txt")
  "$WS_LOAD" hold --host 127.0.0.1 --port "$port" --tls --sni localhost --path /ws \
    --connections $((S7_SECOND - S7_FIRST)) --hold-seconds 300 >"$WORK/hold2.txt" 2>&1 &
  h2=$!; PIDS+=("$h2")
  if ! wait_for_line "$WORK/hold2.txt" '^ready' 120; then
    note "round $ROUND $t s7: $S7_SECOND connections did not open in 120 s"
    o2=0
  else
    o2=$(sed -nE 's/^ready ([0-9]+).*/\1/p' "$WORK/hold2.txt")
  fi
  sleep 1
  after2=$(rss_kb "$pid")
  if ((o1 == S7_FIRST)); then
    record "$t" s7_kb_2000 "$("$PY" -c "print(round(($after1-$base)/$o1, 1))")"
  else
    note "round $ROUND $t s7: only $o1 of $S7_FIRST connections opened ($(grep -v '^ready' "$WORK/hold1.txt" | head -3 | tr '\n' ' '))"
    record "$t" s7_kb_2000 fail
  fi
  if ((o1 + o2 == S7_SECOND)); then
    record "$t" s7_kb_5000 "$("$PY" -c "print(round(($after2-$base)/$S7_SECOND, 1))")"
  else
    note "round $ROUND $t s7: only $((o1 + o2)) of $S7_SECOND connections opened ($(grep -v '^ready' "$WORK/hold2.txt" | head -3 | tr '\n' ' '))"
    record "$t" s7_kb_5000 fail
  fi
  record "$t" s7_rss_base_kb "$base"
  stop_pid "$h2"
  stop_pid "$h1"
  sleep 1  # let the proxy close the 5,000 tunnels before the next load
}

POST_LUA="$WORK/post.lua"
echo 'wrk.method = "POST"; wrk.body = string.rep("x", 1048576); wrk.headers["Content-Type"] = "application/octet-stream"' >"$POST_LUA"

# A round starts all three proxies afresh and keeps them up until its end; an idle proxy sleeps
# in epoll_wait and costs the one under load nothing. Each scenario then runs against the three
# back to back, a few seconds apart, rather than every scenario against one proxy and then the
# next: this machine's speed changes over tens of seconds, and loads a minute apart (one proxy's
# whole turn) could land in different spells, where loads seconds apart mostly share one.
declare -A ROUND_PID  # proxy -> its process in this round; empty if it did not start

start_round_target() {  # start_round_target NAME: start, sanity checks, warm-up, S7
  local t=$1
  ROUND_PID[$t]=""
  if ! start_target "$t"; then
    local k
    for k in s1_rps s2_rps s2b_rps s3_rps s4_rps s5_msgs s6_mbps s7_kb_2000 s7_kb_5000 s8_rps s9_ms; do
      record "$t" "$k" fail
    done
    return
  fi
  local pid=$TARGET_PID url="https://127.0.0.1:${HTTPS_PORT[$t]}"
  ROUND_PID[$t]=$pid
  # Sanity: each proxy must hand back the backend's own answers.
  local body
  body=$(curl -sk --max-time 5 "$url/small" || true)
  [[ "$body" == "hello, world" ]] || note "round $ROUND $t: GET /small answered '$body'"
  body=$(head -c 1048576 /dev/zero | tr '\0' x | curl -sk --max-time 10 --data-binary @- \
    -H 'Content-Type: application/octet-stream' "$url/upload" || true)
  [[ "$body" == *'"error"'* ]] || note "round $ROUND $t: POST /upload answered '${body:0:120}'"

  if ((ROUND == 1)); then  # what a default OpenSSL client (wrk, ws_load) negotiates
    note "$t negotiates $(openssl s_client -connect "127.0.0.1:${HTTPS_PORT[$t]}" -servername localhost \
      </dev/null 2>/dev/null | sed -nE 's/^New, (TLS[^,]*), Cipher is (.*)/\1 \2/p')"
  fi
  wrk -t1 -c10 -d1s "$url/small" >/dev/null 2>&1 || true  # warm-up
  # S7 first, while the process has served nothing but the warm-up: its base RSS is the
  # same for every proxy and every round.
  wanted s7 || return 0
  log "round $ROUND $t: S7 idle wss connections"
  mem_per_conn "$t" "${HTTPS_PORT[$t]}" "$pid"
}

run_scenario() {  # run_scenario NAME KEY: one scenario against one running proxy
  local t=$1 key=$2 pid=${ROUND_PID[$1]}
  local url="https://127.0.0.1:${HTTPS_PORT[$t]}"
  case "$key" in
    s1)
      cpu_mark "$pid"
      wrk_run "$t" s1 -t1 -c50 -d"${D_S1}s" "$url/small"
      cpu_split "$t" s1 "$D_S1" "$pid" ;;
    s2) wrk_run "$t" s2 -t1 -c50 -d"${D_SHORT}s" -H 'Connection: close' "$url/small" ;;
    s2b)
      cpu_mark "$pid"
      handshakes "$t" "${HTTPS_PORT[$t]}"
      cpu_split "$t" s2b "$D_SHORT" "$pid" ;;
    s3) wrk_run "$t" s3 -t1 -c4 -d"${D_SHORT}s" "$url/bytes/1048576" ;;
    s4) wrk_run "$t" s4 -t1 -c4 -d"${D_SHORT}s" -s "$POST_LUA" "$url/upload" ;;
    s5)
      cpu_mark "$pid"
      ws_echo "$t" s5 "${HTTPS_PORT[$t]}" 1 50 64 "$D_SHORT"
      cpu_split "$t" s5 "$D_SHORT" "$pid" ;;
    s6) ws_echo "$t" s6 "${HTTPS_PORT[$t]}" 1 8 65536 "$D_SHORT" ;;
    s8)
      cpu_mark "$pid"
      wrk_run "$t" s8 -t1 -c50 -d"${D_SHORT}s" "http://127.0.0.1:${HTTP_PORT[$t]}/small"
      cpu_split "$t" s8 "$D_SHORT" "$pid" ;;
    s9) first_byte "$t" "${HTTPS_PORT[$t]}" ;;
  esac
}

# The order of the proxies rotates by one from round to round and from scenario to scenario
# (portico NGINX HAProxy, then NGINX HAProxy portico, then HAProxy portico NGINX, ...), so that
# over the rounds each proxy runs each scenario first, second and third equally often.
run_round() {
  local n=${#TARGETS[@]} i k t key keys=()
  for key in s1 s2 s2b s3 s4 s5 s6 s8 s9; do wanted "$key" && keys+=("$key"); done
  for ((i = 0; i < n; i++)); do
    start_round_target "${TARGETS[(ROUND - 1 + i) % n]}"
  done
  log "round $ROUND: ${keys[*]}, each against the three in turn"
  for ((k = 0; k < ${#keys[@]}; k++)); do
    key=${keys[$k]}
    for ((i = 0; i < n; i++)); do
      t=${TARGETS[(ROUND - 1 + k + i) % n]}
      [[ -n "${ROUND_PID[$t]}" ]] && run_scenario "$t" "$key"
    done
  done
  for t in "${TARGETS[@]}"; do
    [[ -z "${ROUND_PID[$t]}" ]] && continue
    if ! kill -0 "${ROUND_PID[$t]}" 2>/dev/null; then
      note "round $ROUND $t: the proxy process died during the run; its output: $(tail -5 "$WORK/$t.log" | tr '\n' ' ')"
    fi
    stop_pid "${ROUND_PID[$t]}"
  done
}

run_direct() {  # the ceiling: S1, S3, S5 straight to the backends, no proxy, no TLS
  wanted s1 || wanted s3 || wanted s5 || return 0
  log "round $ROUND: no proxy (ceiling)"
  if wanted s1; then wrk_run direct s1 -t1 -c50 -d"${D_S1}s" "http://127.0.0.1:$API_PORT/small"; fi
  if wanted s3; then
    wrk_run direct s3 -t1 -c4 -d"${D_SHORT}s" "http://127.0.0.1:$API_PORT/bytes/1048576"
  fi
  if wanted s5; then ws_echo direct s5 "$WS_PORT" 0 50 64 "$D_SHORT"; fi
}

# --instructions: one scenario against a fresh proxy under callgrind. The load runs twice, short
# then long, with the counters dumped after each; the difference divided by the difference in
# units leaves out what both runs share (starting, the load client's connection setup), so a
# keep-alive scenario counts requests, not the 50 handshakes before them.
instr_load() {  # instr_load KEY PORT HTTP_PORT SECONDS: runs the load, prints the units done
  local key=$1 port=$2 http_port=$3 secs=$4 url="https://127.0.0.1:$2"
  case "$key" in
    s1) wrk -t1 -c50 -d"${secs}s" "$url/small" | awk '/requests in/ {print $1}' ;;
    s2) wrk -t1 -c10 -d"${secs}s" -H 'Connection: close' "$url/small" |
      awk '/requests in/ {print $1}' ;;
    s2b) "$WS_LOAD" handshake --host 127.0.0.1 --port "$port" --tls --sni localhost --path /small \
      --connections 10 --duration "$secs" | sed -nE 's/^result .* requests=([0-9]+).*/\1/p' ;;
    s5) "$WS_LOAD" echo --tls --host 127.0.0.1 --port "$port" --sni localhost --path /ws \
      --connections 50 --size 64 --duration "$secs" | sed -nE 's/^result .* messages=([0-9]+).*/\1/p' ;;
    s8) wrk -t1 -c50 -d"${secs}s" "http://127.0.0.1:$http_port/small" | awk '/requests in/ {print $1}' ;;
  esac
}

instr_scenario() {  # instr_scenario TARGET KEY
  local t=$1 key=$2 out="$WORK/callgrind.$1.$2"
  VALGRIND=(valgrind --tool=callgrind --instr-atstart=no "--callgrind-out-file=$out")
  if ! start_target "$t"; then
    record "$t" "ir_$key" fail
    return
  fi
  local pid=$TARGET_PID units=() secs
  for secs in 2 8; do
    callgrind_control -i on "$pid" >/dev/null 2>&1
    units+=("$(instr_load "$key" "${HTTPS_PORT[$t]}" "${HTTP_PORT[$t]}" "$secs")")
    callgrind_control -i off "$pid" >/dev/null 2>&1
    callgrind_control -d "$pid" >/dev/null 2>&1
  done
  stop_pid "$pid"
  record_per_unit "$t" "ir_$key" "$(callgrind_total "$out.1")" "$(callgrind_total "$out.2")" \
    "${units[0]}" "${units[1]}"
}

callgrind_total() { sed -nE 's/^totals: ([0-9]+).*/\1/p' "$1" 2>/dev/null; }

# record_per_unit TARGET KEY TOTAL1 TOTAL2 UNITS1 UNITS2: the short and the long run's
# instruction totals and units done; records the difference per unit, or fail.
record_per_unit() {
  local t=$1 key=$2 ir1=$3 ir2=$4 u1=$5 u2=$6
  if [[ -z "$ir1" || -z "$ir2" || -z "$u1" || -z "$u2" ]] || ((u2 <= u1)); then
    note "$t $key: no count (units ${u1:-none} ${u2:-none}, totals ${ir1:-none} ${ir2:-none})"
    record "$t" "$key" fail
    return
  fi
  record "$t" "$key" "$(((ir2 - ir1) / (u2 - u1)))"
}

# In S2 and S2b the load client runs at a full core behind every proxy, so what a proxy makes
# the client do per connection (the records it sends, its tickets, its close) sets those rates
# as much as the proxy's own work: the same two-run difference, counted in the client (wrk or
# ws_load) under callgrind, the proxy running at full speed.
instr_client() {  # instr_client TARGET KEY (s2 or s2b)
  local t=$1 key=$2 out="$WORK/callgrind-client.$1.$2" secs units=() i=0
  local url="https://127.0.0.1:${HTTPS_PORT[$t]}"
  VALGRIND=()
  if ! start_target "$t"; then
    record "$t" "ir_client_$key" fail
    return
  fi
  for secs in 2 8; do
    i=$((i + 1))
    local cg=(valgrind --tool=callgrind "--callgrind-out-file=$out.$i")
    if [[ $key == s2 ]]; then
      units+=("$("${cg[@]}" wrk -t1 -c10 -d"${secs}s" -H 'Connection: close' "$url/small" \
        2>/dev/null | awk '/requests in/ {print $1}')")
    else
      units+=("$("${cg[@]}" "$WS_LOAD" handshake --host 127.0.0.1 --port "${HTTPS_PORT[$t]}" \
        --tls --sni localhost --path /small --connections 10 --duration "$secs" 2>/dev/null |
        sed -nE 's/^result .* requests=([0-9]+).*/\1/p')")
    fi
  done
  stop_pid "$TARGET_PID"
  record_per_unit "$t" "ir_client_$key" "$(callgrind_total "$out.1")" \
    "$(callgrind_total "$out.2")" "${units[0]}" "${units[1]}"
}

run_instructions() {
  ROUND=1
  local t key
  for key in s1 s2 s2b s5 s8; do
    for t in "${TARGETS[@]}"; do
      log "instructions: $t $key"
      instr_scenario "$t" "$key"
    done
  done
  for key in s2 s2b; do
    for t in "${TARGETS[@]}"; do
      log "instructions: $t $key, the load client's"
      instr_client "$t" "$key"
    done
  done
  {
    echo "## Instruction counts $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- machine: $(nproc) cores, $CPU_MODEL, Linux $(uname -r)"
    echo "- versions: $PORTICO_VERSION; nginx $NGINX_VERSION; HAProxy $HAPROXY_VERSION; $OPENSSL_VERSION; $(valgrind --version)"
    echo "- command: \`bash tests/bench/run.sh --instructions\`, $(($(date +%s) - START)) s"
    echo
    "$PY" - "$RESULTS" "$NOTES" <<'PYEOF'
import sys
results, notes = sys.argv[1:]
vals = {}
for line in open(results):
    _, target, key, value = line.rstrip("\n").split("\t")
    vals[(target, key)] = value
rows = [("S1 keep-alive GET /small", "per request", "ir_s1"),
        ("S2 new TLS connection per request (wrk: resumed)", "per request", "ir_s2"),
        ("S2b new TLS connection per request (full)", "per request", "ir_s2b"),
        ("S5 WebSocket echo 64 B, 50 conns", "per message (both ways)", "ir_s5"),
        ("S8 port-80 redirect, keep-alive", "per redirect", "ir_s8"),
        ("S2, the load client (wrk) behind each proxy", "per request (resumed)", "ir_client_s2"),
        ("S2b, the load client (ws_load) behind each proxy", "per request (full handshake)", "ir_client_s2b")]
def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None
def fmt(x):
    return "–" if x is None else "{:,.0f}".format(x)
def ratio(a, b):
    return "–" if a is None or b is None or b == 0 else "{:.2f}".format(a / b)
print("| scenario | instructions | portico | NGINX | HAProxy | portico/NGINX | portico/HAProxy |")
print("|---|---|--:|--:|--:|--:|--:|")
for name, unit, key in rows:
    p, n, h = (num(vals.get((t, key))) for t in ("portico", "nginx", "haproxy"))
    print("| %s | %s | %s | %s | %s | %s | %s |" % (name, unit, fmt(p), fmt(n), fmt(h), ratio(p, n), ratio(p, h)))
print()
print("User-space instructions executed by the proxy process (callgrind), lower is better; the kernel's"
      " share of each unit (socket reads and writes, scheduling) is not counted. The last two rows count"
      " the load client instead, the proxy running at full speed: S2's and S2b's pace-setter.")
text = open(notes).read().strip()
if text:
    print()
    print(text)
PYEOF
  } | tee "$BUILD/bench-instructions.md"
}

# ---------------------------------------------------------------------------------------------
START=$(date +%s)
NGINX_VERSION=$(nginx -v 2>&1 | sed 's/^nginx version: //')
HAPROXY_VERSION=$(haproxy -v 2>&1 | sed -n 1p | awk '{print $3}')
OPENSSL_VERSION=$(openssl version)
PORTICO_VERSION=$("$PORTICO" --version 2>&1 | sed -n 1p)
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
log "machine: $(nproc) cores, $CPU_MODEL, load average $(cut -d' ' -f1-3 /proc/loadavg)"

if ((INSTR)); then
  run_instructions
  exit 0
fi

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
  run_round
  run_direct
done

log "openssl speed (ceiling of the crypto)"
openssl speed -seconds "$SPEED_SECONDS" -evp aes-128-gcm >"$WORK/speed-aes.txt" 2>/dev/null || true
openssl speed -seconds "$SPEED_SECONDS" ecdsap256 >"$WORK/speed-ecdsa.txt" 2>/dev/null || true
ROUND=1
record speed aes128gcm_16k_mbps "$(awk '/^AES-128-GCM/ {v=$7} END {sub(/k$/, "", v); printf "%.1f", v/1000}' "$WORK/speed-aes.txt")"
record speed ecdsa_p256_sign_s "$(awk '/256 bits ecdsa \(nistp256\)/ {print $(NF-1)}' "$WORK/speed-ecdsa.txt")"
# S7's reference: OpenSSL's own heap per idle server-side TLS 1.3 connection, no proxy (the floor
# for NGINX and HAProxy; portico frees it for a tunnel, see docs/tls.md).
"$BUILD/bin/tls_floor" --cert "$WORK/cert.pem" --key "$WORK/key.pem" --connections 2000 \
  >"$WORK/tls-floor.txt" 2>&1 || note "tls_floor failed: $(tr '\n' ' ' <"$WORK/tls-floor.txt" | cut -c1-300)"
record speed tls_floor_kb "$(sed -nE 's/.*bytes_per_connection=([0-9]+).*/\1/p' "$WORK/tls-floor.txt" |
  awk '{printf "%.1f", $1/1024}')"
ELAPSED=$(($(date +%s) - START))

# ---------------------------------------------------------------------------------------------
# The table.
MODE="default ($ROUNDS rounds)"
if ((QUICK && ROUNDS == 1)); then
  MODE="--quick (1 round, short loads)"
elif ((QUICK)); then
  MODE="--quick ($ROUNDS rounds, short loads)"
fi
[[ -n "$ONLY" ]] && MODE="$MODE, only ${ONLY:1:${#ONLY}-2}"
"$PY" - "$RESULTS" "$NOTES" >"$WORK/table.md" <<PYEOF
import statistics, sys
results, notes = sys.argv[1:]
vals = {}
by_round = {}  # (target, key) -> {round: value}, to pair two readings of the same round
for line in open(results):
    rnd, target, key, value = line.rstrip("\n").split("\t")
    vals.setdefault((target, key), []).append(value)
    by_round.setdefault((target, key), {})[rnd] = value

def med(target, key):
    v = [x for x in vals.get((target, key), []) if x != ""]
    if not v:
        return None
    if any(x == "fail" for x in v):
        return "fail"
    return statistics.median(float(x) for x in v)

def fmt(x):
    if x is None:
        return "–"
    if x == "fail":
        return "fail"
    if x >= 100:
        return "{:,.0f}".format(x)
    if x >= 10:
        return "{:.1f}".format(x)
    return "{:.2f}".format(x)

def ratio(a, b):
    if not isinstance(a, float) or not isinstance(b, float) or b == 0:
        return "–"
    return "{:.2f}".format(a / b)

rows = [
    ("S1 keep-alive GET /small", "requests/s", "s1_rps", ("direct", "s1_rps")),
    ("S1 keep-alive GET /small", "p99 latency, ms (lower is better)", "s1_p99_ms", ("direct", "s1_p99_ms")),
    ("S2 new TLS connection per request (wrk: resumed)", "requests (handshakes)/s", "s2_rps", None),
    ("S2b new TLS connection per request (full)", "requests (handshakes)/s", "s2b_rps", ("speed", "ecdsa_p256_sign_s")),
    ("S3 GET 1 MiB body", "MB/s", "s3_mbps", ("direct", "s3_mbps")),
    ("S4 POST 1 MiB body", "requests/s", "s4_rps", None),
    ("S5 WebSocket echo 64 B, 50 conns", "messages/s", "s5_msgs", ("direct", "s5_msgs")),
    ("S5 WebSocket echo 64 B, 50 conns", "p50 round trip, ms", "s5_p50_ms", ("direct", "s5_p50_ms")),
    ("S5 WebSocket echo 64 B, 50 conns", "p99 round trip, ms", "s5_p99_ms", ("direct", "s5_p99_ms")),
    ("S6 WebSocket echo 64 KiB, 8 conns", "MB/s (one way)", "s6_mbps", ("speed", "aes128gcm_16k_mbps")),
    ("S7 idle wss connections", "KB per connection at 2,000 (lower is better)", "s7_kb_2000", ("speed", "tls_floor_kb")),
    ("S7 idle wss connections", "KB per connection at 5,000 (lower is better)", "s7_kb_5000", ("speed", "tls_floor_kb")),
    ("S8 port-80 redirect, keep-alive", "redirects/s", "s8_rps", None),
    ("S9 first body byte of 1 MiB, 10 Mbit/s link", "ms (lower is better)", "s9_ms", None),
    ("S9 first body byte of 1 MiB, 10 Mbit/s link", "bytes that must arrive first (lower is better)", "s9_bytes", None),
]
# S3 in MB/s from requests/s (body bytes only, MB = 10^6 bytes).
for (target, key), v in list(vals.items()):
    if key == "s3_rps":
        vals[(target, "s3_mbps")] = [x if x == "fail" else str(float(x) * 1048576 / 1e6) for x in v]
        by_round[(target, "s3_mbps")] = {r: x if x in ("", "fail") else str(float(x) * 1048576 / 1e6)
                                         for r, x in by_round[(target, key)].items()}

def measured(key):  # a scenario this run measured (all of them but with --only)
    return any(vals.get((t, key)) for t in ("portico", "nginx", "haproxy"))
rows = [row for row in rows if measured(row[2])]

print("| scenario | metric | portico | NGINX | HAProxy | portico/NGINX | portico/HAProxy | ceiling | portico/ceiling |")
print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
for name, metric, key, ceil in rows:
    p, n, h = med("portico", key), med("nginx", key), med("haproxy", key)
    c = med(*ceil) if ceil else None
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, metric, fmt(p), fmt(n), fmt(h), ratio(p, n), ratio(p, h), fmt(c), ratio(p, c)))
aes = med("speed", "aes128gcm_16k_mbps")
sign = med("speed", "ecdsa_p256_sign_s")
print()
print("Ceiling column: S1, S3 and S5 straight to the backend (plain HTTP / ws, no proxy, same load);"
      " S2b: \`openssl speed ecdsap256\` signatures/s on one core (the server signs once per full handshake);"
      " S6: \`openssl speed -evp aes-128-gcm\`, 16 KiB blocks, MB/s on one core (%s MB/s; ECDSA P-256 %s sign/s);"
      " S7: the heap OpenSSL itself holds per idle server-side TLS 1.3 connection, no proxy"
      " (\`tls_floor\`, %s KB), the floor for a proxy that keeps OpenSSL's state (portico takes an"
      " established TLS 1.3 connection's records over from OpenSSL and frees it)."
      % (fmt(aes), fmt(sign), fmt(med("speed", "tls_floor_kb"))))
print()
print("Where the CPU went, % of one core (medians; two cores in all): proxy / load client (wrk or"
      " ws_load) / backends (api_server + ws_server). A load client near 100 % sets the pace: the"
      " proxies are then compared by their own CPU per unit more than by the rate.")
print()
print("| scenario | portico | NGINX | HAProxy |")
print("|---|--:|--:|--:|")
for name, key in (("S1 keep-alive GET /small", "s1"),
                  ("S2b new TLS connection per request (full)", "s2b"),
                  ("S5 WebSocket echo 64 B, 50 conns", "s5"),
                  ("S8 port-80 redirect, keep-alive", "s8")):
    if not measured(key + "_cpu_pct"):
        continue
    cells = []
    for t in ("portico", "nginx", "haproxy"):
        parts = [med(t, key + suffix) for suffix in ("_cpu_pct", "_client_cpu_pct", "_backend_cpu_pct")]
        cells.append(" / ".join("{:.0f}".format(x) if isinstance(x, float) else fmt(x) for x in parts))
    print("| %s | %s |" % (name, " | ".join(cells)))
# The same CPU readings per unit of work: each round's proxy CPU time over what it served in
# that round. Unlike the rate it does not depend on who else got the cores, so where a load
# client sets the pace it is the figure that compares the proxies.
print()
print("Proxy CPU per unit of work, µs (user + system; medians over the rounds of each round's CPU"
      " time divided by what it served; lower is better):")
print()
print("| scenario | unit | portico | NGINX | HAProxy | portico/NGINX | portico/HAProxy |")
print("|---|---|--:|--:|--:|--:|--:|")
def cpu_per_unit(t, key, rate_key):
    pct, rate = by_round.get((t, key + "_cpu_pct"), {}), by_round.get((t, rate_key), {})
    per = [float(pct[r]) / 100 * 1e6 / float(rate[r]) for r in pct if r in rate
           and pct[r] not in ("", "fail") and rate[r] not in ("", "fail") and float(rate[r]) > 0]
    return statistics.median(per) if per else None
for name, unit, key, rate_key in (("S1 keep-alive GET /small", "request", "s1", "s1_rps"),
                                  ("S2b new TLS connection per request (full)", "handshake", "s2b", "s2b_rps"),
                                  ("S5 WebSocket echo 64 B, 50 conns", "message (both ways)", "s5", "s5_msgs"),
                                  ("S8 port-80 redirect, keep-alive", "redirect", "s8", "s8_rps")):
    if not measured(key + "_cpu_pct"):
        continue
    p, n, h = (cpu_per_unit(t, key, rate_key) for t in ("portico", "nginx", "haproxy"))
    print("| %s | %s | %s | %s | %s | %s | %s |" % (name, unit, fmt(p), fmt(n), fmt(h), ratio(p, n), ratio(p, h)))
if max((len(v) for (t, _), v in vals.items() if t == "portico"), default=0) > 1:
    print()
    print("Each round, in order (the medians above are the middle ones): how far the rates move"
          " between rounds on this machine, and in how many rounds portico did better than both"
          " NGINX and HAProxy in that same round.")
    print()
    print("| scenario | metric | portico | NGINX | HAProxy | portico ahead of both |")
    print("|---|---|--:|--:|--:|--:|")
    def round_readings(key):  # (portico, NGINX, HAProxy) of each round in which all three ran
        cols = [by_round.get((t, key), {}) for t in ("portico", "nginx", "haproxy")]
        for rnd in cols[0]:
            readings = [c.get(rnd, "") for c in cols]
            if not any(x in ("", "fail") for x in readings):
                yield tuple(float(x) for x in readings)
    def ahead_of_both(key, lower_is_better):
        led = counted = 0
        for mine, n, h in round_readings(key):
            counted += 1
            led += mine < min(n, h) if lower_is_better else mine > max(n, h)
        return "%d of %d" % (led, counted) if counted else "–"
    for name, metric, key, _ in rows:
        if key.endswith(("_p50_ms", "_kb_5000", "_bytes")):
            continue
        cells = [", ".join(fmt(x if x == "fail" else float(x)) for x in vals.get((t, key), []))
                 for t in ("portico", "nginx", "haproxy")]
        lower = "lower is better" in metric or key.endswith("_ms")
        print("| %s | %s | %s | %s |" % (name, metric, " | ".join(cells), ahead_of_both(key, lower)))
    # The three readings of a scenario in one round are seconds apart, so the machine's speed
    # changes far less between them than between rounds: the median of the per-round ratios
    # compares the proxies within each spell, where a ratio of medians can pair a fast round's
    # reading with a slow one's.
    print()
    # Two readings of "the better anchor": the scenario's better anchor (the one with the better
    # median over the run, as the targets are set), paired round by round; and, stricter, the
    # better of the two in each round, which takes the luckier anchor's reading every round and
    # so sits below portico's true ratio whenever the two anchors are close.
    print("Paired ratios: in each round, portico's reading divided by NGINX's, by HAProxy's, by the"
          " scenario's better anchor (the better median over the run, named) and, stricter, by the"
          " better of the two in that same round (the three taken seconds apart); medians over the"
          " rounds.")
    print()
    print("| scenario | metric | portico/NGINX | portico/HAProxy | portico/better anchor | portico/better in each round | rounds |")
    print("|---|---|--:|--:|--:|--:|--:|")
    def paired(key, lower_is_better):
        to_n, to_h, to_best = [], [], []
        for mine, n, h in round_readings(key):
            if n <= 0 or h <= 0:
                continue
            to_n.append(mine / n)
            to_h.append(mine / h)
            to_best.append(mine / (min(n, h) if lower_is_better else max(n, h)))
        if not to_n:
            return ["–"] * 4 + ["0"]
        n_med, h_med = med("nginx", key), med("haproxy", key)
        if not isinstance(n_med, float) or not isinstance(h_med, float):
            anchor = "–"  # an anchor failed in some round: no median to choose by
        elif (n_med <= h_med) if lower_is_better else (n_med >= h_med):
            anchor = "%.2f (NGINX)" % statistics.median(to_n)
        else:
            anchor = "%.2f (HAProxy)" % statistics.median(to_h)
        return (["%.2f" % statistics.median(x) for x in (to_n, to_h)] + [anchor] +
                ["%.2f" % statistics.median(to_best), str(len(to_n))])
    for name, metric, key, _ in rows:
        if key.endswith(("_p50_ms", "_bytes")):
            continue
        lower = "lower is better" in metric or key.endswith("_ms")
        print("| %s | %s | %s |" % (name, metric, " | ".join(paired(key, lower))))
notes_text = open(notes).read().strip()
if notes_text:
    print()
    print("Notes from the run:")
    print()
    print(notes_text)
PYEOF

{
  echo "## Benchmark run $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- machine: $(nproc) cores, $CPU_MODEL, Linux $(uname -r), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
  echo "- versions: $PORTICO_VERSION; nginx $NGINX_VERSION; HAProxy $HAPROXY_VERSION; $OPENSSL_VERSION; $(wrk -v 2>&1 | awk 'NR==1' | awk '{print "wrk", $2}')"
  echo "- command: \`bash tests/bench/run.sh${COMMAND_ARGS:+ $COMMAND_ARGS}\`, mode $MODE, $ELAPSED s; medians over rounds; load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  cat "$WORK/table.md"
} | tee "$BUILD/bench-results.md"

#!/usr/bin/env bash
# bench/ws/run.sh: WebSocket echo and broadcast fan-out, luacluster against
# Node's cluster + `ws` (Debian's node-ws), side by side in one run, two
# workers each. The load is bench/ws/load.c, a single-threaded epoll
# WebSocket client in C (built here into build/ws_load), pinned to one core
# like wrk in bench/run.sh; the servers are not pinned. For each peer,
# ROUNDS times: start the server in its own session, run the echo load
# (CONNS connections, WINDOW messages of SIZE bytes in flight each, DUR
# seconds) and the fan-out (CLIENTS clients on /fan, N broadcasts of SIZE
# bytes from one worker), reading the CPU time of the server's processes
# around each; stop every process by pid. Then the medians and the ratios
# luacluster/node.
# nginx + OpenResty's lua-resty-websocket (bench/ws/nginx.conf; Debian's
# lua-nginx-websocket, unpacked by vendor/setup.sh bench) is the third
# peer, on the echo only: its workers share no channel for a broadcast.
# PEERS="luacluster node nginx" (the default) picks them.
# Knobs (env): ROUNDS=2 DUR=3 CONNS=100 WINDOW=8 SIZE=64 CLIENTS=1000 N=100
#   WORKERS=2 PORT=18090 LUACLUSTER=build/luacluster CC=cc
#   LOAD_CPU=1 (the core the load runs on; empty: not pinned)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-2} DUR=${DUR:-3} CONNS=${CONNS:-100} WINDOW=${WINDOW:-8}
SIZE=${SIZE:-64} CLIENTS=${CLIENTS:-1000} N=${N:-100} WORKERS=${WORKERS:-2}
PORT=${PORT:-18090} LUACLUSTER=${LUACLUSTER:-$root/build/luacluster}
LOAD_CPU=${LOAD_CPU-1} CC=${CC:-cc}
PEERS=${PEERS:-luacluster node nginx}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs} PORT WORKERS
HZ=$(getconf CLK_TCK)
ulimit -n 8192 2>/dev/null || true

load=$root/build/ws_load
mkdir -p "$root/build"
if ! "$CC" -O2 -Wall -Wextra -o "$load" "$here/load.c"; then
  echo "bench/ws: $here/load.c did not compile with $CC" >&2
  exit 1
fi
[ -x "$LUACLUSTER" ] || { echo "bench/ws: no $LUACLUSTER (make build)" >&2; exit 1; }
pin=()
[ -n "$LOAD_CPU" ] && pin=(taskset -c "$LOAD_CPU")

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ws.XXXXXX")
server_pid= load_pid=
# The server and its workers (luacluster's run in sessions of their own).
pids() {
  echo "$server_pid"
  ps -o pid= --ppid "$server_pid" 2>/dev/null || true
}
stop() {
  if [ -n "$load_pid" ]; then
    kill "$load_pid" 2>/dev/null || true
    wait "$load_pid" 2>/dev/null || true
    load_pid=
  fi
  if [ -n "$server_pid" ]; then
    for p in $(pids); do
      kill "$p" 2>/dev/null || true
    done
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap 'stop; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Sum of utime+stime (ticks) of the server's processes.
cpu() {
  local sum=0 line p
  local -a f
  for p in $(pids); do
    { IFS= read -r line </proc/"$p"/stat; } 2>/dev/null || continue
    read -r -a f <<<"${line##*) }"
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}

start() {
  case $1 in
    luacluster) setsid "$LUACLUSTER" "$here/server.lua" >/dev/null 2>&1 & ;;
    node) setsid node "$here/server.js" >/dev/null 2>&1 & ;;
    nginx)
      mkdir -p "$tmp/nginx"
      sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@PORT@|$PORT|g" \
        -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@DEPS@|$root/build/deps/lua|g" \
        "$here/nginx.conf" >"$tmp/nginx/nginx.conf"
      setsid nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" \
        -c "$tmp/nginx/nginx.conf" >/dev/null 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
    sleep 0.1
  done
  echo "server $1 did not start" >&2
  exit 1
}

# Runs the load client (bounded: it gives up after 60 s) in the background,
# so a signal reaches our trap at once: its JSON line to $tmp/out, its own
# CPU time to $tmp/err.
run_load() {
  local rc=0
  "${pin[@]}" "$load" "$@" >"$tmp/out" 2>"$tmp/err" &
  load_pid=$!
  wait "$load_pid" || rc=$?
  load_pid=
  if [ "$rc" != 0 ] || ! grep -q secs "$tmp/out"; then
    echo "bench/ws: load $* failed (status $rc): $(cat "$tmp/out" "$tmp/err")" >&2
    exit 1
  fi
}

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p" "$2"; }

printf '| round | peer | echo msgs/s | CPU us/msg | fan-out deliveries/s | CPU us/delivery |\n'
printf '|---|---|---|---|---|---|\n'
: >"$tmp/rows"
for round in $(seq "$ROUNDS"); do
  for peer in $PEERS; do
    start "$peer"
    c0=$(cpu)
    run_load echo "$PORT" "$CONNS" "$DUR" "$SIZE" "$WINDOW"
    c1=$(cpu)
    msgs=$(field msgs "$tmp/out") secs=$(field secs "$tmp/out")
    lm=$(field cpu_s "$tmp/err")
    if [ "$peer" = nginx ]; then
      # No broadcast: the fan-out's figures are left empty (0 below).
      c2=$c1 dl=0 fs=1 lf=0
    else
      run_load fan "$PORT" "$CLIENTS" "$N" "$SIZE"
      c2=$(cpu)
      dl=$(field deliveries "$tmp/out") fs=$(field secs "$tmp/out")
      lf=$(field cpu_s "$tmp/err")
    fi
    awk -v r="$round" -v p="$peer" -v m="$msgs" -v s="$secs" -v d="$dl" \
      -v fs="$fs" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v hz="$HZ" \
      -v lm="$lm" -v lf="$lf" -v rows="$tmp/rows" 'BEGIN {
      # The fan-out CPU includes the 1,000 handshakes of its clients.
      em = m / s; ec = (c1 - c0) / hz * 1e6 / m
      fd = d / fs; fc = (d > 0) ? (c2 - c1) / hz * 1e6 / d : 0
      if (d > 0)
        printf "| %d | %s | %.0f | %.1f | %.0f | %.2f |\n", r, p, em, ec, fd, fc
      else
        printf "| %d | %s | %.0f | %.1f | - | - |\n", r, p, em, ec
      # The load client'\''s own CPU over the measured window.
      printf "%s %f %f %f %f %f %f\n", p, em, ec, fd, fc, lm * 1e6 / m,
        ((d > 0) ? lf * 1e6 / d : 0) >>rows }'
    stop
    sleep 0.5
  done
done
awk '
function median(a, n,   i, j, t) {
  for (i = 2; i <= n; i++)
    for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ k = ++n[$1]; for (i = 2; i <= 7; i++) v[$1, i, k] = $i }
END {
  np = split(peers_list, peers, " ")
  for (q = 1; q <= np; q++) {
    p = peers[q]
    if (!n[p]) continue
    for (i = 2; i <= 7; i++) { delete a; for (k = 1; k <= n[p]; k++) a[k] = v[p, i, k]; m[p, i] = median(a, n[p]) }
    if (m[p, 4] > 0)
      printf "| median | %s | %.0f | %.1f | %.0f | %.2f |\n", p, m[p, 2], m[p, 3], m[p, 4], m[p, 5]
    else
      printf "| median | %s | %.0f | %.1f | - | - |\n", p, m[p, 2], m[p, 3]
  }
  if (n["luacluster"] && n["node"]) {
    printf "\nluacluster/node, medians: echo msgs/s %.2fx, CPU per msg %.2fx; fan-out deliveries/s %.2fx, CPU per delivery %.2fx\n",
      m["luacluster", 2] / m["node", 2], m["luacluster", 3] / m["node", 3],
      m["luacluster", 4] / m["node", 4], m["luacluster", 5] / m["node", 5]
  }
  if (n["luacluster"] && n["nginx"]) {
    printf "luacluster/nginx, medians: echo msgs/s %.2fx, CPU per msg %.2fx\n",
      m["luacluster", 2] / m["nginx", 2], m["luacluster", 3] / m["nginx", 3]
  }
  printf "load client CPU, medians, us/msg echoing:"
  for (q = 1; q <= np; q++) if (n[peers[q]]) printf " %s %.2f", peers[q], m[peers[q], 6]
  printf "; us/delivery:"
  for (q = 1; q <= np; q++) if (m[peers[q], 4] > 0) printf " %s %.2f", peers[q], m[peers[q], 7]
  printf "\n"
}' peers_list="$PEERS" "$tmp/rows"

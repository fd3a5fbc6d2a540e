#!/usr/bin/env bash
# bench/ws/run.sh: WebSocket echo and broadcast fan-out, luacluster against
# Node's cluster + `ws` (Debian's node-ws), side by side in one run, two
# workers each. For each peer, ROUNDS times: start the server in its own
# session, run the echo load (CONNS connections, WINDOW messages of SIZE
# bytes in flight each, DUR seconds) and the fan-out (CLIENTS clients on
# /fan, N broadcasts of SIZE bytes from one worker), reading the CPU time
# of the server's processes around each; stop every process by pid.
# nginx + lua-resty-websocket is not a peer: Debian 12 does not package
# lua-resty-websocket.
# Knobs (env): ROUNDS=2 DUR=3 CONNS=100 WINDOW=8 SIZE=64 CLIENTS=1000 N=100
#   WORKERS=2 PORT=18090 LUACLUSTER=build/luacluster
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-2} DUR=${DUR:-3} CONNS=${CONNS:-100} WINDOW=${WINDOW:-8}
SIZE=${SIZE:-64} CLIENTS=${CLIENTS:-1000} N=${N:-100} WORKERS=${WORKERS:-2}
PORT=${PORT:-18090} LUACLUSTER=${LUACLUSTER:-$root/build/luacluster}
export NODE_PATH=${NODE_PATH:-/usr/share/nodejs} PORT WORKERS
HZ=$(getconf CLK_TCK)
ulimit -n 8192 2>/dev/null || true

server_pid=
# The server and its workers (luacluster's run in sessions of their own).
pids() {
  echo "$server_pid"
  ps -o pid= --ppid "$server_pid" 2>/dev/null || true
}
cleanup() {
  if [ -n "$server_pid" ]; then
    for p in $(pids); do
      kill "$p" 2>/dev/null || true
    done
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap cleanup EXIT INT TERM

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
  esac
  server_pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return 0
    sleep 0.1
  done
  echo "server $1 did not start" >&2
  exit 1
}

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

printf '| round | peer | echo msgs/s | CPU us/msg | fan-out deliveries/s | CPU us/delivery |\n'
printf '|---|---|---|---|---|---|\n'
for round in $(seq "$ROUNDS"); do
  for peer in luacluster node; do
    start "$peer"
    c0=$(cpu)
    r=$(node "$here/load.js" echo "$PORT" "$CONNS" "$DUR" "$SIZE" "$WINDOW")
    c1=$(cpu)
    msgs=$(field msgs <<<"$r") secs=$(field secs <<<"$r")
    f=$(node "$here/load.js" fan "$PORT" "$CLIENTS" "$N" "$SIZE")
    c2=$(cpu)
    dl=$(field deliveries <<<"$f") fs=$(field secs <<<"$f")
    awk -v r="$round" -v p="$peer" -v m="$msgs" -v s="$secs" -v d="$dl" \
      -v fs="$fs" -v c0="$c0" -v c1="$c1" -v c2="$c2" -v hz="$HZ" 'BEGIN {
      # The fan-out CPU includes the 1,000 handshakes of its clients.
      printf "| %d | %s | %.0f | %.1f | %.0f | %.2f |\n", r, p, m / s,
        (c1 - c0) / hz * 1e6 / m, d / fs, (c2 - c1) / hz * 1e6 / d }'
    cleanup
    sleep 0.5
  done
done

#!/usr/bin/env bash
# bench/access_log/run.sh: what the access log costs a request. One
# luacluster process serves the hello route (server.lua) with the access
# log off, to a file (combined), and to a file as JSON, interleaved (off,
# file, json, off, ...) for ROUNDS rounds; wrk (pinned to WRK_CPU) loads
# each for DUR seconds. Reported per mode: requests/s and the server's CPU
# time per request (utime+stime from /proc around the wrk run), median of
# the rounds. Every process started here is ended by pid.
#
# Knobs (env): ROUNDS=3 DUR=5 CONNS=50 PORT=18090 WRK_CPU=1
#   LUACLUSTER=build/luacluster
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-3} DUR=${DUR:-5} CONNS=${CONNS:-50} PORT=${PORT:-18090}
WRK_CPU=${WRK_CPU:-1}
BIN=${LUACLUSTER:-$root/build/luacluster}
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # mode -> "req/s us/req"
  local mode=$1 args=()
  case $mode in
    file) args=(--access-log="$tmp/access.log") ;;
    json) args=(--access-log="$tmp/access.json" --log-format=json) ;;
  esac
  PORT=$PORT "$BIN" "${args[@]}" "$here/server.lua" &
  pid=$!
  for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$PORT/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$PORT/" >/dev/null
  local t0 t1 out reqs
  t0=$(ticks "$pid")
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" \
    "http://127.0.0.1:$PORT/")
  t1=$(ticks "$pid")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$out" | awk -v r="$reqs" -v t=$((t1 - t0)) -v hz="$hz" \
    '/Requests\/sec/ {printf "%d %.2f\n", $2, t / hz * 1e6 / r}'
}

declare -A rps cpu
for _ in $(seq "$ROUNDS"); do
  for mode in off file json; do
    read -r r c < <(run "$mode")
    rps[$mode]+="$r "
    cpu[$mode]+="$c "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-6s %10s %12s\n' mode 'req/s' 'CPU us/req'
for mode in off file json; do
  printf '%-6s %10s %12s\n' "$mode" "$(echo "${rps[$mode]}" | median)" \
    "$(echo "${cpu[$mode]}" | median)"
done
lines=$(wc -l < "$tmp/access.log")
echo "access.log: $lines lines, $(head -c 120 "$tmp/access.log" | head -1)"

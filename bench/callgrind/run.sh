#!/bin/sh
# Instructions the server spends per keep-alive GET / (bench/callgrind/
# server.lua, one process), counted by valgrind's callgrind: a count, not a
# time, so it repeats on a loaded machine. Two runs of N1 and N2 requests;
# the difference divided by N2 - N1 leaves start-up and exit out.
#   sh bench/callgrind/run.sh [binary]     (default build/luacluster)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/luacluster}
N1=${N1:-2000}
N2=${N2:-12000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

count() {
  n=$1
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out.$n" \
    "$bin" "$here/server.lua" >"$tmp/port.$n" 2>"$tmp/err.$n" &
  pid=$!
  i=0
  until grep -q '^port ' "$tmp/port.$n" 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "server did not start" >&2; kill $pid; exit 1; }
    sleep 0.1
  done
  port=$(sed -n 's/^port //p' "$tmp/port.$n")
  "$bin" "$here/client.lua" "$port" "$n"
  kill -TERM $pid
  wait $pid || true
  sed -n 's/^summary: //p' "$tmp/out.$n"
}

a=$(count "$N1")
b=$(count "$N2")
echo "instructions per request: $(( (b - a) / (N2 - N1) )) ($bin; $N1 and $N2 requests)"

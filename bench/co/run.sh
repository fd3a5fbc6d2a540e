#!/bin/sh
# Instructions per co.run of a handler that never waits (and, beside it, a
# plain call, pcall and co.spawn), counted by valgrind's callgrind: a count,
# not a time, so it repeats on a loaded machine. For each mode two runs, of
# N1 and N2 calls; the difference divided by N2 - N1 leaves start-up out.
#   sh bench/co/run.sh [binary]     (default build/luacluster)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-build/luacluster}
N1=${N1:-0}
N2=${N2:-100000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

count() {
  valgrind --tool=callgrind --callgrind-out-file="$tmp/out" \
    "$bin" "$here/run.lua" "$1" "$2" 2>"$tmp/err" >/dev/null ||
    { cat "$tmp/err" >&2; exit 1; }
  sed -n 's/^summary: //p' "$tmp/out"
}

for mode in ${MODES:-call pcall run spawn}; do
  a=$(count "$mode" "$N1")
  b=$(count "$mode" "$N2")
  echo "$mode: $(( (b - a) / (N2 - N1) )) instructions per call" \
    "($N1 and $N2 calls)"
done

#!/bin/sh
# IPC: luacluster's cluster channel against Node's, side by side, rounds
# interleaved (L N L N ...). Prints medians and luacluster/Node ratios.
#   ROUNDS=3 N=200000 PINGS=20000 FORKS=20 sh bench/ipc/run.sh
set -eu
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
BIN=${BIN:-build/luacluster}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  "$BIN" bench/ipc/ipc.lua >>"$out/lc"
  node bench/ipc/node_ipc.js >>"$out/node"
done
median() { # name file
  awk -v n="$1" '$1 == n { print $2 }' "$2" | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
printf '%-10s %14s %14s %8s\n' measure luacluster node ratio
for m in pingpong roundtrip oneway online; do
  l=$(median $m "$out/lc"); n=$(median $m "$out/node")
  if [ $m = online ]; then
    # Lower is better: report how many times faster.
    ratio=$(awk -v a="$l" -v b="$n" 'BEGIN { printf "%.1fx", b / a }')
    unit=ms
  else
    ratio=$(awk -v a="$l" -v b="$n" 'BEGIN { printf "%.1fx", a / b }')
    unit=msg/s
  fi
  printf '%-10s %14s %14s %8s  (%s)\n' $m "$l" "$n" "$ratio" $unit
done

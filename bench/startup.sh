#!/bin/sh
# Footprint of the binary: its size (as built and stripped), the shared
# libraries it needs, the start-up time of an empty script against luajit
# and node, and the memory of an idle process that waits on a timer.
#
#   sh bench/startup.sh             # after `make build`
#   BIN=build-asan/luacluster RUNS=100 sh bench/startup.sh
#
# Start-up is timed with hyperfine (vendor/setup.sh bench installs it), or
# with a shell loop when it is missing. RSS is VmRSS from /proc once the
# process has sat idle for a second.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$here/build/luacluster}
RUNS=${RUNS:-200}
tmp=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

[ -x "$BIN" ] || { echo "no binary at $BIN: run make build" >&2; exit 1; }

kib() { echo $(( ($1 + 512) / 1024 )); }

echo "## Binary: $BIN"
size=$(stat -c %s "$BIN")
cp "$BIN" "$tmp/stripped"
strip "$tmp/stripped"
ssize=$(stat -c %s "$tmp/stripped")
printf '| %-22s | %10s |\n' "file" "size"
printf '|%s|%s|\n' "------------------------" "------------"
printf '| %-22s | %6s KiB |\n' "as built (debug info)" "$(kib "$size")"
printf '| %-22s | %6s KiB |\n' "stripped" "$(kib "$ssize")"
echo
echo "## Shared libraries (ldd)"
ldd "$BIN" | sed 's/ (0x[0-9a-f]*)//; s/^[[:space:]]*/    /'
echo

# start-up: name and command, one per line, for the table.
have() { command -v "$1" >/dev/null 2>&1; }
cmds="luacluster|$BIN -e ''"
have luajit && cmds="$cmds
luajit|luajit -e ''"
have node && cmds="$cmds
node|node -e ''"

echo "## Start-up of an empty script ($RUNS runs each)"
printf '| %-10s | %12s | %10s | %12s |\n' "runtime" "wall mean" "stddev" \
  "cpu (u+s)"
printf '|%s|%s|%s|%s|\n' "------------" "--------------" "------------" \
  "--------------"
echo "$cmds" | while IFS='|' read -r name cmd; do
  if have hyperfine; then
    hyperfine -N --warmup 10 --runs "$RUNS" --export-json "$tmp/h.json" \
      "$cmd" >/dev/null 2>&1
    # Seconds, from hyperfine's JSON: wall mean and stddev, and the CPU
    # time (user + system), which a busy machine disturbs less.
    field() {
      sed -n "s/.*\"$1\": *\([0-9.e-]*\).*/\1/p" "$tmp/h.json" | head -1
    }
    awk -v n="$name" -v m="$(field mean)" -v s="$(field stddev)" \
      -v u="$(field user)" -v y="$(field system)" 'BEGIN {
        printf "| %-10s | %9.2f ms | %7.2f ms | %9.2f ms |\n", n, m * 1000,
          s * 1000, (u + y) * 1000 }'
  else
    start=$(date +%s%N)
    i=0
    while [ $i -lt "$RUNS" ]; do sh -c "$cmd" >/dev/null; i=$((i + 1)); done
    end=$(date +%s%N)
    awk -v n="$name" -v t="$((end - start))" -v r="$RUNS" 'BEGIN {
      printf "| %-10s | %9.2f ms | %10s | %12s |\n", n, t / r / 1e6, "-",
        "-" }'
  fi
done
echo

# measure NAME PID: waits a second, prints the VmRSS of PID, ends it.
measure() {
  pids="$pids $2"
  sleep 1
  kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$2/status" 2>/dev/null || echo '?')
  kill "$2" 2>/dev/null || true
  wait "$2" 2>/dev/null || true
  printf '| %-34s | %8s KiB |\n' "$1" "$kb"
}

echo "## RSS of an idle process with a 1 s repeating timer"
printf '| %-34s | %12s |\n' "process" "VmRSS"
printf '|%s|%s|\n' "------------------------------------" "--------------"
"$BIN" -e 'setInterval(function() end, 1000)' </dev/null >/dev/null &
measure "luacluster setInterval" $!
if have luajit && luajit -e 'require("luv")' 2>/dev/null; then
  luajit -e 'local uv = require("luv")
    uv.new_timer():start(1000, 1000, function() end)
    uv.run()' </dev/null >/dev/null &
  measure "luajit + luv.so timer" $!
fi
if have luajit; then
  # No loop at all: luajit blocked reading a pipe that stays silent ($! is
  # the last command of the pipeline).
  sleep 5 | luajit -e 'io.read()' >/dev/null &
  measure "luajit (blocked in io.read)" $!
fi
if have node; then
  node -e 'setInterval(() => {}, 1000)' </dev/null >/dev/null &
  measure "node setInterval" $!
fi

#!/bin/sh
# Runs a fuzz target for a bounded time (`make fuzz` builds them):
#   fuzz/run.sh BINARY SECONDS [CORPUS [DICT]]
# on a copy of fuzz/corpus/CORPUS (http by default, with fuzz/http.dict;
# tls has no dictionary) in a temporary folder, so the repository is left
# as it is. Exits 0 when nothing was found; otherwise prints the
# report and where the input that caused it was kept (ARTIFACTS, by
# default beside the binary), and exits 1.
#
# Leaks are looked for once, at exit, rather than after each new input:
# the Lua heap is malloc'd (fuzz/fuzz_http.c), and scanning it after
# every new input would cost most of the run.
set -eu
bin=$1
secs=$2
corpus=${3:-http}
dict=${4-http.dict}
here=$(cd "$(dirname "$0")/.." && pwd)
art=${ARTIFACTS:-$(cd "$(dirname "$bin")" && pwd)/artifacts}
mkdir -p "$art"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cp -R "$here/fuzz/corpus/$corpus" "$tmp/corpus"
dictarg=""
[ -n "$dict" ] && dictarg="-dict=$here/fuzz/$dict"

echo "fuzz: $bin for ${secs}s on a copy of fuzz/corpus/$corpus"
set +e
UBSAN_OPTIONS=print_stacktrace=1 "$bin" -max_total_time="$secs" -timeout=5 \
  -detect_leaks=0 -print_final_stats=1 $dictarg \
  -artifact_prefix="$art/" "$tmp/corpus" >"$tmp/log" 2>&1
rc=$?
set -e

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$tmp/log")
cov=$(grep -E '^#[0-9]+' "$tmp/log" | tail -n 1 | sed -n 's/.*\(cov: [0-9]*\).*/\1/p')
if [ "$rc" -eq 0 ]; then
  echo "fuzz: ${runs:-?} inputs, ${rate:-?}/s, ${cov:-cov: ?}: nothing found"
  exit 0
fi
# The report: what libFuzzer and the sanitizers said past the progress
# lines.
grep -vE '^#[0-9]+|^	NEW_FUNC|^"|^###### ' "$tmp/log" | tail -n 80
found=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$tmp/log")
if grep -q 'ERROR: LeakSanitizer' "$tmp/log"; then
  echo "fuzz: leaks at exit: the input named below is only the last one run;"
  echo "fuzz: the allocation stacks above say what leaked"
fi
if [ -n "$found" ]; then
  for f in $found; do
    echo "fuzz: FAILED (exit $rc); reproducer: $f"
    echo "fuzz: replay with: FUZZ_HTTP_SHOW=1 $bin $f"
  done
else
  echo "fuzz: FAILED (exit $rc) with no reproducer kept"
fi
exit 1

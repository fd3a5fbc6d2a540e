#!/bin/sh
# Shared dict: luacluster's require('shared') against nginx's
# lua_shared_dict (ngx.shared.DICT through lua-resty-core), side by side:
# the same Lua loops (loop.lua: set, get, incr on 1000 keys) in 1 and 2
# worker processes on each side, rounds interleaved (L N L N ...). Each
# worker times its own phases; a phase's figure is all workers' operations
# over the slowest worker's time. Prints medians and luacluster/nginx ratios.
#   ROUNDS=5 N=5000000 WORKERS="1 2" sh bench/shared/run.sh
# Needs nginx-light and libnginx-mod-http-lua (sh vendor/setup.sh bench).
set -eu
cd "$(dirname "$0")/../.."
here=$(pwd)/bench/shared
ROUNDS=${ROUNDS:-5}
N=${N:-5000000}
WORKERS=${WORKERS:-"1 2"}
BIN=${BIN:-build/luacluster}
out=$(mktemp -d)
ngx_pid=""
cleanup() {
  [ -n "$ngx_pid" ] && kill "$ngx_pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT INT TERM

# aggregate SIDE W < lines: "SIDE W op ops/s" per phase.
aggregate() {
  awk -v side="$1" -v w="$2" '
    { n[$1] += $3; if ($2 > t[$1]) t[$1] = $2 }
    END { for (op in n) printf "%s %s %s %.0f\n", side, w, op, n[op] / t[op] }'
}

run_nginx() { # W
  prefix="$out/nginx"
  rm -rf "$prefix"
  mkdir -p "$prefix"
  sed -e "s|@WORKERS@|$1|g" -e "s|@N@|$N|g" -e "s|@PREFIX@|$prefix|g" \
    -e "s|@HERE@|$here|g" "$here/nginx.conf" >"$prefix/nginx.conf"
  : >"$prefix/results"
  # Run as root, nginx's workers switch to an unprivileged user: let them
  # write their results.
  chmod 755 "$out"
  chmod 777 "$prefix"
  chmod 666 "$prefix/results"
  nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf" &
  ngx_pid=$!
  want=$((3 * $1))
  i=0
  while [ "$(wc -l <"$prefix/results")" -lt "$want" ]; do
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 "$ngx_pid" 2>/dev/null; then
      echo "nginx did not finish; its error log:" >&2
      cat "$prefix/error.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  kill "$ngx_pid"
  wait "$ngx_pid" 2>/dev/null || true
  ngx_pid=""
  aggregate nginx "$1" <"$prefix/results"
}

run_luacluster() { # W
  "$BIN" "$here/luacluster.lua" "$1" "$N" | aggregate luacluster "$1"
}

for r in $(seq 1 "$ROUNDS"); do
  for w in $WORKERS; do
    run_luacluster "$w" >>"$out/all"
    run_nginx "$w" >>"$out/all"
  done
done

median() { # side workers op
  awk -v s="$1" -v w="$2" -v o="$3" \
    '$1 == s && $2 == w && $3 == o { print $4 }' "$out/all" | sort -g |
    awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

printf '%-5s %7s %14s %14s %7s\n' op workers luacluster nginx ratio
for w in $WORKERS; do
  for op in set get incr; do
    l=$(median luacluster "$w" $op)
    n=$(median nginx "$w" $op)
    ratio=$(awk -v a="$l" -v b="$n" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-5s %7s %14s %14s %7s\n' $op "$w" "$l" "$n" "$ratio"
  done
done
echo "(operations per second, all workers together; median of $ROUNDS rounds," \
  "$N operations per worker per phase)"

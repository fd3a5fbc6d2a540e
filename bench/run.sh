#!/usr/bin/env bash
# bench/run.sh: luacluster against node and nginx+lua on the same routes.
#
# For each worker count and each route, the three servers of bench/servers/
# run interleaved (A B C, A B C, ... for ROUNDS rounds) on one port. Each run:
# start the server in its own session, time it to its first 200, check the
# route's body, warm up, run wrk pinned to one core, read the CPU time of all
# the server's processes around the wrk run, wait until the server is idle,
# read each worker's RSS, run loadtest on / (the article's tool), and stop
# every process by pid. Results: bench/results/latest.md (and stdout).
#
# Two more routes run when ROUTES names them: /order (wrk -s wrk/order.lua
# POSTs a JSON order; the handler reads the body, decodes, totals) and
# /redis (one GET through a pooled Redis connection per request: a
# redis-server of this run's own, on a free port in a temp dir, seeded,
# passed to the servers as REDIS_PORT, stopped by pid at the end; its CPU
# is reported apart, not in the servers' CPU per request), and /pg (one
# row by primary key per request through each worker's pool: a PostgreSQL
# of this run's own, made by initdb in the temp dir (as the postgres user
# when run as root), on 127.0.0.1 at a free port, seeded with 1000 rows,
# passed to the servers as PG_URL, stopped by pid at the end; its CPU, all
# its processes', is reported apart too). nginx has no PostgreSQL driver
# here: run /pg with PEERS="luacluster node".
#
# Knobs (env): ROUNDS=3 DUR=5 DUR_WORK=3 DUR_CPU=2 WARMUP=1 CONNS=50
#   WORKERS_LIST="1 2" ROUTES="/ /work /cpu" (also /order /redis /pg)
#   PEERS="luacluster node nginx"
#   PORT=18080 WRK_CPU=1 SERVER_CPUS= (e.g. 0 to pin servers; default
#   unpinned) LOADTEST=1 LT_CONC=100 LT_N=1000 LUACLUSTER=build/luacluster
#   OUT=bench/results/latest.md TITLE="latest run" QUICK=1 (one short
#   round, for smoke tests).
# Every load is bounded in count and time; every process started here is
# ended by pid, also on Ctrl-C or error.

if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

if [ "${QUICK:-0}" = 1 ]; then
  ROUNDS=${ROUNDS:-1} DUR=${DUR:-2} DUR_WORK=${DUR_WORK:-1}
  DUR_CPU=${DUR_CPU:-1} WARMUP=${WARMUP:-0} LT_N=${LT_N:-500}
fi
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-5}
DUR_WORK=${DUR_WORK:-3}
DUR_CPU=${DUR_CPU:-2}
WARMUP=${WARMUP:-1}
CONNS=${CONNS:-50}
WORKERS_LIST=${WORKERS_LIST:-1 2}
ROUTES=${ROUTES:-/ /work /cpu}
PEERS=${PEERS:-luacluster node nginx}
PORT=${PORT:-18080}
WRK_CPU=${WRK_CPU:-1}
SERVER_CPUS=${SERVER_CPUS:-}
LOADTEST=${LOADTEST:-1}
LT_CONC=${LT_CONC:-100}
LT_N=${LT_N:-1000}
LUACLUSTER=${LUACLUSTER:-$root/build/luacluster}
OUT=${OUT:-$here/results/latest.md}
TITLE=${TITLE:-latest run}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
STOP_TIMEOUT=${STOP_TIMEOUT:-5}
IDLE_MAX=${IDLE_MAX:-5}
LOADTEST_BIN=$here/node_modules/.bin/loadtest
HZ=$(getconf CLK_TCK)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/luacluster-bench.XXXXXX")
raw=$tmp/raw.tsv
server=""        # pid of the running server's leader (its own session)
server_pids=""   # every pid of the running server, leader first
startup_us=0     # its time from exec to the first 200 on /
helpers=""       # pids of running load tools
redis=""         # pid of the redis-server for /redis, when running
REDIS_PORT=""    # its port
pg=""            # pid of the postgres for /pg, when running
PG_URL=""        # its URL

say() { printf '%s\n' "$*" >&2; }
die() { say "bench: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# Prints the pids of the server led by $1: its process group (it runs in its
# own session) plus every descendant, leader first.
collect_pids() {
  ps -e -o pid=,ppid=,pgid= | awk -v L="$1" '
    { pid[NR] = $1; ppid[NR] = $2; pg[NR] = $3 }
    END {
      keep[L] = 1; printf "%s", L
      for (n = 1; n > 0;) {            # grow the set to a fixed point
        n = 0
        for (i = 1; i <= NR; i++)
          if (!(pid[i] in keep) && (pg[i] == L || (ppid[i] in keep))) {
            keep[pid[i]] = 1; printf " %s", pid[i]; n++
          }
      }
      print ""
    }'
}

# True when pid $1 is gone or a zombie.
gone() {
  local line
  { IFS= read -r line </proc/"$1"/stat; } 2>/dev/null || return 0
  line=${line##*) }
  [ "${line%% *}" = Z ]
}

# Sum of utime+stime, in clock ticks, of the pids given; with -s, prints
# "total system" instead.
cpu_ticks() {
  local p line sum=0 sys=0 both=0
  local -a f
  [ "${1:-}" = -s ] && { both=1; shift; }
  for p in "$@"; do
    { IFS= read -r line </proc/"$p"/stat; } 2>/dev/null || continue
    read -r -a f <<<"${line##*) }"
    sum=$((sum + f[11] + f[12])) sys=$((sys + f[12]))
  done
  if [ "$both" = 1 ]; then echo "$sum $sys"; else echo "$sum"; fi
}

# "busy total" jiffies of the whole machine since boot. Busy counts steal
# (time another guest had our CPUs) but not irq and softirq time, which is
# mostly the benchmark's own loopback traffic.
machine_ticks() {
  local cpu u n s i w irq sirq st rest
  read -r cpu u n s i w irq sirq st rest </proc/stat
  echo "$((u + n + s + st)) $((u + n + s + i + w + irq + sirq + st))"
}

# CPU ticks of this shell's reaped children, from the file `times` wrote.
children_ticks() {
  awk -v hz="$HZ" 'NR == 2 {
      t = 0
      for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] }
      printf "%d\n", t * hz + 0.5 }' "$1"
}

# VmRSS of pid $1 in kB (0 if gone).
rss_kb() {
  awk '/^VmRSS:/ { print $2; f = 1 } END { if (!f) print 0 }' \
    /proc/"$1"/status 2>/dev/null || echo 0
}

# Is anything listening on 127.0.0.1:$1 (default $PORT; v4 or v6)?
port_busy() {
  local hex
  hex=$(printf '%04X' "${1:-$PORT}")
  awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { f = 1 }
    END { exit !f }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Stops the running server: SIGTERM to its group and to each of its pids,
# SIGKILL to what is left after STOP_TIMEOUT; then checks the port is free.
stop_server() {
  [ -n "$server" ] || return 0
  local pids p left i
  pids="$server_pids $(collect_pids "$server")"
  kill -TERM -- "-$server" 2>/dev/null || true
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    left=""
    for p in $pids; do gone "$p" || left="$left $p"; done
    [ -z "$left" ] && break
    sleep 0.05
  done
  if [ -n "$left" ]; then
    say "bench: server $server still running after ${STOP_TIMEOUT}s:" \
      "SIGKILL to$left"
    kill -KILL -- "-$server" 2>/dev/null || true
    for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
  fi
  wait "$server" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do port_busy || break; sleep 0.05; done
  port_busy && say "bench: port $PORT still has a listener after stopping"
  server="" server_pids=""
  return 0
}

# Starts the redis-server for /redis: a free port, a temp dir, nothing
# persisted; waits for PONG and seeds the key the servers read.
start_redis() {
  local i
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null
  then
    die "redis-server missing: run sh vendor/setup.sh bench"
  fi
  for ((i = 0; i < 100; i++)); do
    REDIS_PORT=$((20000 + RANDOM % 20000))
    [ "$REDIS_PORT" != "$PORT" ] && ! port_busy "$REDIS_PORT" && break
  done
  mkdir -p "$tmp/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$tmp/redis" --daemonize no \
    >"$tmp/redis/log" 2>&1 </dev/null &
  redis=$!
  for ((i = 0; i < 250; i++)); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    gone "$redis" && break
    sleep 0.02
  done
  [ "$(redis-cli -p "$REDIS_PORT" set bench:greeting "$REDIS_VALUE" \
    2>/dev/null)" = OK ] || {
    tail -n 15 "$tmp/redis/log" | sed 's/^/  | /' >&2
    die "redis-server did not start on port $REDIS_PORT"
  }
  say "bench: redis-server $redis on port $REDIS_PORT"
}

# Stops the redis-server by pid (SIGTERM, SIGKILL after STOP_TIMEOUT).
stop_redis() {
  [ -n "$redis" ] || return 0
  local i
  kill -TERM "$redis" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    gone "$redis" && break
    sleep 0.05
  done
  gone "$redis" || kill -KILL "$redis" 2>/dev/null || true
  wait "$redis" 2>/dev/null || true
  redis=""
}

PG_VALUE="Hello from PostgreSQL"

# Starts the postgres for /pg: initdb into the temp dir (as the postgres
# user when root: PostgreSQL refuses root), 127.0.0.1 at a free port, the
# table bench_items (id 1..1000, body) seeded.
start_pg() {
  local i bin port as=()
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -x "$bin/initdb" ] || die "postgresql missing: run sh vendor/setup.sh bench"
  for ((i = 0; i < 100; i++)); do
    port=$((20000 + RANDOM % 20000))
    [ "$port" != "$PORT" ] && [ "$port" != "$REDIS_PORT" ] &&
      ! port_busy "$port" && break
  done
  mkdir -p "$tmp/pg"
  if [ "$(id -u)" = 0 ]; then
    chmod o+x "$tmp" # the postgres user passes through to its dir
    chown postgres: "$tmp/pg"
    as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  fi
  (cd "$tmp/pg" && "${as[@]}" "$bin/initdb" -D "$tmp/pg/data" -A trust \
    -U postgres -E UTF8 --locale=C --no-sync >"$tmp/pg/initdb.log" 2>&1) ||
    { tail -n 15 "$tmp/pg/initdb.log" | sed 's/^/  | /' >&2
      die "initdb failed"; }
  "${as[@]}" "$bin/postgres" -D "$tmp/pg/data" -k "$tmp/pg" -p "$port" \
    -c listen_addresses=127.0.0.1 -c max_connections=100 \
    >"$tmp/pg/log" 2>&1 </dev/null &
  pg=$!
  for ((i = 0; i < 500; i++)); do
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    gone "$pg" && break
    sleep 0.02
  done
  PG_URL="postgresql://postgres@127.0.0.1:$port/postgres"
  "$bin/psql" -q -X -v ON_ERROR_STOP=1 "$PG_URL" >/dev/null 2>&1 <<SQL || {
CREATE TABLE bench_items (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO bench_items SELECT i, '$PG_VALUE' FROM generate_series(1, 1000) i;
VACUUM ANALYZE bench_items;
SQL
    tail -n 15 "$tmp/pg/log" | sed 's/^/  | /' >&2
    die "postgres did not start on port $port"
  }
  say "bench: postgres $pg on port $port"
}

# Stops the postgres by pid (fast shutdown, SIGKILL after STOP_TIMEOUT).
stop_pg() {
  [ -n "$pg" ] || return 0
  local i
  kill -INT "$pg" 2>/dev/null || true
  for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
    gone "$pg" && break
    sleep 0.05
  done
  gone "$pg" || kill -KILL "$pg" 2>/dev/null || true
  wait "$pg" 2>/dev/null || true
  pg=""
}

cleanup() {
  local p
  trap - EXIT INT TERM
  for p in $helpers; do kill -TERM "$p" 2>/dev/null || true; done
  stop_server
  stop_redis
  stop_pg
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'say "bench: interrupted"; exit 130' INT TERM

# Runs a bounded load tool in the background so a signal reaches our trap at
# once; its output goes to $1.
run_tool() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 &
  helpers=$!
  wait "$helpers" || rc=$?
  helpers=""
  return $rc
}

# Command line of peer $1.
peer_cmd() {
  case $1 in
    luacluster) echo "$LUACLUSTER $here/servers/luacluster.lua" ;;
    base) echo "$LUACLUSTER_BASE $here/servers/luacluster.lua" ;;
    node) echo "node $here/servers/node.js" ;;
    nginx) echo "$here/servers/nginx.sh" ;;
    *) die "unknown peer $1" ;;
  esac
}

# Starts peer $1 with $2 workers; on success sets $server and $startup_us,
# the microseconds from exec to the first 200 on /. Logs: $tmp/$1.log.
start_server() {
  local peer=$1 workers=$2 t0 t1 cmd
  port_busy && die "port $PORT is already in use by another program"
  cmd=$(peer_cmd "$peer")
  local pin=()
  [ -n "$SERVER_CPUS" ] && pin=(taskset -c "$SERVER_CPUS")
  mkdir -p "$tmp/nginx"
  t0=${EPOCHREALTIME/./}
  # Not a group leader, so setsid execs in place: $! is the server's pid.
  PORT=$PORT WORKERS=$workers NGINX_PREFIX=$tmp/nginx REDIS_PORT=$REDIS_PORT \
    PG_URL=$PG_URL \
    setsid "${pin[@]}" $cmd >>"$tmp/$peer.log" 2>&1 </dev/null &
  server=$!
  if ! t1=$(first_200 "$server"); then
    say "bench: $peer did not answer 200 on / within ${STARTUP_TIMEOUT}s;" \
      "its log:"
    tail -n 15 "$tmp/$peer.log" | sed 's/^/  | /' >&2
    stop_server
    return 1
  fi
  startup_us=$((t1 - t0))
}

# Polls / with bash's /dev/tcp (no fork per try, ~2 ms apart) until it
# answers 200; prints the time of that answer in microseconds. Fails if pid
# $1 exits or STARTUP_TIMEOUT passes.
first_200() (
  trap '' PIPE
  local fd line pause deadline
  mkfifo "$tmp/pause.$BASHPID"
  exec {pause}<>"$tmp/pause.$BASHPID"
  rm -f "$tmp/pause.$BASHPID"
  deadline=$(( ${EPOCHREALTIME/./} + STARTUP_TIMEOUT * 1000000 ))
  while :; do
    if { exec {fd}<>/dev/tcp/127.0.0.1/"$PORT"; } 2>/dev/null; then
      line=""
      printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' \
        >&"$fd" 2>/dev/null && IFS= read -r -t 2 line <&"$fd" || true
      exec {fd}>&-
      case $line in
        "HTTP/1."?" 200"*) echo "${EPOCHREALTIME/./}"; return 0 ;;
      esac
    fi
    gone "$1" && return 1
    [ "${EPOCHREALTIME/./}" -lt "$deadline" ] || return 1
    read -r -t 0.002 -u "$pause" line || true
  done
)

# Waits until the server's CPU ticks stop increasing (one tick at most in
# 0.25 s), up to IDLE_MAX seconds.
wait_idle() {
  local a b i
  a=$(cpu_ticks $server_pids)
  for ((i = 0; i < IDLE_MAX * 4; i++)); do
    sleep 0.25
    b=$(cpu_ticks $server_pids)
    [ $((b - a)) -le 1 ] && return 0
    a=$b
  done
  say "bench: server still busy after ${IDLE_MAX}s"
}

REDIS_VALUE="Hello from Redis"
ORDER_JSON=$here/wrk/order.json
ORDER_WRK=$here/wrk/order.lua

# The route's expected bodies, one a line (any of them will do: the JSON
# encoders do not agree on the order of keys).
expected_body() {
  case $1 in
    /) echo "Hello World" ;;
    /cpu) echo "done" ;;
    /work) echo "50000005000000" ;;
    /order) echo '{"total":159.58,"items":8}'
      echo '{"items":8,"total":159.58}' ;;
    /redis) echo "$REDIS_VALUE" ;;
    /pg) echo "$PG_VALUE" ;;
  esac
}

# curl's and wrk's arguments for the route's request (beyond the URL).
curl_args() {
  case $1 in
    /order) echo "--data-binary @$ORDER_JSON -H Content-Type:application/json" ;;
  esac
}
wrk_args() {
  case $1 in
    /order) echo "-s $ORDER_WRK" ;;
  esac
}

# Prints the framing of the route's response (length or chunked) if its body
# is the expected one; fails otherwise.
check_route() {
  local route=$1 hdr body
  hdr=$tmp/headers
  # shellcheck disable=SC2046
  body=$(curl -s -m 10 -D "$hdr" $(curl_args "$route") \
    "http://127.0.0.1:$PORT$route") || return 1
  if [ -z "$body" ] || ! grep -qxF -- "$body" <<<"$(expected_body "$route")"
  then
    say "bench: $route answered '$body'"
    return 1
  fi
  if grep -qi '^transfer-encoding: *chunked' "$hdr"; then echo chunked
  elif grep -qi '^content-length:' "$hdr"; then echo length
  else echo close; fi
}

dur_of() {
  case $1 in
    /work) echo "$DUR_WORK" ;;
    /cpu) echo "$DUR_CPU" ;;
    *) echo "$DUR" ;;
  esac
}

# Latency "830.00us" / "1.09ms" / "2.01s" to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n *= 1; else if (v ~ /s$/) n *= 1000
    printf "%.3f", n }'
}

# ---------------------------------------------------------------------------
# One run
# ---------------------------------------------------------------------------

# One measured run of peer $1, $2 workers, route $3, round $4: appends a row
# to $raw.
run_one() {
  local peer=$1 workers=$2 route=$3 round=$4
  local framing dur url c0 c1 reqs rps p50 p99 errs lt_rps="" \
    lt_mean="" rss_sum=0 nworkers=0 rss_primary p npids0 npids1 note="" c0 c1 s0 s1 m0 m1 mt0 mt1 other \
    r0=0 r1=0 wargs rpid=""
  local t_run=$SECONDS
  url="http://127.0.0.1:$PORT$route"
  dur=$(dur_of "$route")
  wargs=$(wrk_args "$route")
  [ "$route" = /redis ] && rpid=$redis

  if ! start_server "$peer" "$workers"; then
    printf '%s\t%s\t%s\t%s\tfailed-start\n' "$workers" "$route" "$round" \
      "$peer" >>"$raw"
    return 0
  fi
  server_pids=$(collect_pids "$server")
  if ! framing=$(check_route "$route"); then
    say "bench: $peer answered $route wrongly; skipping this run"
    printf '%s\t%s\t%s\t%s\tbad-body\n' "$workers" "$route" "$round" \
      "$peer" >>"$raw"
    stop_server
    return 0
  fi

  if [ "$WARMUP" != 0 ]; then
    # shellcheck disable=SC2086
    run_tool "$tmp/warmup.out" taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" \
      -d"${WARMUP}s" --timeout 10s $wargs "$url" || true
    wait_idle
  fi

  server_pids=$(collect_pids "$server")
  # postgres and its backends (the pools' connections, made by now).
  [ "$route" = /pg ] && rpid=$(collect_pids "$pg")
  npids0=$(wc -w <<<"$server_pids")
  read -r c0 s0 <<<"$(cpu_ticks -s $server_pids)"
  read -r m0 mt0 <<<"$(machine_ticks)"
  # shellcheck disable=SC2086
  [ -n "$rpid" ] && r0=$(cpu_ticks $rpid)
  times >"$tmp/times0"
  # shellcheck disable=SC2086
  run_tool "$tmp/wrk.out" taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" \
    -d"${dur}s" --timeout 10s --latency $wargs "$url" || note="wrk-failed"
  read -r c1 s1 <<<"$(cpu_ticks -s $server_pids)"
  read -r m1 mt1 <<<"$(machine_ticks)"
  # Backends started during the run count whole (they had no CPU before).
  [ "$route" = /pg ] && rpid=$(collect_pids "$pg")
  # shellcheck disable=SC2086
  [ -n "$rpid" ] && r1=$(cpu_ticks $rpid)
  times >"$tmp/times1"
  # What ran besides the server, wrk and redis-server, as a share of the
  # whole machine.
  other=$(( (m1 - m0) - (c1 - c0) - (r1 - r0) - \
    $(children_ticks "$tmp/times1") + $(children_ticks "$tmp/times0") ))
  other=$(( mt1 > mt0 ? (other < 0 ? 0 : other) * 100 / (mt1 - mt0) : 0 ))
  npids1=$(wc -w <<<"$(collect_pids "$server")")
  [ "$npids0" = "$npids1" ] || note="${note:+$note,}procs-$npids0-to-$npids1"

  reqs=$(awk '/ requests in / { print $1 }' "$tmp/wrk.out")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$tmp/wrk.out")
  p50=$(awk '/^ +50%/ { print $2 }' "$tmp/wrk.out")
  p99=$(awk '/^ +99%/ { print $2 }' "$tmp/wrk.out")
  errs=$(awk '/Non-2xx/ { n += $NF }
    /Socket errors/ { gsub(/[^0-9 ]/, " "); n += $1 + $2 + $3 + $4 }
    END { print n + 0 }' "$tmp/wrk.out")
  cat "$tmp/wrk.out" >>"$tmp/wrk.all"
  if [ -z "$reqs" ] || [ "${reqs:-0}" -eq 0 ]; then
    say "bench: wrk got no answers from $peer"
    sed 's/^/  | /' "$tmp/wrk.out" >&2
    reqs=0 rps=0 p50=0 p99=0 note="${note:+$note,}no-requests"
  else
    p50=$(to_ms "$p50") p99=$(to_ms "$p99")
  fi

  wait_idle
  rss_primary=$(rss_kb "$server")
  for p in $(ps -o pid= --ppid "$server"); do
    rss_sum=$((rss_sum + $(rss_kb "$p"))) nworkers=$((nworkers + 1))
  done
  [ "$nworkers" = "$workers" ] || note="${note:+$note,}$nworkers-workers"

  if [ "$LOADTEST" = 1 ] && [ "$route" = / ]; then
    if run_tool "$tmp/lt.out" taskset -c "$WRK_CPU" "$LOADTEST_BIN" \
        -c "$LT_CONC" -n "$LT_N" "$url"; then
      lt_rps=$(awk '/^Effective rps:/ { print $3 }' "$tmp/lt.out")
      lt_mean=$(awk '/^Mean latency:/ { print $3 }' "$tmp/lt.out")
      if ! grep -q '^Total errors: *0$' "$tmp/lt.out"; then
        note="${note:+$note,}loadtest-errors"
      fi
    else
      note="${note:+$note,}loadtest-failed"
    fi
  fi

  stop_server
  # workers route round peer status startup_ms reqs rps p50 p99 errors
  # cpu_ticks cpu_us_per_req nworkers rss_worker_kb rss_primary_kb lt_rps
  # lt_mean_ms framing note sys_ticks other_load_pct redis_ticks (/redis
  # only, else empty)
  awk -v OFS='\t' -v w="$workers" -v r="$route" -v n="$round" -v p="$peer" \
    -v st="$startup_us" -v q="$reqs" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
    -v e="$errs" -v t=$((c1 - c0)) -v hz="$HZ" -v nw="$nworkers" \
    -v rs="$rss_sum" -v rp="$rss_primary" -v lr="$lt_rps" -v lm="$lt_mean" \
    -v f="$framing" -v note="$note" -v st_sys=$((s1 - s0)) \
    -v ol="$other" -v rt="${rpid:+$((r1 - r0))}" 'BEGIN {
      cpu = q > 0 ? t * 1e6 / hz / q : 0
      print w, r, n, p, "ok", sprintf("%.1f", st / 1000), q, rps, p50, p99,
        e, t, sprintf("%.2f", cpu), nw, (nw ? int(rs / nw) : 0), rp, lr, lm,
        f, note, st_sys, ol, rt }' >>"$raw"
  say "$(printf '  %-10s w=%s %-5s round %s: %9s req/s  p99 %8s ms  %8s us/req  other load %2s%%  (%ss)' \
    "$peer" "$workers" "$route" "$round" "$rps" "$p99" \
    "$(tail -n 1 "$raw" | cut -f 13)" "$other" $((SECONDS - t_run)))"
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

for tool in wrk taskset curl ps setsid; do
  command -v "$tool" >/dev/null || die "$tool missing: run sh vendor/setup.sh bench"
done
if [ "$LOADTEST" = 1 ] && [ ! -x "$LOADTEST_BIN" ]; then
  die "loadtest missing: run sh vendor/setup.sh bench"
fi
[ "$(nproc)" -ge 2 ] || say "bench: one CPU only: wrk and the servers share it"
for route in $ROUTES; do
  case $route in
    / | /work | /cpu | /order) ;;
    /redis) [ -n "$redis" ] || start_redis ;;
    /pg) [ -n "$pg" ] || start_pg ;;
    *) die "unknown route $route (/ /work /cpu /order /redis /pg)" ;;
  esac
done

# Which peers can run at all: each is started once with one worker and must
# answer every route with the expected body; a peer that cannot is skipped.
peers=""
for peer in $PEERS; do
  case $peer in
    luacluster) [ -x "$LUACLUSTER" ] || {
      say "bench: skipping luacluster: $LUACLUSTER not built (make build)"
      continue; } ;;
    base) [ -x "${LUACLUSTER_BASE:-}" ] || {
      say "bench: skipping base: set LUACLUSTER_BASE to another build"
      continue; } ;;
    node) command -v node >/dev/null || {
      say "bench: skipping node: not installed"; continue; } ;;
    nginx) command -v nginx >/dev/null || {
      say "bench: skipping nginx: not installed"; continue; } ;;
    *) say "bench: skipping $peer: not a peer (luacluster, base, node, nginx)"
      continue ;;
  esac
  if ! start_server "$peer" 1; then
    say "bench: skipping $peer: it does not start and serve /"
    continue
  fi
  ok=1
  for route in $ROUTES; do
    check_route "$route" >/dev/null || { ok=0; break; }
  done
  stop_server
  if [ "$ok" = 1 ]; then
    peers="$peers $peer"
  else
    say "bench: skipping $peer: $route does not answer its expected body"
  fi
done
peers=${peers# }
[ -n "$peers" ] || die "no peer could be started"
say "bench: peers: $peers; workers: $WORKERS_LIST; routes: $ROUTES;" \
  "rounds: $ROUNDS; wrk -c$CONNS, ${DUR}s (/work ${DUR_WORK}s, /cpu ${DUR_CPU}s)"

started=$SECONDS
for workers in $WORKERS_LIST; do
  for route in $ROUTES; do
    for ((round = 1; round <= ROUNDS; round++)); do
      for peer in $peers; do
        run_one "$peer" "$workers" "$route" "$round"
      done
    done
  done
done
elapsed=$((SECONDS - started))
stop_redis
stop_pg

mkdir -p "$(dirname "$OUT")"
version() { "$@" 2>&1 | head -n 1 || true; }
{
  echo "# luacluster benchmark: $TITLE"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $elapsed s; $(nproc) CPUs" \
    "($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), Linux" \
    "$(uname -r)."
  echo
  echo "- luacluster: $( [ -x "$LUACLUSTER" ] && version "$LUACLUSTER" -v)," \
    "tree $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "scheduling ${LUACLUSTER_SCHED:-default}"
  echo "- node: $(version node --version)"
  echo "- nginx: $(version nginx -v) + lua module"
  echo "- wrk: $(version wrk -v | awk '{ print $1, $2 }'), loadtest:" \
    "$(version "$LOADTEST_BIN" --version 2>/dev/null || true)"
  if [ -n "$REDIS_PORT" ]; then
    echo "- /redis: $(version redis-server --version | awk '{ print $1, $2, $3 }')" \
      "on its own port; node's client: redis" \
      "$(node -p 'require(process.argv[1]).version' \
        "$here/node_modules/redis/package.json" 2>/dev/null || echo '?')"
  fi
  if [ -n "$PG_URL" ]; then
    echo "- /pg: $(version "$(ls -d /usr/lib/postgresql/*/bin | sort -V |
      tail -n 1)/postgres" --version) on 127.0.0.1; node's client: pg" \
      "$(node -p 'require(process.argv[1]).version' \
        "$here/node_modules/pg/package.json" 2>/dev/null || echo '?')"
  fi
  echo "- knobs: ROUNDS=$ROUNDS DUR=$DUR DUR_WORK=$DUR_WORK DUR_CPU=$DUR_CPU" \
    "WARMUP=$WARMUP CONNS=$CONNS WRK_CPU=$WRK_CPU" \
    "SERVER_CPUS=${SERVER_CPUS:-unpinned} LT_CONC=$LT_CONC LT_N=$LT_N" \
    "${QUICK:+QUICK=$QUICK}"
  echo "- peers run: $peers"
  echo
  awk -v hz="$HZ" -f "$here/summarize.awk" "$raw"
} >"$OUT"
cat "$OUT"
say "bench: written to ${OUT#"$root"/}"

#!/bin/sh
# Scheduling policies side by side (rr, none, reuseport), 2 workers:
#  - throughput: wrk -t1 -c50 keep-alive, pinned to core 1 (DUR s);
#  - balance: requests served by the busiest and the idlest worker
#    (cluster.stats() through the status endpoint), and min/max;
#  - new connections: wrk with Connection: close (accept path);
#  - a killed worker: kill -9 of one worker mid-run under keep-alive load;
#    wrk's errors are what the death cost.
# ROUNDS rounds interleaved; prints one line per policy and round.
set -eu
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/luacluster}
DUR=${DUR:-4}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18090}
SPORT=${SPORT:-18091}
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT INT TERM

stats_line() { # requests per worker -> "max min"
  curl -s "http://127.0.0.1:$SPORT/stats" | tr '{' '\n' |
    sed -n 's/.*"requests":\([0-9]*\).*/\1/p' | sort -n |
    awk 'NR == 1 { min = $1 } { max = $1 } END { print max, min }'
}

printf '%-10s %5s %10s %10s %8s %10s %8s\n' policy round 'req/s' \
  'busy/idle' balance 'conn/s' 'kill err'
for r in $(seq 1 "$ROUNDS"); do
  for sched in rr none reuseport; do
    LUACLUSTER_SCHED=$sched PORT=$PORT STATUS_PORT=$SPORT WORKERS=2 \
      "$BIN" bench/sched/server.lua >/tmp/sched.$$ 2>&1 &
    pid=$!
    i=0
    while ! curl -s -o /dev/null "http://127.0.0.1:$PORT/"; do
      i=$((i + 1)); [ $i -gt 100 ] && { echo "no server"; exit 1; }
      sleep 0.05
    done
    rps=$(taskset -c 1 wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$PORT/" |
      awk '/Requests\/sec/ { print int($2) }')
    sleep 1.2
    set -- $(stats_line)
    bal=$(awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (a ? b / a : 0) }')
    cps=$(taskset -c 1 wrk -t1 -c50 -d2s -H 'Connection: close' \
      "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ { print int($2) }')
    victim=$(sed -n 's/^listening 1 //p' /tmp/sched.$$ | head -1)
    (sleep 1; kill -9 "$victim" 2>/dev/null) &
    kerr=$(taskset -c 1 wrk -t1 -c50 -d3s "http://127.0.0.1:$PORT/" |
      awk '/Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
           /Non-2xx/ { n += $4 } END { print n + 0 }')
    wait $! 2>/dev/null || true
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
    printf '%-10s %5s %10s %10s %8s %10s %8s\n' "$sched" "$r" "$rps" \
      "$1/$2" "$bal" "$cps" "${kerr:-0}"
  done
done
rm -f /tmp/sched.$$

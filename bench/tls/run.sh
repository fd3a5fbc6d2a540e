#!/usr/bin/env bash
# bench/tls/run.sh: HTTPS, luacluster against nginx (ssl) and Node's https,
# 2 workers each, an ECDSA P-256 certificate (made here with openssl, in a
# temp dir), "Hello World\n" on /.
#
# For ROUNDS rounds, the peers run interleaved; each run measures, with
# wrk -t1 pinned to core WRK_CPU:
#   new: Connection: close on every request, so each one is a new TCP
#        connection and a full TLS handshake (wrk resumes no session);
#   ka:  keep-alive requests over CONNS TLS connections;
# req/s, and the CPU time of all the server's processes (from /proc)
# around the wrk run, per request (us).
# Knobs (env): ROUNDS=2 DUR=5 CONNS=50 WORKERS=2 PORT=18443 WRK_CPU=1
#   PEERS="luacluster nginx node" LUACLUSTER=build/luacluster
# Every process started here is ended by pid (the server and its
# descendants), also on error.

if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
ROUNDS=${ROUNDS:-2}
DUR=${DUR:-5}
CONNS=${CONNS:-50}
WORKERS=${WORKERS:-2}
PORT=${PORT:-18443}
WRK_CPU=${WRK_CPU:-1}
PEERS=${PEERS:-luacluster nginx node}
LUACLUSTER=${LUACLUSTER:-$root/build/luacluster}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-tls.XXXXXX")
pid=""
tree() { # pid -> it and its descendants (workers may lead sessions)
  local p
  echo "$1"
  for p in $(pgrep -P "$1"); do tree "$p"; done
}
stop() {
  if [ -n "$pid" ]; then
    local all
    all=$(tree "$pid")
    kill -TERM $all 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 $all 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL $all 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop; rm -rf "$tmp"' EXIT INT TERM

openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/key.pem"
openssl req -x509 -new -key "$tmp/key.pem" -subj /CN=localhost -days 2 \
  -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
  -out "$tmp/cert.pem" 2>/dev/null
export KEY=$tmp/key.pem CERT=$tmp/cert.pem PORT WORKERS

start() { # peer
  case $1 in
    luacluster) "$LUACLUSTER" "$here/luacluster.lua" >"$tmp/out" 2>&1 & ;;
    node) node "$here/node.js" >"$tmp/out" 2>&1 & ;;
    nginx)
      mkdir -p "$tmp/nginx"
      sed -e "s|@WORKERS@|$WORKERS|g" -e "s|@PORT@|$PORT|g" \
        -e "s|@PREFIX@|$tmp/nginx|g" -e "s|@KEY@|$KEY|g" \
        -e "s|@CERT@|$CERT|g" "$here/nginx.conf" >"$tmp/nginx/nginx.conf"
      nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" \
        -c "$tmp/nginx/nginx.conf" >"$tmp/out" 2>&1 & ;;
  esac
  pid=$!
  for _ in $(seq 1 100); do
    if curl -sk -o /dev/null "https://127.0.0.1:$PORT/"; then return; fi
    sleep 0.1
  done
  echo "$1 did not start:"; cat "$tmp/out"; exit 1
}

cpu_ticks() { # the session's processes' utime + stime, in clock ticks
  local t=0 p
  for p in $(tree "$pid"); do
    if [ -r "/proc/$p/stat" ]; then
      t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null \
        || echo 0)))
    fi
  done
  echo "$t"
}

measure() { # peer mode -> "req/s us/req"
  local args=() c0 c1 out rps n
  [ "$2" = new ] && args=(-H 'Connection: close')
  c0=$(cpu_ticks)
  out=$(taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" "${args[@]}" \
    "https://127.0.0.1:$PORT/")
  c1=$(cpu_ticks)
  rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
  n=$(awk '/requests in/ { print $1 }' <<<"$out")
  awk -v r="$rps" -v n="$n" -v c="$((c1 - c0))" \
    -v hz="$(getconf CLK_TCK)" 'BEGIN {
      printf "%.0f %.1f\n", r, (n > 0 ? c / hz * 1e6 / n : 0) }'
}

printf '%-11s %5s %12s %10s %12s %10s\n' peer round 'new req/s' \
  'new us/req' 'ka req/s' 'ka us/req'
for r in $(seq 1 "$ROUNDS"); do
  for peer in $PEERS; do
    start "$peer"
    # Warm-up: the JIT, the session caches.
    taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d1s \
      "https://127.0.0.1:$PORT/" >/dev/null
    read -r nrps ncpu < <(measure "$peer" new)
    read -r krps kcpu < <(measure "$peer" ka)
    stop
    printf '%-11s %5s %12s %10s %12s %10s\n' "$peer" "$r" "$nrps" "$ncpu" \
      "$krps" "$kcpu"
  done
done

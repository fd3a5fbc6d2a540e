#!/bin/sh
# Runs the benchmark's nginx peer in the foreground (so its pid is the
# master's): renders bench/servers/nginx.conf into a private prefix and execs
# nginx. Env: PORT (default 8000), WORKERS (default: number of CPUs),
# NGINX_PREFIX (default: a new temp dir, removed by the caller's cleanup),
# REDIS_PORT (default 6379, for /redis).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
port=${PORT:-8000}
workers=${WORKERS:-$(nproc)}
redis_port=${REDIS_PORT:-6379}
deps=$(cd "$here/../.." && pwd)/build/deps/lua
prefix=${NGINX_PREFIX:-$(mktemp -d "${TMPDIR:-/tmp}/bench-nginx.XXXXXX")}
mkdir -p "$prefix"
sed -e "s|@WORKERS@|$workers|g" -e "s|@PORT@|$port|g" \
  -e "s|@PREFIX@|$prefix|g" -e "s|@DEPS@|$deps|g" \
  -e "s|@REDIS_PORT@|$redis_port|g" "$here/nginx.conf" >"$prefix/nginx.conf"
# -e: the error log before the config is read (else /var/log/nginx).
exec nginx -p "$prefix" -e "$prefix/error.log" -c "$prefix/nginx.conf"

#!/bin/sh
# Installs the Debian packages luacluster needs, only those missing.
#   vendor/setup.sh build   what `make` needs
#   vendor/setup.sh test    + what `make test` needs (busted, peers of specs,
#                           redis-server; resty.redis into build/deps)
#   vendor/setup.sh bench   + what bench/ needs (wrk, nginx+lua, node,
#                           hyperfine)
# Idempotent: a second run installs nothing and prints nothing but a line.
set -eu

build="cmake make gcc pkg-config libluajit2-5.1-dev luajit2 libuv1-dev \
  lua-cjson-dev lua-luv-dev node-llhttp"
test="lua-busted lua-filesystem procps util-linux systemd curl dpkg-dev \
  redis-server"
bench="wrk nginx-light libnginx-mod-http-lua nodejs npm hyperfine"
fuzz="clang libclang-rt-14-dev"

want=$build
case "${1:-build}" in
  build) ;;
  test) want="$build $test" ;;
  bench) want="$build $test $bench" ;;
  fuzz) want="$build $fuzz" ;;
  all) want="$build $test $bench $fuzz" ;;
  *) echo "usage: $0 build|test|bench|fuzz|all" >&2; exit 2 ;;
esac

missing=""
for p in $want; do
  # A Node.js from another Debian repository (NodeSource's nodejs bundles
  # npm) conflicts with Debian's npm package: a working command is enough.
  case $p in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
      grep -q 'install ok installed'; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "setup: all packages present (${1:-build})"
else
  echo "setup: installing$missing"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # redis-server's package starts a server of its own on port 6379; the
  # specs start theirs on free ports, so that one is stopped and kept from
  # starting at boot.
  case " $missing " in *" redis-server "*)
    if [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now redis-server >/dev/null 2>&1 || true
    else
      $SUDO service redis-server stop >/dev/null 2>&1 || true
      $SUDO update-rc.d redis-server disable >/dev/null 2>&1 || true
    fi
  esac
fi

here=$(cd "$(dirname "$0")/.." && pwd)

# OpenResty's Redis driver for the cosocket specs, from Debian's
# lua-nginx-redis. That package depends on nginx-extras, which conflicts
# with the bench's nginx-light: it is downloaded and unpacked, not
# installed, and its one file copied to build/deps/lua/resty/redis.lua.
case "${1:-build}" in test|bench|all)
  dest="$here/build/deps/lua/resty/redis.lua"
  if [ ! -f "$dest" ]; then
    echo "setup: lua-nginx-redis (resty.redis) into build/deps"
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && apt-get download -qq lua-nginx-redis >/dev/null 2>&1)
    then
      SUDO=""
      [ "$(id -u)" -eq 0 ] || SUDO=sudo
      $SUDO apt-get update -qq
      (cd "$tmp" && apt-get download -qq lua-nginx-redis >/dev/null)
    fi
    dpkg-deb -x "$tmp"/lua-nginx-redis_*.deb "$tmp/root"
    # Debian ships it as nginx/redis.lua (resty/redis.lua upstream).
    src=$(find "$tmp/root" -name redis.lua | head -n 1)
    mkdir -p "$(dirname "$dest")"
    cp "$src" "$dest"
    rm -rf "$tmp"
  fi
esac

# The benchmark's load tool from the npm registry, in bench/node_modules,
# at the version bench/package.json pins (no lock file is written).
if [ "${1:-build}" = bench ] || [ "${1:-build}" = all ]; then
  if [ ! -x "$here/bench/node_modules/.bin/loadtest" ]; then
    echo "setup: npm install loadtest (bench/)"
    (cd "$here/bench" && npm install --no-audit --no-fund --silent \
      --no-package-lock >/dev/null)
  fi
fi

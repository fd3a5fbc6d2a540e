#!/bin/sh
# Installs the Debian packages luacluster needs, only those missing.
#   sh vendor/setup.sh          what the build needs, make included: the
#                               README's first command runs it on a bare
#                               Debian 12, before make exists
#   sh vendor/setup.sh build    the same (what `make`, `make run` run)
#   sh vendor/setup.sh test     + what `make test` needs (busted, the
#                               tools and modules the specs use,
#                               redis-server, memcached, postgresql;
#                               resty.redis and resty.memcached into
#                               build/deps)
#   sh vendor/setup.sh bench    + what bench/ needs (wrk, nginx+lua and
#                               cjson for it, node, hyperfine; loadtest
#                               and redis from npm into bench/)
#   sh vendor/setup.sh fuzz     + clang and its sanitizer runtimes
# Packages are installed without their recommends, so each one a build or
# a spec uses is listed here, even where a full Debian would have it anyway
# (libc6-dev is only a recommend of gcc; lua-lpeg only of lua-dkjson).
# Idempotent: a second run installs nothing and prints one line.
# vendor/README.md says what each package is for.
set -eu

build="make gcc libc6-dev cmake pkg-config libluajit2-5.1-dev luajit2 \
  libuv1-dev lua-cjson-dev lua-luv-dev node-llhttp libpq-dev libssl-dev \
  zlib1g-dev"
test="lua-busted lua-lpeg lua-filesystem lua-yaml procps util-linux mount \
  systemd curl openssl ca-certificates dpkg-dev file groff-base \
  redis-server memcached nodejs node-ws postgresql"
bench="wrk nginx-light libnginx-mod-http-lua lua-cjson nodejs npm hyperfine"
fuzz="clang libclang-rt-14-dev"

what=${1:-build}
want=$build
case $what in
  build) ;;
  test) want="$build $test" ;;
  bench) want="$build $test $bench" ;;
  fuzz) want="$build $fuzz" ;;
  all) want="$build $test $bench $fuzz" ;;
  *) echo "usage: $0 [build|test|bench|fuzz|all]" >&2; exit 2 ;;
esac

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=""
n=0
for p in $want; do
  n=$((n + 1))
  # A Node.js from another Debian repository (NodeSource's nodejs bundles
  # npm) conflicts with Debian's npm package: a working command is enough.
  case $p in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  installed "$p" || missing="$missing $p"
done

if [ -z "$missing" ]; then
  echo "setup: nothing to install, the $n packages for '$what' are present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: missing$missing; run this as root (or install sudo)" >&2
      exit 1
    fi
    SUDO=sudo
  fi
  echo "setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
  # Say so if apt-get left one out rather than let the build find out.
  for p in $missing; do
    installed "$p" || { echo "setup: $p did not install" >&2; exit 1; }
  done
  echo "setup: installed$missing"
  # redis-server's, memcached's and postgresql's packages start servers
  # of their own (ports 6379, 11211, 5432); the specs start theirs on free
  # ports or in temp dirs, so those are stopped and kept from starting at
  # boot.
  for svc in redis-server memcached postgresql; do
    case " $missing " in *" $svc "*)
      if [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
      else
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
        $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
      fi
    esac
  done
fi

here=$(cd "$(dirname "$0")/.." && pwd)

# OpenResty's pure-Lua drivers for the cosocket specs (and the bench's
# nginx peers), from Debian's lua-nginx-* packages. Those depend
# on nginx-extras, which conflicts with the bench's nginx-light: each is
# downloaded and unpacked, not installed, into build/deps/lua: redis.lua
# and memcached.lua as resty/*.lua (their upstream names).
# driver PACKAGE FILE-IN-PACKAGE DEST-UNDER-build/deps/lua
driver() {
  dest="$here/build/deps/lua/$3"
  [ -e "$dest" ] && return 0
  echo "setup: $1 ($3) into build/deps"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq "$1" >/dev/null 2>&1); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download -qq "$1" >/dev/null)
  fi
  dpkg-deb -x "$tmp"/"$1"_*.deb "$tmp/root"
  src="$tmp/root/usr/share/lua/5.1/$2"
  mkdir -p "$(dirname "$dest")"
  cp -r "$src" "$dest"
  rm -rf "$tmp"
}
case "$what" in test|bench|all)
  driver lua-nginx-redis nginx/redis.lua resty/redis.lua
  driver lua-nginx-memcached nginx/memcached.lua resty/memcached.lua
esac
# lua-resty-websocket for bench/ws's nginx peer, under the name Debian's
# copy requires itself by (nginx.websocket.protocol).
case "$what" in bench|all)
  driver lua-nginx-websocket nginx/websocket nginx/websocket
esac

# The benchmark's npm packages (loadtest, the node peer's redis client) in
# bench/node_modules, at the versions bench/package.json pins (no lock file
# is written); installed again when one is missing or at another version.
if [ "$what" = bench ] || [ "$what" = all ]; then
  if ! (cd "$here/bench" && node -e '
      const deps = require("./package.json").dependencies;
      for (const [name, v] of Object.entries(deps)) {
        let got;
        try { got = require("./node_modules/" + name + "/package.json").version; }
        catch (e) {}
        if (got !== v) process.exit(1);
      }' 2>/dev/null); then
    echo "setup: npm install $(cd "$here/bench" && node -p \
      'Object.keys(require("./package.json").dependencies).join(" ")') (bench/)"
    (cd "$here/bench" && npm install --no-audit --no-fund --silent \
      --no-package-lock >/dev/null)
  fi
fi

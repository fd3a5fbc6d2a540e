#!/bin/sh
# Installs the Debian packages luacluster needs, only those missing.
#   vendor/setup.sh build   what `make` needs
#   vendor/setup.sh test    + what `make test` needs (busted, peers of specs)
#   vendor/setup.sh bench   + what bench/ needs (wrk, nginx+lua, node,
#                           hyperfine)
# Idempotent: a second run installs nothing and prints nothing but a line.
set -eu

build="cmake make gcc pkg-config libluajit2-5.1-dev luajit2 libuv1-dev \
  lua-cjson-dev lua-luv-dev node-llhttp"
test="lua-busted lua-filesystem procps util-linux systemd curl dpkg-dev"
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
fi

# The benchmark's load tool from the npm registry, in bench/node_modules,
# at the version bench/package.json pins (no lock file is written).
if [ "${1:-build}" = bench ] || [ "${1:-build}" = all ]; then
  here=$(cd "$(dirname "$0")/.." && pwd)
  if [ ! -x "$here/bench/node_modules/.bin/loadtest" ]; then
    echo "setup: npm install loadtest (bench/)"
    (cd "$here/bench" && npm install --no-audit --no-fund --silent \
      --no-package-lock >/dev/null)
  fi
fi

#!/bin/sh
# CI: the README's two commands on a bare Debian 12, as a new user runs
# them. A minimal root (debootstrap --variant=minbase, from the mirror this
# machine's apt uses) is kept as a tarball in $CACHE and extracted afresh
# each run, so nothing from a run before is there. In it: apt-get install
# git (nothing else), git clone of the commit under test (HEAD), then
#   sh vendor/setup.sh && make run   in the background, until
#                                    examples/hello_cluster.lua answers an
#                                    HTTP request; then stopped (its process
#                                    group, by id)
#   make test                        which must end "N passed, 0 failed,
#                                    0 skipped" (a skip here would be a
#                                    package setup.sh left out)
# Needs root (debootstrap, chroot, mounts). Unmounts and removes its root
# on exit, whatever happened. Environment: CACHE (/var/cache/luacluster-ci),
# MIRROR (read from /etc/apt/sources.list*), CACHE_DAYS (7: a cached root
# older than that is made again), RUN_TIMEOUT and TEST_TIMEOUT (seconds).
set -eu

SUITE=bookworm
CACHE=${CACHE:-/var/cache/luacluster-ci}
CACHE_DAYS=${CACHE_DAYS:-7}
RUN_TIMEOUT=${RUN_TIMEOUT:-1200}
TEST_TIMEOUT=${TEST_TIMEOUT:-1200}
repo=$(cd "$(dirname "$0")/.." && pwd)
t0=$(date +%s)

say() { echo "bare-debian: $*"; }
die() { echo "bare-debian: $*" >&2; exit 1; }
# await COMMAND...: runs it in the background and waits for it, so that a
# signal is acted on at once (a shell runs its traps only once a foreground
# command is over); its exit status is await's.
await() { "$@" & wait $!; }

[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount)"

# The Debian mirror of this machine's apt: the first source of $SUITE itself
# (not -updates, not -security), one-line or deb822 format.
mirror_of_apt() {
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i + 1) == suite) { print $i; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; enabled = "yes"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^#/) continue
          split($i, kv, ":[ \t]*")
          v = substr($i, length(kv[1]) + 2); sub(/^[ \t]+/, "", v)
          k = tolower(kv[1])
          if (k == "types") types = v
          else if (k == "uris") uris = v
          else if (k == "suites") suites = v
          else if (k == "enabled") enabled = tolower(v)
        }
        if (enabled == "no" || (" " types " ") !~ / deb /) next
        if ((" " suites " ") ~ (" " suite " ")) {
          split(uris, u, /[ \t]+/); print u[1]; exit
        }
      }' "$f"
  done
}
MIRROR=${MIRROR:-$(mirror_of_apt | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
arch=$(dpkg --print-architecture)
key=$(printf '%s %s minbase' "$MIRROR" "$SUITE" | md5sum | cut -c1-8)
tarball="$CACHE/debian-$SUITE-minbase-$arch-$key.tar.gz"

if ! command -v debootstrap >/dev/null 2>&1; then
  say "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends debootstrap >/dev/null
fi

# The pristine root, made once (under a lock: CI runs may overlap) and again
# when older than CACHE_DAYS.
mkdir -p "$CACHE"
(
  flock 9
  # What an interrupted run before left (debootstrap mounts in its root).
  for d in "$CACHE"/root.*; do
    [ -d "$d" ] || continue
    awk -v r="$d" 'index($2, r "/") == 1 { print $2 }' /proc/self/mounts |
      sort -r | xargs -r umount -l
    rm -rf --one-file-system "$d" "$d.log"
  done
  if [ -z "$(find "$tarball" -mtime -"$CACHE_DAYS" 2>/dev/null)" ]; then
    say "debootstrap --variant=minbase $SUITE from $MIRROR"
    fresh=$(mktemp -d "$CACHE/root.XXXXXX")
    if ! debootstrap --variant=minbase "$SUITE" "$fresh" "$MIRROR" \
        >"$fresh.log" 2>&1; then
      tail -n 20 "$fresh.log" >&2
      rm -rf --one-file-system "$fresh" "$fresh.log"
      exit 1
    fi
    # The packages' files are kept, not their downloaded .debs; / is 0755,
    # not mktemp's 0700 (apt's _apt user must get through it).
    rm -f "$fresh"/var/cache/apt/archives/*.deb
    chmod 755 "$fresh"
    tar -C "$fresh" --numeric-owner -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf --one-file-system "$fresh" "$fresh.log"
  fi
) 9>"$CACHE/lock"

work=$(mktemp -d /var/tmp/luacluster-bare.XXXXXX)
root=$work/root
pid=""

# Mounts under $root, deepest first.
mounts_under() {
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 { print $2 }' \
    /proc/self/mounts | sort -r
}

cleanup() {
  rc=$?
  set +e
  # Anything still running in the root was started here: stop it by id.
  for p in /proc/[0-9]*; do
    case $(readlink "$p/root" 2>/dev/null) in
      "$root"|"$root"/*) kill -KILL "${p#/proc/}" 2>/dev/null ;;
    esac
  done
  sleep 1
  for m in $(mounts_under); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if [ -n "$(mounts_under)" ]; then
    echo "bare-debian: still mounted under $root, left in place:" >&2
    mounts_under >&2
  else
    rm -rf --one-file-system "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "fresh root from $tarball"
mkdir "$root"
await tar -C "$root" --numeric-owner -xzf "$tarball"

# What a system gives a root shell: / a mount point of its own (as on a
# machine: unshare --mount needs it), /proc, /sys, /dev with terminals of
# its own (a devpts instance) and shared memory, and this machine's
# resolver. The binds are made private before anything is mounted under
# them, so that nothing shows on the host's /dev.
mount --bind "$root" "$root"
mount --make-private "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --make-private "$root/dev"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts \
  "$root/dev/pts"
mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
# An apt proxy this machine needs, the root needs too.
for f in /etc/apt/apt.conf /etc/apt/apt.conf.d/*; do
  [ -f "$f" ] && grep -qi 'proxy' "$f" && cp "$f" "$root/etc/apt/apt.conf.d/"
done

# in_root [VAR=value...] COMMAND...: runs COMMAND in the root as root, with
# a login's environment and the variables given.
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

say "apt-get install git"
await in_root DEBIAN_FRONTEND=noninteractive /bin/sh -c 'apt-get update -qq &&
  apt-get install -y -qq --no-install-recommends git >/dev/null'

commit=$(git -C "$repo" rev-parse HEAD)
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
  say "note: uncommitted changes are not tested, only HEAD"
fi
git -C "$repo" bundle create "$root/tmp/luacluster.bundle" HEAD 2>/dev/null
await in_root git -c advice.detachedHead=false clone -q \
  /tmp/luacluster.bundle /root/luacluster
rm "$root/tmp/luacluster.bundle"
[ "$(in_root git -C /root/luacluster rev-parse HEAD)" = "$commit" ] ||
  die "the clone is not at $commit"
say "cloned $commit into /root/luacluster"

# A port nothing listens on, for make run (PORT; 8000 may be taken here).
answers() {
  timeout 10 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
    cat <&3' sh "$1" 2>/dev/null
}
PORT=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  p=$(( $(od -An -N2 -tu2 /dev/urandom) % 12000 + 20000 ))
  if ! answers "$p" >/dev/null; then PORT=$p; break; fi
done
[ -n "$PORT" ] || die "no free port"

# 1. sh vendor/setup.sh && make run, in a session of its own, until it
# answers (the build comes first), then stopped.
say "sh vendor/setup.sh && make run (PORT=$PORT)"
t1=$(date +%s)
# (The script runs without job control, so setsid makes the session here,
# in the process $! names: its process group is $!.)
setsid chroot "$root" /usr/bin/env -i HOME=/root TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PORT="$PORT" \
  /bin/sh -c 'cd /root/luacluster && sh vendor/setup.sh && make run' \
  >"$work/run.log" 2>&1 &
pid=$!
answer=""
while :; do
  if answer=$(answers "$PORT") && [ -n "$answer" ]; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$work/run.log" >&2
    die "make run ended without answering"
  fi
  if [ $(( $(date +%s) - t1 )) -gt "$RUN_TIMEOUT" ]; then
    tail -n 40 "$work/run.log" >&2
    die "make run did not answer in $RUN_TIMEOUT s"
  fi
  sleep 2
done
pgid=$(awk '{ print $5 }' "/proc/$pid/stat")
[ "$pgid" = "$pid" ] || die "make run is not in its own process group"
kill -TERM "-$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 20 ]; do
  sleep 0.5
  i=$((i + 1))
done
kill -KILL "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
cat "$work/run.log"
echo "$answer" | grep -q '^hello from worker [0-9]' || {
  echo "$answer" >&2
  die "make run answered, but not hello from a worker"
}
say "make run answered in $(( $(date +%s) - t1 )) s: $(echo "$answer" |
  grep '^hello from worker')"

# 2. make test.
say "make test"
t2=$(date +%s)
status=0
await timeout -k 10 "$TEST_TIMEOUT" chroot "$root" /usr/bin/env -i HOME=/root \
  TERM="${TERM:-dumb}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/sh -c 'cd /root/luacluster && make test' >"$work/test.log" 2>&1 ||
  status=$?
cat "$work/test.log"
last=$(grep -v '^make: \*\*\*' "$work/test.log" | tail -n 1)
echo "$last" | grep -Eq '^[0-9]+ passed, 0 failed, 0 skipped$' && \
  [ "$status" -eq 0 ] ||
  die "make test did not pass on a bare Debian 12 (exit $status): $last"
say "make test: $last, in $(( $(date +%s) - t2 )) s"
say "done in $(( $(date +%s) - t0 )) s"

#!/bin/sh
# build-debian.sh DIR [SUITE]: build a Debian base root filesystem for warden
# containers into DIR with debootstrap (variant minbase; SUITE defaults to
# bookworm), with the same conventions as build-busybox.sh: user vcap
# (uid/gid VCAP_UID, default 10000, home /home/vcap, shell /bin/sh), iputils
# ping usable without capabilities (no setuid bit, no file capabilities: the
# container's processes run with an empty bounding set, where a binary with
# file capabilities cannot even be executed), /dev holding only the
# container's device set (copied by the hooks onto a tmpfs), no apt caches.
#
# Env:  VCAP_UID (default 10000); MIRROR (default http://deb.debian.org/debian);
#       INCLUDE: extra packages, comma-separated.
# Idempotent: a DIR built by this script from the same inputs is kept;
# otherwise the tree is built beside DIR and renamed into place. Takes minutes
# and needs the Debian mirror. Do not rebuild while containers run on DIR.
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit

die() {
  echo "build-debian.sh: $*" >&2
  exit 1
}

case $# in 1 | 2) ;; *) die "usage: build-debian.sh DIR [SUITE]" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root"
dir=${1%/}
[ -n "$dir" ] || die "DIR must not be /"
suite=${2:-bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}
vcap_uid=${VCAP_UID:-10000}
include=iputils-ping${INCLUDE:+,$INCLUDE}
case $vcap_uid in '' | *[!0-9]*) die "VCAP_UID must be a number" ;; esac

if ! command -v debootstrap >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2; }
fi

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
stamp="warden debian rootfs; suite=$suite; include=$include; vcap_uid=$vcap_uid; $(cksum "$self" | tr '\n' ';')"
if [ -f "$dir/etc/warden-rootfs" ] && [ "$(cat "$dir/etc/warden-rootfs")" = "$stamp" ]; then
  echo "build-debian.sh: $dir is up to date"
  exit 0
fi

tmp=$dir.tmp.$$
old=$dir.old.$$
cleanup() {
  # debootstrap mounts proc and sys in the target while it works.
  for m in proc sys dev/pts dev; do
    if mountpoint -q "$tmp/$m" 2>/dev/null; then umount -l "$tmp/$m"; fi
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
rm -rf "$tmp"

debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >&2

chroot "$tmp" groupadd -g "$vcap_uid" vcap
chroot "$tmp" useradd -m -u "$vcap_uid" -g "$vcap_uid" -s /bin/sh -d /home/vcap vcap
chmod 0755 "$tmp/home/vcap"

# ping: a fresh copy has no file capabilities; no setuid bit either.
ping=$tmp/usr/bin/ping
[ -f "$ping" ] || ping=$tmp/bin/ping
cp "$ping" "$ping.new"
chmod 0755 "$ping.new"
mv "$ping.new" "$ping"

# /dev: only the container's device set (see build-busybox.sh).
rm -rf "${tmp:?}/dev"
mkdir -m 0755 "$tmp/dev"
mknod -m 0666 "$tmp/dev/null" c 1 3
mknod -m 0666 "$tmp/dev/zero" c 1 5
mknod -m 0666 "$tmp/dev/full" c 1 7
mknod -m 0666 "$tmp/dev/random" c 1 8
mknod -m 0666 "$tmp/dev/urandom" c 1 9
mknod -m 0666 "$tmp/dev/tty" c 5 0
ln -s pts/ptmx "$tmp/dev/ptmx"
ln -s /proc/self/fd "$tmp/dev/fd"
ln -s /proc/self/fd/0 "$tmp/dev/stdin"
ln -s /proc/self/fd/1 "$tmp/dev/stdout"
ln -s /proc/self/fd/2 "$tmp/dev/stderr"

echo warden >"$tmp/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$tmp/etc/hosts"
rm -f "$tmp/etc/resolv.conf" # the hooks write the container's
chroot "$tmp" apt-get clean
rm -rf "$tmp/var/lib/apt/lists/"* "$tmp/var/log/"*.log

chroot "$tmp" /bin/sh -c 'ping -V && id vcap' >/dev/null || die "ping or vcap missing in the new root"
echo "$stamp" >"$tmp/etc/warden-rootfs"
if [ -e "$dir" ]; then
  mv "$dir" "$old"
fi
mv "$tmp" "$dir"
trap - EXIT
rm -rf "$old"
echo "build-debian.sh: built $dir"

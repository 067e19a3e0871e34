#!/bin/sh
# build-busybox.sh DIR: build warden's default base root filesystem into DIR.
#
# Contents:
# - Debian's static busybox at /bin/busybox, every applet linked to it
#   (symlinks to /bin/busybox under /bin /sbin /usr/bin /usr/sbin: the layout
#   of `busybox --install -s`, made from the host).
# - iputils ping at /bin/ping. busybox 1.35's ping only opens raw sockets, so
#   it needs CAP_NET_RAW; iputils ping falls back to ICMP datagram sockets,
#   which net.ipv4.ping_group_range opens to any user: the container's
#   unprivileged user pings without capabilities.
# - dash at /bin/sh (busybox's sh is still /bin/ash). Debian's busybox is built
#   with FEATURE_SH_STANDALONE: its sh runs its own applets before anything on
#   PATH, so under it `ping` would always be busybox's.
# - The shared libraries of ping and dash (glibc), users root and vcap,
#   /etc basics, empty /proc and /sys for the hooks to mount on, and in /dev
#   the container's device set (copied onto the tmpfs the hooks mount there).
#
# Env:  VCAP_UID (default 10000): uid and gid of vcap in the base. The hooks
#       rewrite them per container, in the container's overlay.
# Idempotent: if DIR holds a build made by this script from the same inputs
# (this script, busybox, ping, dash, VCAP_UID), it is left as it is. Otherwise
# the new tree is built beside DIR and renamed into place. Do not rebuild
# while containers run on DIR: the old tree is deleted.
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit

die() {
  echo "build-busybox.sh: $*" >&2
  exit 1
}

[ $# -eq 1 ] || die "usage: build-busybox.sh DIR"
[ "$(id -u)" -eq 0 ] || die "must run as root (the files must belong to root)"
dir=${1%/}
[ -n "$dir" ] || die "DIR must not be /"
vcap_uid=${VCAP_UID:-10000}
case $vcap_uid in '' | *[!0-9]*) die "VCAP_UID must be a number" ;; esac

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2 ||
    { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; }
}

[ -x /bin/busybox ] || apt_install busybox-static
# A dynamically linked busybox (Debian's package `busybox`) would need more
# of the host's libraries inside the container.
if ldd /bin/busybox >/dev/null 2>&1; then
  die "/bin/busybox is dynamically linked: install busybox-static"
fi
ping=$(command -v ping || true)
if [ -z "$ping" ] || ! "$ping" -V 2>/dev/null | grep -q iputils; then
  apt_install iputils-ping
  ping=$(command -v ping) || die "iputils-ping installed but no ping on PATH"
fi
dash=$(command -v dash) || die "no dash on PATH (Debian: package dash)"

self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
stamp="warden busybox rootfs; vcap_uid=$vcap_uid; $(cksum "$self" /bin/busybox "$ping" "$dash" | tr '\n' ';')"
if [ -f "$dir/etc/warden-rootfs" ] && [ "$(cat "$dir/etc/warden-rootfs")" = "$stamp" ]; then
  echo "build-busybox.sh: $dir is up to date"
  exit 0
fi

tmp=$dir.tmp.$$
old=$dir.old.$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp"
cd "$tmp"

mkdir -p bin sbin usr/bin usr/sbin etc root home/vcap tmp var/tmp proc sys dev
chmod 0700 root
chmod 1777 tmp var/tmp
cp /bin/busybox bin/busybox
chmod 0755 bin/busybox

# Every applet, at the path busybox itself would install it to.
for applet in $(bin/busybox --list-full); do
  case $applet in bin/busybox | linuxrc | bin/sh | bin/ping | bin/ping6) continue ;; esac
  [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done

# ping and dash, with their libraries at the host's paths. Plain cp: the
# host's file capabilities (cap_net_raw on ping) are not copied.
cp "$ping" bin/ping
cp "$dash" bin/dash
chmod 0755 bin/ping bin/dash
ln -s ping bin/ping6
ln -s dash bin/sh
for exe in "$ping" "$dash"; do
  ldd "$exe" | while read -r a b c _; do
    case $a in
      /*) lib=$a ;;                              # the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
      *) [ "$b" = "=>" ] || continue; lib=$c ;; # linux-vdso.so.1 has no file
    esac
    case $lib in /*) ;; *) die "$exe needs $a, which ldd cannot find" ;; esac
    [ -e ".$lib" ] && continue
    mkdir -p ".$(dirname "$lib")"
    cp -L "$lib" ".$lib"
  done
done

cat >etc/passwd <<EOF
root:x:0:0:root:/root:/bin/sh
vcap:x:$vcap_uid:$vcap_uid:vcap:/home/vcap:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<EOF
root:x:0:
tty:x:5:
vcap:x:$vcap_uid:
nogroup:x:65534:
EOF
echo warden >etc/hostname
cat >etc/hosts <<EOF
127.0.0.1 localhost
::1 localhost
EOF
cat >etc/nsswitch.conf <<EOF
passwd: files
group: files
hosts: files dns
EOF
cat >etc/profile <<EOF
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
ln -s /proc/self/mounts etc/mtab

# /dev: the device set of every container. The container never sees this
# directory (hook-child-before-pivot.sh mounts a tmpfs over /dev), but copies
# it onto that tmpfs with one `cp -a`: nodes with the right modes and the
# links, without a process per node.
mknod -m 0666 dev/null c 1 3
mknod -m 0666 dev/zero c 1 5
mknod -m 0666 dev/full c 1 7
mknod -m 0666 dev/random c 1 8
mknod -m 0666 dev/urandom c 1 9
mknod -m 0666 dev/tty c 5 0
ln -s pts/ptmx dev/ptmx
ln -s /proc/self/fd dev/fd
ln -s /proc/self/fd/0 dev/stdin
ln -s /proc/self/fd/1 dev/stdout
ln -s /proc/self/fd/2 dev/stderr
chown "$vcap_uid:$vcap_uid" home/vcap
chmod 0755 home/vcap

# Check what the containers rely on before putting the tree in place.
for applet in ls cat echo ps id df du dd tar mkdir rm ln readlink stat find head tr sleep \
  kill nc ip hostname mount umount touch chmod chown wc grep sed awk env true false cp mv \
  printf test [ uname which xargs cut sort; do
  [ -L "bin/$applet" ] || [ -L "usr/bin/$applet" ] || [ -L "sbin/$applet" ] ||
    [ -L "usr/sbin/$applet" ] || die "applet $applet missing from $(bin/busybox | head -1)"
done
chroot . /bin/sh -c 'ping -V && ls /' >/dev/null || die "sh or ping does not run in the new root"

echo "$stamp" >etc/warden-rootfs
cd /
if [ -e "$dir" ]; then
  mv "$dir" "$old"
fi
mv "$tmp" "$dir"
trap - EXIT
rm -rf "$old"
echo "build-busybox.sh: built $dir"

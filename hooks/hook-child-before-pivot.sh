#!/bin/sh
# Stage:    child-before-pivot. Runs as root in the container's new namespaces
#           (PID, network, mount, UTS, IPC), before pivot_root: the host's
#           file system and tools are still visible; cwd = container dir.
# Inputs:   etc/config (id, network_container_iface, network_container_ip,
#           network_prefix_len, network_host_ip, network_mtu, rootfs_path:
#           its dev/ is the device set, if it has one); mnt/ as left
#           by parent-before-clone; the veth end network_container_iface in
#           this network namespace (parent-after-clone).
# Leaves:   under mnt/: proc (fresh, for the new PID namespace), sys
#           (read-only), dev (tmpfs with only null zero full random urandom
#           tty, ptmx -> pts/ptmx, pts (devpts, new instance), shm (tmpfs),
#           fd stdin stdout stderr -> /proc/self/fd...); hostname = id; lo up;
#           network_container_iface addressed, MTU set, up; default route via
#           network_host_ip; ICMP echo sockets allowed for every group
#           (net.ipv4.ping_group_range), so the unprivileged user can ping.
#           run/child.fstab: what was mounted.
# Failure:  wshd exits non-zero; the namespaces, and all of the above with
#           them, go away. Running it again in the same namespaces is safe.
# Edit:     mount options, extra devices, sysctls, routes below.
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

# Identity and network first. /proc/sys is per namespace: these writes reach
# the container's UTS and network namespaces. `ip` needs nothing of the mounts
# below: it runs beside them (a process less on the way to ready).
printf '%s\n' "$id" >/proc/sys/kernel/hostname
printf '0 2147483647\n' >/proc/sys/net/ipv4/ping_group_range
ip -batch - <<EOF &
link set lo up
link set $network_container_iface mtu $network_mtu up
address replace $network_container_ip/$network_prefix_len dev $network_container_iface
route replace default via $network_host_ip dev $network_container_iface
EOF
ip_pid=$!

warden_escape "$PWD/mnt"
m=$warden_escaped

# devpts: pty slaves get the tty group (mode 620) if the container has one.
warden_group_id mnt/etc/group tty
pts_opts=
[ -z "$warden_gid" ] || pts_opts=",gid=$warden_gid,mode=0620"

# One `mount -a` for all of them, in order; X-mount.mkdir makes pts/ and
# shm/ in the new /dev. Mounted ones are skipped on a second run.
printf '%s' "proc $m/proc proc nosuid,nodev,noexec 0 0
sysfs $m/sys sysfs ro,nosuid,nodev,noexec 0 0
tmpfs $m/dev tmpfs nosuid,noexec,mode=0755,size=64k 0 0
devpts $m/dev/pts devpts nosuid,noexec,newinstance,ptmxmode=0666$pts_opts,X-mount.mkdir 0 0
shm $m/dev/shm tmpfs nosuid,nodev,mode=1777,X-mount.mkdir 0 0
" >run/child.fstab
mount -a -T run/child.fstab

# Device nodes and links. The base root's own /dev holds the set (rootfs/
# build-*.sh make it with mknod, modes 0666; the tmpfs above hides it from
# the container): one cp copies exactly these entries. A base without them
# gets the host's nodes (made 0666) and links made here.
r=$rootfs_path/dev
if [ -c "$r/null" ] && [ -c "$r/tty" ] && [ -L "$r/ptmx" ] && [ -L "$r/fd" ] && [ -L "$r/stderr" ]; then
  cp -a --remove-destination "$r/null" "$r/zero" "$r/full" "$r/random" "$r/urandom" "$r/tty" \
    "$r/ptmx" "$r/fd" "$r/stdin" "$r/stdout" "$r/stderr" mnt/dev/
else
  cp -a --remove-destination /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty mnt/dev/
  chmod 0666 mnt/dev/null mnt/dev/zero mnt/dev/full mnt/dev/random mnt/dev/urandom mnt/dev/tty
  ln -sfn pts/ptmx mnt/dev/ptmx
  ln -sfn /proc/self/fd mnt/dev/fd
  ln -sfn /proc/self/fd/0 mnt/dev/stdin
  ln -sfn /proc/self/fd/1 mnt/dev/stdout
  ln -sfn /proc/self/fd/2 mnt/dev/stderr
fi

wait "$ip_pid" || warden_die "ip -batch failed (see above): network not set up"

# ---- EDIT: add your own devices, sysctls or routes below. ----

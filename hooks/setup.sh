#!/bin/sh
# Stage:    none: prepares a container directory by hand (the daemon writes
#           the same files itself at create). Host, as root; any cwd.
#           Usage: setup.sh DIR [KEY=VALUE]...   DIR's name is the handle.
# Inputs:   DIR (its basename: 8 lowercase hex digits, the container's /30
#           network address); KEY=VALUE overrides for etc/config (any key
#           below except id and container_path); this script's directory
#           (the hooks to copy).
# Leaves:   DIR/etc/config (defaults below, then the overrides),
#           DIR/etc/bind_mounts (empty; an existing one is kept),
#           DIR/lib/ (a copy of every file beside this script), DIR/run/.
#           Nothing is mounted or started: run the stages next (README.md).
# Failure:  prints why and exits 1; running it again is safe.
# Edit:     the defaults below.
# shellcheck disable=SC2154 # warden_* variables come from common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) hooks=${0%/*} ;; *) hooks=. ;; esac
# shellcheck source=/dev/null
. "$hooks/common.sh"

[ $# -ge 1 ] || warden_die "usage: setup.sh DIR [KEY=VALUE]..."
dir=$1
shift
id=${dir%/}
id=${id##*/}
case $id in
  [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;;
  *) warden_die "the directory's name must be a handle (8 lowercase hex digits, e.g. 0afe0004), not '$id'" ;;
esac

# Defaults. The network is the handle's address: 0afe0004 -> 10.254.0.4/30,
# host end 10.254.0.5, container end 10.254.0.6.
network=$((0x$id))
warden_ip_of $((network + 1))
network_host_ip=$warden_ip
warden_ip_of $((network + 2))
network_container_ip=$warden_ip
network_netmask=255.255.255.252
network_prefix_len=30
network_host_iface=w-$id-0
network_container_iface=w-$id-1
network_mtu=1500
rootfs_path=/var/lib/warden/rootfs
disk_size_mb=512
user_uid=10000
user_name=vcap

keys="rootfs_path disk_size_mb network_host_ip network_container_ip network_netmask"
keys="$keys network_prefix_len network_host_iface network_container_iface network_mtu user_uid user_name"
for arg in "$@"; do
  key=${arg%%=*}
  value=${arg#*=}
  [ "$key" != "$arg" ] || warden_die "expected KEY=VALUE, got '$arg'"
  case " $keys " in
    *" $key "*) ;;
    *) warden_die "unknown key '$key' (known: $keys)" ;;
  esac
  case $value in *"'"* | *'
'*) warden_die "$key: values may not contain quotes or newlines" ;; esac
  eval "$key=\$value"
done

mkdir -p "$dir/etc" "$dir/lib" "$dir/run"
hooks=$(cd "$hooks" && pwd -P)
cd -P "$dir"
config="id='$id'
container_path='$PWD'
rootfs_path='$rootfs_path'
disk_size_mb='$disk_size_mb'
network_host_ip='$network_host_ip'
network_container_ip='$network_container_ip'
network_netmask='$network_netmask'
network_prefix_len='$network_prefix_len'
network_host_iface='$network_host_iface'
network_container_iface='$network_container_iface'
network_mtu='$network_mtu'
user_uid='$user_uid'
user_name='$user_name'
"
printf '%s' "$config" >etc/config
[ -e etc/bind_mounts ] || : >etc/bind_mounts
cp -p "$hooks"/* lib/
echo "$PWD"

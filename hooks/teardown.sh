#!/bin/sh
# Stage:    teardown. Runs on the host as root, in the host's namespaces, after
#           the container's processes are gone (wshd killed); cwd = container
#           dir. Called by the daemon at destroy (and after a failed create).
# Inputs:   etc/config (network_host_iface); what a start may have left.
# Leaves:   no host veth end network_host_iface; mnt/ and disk/ not mounted
#           in the host's mount namespace (only a stage run by hand outside
#           a private namespace leaves them there); no loop device backing
#           disk.img. The directory itself stays, disk.img in it: the caller
#           removes it (never before this succeeded: with mnt/ still mounted
#           a recursive delete would go into the root file system).
#           Normally there is nothing left to do: the kernel removes the veth
#           pair with the container's network namespace and releases the loop
#           device with its mount namespace, and the daemon waits for both
#           before it runs this. Then this starts no process.
# Failure:  exits non-zero with the reason; it is safe to run again, as often
#           as needed, after a complete or a half-finished start.
# Edit:     undo here whatever you added to the other stages on the host.
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# No config: the directory was never completed, so no stage ran.
[ -f etc/config ] || exit 0
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

d=$PWD

if [ -e "/sys/class/net/$network_host_iface" ]; then
  # It may vanish meanwhile with its peer's namespace: only fail if it stays.
  ip link delete "$network_host_iface" 2>/dev/null || [ ! -e "/sys/class/net/$network_host_iface" ] ||
    ip link delete "$network_host_iface"
fi

warden_mounts_load
if warden_is_mounted "$d/mnt"; then
  umount -R "$d/mnt"
fi
if warden_is_mounted "$d/disk"; then
  umount "$d/disk"
fi

# Loop devices still backed by disk.img (sysfs gives what `losetup -j`
# reads, without a process): the one the first stage recorded, else any (a
# host may have hundreds). A busy one is detached when its last user lets
# go (autoclear).
# shellcheck disable=SC2125 # expanded (globbed) in the for below
loops=/sys/block/loop*/loop/backing_file
if [ -f run/loop ] && read -r dev <run/loop; then
  case ${dev#/dev/loop} in
    '' | *[!0-9]*) ;; # not /dev/loopN: look at all of them
    *) loops=/sys/block/${dev#/dev/}/loop/backing_file ;;
  esac
fi
# shellcheck disable=SC2086 # a glob, on purpose
for f in $loops; do
  [ -f "$f" ] || continue
  read -r backing <"$f" || continue
  case $backing in
    "$d/disk.img" | "$d/disk.img (deleted)")
      dev=${f#/sys/block/}
      dev=${dev%%/*}
      losetup -d "/dev/$dev" || [ ! -f "$f" ]
      ;;
  esac
done

# ---- EDIT: undo your own host-side additions below. ----

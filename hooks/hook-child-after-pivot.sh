#!/bin/sh
# Stage:    child-after-pivot. Runs as root in the container's namespaces after
#           pivot_root, under the CONTAINER's /bin/sh (busybox in the default
#           root): use only commands the container has. It is started as
#           /.wshd-old-root/<container dir>/lib/hook-child-after-pivot.sh, so
#           cwd = the container dir seen through the old root, which wshd
#           detaches right after this hook.
# Inputs:   etc/config; the new root (/ = mnt/), with /proc, /sys, /dev, the
#           network and the hostname set up by child-before-pivot.
# Leaves:   nothing by default: this stage is yours.
# Failure:  wshd exits non-zero; the container's namespaces go away.
#           Whatever you add must be safe to run twice.
# Edit:     everything below the EDIT line, e.g. `mkdir -p /var/run` or
#           `echo 'nameserver 192.0.2.53' >/etc/resolv.conf`.
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

# ---- EDIT: add your own steps below (paths are the container's: /etc, /tmp...). ----

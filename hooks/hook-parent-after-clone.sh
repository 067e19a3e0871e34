#!/bin/sh
# Stage:    parent-after-clone. Runs on the host as root, in the host's network
#           namespace (wshd's private mount namespace); cwd = container dir.
# Inputs:   etc/config (network_host_iface, network_container_iface,
#           network_host_ip, network_prefix_len, network_mtu); env PID: the
#           host pid of the container's first process (its network namespace).
# Leaves:   veth pair: network_host_iface on the host, addressed
#           network_host_ip/network_prefix_len, MTU set, up;
#           network_container_iface created directly inside the network
#           namespace of PID (down, no address: child-before-pivot does that).
# Failure:  wshd exits non-zero and kills the child; the container end dies
#           with its network namespace and takes the host end with it. A
#           leftover host end is deleted first, so running it again is safe.
# Edit:     MTU, addresses, tc qdiscs on the host end below; keep the names.
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

[ -n "${PID:-}" ] || warden_die "PID (the container's host pid) is not set"
[ -d "/proc/$PID" ] || warden_die "no process $PID"

# One ip process: the pair is made with its container end already in the
# child's network namespace (no move).
stale=
if [ -e "/sys/class/net/$network_host_iface" ]; then
  stale="link delete $network_host_iface"
fi
ip -batch - <<EOB
$stale
link add $network_host_iface mtu $network_mtu type veth peer name $network_container_iface mtu $network_mtu netns $PID
address add $network_host_ip/$network_prefix_len dev $network_host_iface
link set $network_host_iface up
EOB

# ---- EDIT: add your own host-side steps below (e.g. tc on $network_host_iface). ----

#!/bin/sh
# Stage:    net-host (not a start stage). Runs on the host as root, in the
#           host's namespaces, from the repository's hooks/ (no container
#           directory). Called by the daemon:
#             net-host.sh setup      once at daemon start, before any net.sh
#             net-host.sh teardown   at shutdown, optional
# Inputs:   env POOL_NETWORK (cidr of the containers' pool, for NAT),
#           ALLOW_NETWORKS and DENY_NETWORKS (space-separated cidrs, may be
#           empty or unset); IPTABLES_RESTORE (default iptables-restore, e.g.
#           iptables-legacy-restore) and IPTABLES_SAVE (default: the matching
#           -save); WARDEN_NET_MARKERS (default /run/warden/net: net.sh's
#           markers of the containers that have chains of their own).
# Leaves:   setup: net.ipv4.ip_forward = 1, and
#             filter warden-forward: entered from FORWARD for traffic from
#               and to w-+ interfaces. net.sh inserts one
#               `-i w-<id>-0 -g warden-instance-<id>` per container that has
#               chains of its own (after its first `net in` or `net out`);
#               the last rule sends every other container's traffic to
#               warden-default; traffic to a container from elsewhere (not
#               from w-+) is accepted.
#             filter warden-default: the end of every per-container chain:
#               ESTABLISHED,RELATED accept; ALLOW_NETWORKS accept;
#               DENY_NETWORKS drop; everything else accept.
#             nat warden-prerouting: entered from PREROUTING and OUTPUT for
#               destinations of type LOCAL (not 127/8 from OUTPUT); net.sh
#               adds `-j warden-instance-<id>` (the DNAT rules of `net in`).
#             nat warden-postrouting: entered from POSTROUTING: MASQUERADE
#               traffic from POOL_NETWORK leaving through a non-w-+ interface.
#           Per-container chains and their jumps survive a setup (containers
#           outlive the daemon); the jumps from the built-in chains exist once.
#           The directory of net.sh's markers exists.
#           teardown: no warden-* chain (per-container ones included) and no
#           jump to one in filter or nat; no marker. ip_forward is left as it is.
# Failure:  exits non-zero with iptables-restore's message; each table is one
#           transaction, so a failed table is unchanged. Both commands may be
#           run again at any time.
# Edit:     the global policy below (e.g. also filter INPUT from w-+).
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}" ;; esac
# shellcheck source=/dev/null
. ./common.sh

restore=${IPTABLES_RESTORE:-iptables-restore}
markers=${WARDEN_NET_MARKERS:-/run/warden/net}
save=${IPTABLES_SAVE:-${restore%-restore}-save}
nl='
'

# scan KEEP: read iptables-save's output and set $filter_cleanup and
# $nat_cleanup to the lines that delete every jump from a built-in chain to
# a warden-* chain and every rule net-host.sh put into warden-forward and
# warden-prerouting; set $filter_chains / $nat_chains to the warden-* chains
# that exist. With KEEP=keep, rules and jumps of per-container chains
# (warden-instance-*) are kept; otherwise they are deleted too.
scan() {
  filter_cleanup='' nat_cleanup='' filter_chains='' nat_chains='' table=''
  # shellcheck disable=SC2086 # the command may carry arguments
  saved=$($save)
  while IFS= read -r line; do
    drop=''
    case $line in
      '*'*) table=${line#?} ;;
      :warden-*)
        name=${line#:}
        name=${name%% *}
        case $table in
          filter) filter_chains="$filter_chains $name" ;;
          nat) nat_chains="$nat_chains $name" ;;
        esac
        ;;
      "-A warden-instance-"*) ;; # inside a per-container chain: flushed with it
      "-A warden-forward "*" -g warden-instance-"* | "-A warden-prerouting -j warden-instance-"*)
        [ "$1" = keep ] || drop=1
        ;;
      "-A warden-"*) drop=1 ;;                              # our own rules
      "-A "*" -j warden-"* | "-A "*" -g warden-"*) drop=1 ;; # jumps from elsewhere
    esac
    if [ -n "$drop" ]; then
      case $table in
        filter) filter_cleanup="$filter_cleanup-D ${line#-A }$nl" ;;
        nat) nat_cleanup="$nat_cleanup-D ${line#-A }$nl" ;;
      esac
    fi
  done <<EOF
$saved
EOF
}

# has CHAIN LIST: true if CHAIN is a word of LIST.
has() {
  case " $2 " in *" $1 "*) return 0 ;; esac
  return 1
}


case ${1:-} in
  setup)
    [ -n "${POOL_NETWORK:-}" ] || warden_die "POOL_NETWORK (the containers' cidr) is not set"
    printf '1\n' >/proc/sys/net/ipv4/ip_forward
    [ -d "$markers" ] || mkdir -p "$markers"
    scan keep

    # Declaring a chain (":name - [0:0]") creates it, or flushes it if it
    # exists: only for chains that hold no per-container jumps.
    filter="$filter_cleanup:warden-default - [0:0]$nl"
    has warden-forward "$filter_chains" || filter="$filter:warden-forward - [0:0]$nl"
    filter="$filter-A warden-default -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT$nl"
    for n in ${ALLOW_NETWORKS:-}; do
      filter="$filter-A warden-default -d $n -j ACCEPT$nl"
    done
    for n in ${DENY_NETWORKS:-}; do
      filter="$filter-A warden-default -d $n -j DROP$nl"
    done
    filter="$filter-A warden-default -j ACCEPT$nl"
    filter="$filter-I warden-forward 1 -o w-+ ! -i w-+ -j ACCEPT$nl"
    # Last: containers without chains of their own (per-container jumps are
    # inserted above it).
    filter="$filter-A warden-forward -i w-+ -g warden-default$nl"
    filter="$filter-I FORWARD 1 -i w-+ -j warden-forward$nl"
    filter="$filter-I FORWARD 2 -o w-+ -j warden-forward$nl"

    nat="$nat_cleanup:warden-postrouting - [0:0]$nl"
    has warden-prerouting "$nat_chains" || nat="$nat:warden-prerouting - [0:0]$nl"
    nat="$nat-A warden-postrouting -s $POOL_NETWORK ! -o w-+ -j MASQUERADE$nl"
    nat="$nat-I PREROUTING 1 -m addrtype --dst-type LOCAL -j warden-prerouting$nl"
    nat="$nat-I OUTPUT 1 ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j warden-prerouting$nl"
    nat="$nat-I POSTROUTING 1 -j warden-postrouting$nl"

    warden_iptables_apply <<EOF
*filter
$filter
COMMIT
*nat
$nat
COMMIT
EOF
    ;;

  teardown)
    scan all
    # Flush every chain first, then delete them: chains refer to each other.
    for c in $filter_chains; do filter_cleanup="$filter_cleanup-F $c$nl"; done
    for c in $filter_chains; do filter_cleanup="$filter_cleanup-X $c$nl"; done
    for c in $nat_chains; do nat_cleanup="$nat_cleanup-F $c$nl"; done
    for c in $nat_chains; do nat_cleanup="$nat_cleanup-X $c$nl"; done
    warden_iptables_remove "$filter_cleanup" "$nat_cleanup"
    # Every per-container chain is gone: so are the reasons for the markers.
    for m in "$markers"/*; do
      if [ -e "$m" ]; then
        rm -f "$markers"/*
        break
      fi
    done
    ;;

  *)
    warden_die "usage: net-host.sh setup|teardown"
    ;;
esac

#!/bin/sh
# Stage:    net (not a start stage). Runs on the host as root, in the host's
#           namespaces; cwd = container dir. Called by the daemon:
#             net.sh setup      at create, after net-host.sh setup ran once
#             net.sh teardown   at destroy
#             net.sh in         HOST_PORT=p CONTAINER_PORT=q: forward host port p
#             net.sh out        NETWORK=a.b.c.d/len [PORT=p]: allow that
#                               destination (only port p, tcp and udp)
# Inputs:   etc/config (id, network_host_iface, network_container_ip); the
#           env variables above; IPTABLES_RESTORE (default iptables-restore,
#           whatever the host's alternatives pick: e.g. iptables-legacy-restore)
#           and IPTABLES_SAVE (default: the matching -save); the marker file
#           $WARDEN_NET_MARKERS/<id> (default /run/warden/net, made by
#           net-host.sh setup): it exists while this id may have chains.
# Leaves:   A container starts without chains of its own: warden-forward
#           sends its traffic to warden-default (net-host.sh). The first `in`
#           or `out` makes the marker, then filter chain warden-instance-<id>
#           ending in `-j warden-default`, entered by `-I warden-forward -i
#           <host iface> -g warden-instance-<id>`, and nat chain
#           warden-instance-<id>, entered by `-A warden-prerouting -j
#           warden-instance-<id>`. in: a DNAT rule in the nat chain. out:
#           ACCEPT rules at the top of the filter chain. setup and teardown:
#           no rule, chain or jump of this id in filter and nat, no marker.
# Failure:  exits non-zero with iptables-restore's message. Every call is one
#           iptables-restore --noflush transaction per table, so a failed call
#           changes nothing in the table it failed on; setup and teardown may
#           be run again at any time.
# Edit:     the rules of each command below; keep the chain names (teardown
#           finds the rules by them).
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

restore=${IPTABLES_RESTORE:-iptables-restore}
save=${IPTABLES_SAVE:-${restore%-restore}-save}
chain=warden-instance-$id
nl='
'

# apply: run the transaction on stdin.

# stale_cleanup: set $filter_cleanup and $nat_cleanup to the lines that
# remove every jump to this id's chains and the chains themselves, as found in
# iptables-save's output (the slow, exact path).
stale_cleanup() {
  filter_cleanup='' nat_cleanup='' filter_chain='' nat_chain='' table=''
  # shellcheck disable=SC2086 # the command may carry arguments
  saved=$($save)
  while IFS= read -r line; do
    case $line in
      '*'*) table=${line#?} ;;
      ":$chain "*) # the chain exists in this table
        case $table in
          filter) filter_chain="-F $chain$nl-X $chain$nl" ;;
          nat) nat_chain="-F $chain$nl-X $chain$nl" ;;
        esac
        ;;
      "-A $chain "*) ;; # a rule inside the chain: goes with the flush
      "-A "*" -g $chain" | "-A "*" -j $chain") # a jump to it: delete
        case $table in
          filter) filter_cleanup="$filter_cleanup-D ${line#-A }$nl" ;;
          nat) nat_cleanup="$nat_cleanup-D ${line#-A }$nl" ;;
        esac
        ;;
    esac
  done <<EOF
$saved
EOF
  filter_cleanup=$filter_cleanup$filter_chain
  nat_cleanup=$nat_cleanup$nat_chain
}

check_number() { # NAME VALUE
  case $2 in '' | *[!0-9]*) warden_die "$1 must be a number, got '$2'" ;; esac
}

marker=${WARDEN_NET_MARKERS:-/run/warden/net}/$id

# Chains are made at the first `in` or `out`, not at setup: on nf_tables each
# transaction that deletes anything waits for the kernel (~15 ms here), and
# every destroy would pay that for chains holding only `-j warden-default`.
fresh_filter="-N $chain
-A $chain -j warden-default
-I warden-forward 1 -i $network_host_iface -g $chain"
fresh_nat="-N $chain
-A warden-prerouting -j $chain"

# ensure_chains FILTER_RULES NAT_RULES: add the rules in one transaction per
# table, making this id's chains first when the marker says there are none.
# The marker is written before the chains, so there are never chains without
# a marker; a marker without (all) chains, left by a failure in between, is
# repaired here and is harmless to teardown.
ensure_chains() {
  if [ -e "$marker" ]; then
    if warden_iptables_apply <<EOF; then
*filter
$1
COMMIT
*nat
$2
COMMIT
EOF
      return 0
    fi
    stale_cleanup
    # Both chains there: the rules themselves were refused (message above).
    [ -z "$filter_chain" ] || [ -z "$nat_chain" ] || exit 1
  else
    : >"$marker" || warden_die "cannot write $marker (has net-host.sh setup run on this host?)"
    # Fast path, one process: no chains of this id yet (-N fails if a stale
    # one exists, and the transaction with it).
    if warden_iptables_apply 2>/dev/null <<EOF; then
*filter
$fresh_filter
$1
COMMIT
*nat
$fresh_nat
$2
COMMIT
EOF
      return 0
    fi
    stale_cleanup
  fi
  # Stale rules of an earlier container with this handle, or a half-finished
  # call: remove them and start again, one transaction per table.
  warden_iptables_apply <<EOF || warden_die "making the chains of $id failed (has net-host.sh setup run on this host?)"
*filter
$filter_cleanup
$fresh_filter
$1
COMMIT
*nat
$nat_cleanup
$fresh_nat
$2
COMMIT
EOF
}

# remove_chains: no rule, chain or jump of this id, then no marker.
remove_chains() {
  # Fast path: exactly what ensure_chains made. If anything is missing (a
  # half-finished call, or this ran before), look at what is there.
  if ! warden_iptables_apply 2>/dev/null <<EOF; then
*filter
-D warden-forward -i $network_host_iface -g $chain
-F $chain
-X $chain
COMMIT
*nat
-D warden-prerouting -j $chain
-F $chain
-X $chain
COMMIT
EOF
    stale_cleanup
    warden_iptables_remove "$filter_cleanup" "$nat_cleanup"
  fi
  rm -f "$marker"
}

case ${1:-} in
  setup | teardown)
    # setup: only what an earlier container with this handle left, if its
    # teardown failed. Without a marker neither starts a process.
    if [ -e "$marker" ]; then
      remove_chains
    fi
    ;;

  in)
    check_number HOST_PORT "${HOST_PORT:-}"
    check_number CONTAINER_PORT "${CONTAINER_PORT:-}"
    # warden-prerouting is entered from PREROUTING (other hosts) and OUTPUT
    # (this host) for destinations of type LOCAL only (net-host.sh).
    ensure_chains "" "-A $chain -p tcp --dport $HOST_PORT -j DNAT --to-destination $network_container_ip:$CONTAINER_PORT"
    ;;

  out)
    case ${NETWORK:-} in
      '' | *[!0-9./]*) warden_die "NETWORK must be an address a.b.c.d[/len], got '${NETWORK:-}'" ;;
    esac
    if [ -n "${PORT:-}" ]; then
      check_number PORT "$PORT"
      rules="-I $chain 1 -d $NETWORK -p tcp --dport $PORT -j ACCEPT
-I $chain 1 -d $NETWORK -p udp --dport $PORT -j ACCEPT"
    else
      rules="-I $chain 1 -d $NETWORK -j ACCEPT"
    fi
    # Inserted at the top: before the final jump to warden-default, whose
    # deny_networks would drop it.
    ensure_chains "$rules" ""
    ;;

  *)
    warden_die "usage: net.sh setup|teardown|in|out"
    ;;
esac

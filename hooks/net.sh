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
#           and IPTABLES_SAVE (default: the matching -save).
# Leaves:   setup: filter chain warden-instance-<id> ending in
#           `-j warden-default`, entered by `-A warden-forward -i <host iface>
#           -g warden-instance-<id>`; nat chain warden-instance-<id>, entered
#           by `-A warden-prerouting -j warden-instance-<id>`. in: a DNAT rule
#           in the nat chain. out: ACCEPT rules at the top of the filter chain.
#           teardown: no rule, chain or jump of this id in filter and nat.
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
apply() {
  # shellcheck disable=SC2086 # the command may carry arguments
  $restore --noflush --wait
}

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

case ${1:-} in
  setup)
    fresh_filter="-N $chain
-A $chain -j warden-default
-A warden-forward -i $network_host_iface -g $chain
"
    fresh_nat="-N $chain
-A warden-prerouting -j $chain
"
    # Fast path, one process: a new handle has no chains yet (-N fails if a
    # stale one exists, and the transaction with it).
    if ! apply 2>/dev/null <<EOF; then
*filter
$fresh_filter
COMMIT
*nat
$fresh_nat
COMMIT
EOF
      # Stale rules of an earlier container with this handle, or a half-
      # finished setup: remove them and set up again, one transaction per
      # table.
      stale_cleanup
      apply <<EOF || warden_die "setup failed (has net-host.sh setup run on this host?)"
*filter
$filter_cleanup
$fresh_filter
COMMIT
*nat
$nat_cleanup
$fresh_nat
COMMIT
EOF
    fi
    ;;

  teardown)
    # Fast path: exactly what setup made. If anything is missing (teardown
    # ran before, setup was half-finished), look at what is there.
    if ! apply 2>/dev/null <<EOF; then
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
      if [ -n "$filter_cleanup$nat_cleanup" ]; then
        apply <<EOF
*filter
$filter_cleanup
COMMIT
*nat
$nat_cleanup
COMMIT
EOF
      fi
    fi
    ;;

  in)
    check_number HOST_PORT "${HOST_PORT:-}"
    check_number CONTAINER_PORT "${CONTAINER_PORT:-}"
    # warden-prerouting is entered from PREROUTING (other hosts) and OUTPUT
    # (this host) for destinations of type LOCAL only (net-host.sh).
    apply <<EOF
*nat
-A $chain -p tcp --dport $HOST_PORT -j DNAT --to-destination $network_container_ip:$CONTAINER_PORT
COMMIT
EOF
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
    apply <<EOF
*filter
$rules
COMMIT
EOF
    ;;

  *)
    warden_die "usage: net.sh setup|teardown|in|out"
    ;;
esac

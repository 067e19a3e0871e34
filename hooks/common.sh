# common.sh: functions shared by the hooks (installed as <container>/lib/common.sh).
#
# Sourcing this file only defines functions: no commands run, no variables
# are set. It must stay POSIX sh: hook-child-after-pivot.sh sources it under
# the container's /bin/sh (busybox). Functions return values in variables
# named warden_*, so that callers need no $(...) subshell: every process a
# hook starts costs 1-3 ms of the container's start time.

# shellcheck disable=SC2034 # the functions return values in warden_* variables

# warden_die MESSAGE...: print "<script>: MESSAGE" on stderr and exit 1.
warden_die() {
  printf '%s: %s\n' "${0##*/}" "$*" >&2
  exit 1
}

# warden_quiet / warden_loud: switch xtrace (DEBUG=1) off around a loop that
# would flood the trace, and back on if it was on.
warden_quiet() {
  case $- in
    *x*) warden_xtrace=1 && set +x ;;
    *) warden_xtrace='' ;;
  esac
}
warden_loud() {
  if [ -n "$warden_xtrace" ]; then set -x; fi
}

# warden_mounts_load: read the mount points of this mount namespace into
# $warden_mounts (newline-separated and newline-framed, escaped as the kernel
# escapes them in /proc/self/mounts).
warden_mounts_load() {
  warden_quiet
  warden_mounts='
'
  while read -r _wm_src _wm_target _wm_rest; do
    warden_mounts="$warden_mounts$_wm_target
"
  done </proc/self/mounts
  warden_loud
}

# warden_is_mounted PATH: true if the absolute, symlink-free PATH is a mount
# point in $warden_mounts (call warden_mounts_load first).
warden_is_mounted() {
  warden_escape "$1"
  case $warden_mounts in
    *"
$warden_escaped
"*) return 0 ;;
  esac
  return 1
}

# warden_escape STRING: set $warden_escaped to STRING with backslash, space,
# tab and newline written as octal escapes (\134 \040 \011 \012), the way
# /proc/self/mounts and fstab(5) write them.
warden_escape() {
  _we_in=$1
  warden_escaped=
  while :; do
    _we_head=${_we_in%%[\\ 	
]*}
    warden_escaped=$warden_escaped$_we_head
    [ "$_we_head" = "$_we_in" ] && return 0
    _we_in=${_we_in#"$_we_head"}
    case $_we_in in
      \\*) warden_escaped="$warden_escaped\\134" ;;
      ' '*) warden_escaped="$warden_escaped\\040" ;;
      '	'*) warden_escaped="$warden_escaped\\011" ;;
      *) warden_escaped="$warden_escaped\\012" ;;
    esac
    _we_in=${_we_in#?}
  done
}

# warden_write PATH CONTENT: write CONTENT to PATH. Used on files in the
# container's root before it runs: a symbolic link there is removed first,
# because writing through it would follow it on the host's file system.
warden_write() {
  if [ -L "$1" ]; then
    rm -f "$1"
  fi
  printf '%s' "$2" >"$1"
}

# warden_set_ids FILE NAME ID KIND: compute FILE (an /etc/passwd if KIND is
# "passwd", an /etc/group if KIND is "group") with NAME's id set to ID (for
# passwd: uid and primary gid). Sets $warden_content (the new text),
# $warden_changed (non-empty if it differs from FILE), $warden_old_id (NAME's
# id before, empty if NAME has no entry) and, for passwd, $warden_home.
# Nothing is written.
warden_set_ids() {
  warden_quiet
  warden_content='' warden_changed='' warden_old_id='' warden_home=''
  while IFS= read -r _ws_line || [ -n "$_ws_line" ]; do
    case $_ws_line in
      "$2":*)
        _ws_old=$_ws_line
        _ws_pw=${_ws_line#*:}
        _ws_rest=${_ws_pw#*:}
        _ws_pw=${_ws_pw%%:*}
        warden_old_id=${_ws_rest%%:*}
        case $_ws_rest in *:*) _ws_rest=${_ws_rest#*:} ;; *) _ws_rest= ;; esac
        if [ "$4" = passwd ]; then
          # _ws_rest is now gid:gecos:home:shell
          case $_ws_rest in *:*) _ws_rest=${_ws_rest#*:} ;; *) _ws_rest= ;; esac
          _ws_home=${_ws_rest#*:}
          warden_home=${_ws_home%%:*}
          _ws_line="$2:$_ws_pw:$3:$3:$_ws_rest"
        else
          _ws_line="$2:$_ws_pw:$3:$_ws_rest"
        fi
        [ "$_ws_line" = "$_ws_old" ] || warden_changed=1
        ;;
    esac
    warden_content="$warden_content$_ws_line
"
  done <"$1"
  warden_loud
}

# warden_group_id FILE NAME: set $warden_gid to the gid of group NAME in FILE
# (an /etc/group), or to the empty string if there is no such group.
warden_group_id() {
  warden_gid=
  while IFS=: read -r _wg_name _wg_pw _wg_gid _wg_rest; do
    if [ "$_wg_name" = "$2" ]; then
      warden_gid=$_wg_gid
      return 0
    fi
  done <"$1"
}

# warden_resolv_conf: set $warden_resolv to the host's resolver
# configuration without loopback name servers (a resolver listening on the
# host's 127.0.0.x cannot be reached from the container's network namespace).
# systemd-resolved's list of upstream servers is preferred to its stub.
warden_resolv_conf() {
  warden_quiet
  warden_resolv=
  _wr_file=/etc/resolv.conf
  [ -f /run/systemd/resolve/resolv.conf ] && _wr_file=/run/systemd/resolve/resolv.conf
  if [ ! -f "$_wr_file" ]; then
    warden_loud
    return 0
  fi
  while IFS= read -r _wr_line || [ -n "$_wr_line" ]; do
    case $_wr_line in
      nameserver[\ \	]*)
        _wr_addr=${_wr_line#nameserver}
        _wr_addr=${_wr_addr#"${_wr_addr%%[! 	]*}"}
        case $_wr_addr in 127.* | ::1*) continue ;; esac
        ;;
    esac
    warden_resolv="$warden_resolv$_wr_line
"
  done <"$_wr_file"
  warden_loud
}

# warden_ip_of NUMBER: set $warden_ip to the dotted quad of the 32-bit NUMBER.
warden_ip_of() {
  warden_ip="$((($1 >> 24) & 255)).$((($1 >> 16) & 255)).$((($1 >> 8) & 255)).$(($1 & 255))"
}

# warden_iptables_apply: one `iptables-restore --noflush` transaction read from stdin,
# with IPTABLES_RESTORE (default iptables-restore) as the command.
warden_iptables_apply() {
  # shellcheck disable=SC2086 # the command may carry arguments
  ${IPTABLES_RESTORE:-iptables-restore} --noflush --wait
}

# warden_iptables_remove FILTER_LINES NAT_LINES: one transaction that applies these lines
# (rule deletions, -F, -X) to the filter and nat tables; nothing when both are empty.
warden_iptables_remove() {
  [ -n "$1$2" ] || return 0
  warden_iptables_apply <<EOF
*filter
$1
COMMIT
*nat
$2
COMMIT
EOF
}

#!/bin/sh
# Stage:    parent-before-clone. Runs on the host as root, in wshd's private
#           mount namespace (/ is a recursive slave: nothing mounted here shows
#           in the host's mount table); cwd = container dir.
# Inputs:   etc/config (rootfs_path, disk_size_mb, user_uid, user_name, id,
#           network_host_ip, network_container_ip), etc/bind_mounts
#           (HOST_PATH<TAB>CONTAINER_PATH<TAB>ro|rw per line).
# Leaves:   disk.img (sparse ext4 of disk_size_mb) loop-mounted at disk/
#           (auto-clearing loop device), holding upper/ and the overlay's work
#           directory (lost+found); the overlay rootfs_path + disk/upper at
#           mnt/; the bind mounts inside mnt/; in the overlay: user_name's uid
#           and gid = user_uid in etc/passwd and etc/group, its home owned by
#           it, etc/hostname, etc/hosts, etc/resolv.conf.
#           run/parent.fstab (and run/parent-binds.fstab): what was mounted;
#           run/loop: the loop device under disk/ (the daemon waits for its
#           release at destroy).
# Failure:  wshd exits non-zero and its mount namespace (all of the above
#           but disk.img) goes away with it; the daemon destroys the
#           container. Running it again is safe: mounted things are skipped,
#           an existing disk.img is reused (a broken one, from an interrupted
#           mkfs, is made again).
# Edit:     mount options; extra files for the container's root at the end.
# shellcheck disable=SC2154 # variables come from etc/config and lib/common.sh
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit
case $0 in */*) cd -P "${0%/*}/.." ;; *) cd -P .. ;; esac
# shellcheck source=/dev/null
. ./etc/config
# shellcheck source=/dev/null
. ./lib/common.sh

d=$PWD # symlink-free, as in /proc/self/mounts
[ -d "$rootfs_path" ] || warden_die "rootfs_path $rootfs_path is not a directory"

# The user in the base: its home, and whether the home holds files (they
# then need a chown -R in the overlay).
warden_set_ids "$rootfs_path/etc/passwd" "$user_name" "$user_uid" passwd
[ -n "$warden_old_id" ] || warden_die "$rootfs_path/etc/passwd has no user $user_name"
home=$warden_home
case $home in /?*) ;; *) warden_die "$user_name's home '$home' is not an absolute path" ;; esac
home_files=''
for f in "$rootfs_path$home"/* "$rootfs_path$home"/.[!.]* "$rootfs_path$home"/..?*; do
  if [ -e "$f" ] || [ -L "$f" ]; then
    home_files=1
    break
  fi
done

# The scratch disk, made only once (a second run reuses it). mke2fs creates
# the sparse file itself when given a size, and copies into it the tree made
# by `install -d`: upper/<home> owned by the user (the overlay then shows the
# home with that owner: no chown, no copy-up). The overlay's work directory is
# lost+found, which mke2fs makes empty. No truncate, no mkdir after mounting,
# no chown: each process costs milliseconds. mkfs options, for speed: no
# journal (a scratch disk needs no crash consistency), no blocks reserved for
# resizing or for root (the limit is the same for every user), nodiscard,
# and assume_storage_prezeroed (a new sparse file reads as zeros: no inode
# tables to write; e2fsprogs >= 1.47).
make_disk() {
  # Whoever writes the container directory may make this beforehand (with
  # the same owner) and save the process.
  if [ ! -d "disk/upper$home" ]; then
    install -d -o "$user_uid" -g "$user_uid" "disk/upper$home"
  fi
  mkfs.ext4 -q -F -O ^has_journal,^resize_inode -E nodiscard,assume_storage_prezeroed=1 -m 0 \
    -d disk disk.img "${disk_size_mb}M" >/dev/null
}
if [ ! -f disk.img ]; then
  make_disk
fi

# Everything is mounted by one `mount -a` on a generated fstab (one process
# instead of one per mount); it skips what is already mounted. The loop
# option sets up the loop device with autoclear: it goes away with the last
# unmount, i.e. with the mount namespace.
warden_escape "$d"
e=$warden_escaped
warden_escape "$rootfs_path"
fstab="$e/disk.img $e/disk ext4 loop,noatime,X-mount.mkdir 0 0
overlay $e/mnt overlay lowerdir=$warden_escaped,upperdir=$e/disk/upper,workdir=$e/disk/lost+found,X-mount.mkdir 0 0
"

# Bind mounts, in order. A directory's mount point is made by mount
# (X-mount.mkdir); a file's is made here once the overlay is mounted, so
# then the bind mounts take a second pass. nosuid,nodev: a host directory
# must not hand setuid programs or devices to the container's user.
binds='' file_targets=''
while IFS='	' read -r src dst mode || [ -n "$src" ]; do
  [ -n "$src" ] || continue
  case $dst in /*) ;; *) warden_die "bind mount $src: container path '$dst' is not absolute" ;; esac
  case $dst/ in */../* | */./*) warden_die "bind mount $src: container path '$dst' has . or .. in it" ;; esac
  case $mode in ro | rw) ;; *) warden_die "bind mount $src: mode '$mode' is not ro or rw" ;; esac
  [ -e "$src" ] || warden_die "bind mount source $src does not exist"
  warden_escape "$src"
  line="$warden_escaped "
  warden_escape "$d/mnt$dst"
  if [ -d "$src" ]; then
    binds="$binds$line$warden_escaped none bind,$mode,nosuid,nodev,X-mount.mkdir 0 0
"
  else
    binds="$binds$line$warden_escaped none bind,$mode,nosuid,nodev 0 0
"
    file_targets="$file_targets$dst
"
  fi
done <etc/bind_mounts
[ -n "$file_targets" ] || fstab=$fstab$binds

printf '%s' "$fstab" >run/parent.fstab
if ! mount -a -T run/parent.fstab; then
  warden_mounts_load
  if warden_is_mounted "$d/disk"; then
    warden_die "mounting failed (see above)"
  fi
  # disk.img is no file system (an mkfs was interrupted): make it again.
  if warden_is_mounted "$d/mnt"; then
    umount -R "$d/mnt"
  fi
  rm -f disk.img
  make_disk
  mount -a -T run/parent.fstab
fi

# The loop device mount chose, from the mount table (no process).
while read -r src target _rest; do
  if [ "$target" = "$e/disk" ]; then
    printf '%s\n' "$src" >run/loop
  fi
done </proc/self/mounts

if [ -n "$file_targets" ]; then
  while IFS= read -r dst; do
    [ -n "$dst" ] || continue
    [ -d "mnt${dst%/*}" ] || mkdir -p "mnt${dst%/*}"
    [ -e "mnt$dst" ] || : >"mnt$dst"
  done <<EOF
$file_targets
EOF
  printf '%s' "$binds" >run/parent-binds.fstab
  mount -a -T run/parent-binds.fstab
fi

# The unprivileged user gets the uid (and gid) from the daemon's pool, in
# the overlay only: the base stays untouched. Files the base has in the home
# are chowned before etc/passwd changes, so that a run interrupted in between
# redoes it.
warden_set_ids mnt/etc/passwd "$user_name" "$user_uid" passwd
if [ -n "$warden_changed" ]; then
  if [ -n "$home_files" ]; then
    chown -R "$user_uid:$user_uid" "mnt$home"
  fi
  warden_write mnt/etc/passwd "$warden_content"
fi
warden_set_ids mnt/etc/group "$user_name" "$user_uid" group
[ -z "$warden_changed" ] || warden_write mnt/etc/group "$warden_content"

# Name and resolver files.
warden_write mnt/etc/hostname "$id
"
warden_write mnt/etc/hosts "127.0.0.1 localhost
::1 localhost
$network_container_ip $id
$network_host_ip host
"
warden_resolv_conf
warden_write mnt/etc/resolv.conf "$warden_resolv"

# ---- EDIT: add your own files or mounts below (paths under mnt/). ----

#!/bin/sh
# test-v2.sh: runs warden's test binaries in a throw-away virtual machine whose
# kernel has cgroup v1 switched off (cgroup_no_v1=all), so that the daemon
# meets a cgroup-v2-only host: the kind most hosts in the field are, and the
# development machines are not (they are hybrid). `make test-v2` runs it;
# .ci/run runs it after `make test`.
#
# What it does, as root on a Debian host:
#  1. installs what is missing: qemu-system-x86, busybox-static, kmod, xz-utils;
#  2. fetches Debian's generic kernel (linux-image-amd64's current version) with
#     `apt-get download`, unpacks it with `dpkg -x` into target/v2/kernel (never
#     into the host's /boot), runs depmod inside that tree, and extracts the
#     uncompressed vmlinux from the vmlinuz (booting it skips ~6 s of emulated
#     decompression); done once per kernel version;
#  3. builds on the host (the guest only runs what is built here): the
#     binaries, every test binary of `cargo test --workspace`, the v2-only
#     suite test/tests/cgroup_v2.rs, and the tests' busybox rootfs; hard-links
#     them into target/v2/bin and target/v2/tests, so a rebuild during the run
#     changes nothing the guest sees;
#  4. builds a small initramfs: busybox-static, the modules virtio_ring, virtio,
#     virtio_pci_modern_dev, virtio_pci_legacy_dev, virtio_pci, 9pnet,
#     9pnet_virtio, netfs, fscache, 9p, overlay, loop (in that order), and
#     test/v2/init as /init;
#  5. boots it under qemu: q35, software emulation (-accel tcg,thread=multi;
#     V2_KVM=1 for real KVM where the host has it), no network device at all
#     (-nodefaults, no NIC: nothing leaves the host), the host's / shared
#     read-only over 9p (the guest's root is an overlay on it with a tmpfs
#     upper), the project directory shared read-write at the same path;
#  6. prints the guest's console (the test output) as it comes, and exits with
#     the guest's status: 0 only if every test binary passed. The guest is
#     always powered off: it powers itself off when done, and this script
#     kills qemu on Ctrl-C, on SIGTERM and after V2_TIMEOUT seconds.
#
# Work directory: target/v2 (kernel, initramfs, the binaries the guest runs,
# tests.list, status). Env: V2_TIMEOUT (seconds, default 1500),
#      V2_MEM (default 3G), V2_CPUS (default: the host's CPU count),
#      V2_KVM=1 (use /dev/kvm instead of emulation), V2_FILTER (test name
#      filter passed to every test binary, for debugging one test),
#      V2_KERNEL_PKG (a linux-image-*-amd64 package instead of the current one).
[ -n "${DEBUG:-}" ] && set -o xtrace
set -o nounset -o errexit

die() {
  echo "test-v2.sh: $*" >&2
  exit 1
}

cd "$(dirname "$0")/../.."
repo=$PWD
# Inside the checkout: the guest sees (read-write) only the checkout.
work=$repo/target/v2
target=${CARGO_TARGET_DIR:-$repo/target}
case $repo in *[[:space:]]*) die "a checkout path with spaces is not supported: $repo" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root (the tests create real containers)"
mkdir -p "$work"

# --- 1. Host packages -------------------------------------------------------
missing=
for p in qemu-system-x86 busybox-static kmod xz-utils; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "test-v2.sh: installing$missing"
  apt-get update -qq
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
fi

# --- 2. The guest's kernel --------------------------------------------------
kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n 1
}
pkg=${V2_KERNEL_PKG:-$(kernel_pkg)}
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || die "no linux-image-*-amd64 package behind linux-image-amd64 (apt-cache depends)"
version=${pkg#linux-image-}
kdir=$work/kernel/$pkg
if [ ! -f "$kdir/vmlinux" ]; then
  echo "test-v2.sh: fetching $pkg"
  rm -rf "$work/kernel"
  mkdir -p "$work/kernel/dl"
  # As root, apt warns that it downloads without its _apt sandbox: that is expected.
  (cd "$work/kernel/dl" && apt-get download "$pkg" 2>&1) | grep -v '^W: Download is performed unsandboxed' || true
  deb=$(ls "$work/kernel/dl/${pkg}_"*.deb 2>/dev/null) || die "apt-get download $pkg failed"
  dpkg -x "$deb" "$kdir.new"
  depmod -b "$kdir.new" "$version"
  # vmlinuz is a boot stub plus an xz stream holding vmlinux: find the stream
  # (magic FD 37 7A 58 5A 00) and keep the first offset that gives an ELF file.
  vmlinuz=$kdir.new/boot/vmlinuz-$version
  LC_ALL=C grep -aboP '\xFD7zXZ\x00' "$vmlinuz" | cut -d: -f1 >"$kdir.new/xz-offsets"
  while read -r offset; do
    tail -c "+$((offset + 1))" "$vmlinuz" | xz -dc --single-stream >"$kdir.new/vmlinux" 2>/dev/null || true
    [ "$(head -c 4 "$kdir.new/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] && break
    rm -f "$kdir.new/vmlinux"
  done <"$kdir.new/xz-offsets"
  [ -f "$kdir.new/vmlinux" ] || die "no xz-compressed vmlinux found in $vmlinuz"
  rm -rf "$work/kernel/dl"
  mv "$kdir.new" "$kdir"
fi

# --- 3. Everything the guest runs, built here -------------------------------
cargo build --workspace --bins
list=$work/tests.list.new
{
  cargo test --workspace --no-run --message-format=json
  cargo test -p warden-test --test cgroup_v2 --no-run --message-format=json
} | sed -n 's/.*"manifest_path":"\([^"]*\)\/Cargo.toml".*"profile":{[^}]*"test":true[^}]*}.*"executable":"\([^"]*\)".*/\1 \2/p' >"$list"
[ -s "$list" ] || die "cargo test --no-run listed no test binaries"
rootfs/build-busybox.sh "$repo/target/test-rootfs"
rm -rf "${work:?}/bin" "${work:?}/tests"
mkdir -p "$work/bin" "$work/tests"
find "$target/debug" -maxdepth 1 -type f -perm -u+x >"$work/bins"
while read -r b; do
  cp -l "$b" "$work/bin/" 2>/dev/null || cp "$b" "$work/bin/"
done <"$work/bins"
# Unit tests first, then the root suites; the daemon suite, the longest, last.
: >"$work/tests.list"
for order in unit root daemon; do
  while read -r dir exe; do
    case ${exe##*/} in
    daemon-*) kind=daemon ;;
    *) case $dir in */test) kind=root ;; *) kind=unit ;; esac ;;
    esac
    [ "$kind" = "$order" ] || continue
    cp -l "$exe" "$work/tests/" 2>/dev/null || cp "$exe" "$work/tests/"
    echo "$dir $work/tests/${exe##*/}" >>"$work/tests.list"
  done <"$list"
done
rm -f "$list"
echo "test-v2.sh: test binaries for the guest:"
sed 's/^/  /' "$work/tests.list"

# --- 4. The initramfs -------------------------------------------------------
initrd=$work/initramfs
rm -rf "$initrd" "$initrd.cpio"
mkdir -p "$initrd/bin" "$initrd/dev" "$initrd/proc" "$initrd/sys" "$initrd/lib/modules"
cp /bin/busybox "$initrd/bin/busybox"
for applet in sh mount insmod mkdir switch_root poweroff sync sleep cat echo; do
  ln -s busybox "$initrd/bin/$applet"
done
# The kernel opens /dev/console for init's stdio before anything is mounted.
mknod -m 600 "$initrd/dev/console" c 5 1
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
  9pnet 9pnet_virtio netfs fscache 9p overlay loop; do
  ko=$(find "$kdir/lib/modules/$version/kernel" -name "$m.ko" | head -n 1)
  [ -n "$ko" ] || die "module $m.ko not in $pkg"
  cp "$ko" "$initrd/lib/modules/"
  echo "$m" >>"$initrd/lib/modules/order"
done
cp test/v2/init "$initrd/init"
cp test/v2/init "$work/init" # stage 2 runs this copy: an edit during the run changes nothing
(cd "$initrd" && find . | busybox cpio -o -H newc 2>/dev/null) >"$initrd.cpio"

# --- 5. Boot ----------------------------------------------------------------
accel=tcg,thread=multi
cpu=max
if [ "${V2_KVM:-}" = 1 ]; then
  accel=kvm
  cpu=host
fi
limit=${V2_TIMEOUT:-1500}
rm -f "$work/status"
echo "test-v2.sh: booting $pkg (accel $accel, timeout ${limit}s)"
# Non-interactive shells start background jobs with SIGINT ignored: Ctrl-C
# reaches this script, whose trap stops qemu (timeout passes TERM on).
timeout --kill-after=10 "$limit" qemu-system-x86_64 \
  -machine q35 -accel "$accel" -cpu "$cpu" -smp "${V2_CPUS:-$(nproc)}" -m "${V2_MEM:-3G}" \
  -nodefaults -nic none -no-user-config -no-reboot -display none \
  -chardev stdio,id=console,signal=off -serial chardev:console \
  -kernel "$kdir/vmlinux" -initrd "$initrd.cpio" \
  -append "console=ttyS0 cgroup_no_v1=all panic=-1 mitigations=off cryptomgr.notests quiet \
WARDEN_PROJECT=$repo WARDEN_V2=$work WARDEN_KERNEL=$kdir WARDEN_FILTER=${V2_FILTER:-}" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs "local,path=$repo,mount_tag=project,security_model=none,multidevs=remap" \
  </dev/null &
qemu=$!
trap 'kill "$qemu" 2>/dev/null; exit 130' INT
trap 'kill "$qemu" 2>/dev/null; exit 143' TERM
status=0
wait "$qemu" || status=$?
trap - INT TERM

# --- 6. The guest's verdict -------------------------------------------------
if [ "$status" -eq 124 ]; then
  die "the guest did not finish within ${limit}s (V2_TIMEOUT); qemu was stopped"
elif [ ! -f "$work/status" ]; then
  die "the guest stopped without a result (qemu exit $status): see its console above"
fi
read -r passed failed <"$work/status"
echo "test-v2: $passed passed, $failed failed"
[ "$failed" = 0 ] || exit 1

# Thin wrappers: every recipe is what you would type by hand.
CONFIG ?= config/linux.yml
# Where `make rootfs` builds the base root filesystem (container_rootfs_path in $(CONFIG)).
ROOTFS ?= $(shell sed -n 's/^ *container_rootfs_path: *//p' $(CONFIG) | head -n 1)
DEBS = busybox-static iputils-ping dash iptables iproute2 e2fsprogs util-linux mount procps kmod socat shellcheck

.PHONY: deps build rootfs run lint test

# Debian packages the daemon, its hooks and the tests need (installed only when missing).
deps:
	@missing=$$(for p in $(DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build:
	cargo build --workspace --bins

rootfs: deps
	rootfs/build-busybox.sh $(ROOTFS)

# Runs the daemon in the foreground on $(CONFIG); Ctrl-C stops it and destroys its containers.
run: deps build rootfs
	target/debug/wardend --config $(CONFIG)

# The shell scripts: syntax and shellcheck (POSIX sh: they run under dash and busybox).
lint: deps
	for f in hooks/*.sh rootfs/*.sh .ci/run; do sh -n "$$f"; done
	shellcheck -s sh hooks/*.sh rootfs/*.sh .ci/run

# Lint, unit tests, then the integration tests (root: real containers), all through cargo.
test: deps lint
	cargo build --workspace --bins --tests
	cargo test --workspace --no-fail-fast

# The same test binaries, built here, run again in a throw-away VM (qemu) whose kernel has
# cgroup v1 switched off, plus the v2-only suite test/tests/cgroup_v2.rs: see
# test/v2/test-v2.sh (it installs qemu and fetches Debian's kernel package itself).
.PHONY: test-v2
test-v2: deps
	test/v2/test-v2.sh

# wardend against crun and runc (installed from Debian when missing), side by side in one
# run, as root, in about 1.5 minutes: prints the table and writes target/bench/latest.json.
# `target/release/bench --help` for the options (iterations, levels, clients).
.PHONY: bench
bench: deps
	cargo build --release --workspace --bins
	target/release/bench

//! Shared helpers of the root-only integration tests (`tests/*.rs`).

/// Containers started by `wshd` directly, without the daemon (`tests/wshd.rs`).
pub mod wshd_env;

/// A real `wardend` driven through its socket, and the checks for leftovers (`tests/daemon.rs`).
pub mod daemon_env;

/// Test hosts in network namespaces of the tests' own (`tests/daemon.rs`).
pub mod netns;

/// `make bench`: the daemon against crun and runc (`src/bin/bench.rs`).
pub mod bench;

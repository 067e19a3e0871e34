//! Shared helpers of the root-only integration tests (`tests/*.rs`).

/// Containers started by `wshd` directly, without the daemon (`tests/wshd.rs`).
pub mod wshd_env;

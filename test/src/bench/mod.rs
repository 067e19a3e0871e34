//! `make bench` (`src/bin/bench.rs`): the daemon measured against crun and runc on this
//! machine, in one run, A/B interleaved. Not a test: nothing here asserts a timing.
//!
//! - [`stats`]: percentiles and pairwise ratios.
//! - [`peers`]: crun and runc, their bundles, and the runner that times them in a private
//!   mount namespace.
//! - [`steps`]: the daemon's per-step debug timings, read from its log.
//! - [`host`]: what the benchmark leaves on the host (it must be nothing), memory figures.

pub mod host;
pub mod peers;
pub mod stats;
pub mod steps;

//! The container-side half of warden: `wshd`, the per-container init and launcher, `wsh`,
//! its command-line client, and the pieces the daemon links against.
//!
//! Layout:
//! - [`proto`] (the wire types), [`fdpass`] (JSON + fds over a unix socket) and [`client`]
//!   (the blocking client the daemon uses) are the public library.
//! - `stage` is wshd's recipe: the start sequence from the host to the container's PID 1.
//!   It drives `hook` (the shell hooks), `barrier` (parent/child handshake), `mount`
//!   (private mount namespace, pivot_root) and, once in the container, `server` (the event
//!   loop on wshd.sock), `spawn` (fork + exec of a request), `reaper` (exit statuses),
//!   `user` (passwd/group parsing) and `privs` (uid, groups, capabilities).
//! - [`pidfd`] waits for any process's exit and signals it without pid-reuse races.
//! - [`wsh`] is the `wsh` binary's logic (stdio relay, raw terminal).
//! - [`bpfdev`] is the daemon's cgroup v2 device filter (a BPF program it attaches to each
//!   container's cgroup): it lives here because bpf(2) needs `unsafe`, which the daemon
//!   crate denies.
//! - `sys` holds every `unsafe` block of the crate.
#![deny(unsafe_code)]

pub mod bpfdev;
pub mod client;
mod error;
pub mod fdpass;
pub mod pidfd;
pub mod proto;
pub mod wsh;

pub mod args;
mod barrier;
mod hook;
mod mount;
mod privs;
mod reaper;
mod server;
mod spawn;
pub mod stage;
#[allow(unsafe_code)]
mod sys;
mod user;

pub use error::Error;

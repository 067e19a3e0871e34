//! wardend: the container daemon.
//!
//! Layout of the request path:
//! - `server` accepts connections on the Unix socket, reads one JSON line at a time
//!   (`protocol::parse_line`), answers in order, and tracks which handles a connection
//!   referenced (for the grace timer).
//! - `daemon` holds the registry of containers and the pools, and implements each request.
//! - `container` is one container: its create/stop/destroy, its jobs (`jobs`), its copies
//!   (`copy`), its network rules (`net.sh` through `scripts`), its cgroup (`cgroup`).
//! - `config` is the only module that reads YAML; `pool` hands out networks, uids and ports;
//!   `netlink` waits for a container's veth pair to go away with its network namespace.
//!
//! The daemon never forks, clones or enters namespaces itself: `wshd` (crate warden-helper)
//! does, and the daemon talks to it through `<container>/run/wshd.sock`.
#![deny(unsafe_code)]

pub mod cgroup;
pub mod client;
pub mod config;
pub mod container;
pub mod copy;
pub mod daemon;
pub mod error;
pub mod jobs;
pub mod netlink;
pub mod pool;
pub mod protocol;
pub mod scripts;
pub mod server;

pub use error::{Error, Result};

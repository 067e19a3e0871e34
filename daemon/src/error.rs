//! The daemon's error type. Its `Display` is both the protocol's error payload and the log
//! line, so every message is a sentence that names what failed; the phrases that clients
//! match on (DESIGN.md section 4) appear verbatim.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub enum Error {
    /// The client's fault; the message is returned as is.
    BadRequest(String),
    UnknownHandle(String),
    NoSuchJob(u64),
    /// A command that the container's current state does not allow.
    State {
        handle: String,
        state: &'static str,
        command: &'static str,
    },
    PoolExhausted(String),
    /// A hook or other script failed.
    Script {
        name: String,
        code: Option<i32>,
        stderr_tail: String,
    },
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    Cgroup(crate::cgroup::CgroupError),
    Helper(warden_helper::Error),
    /// Something else went wrong in a step of a request; `step` says which.
    Step {
        step: &'static str,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) => f.write_str(m),
            Error::UnknownHandle(h) => write!(f, "unknown handle: {h}"),
            Error::NoSuchJob(j) => write!(f, "no such job: {j}"),
            Error::State {
                handle,
                state,
                command,
            } => {
                write!(f, "cannot {command} container {handle} in state {state}")
            }
            Error::PoolExhausted(m) => f.write_str(m),
            Error::Script {
                name,
                code,
                stderr_tail,
            } => {
                let code = code.map_or("killed by a signal".to_string(), |c| format!("exit {c}"));
                write!(f, "{name} failed ({code}): {}", stderr_tail.trim_end())
            }
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Cgroup(e) => write!(f, "cgroup: {e}"),
            Error::Helper(e) => write!(f, "wshd: {e}"),
            Error::Step { step, message } => write!(f, "{step}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<crate::cgroup::CgroupError> for Error {
    fn from(e: crate::cgroup::CgroupError) -> Self {
        Error::Cgroup(e)
    }
}

impl From<warden_helper::Error> for Error {
    fn from(e: warden_helper::Error) -> Self {
        Error::Helper(e)
    }
}

/// `fs::write(&p, s).map_err(io("write", &p))?`
pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A bad request, for `?` on validation results.
pub fn bad(message: impl Into<String>) -> Error {
    Error::BadRequest(message.into())
}

//! The crate's one error type. Its `Display` is a sentence: wshd prints it after `wshd: `,
//! the daemon puts it in a reply.

use std::fmt;
use std::io;
use std::process::ExitStatus;

#[derive(Debug)]
pub enum Error {
    /// A system call or I/O operation failed; `op` names it and its object ("bind /x/wshd.sock").
    Io { op: String, source: io::Error },
    /// A hook exited unsuccessfully.
    Hook {
        stage: &'static str,
        status: ExitStatus,
        stderr_tail: String,
    },
    /// A step of a start stage that is not its hook failed.
    Stage {
        stage: &'static str,
        source: Box<Error>,
    },
    /// The container's init failed during the start sequence; its own message.
    Child(String),
    /// wshd answered a request with `Response::Error`.
    Remote(String),
    /// The other side broke the protocol of `proto` (bad JSON, missing fds, early EOF).
    Protocol(String),
    /// A request or argument that cannot be carried out (unknown rlimit, empty argv, ...).
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, source } => write!(f, "{op}: {}", describe(source)),
            Error::Hook {
                stage,
                status,
                stderr_tail,
            } => {
                write!(f, "{stage} hook failed ({})", describe_status(*status))?;
                if stderr_tail.is_empty() {
                    Ok(())
                } else {
                    write!(f, ": {stderr_tail}")
                }
            }
            Error::Stage { stage, source } => write!(f, "{stage}: {source}"),
            Error::Child(m) | Error::Remote(m) | Error::Invalid(m) => f.write_str(m),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Stage { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// `.map_err(io(format!("open {}", p.display())))`: wraps an `io::Error` or a nix `Errno`.
pub(crate) fn io<E: Into<io::Error>>(op: impl Into<String>) -> impl FnOnce(E) -> Error {
    move |e| Error::Io {
        op: op.into(),
        source: e.into(),
    }
}

/// `.map_err(in_stage(Stage::X))`: says which start stage a failure belongs to.
pub(crate) fn in_stage(stage: &'static str) -> impl FnOnce(Error) -> Error {
    move |e| match e {
        // A hook error already names its stage.
        e @ Error::Hook { .. } => e,
        e => Error::Stage {
            stage,
            source: Box::new(e),
        },
    }
}

/// "No such file or directory" rather than "No such file or directory (os error 2)".
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// "exit 7" or "signal 9".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn messages_are_sentences() {
        let e = io::<nix::errno::Errno>("write /x")(nix::errno::Errno::ENOSPC);
        assert_eq!(e.to_string(), "write /x: No space left on device");
        let h = Error::Hook {
            stage: "child-before-pivot",
            status: ExitStatus::from_raw(7 << 8),
            stderr_tail: "boom".into(),
        };
        assert_eq!(
            h.to_string(),
            "child-before-pivot hook failed (exit 7): boom"
        );
        let s = in_stage("child-after-pivot")(Error::Invalid("x".into()));
        assert_eq!(s.to_string(), "child-after-pivot: x");
        assert_eq!(
            in_stage("other")(h).to_string(),
            "child-before-pivot hook failed (exit 7): boom"
        );
        assert_eq!(describe_status(ExitStatus::from_raw(9)), "signal 9");
    }
}

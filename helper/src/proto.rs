//! The wire types spoken on `<container>/run/wshd.sock`, shared by `wshd`, `wsh` and the
//! daemon. This module owns the message shapes and the order of the fds that travel with
//! them; it does no I/O.
//!
//! One connection carries one request and one response:
//!
//! ```text
//! client                                         wshd (container PID 1)
//! connect(run/wshd.sock)
//! sendmsg(JSON Request) ───────────────────────▶ accept, recv request
//!                                                 Spawn: fork the process in the container
//!            ◀─────────────────────────────────── sendmsg(JSON Response, SCM_RIGHTS fds)
//!                                                 Stop:  TERM all but PID 1, KILL after grace,
//!            ◀─────────────────────────────────── reply once no process but PID 1 is left
//!                                                 Watch: never answered; EOF when wshd exits
//! ```
//!
//! A response is a single `sendmsg`: the JSON body in the data, the fds (if any) in one
//! `SCM_RIGHTS` control message, in the order given by [`SPAWN_FDS_PIPES`] / [`SPAWN_FDS_TTY`].
//!
//! The exit status of a spawned process is read from its status fd: when wshd reaps the
//! process it writes one JSON line ([`ExitStatus`]) and closes the pipe. A pipe that reaches
//! EOF with nothing written means the status is unknown (wshd died first).

use serde::{Deserialize, Serialize};

/// Largest request or response body, in bytes. A spawn request carries a script's argv and
/// environment, not the script itself (that goes to stdin), so this is generous.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Most fds carried by one response.
pub const MAX_FDS: usize = 4;

/// Order of the fds sent with [`Response::Spawned`] when `tty` is false:
/// the write end of stdin, the read ends of stdout and stderr, the status pipe.
pub const SPAWN_FDS_PIPES: [&str; 4] = ["stdin", "stdout", "stderr", "status"];

/// Order of the fds sent with [`Response::Spawned`] when `tty` is true:
/// the pty master (stdin and output of the process), the status pipe.
pub const SPAWN_FDS_TTY: [&str; 2] = ["pty", "status"];

/// The user a spawn runs as when the request names none: the container's unprivileged user.
pub const DEFAULT_USER: &str = "vcap";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Start a process in the container.
    Spawn(SpawnRequest),
    /// Send SIGTERM to every process of the container except PID 1, SIGKILL to what is
    /// left after `grace_ms`, and answer [`Response::Stopped`] once only PID 1 remains.
    Stop { grace_ms: u64 },
    /// Keep the connection open and never answer: the client sees EOF when wshd exits.
    Watch,
    /// Answered with [`Response::Pong`]; tells a client that wshd is serving.
    Ping,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    /// Program and arguments; `argv[0]` is looked up in the container's `PATH` if it has no `/`.
    pub argv: Vec<String>,
    /// Extra environment, `KEY=VALUE`. The process also gets HOME, USER, LOGNAME, SHELL and PATH.
    #[serde(default)]
    pub env: Vec<String>,
    /// User name or numeric uid, resolved in the container's `/etc/passwd`.
    /// `None` means [`DEFAULT_USER`].
    #[serde(default)]
    pub user: Option<String>,
    /// Working directory in the container; `None` means the user's home.
    #[serde(default)]
    pub dir: Option<String>,
    /// Resource limits applied before exec.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// Allocate a pseudo-terminal: the process gets the slave as its controlling terminal
    /// and stdin/stdout/stderr, the client gets the master.
    #[serde(default)]
    pub tty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// Lower-case name without `RLIMIT_`: `as`, `core`, `cpu`, `data`, `fsize`, `locks`,
    /// `memlock`, `msgqueue`, `nice`, `nofile`, `nproc`, `rss`, `rtprio`, `sigpending`, `stack`.
    pub resource: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The process runs; its pid in the container's PID namespace.
    Spawned {
        pid: i32,
    },
    Stopped,
    Pong,
    /// The request failed; nothing was started. `message` is a sentence for a person.
    Error {
        message: String,
    },
}

/// How a spawned process ended, as written on its status pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It called exit with this code.
    Code(i32),
    /// A signal with this number killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    /// What wshd writes on the status pipe: one JSON line.
    pub fn to_line(self) -> Vec<u8> {
        let mut v = serde_json::to_vec(&self).expect("ExitStatus serializes");
        v.push(b'\n');
        v
    }

    /// Parses what was read from a status pipe up to EOF; `None` when nothing usable was
    /// written (wshd died before the process was reaped).
    pub fn parse(bytes: &[u8]) -> Option<ExitStatus> {
        let line = bytes.split(|&b| b == b'\n').next()?;
        serde_json::from_slice(line).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Spawn(SpawnRequest {
                argv: vec!["/bin/sh".into()],
                env: vec!["A=b".into()],
                user: Some("root".into()),
                dir: None,
                rlimits: vec![Rlimit {
                    resource: "nofile".into(),
                    soft: 10,
                    hard: 20,
                }],
                tty: false,
            }),
            Request::Stop { grace_ms: 100 },
            Request::Watch,
            Request::Ping,
        ];
        for r in reqs {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r, "{s}");
        }
    }

    #[test]
    fn spawn_defaults_fill_in() {
        let r: Request = serde_json::from_str(r#"{"spawn":{"argv":["true"]}}"#).unwrap();
        assert_eq!(
            r,
            Request::Spawn(SpawnRequest {
                argv: vec!["true".into()],
                ..Default::default()
            })
        );
    }

    #[test]
    fn exit_status_line() {
        for s in [
            ExitStatus::Code(0),
            ExitStatus::Code(3),
            ExitStatus::Signal(9),
        ] {
            assert_eq!(ExitStatus::parse(&s.to_line()), Some(s));
        }
        assert_eq!(ExitStatus::parse(b""), None);
        assert_eq!(ExitStatus::parse(b"{\"code\""), None);
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
    }
}

//! The blocking client of `run/wshd.sock`, used by the daemon (from `spawn_blocking`) and
//! by `wsh`. One connection per request (see [`crate::proto`]).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::{io, Error, Result};
use crate::fdpass;
use crate::proto::{Request, Response, SpawnRequest, SPAWN_FDS_PIPES, SPAWN_FDS_TTY};

/// A process wshd started.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid in the container's PID namespace.
    pub pid: i32,
    pub stdio: Stdio,
    /// Read end of its status pipe: one [`crate::proto::ExitStatus`] line, then EOF.
    pub status: OwnedFd,
}

#[derive(Debug)]
pub enum Stdio {
    /// `stdin` is the write end of its stdin, `stdout`/`stderr` the read ends of its output.
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    /// The pty master: write its input, read its output.
    Pty { master: OwnedFd },
}

/// Sends `req` on a new connection; returns the connection, the answer and its fds.
/// An `Error` answer becomes [`Error::Remote`].
fn request(socket: &Path, req: &Request) -> Result<(UnixStream, Response, Vec<OwnedFd>)> {
    let stream =
        UnixStream::connect(socket).map_err(io(format!("connect {}", socket.display())))?;
    fdpass::send(&stream, req, &[])?;
    let (resp, fds) = fdpass::recv(&stream)?;
    match resp {
        Response::Error { message } => Err(Error::Remote(message)),
        r => Ok((stream, r, fds)),
    }
}

fn unexpected(what: &str, r: &Response) -> Error {
    Error::Protocol(format!("unexpected answer to {what}: {r:?}"))
}

/// Starts a process in the container.
pub fn spawn(socket: &Path, req: &SpawnRequest) -> Result<Spawned> {
    let (_, resp, fds) = request(socket, &Request::Spawn(req.clone()))?;
    let Response::Spawned { pid } = resp else {
        return Err(unexpected("spawn", &resp));
    };
    let want = if req.tty {
        SPAWN_FDS_TTY.len()
    } else {
        SPAWN_FDS_PIPES.len()
    };
    if fds.len() != want {
        return Err(Error::Protocol(format!(
            "spawn answer carried {} fds instead of {want}",
            fds.len()
        )));
    }
    let mut fds = fds.into_iter();
    let mut next = || fds.next().expect("count checked");
    let stdio = if req.tty {
        Stdio::Pty { master: next() }
    } else {
        Stdio::Pipes {
            stdin: next(),
            stdout: next(),
            stderr: next(),
        }
    };
    Ok(Spawned {
        pid,
        stdio,
        status: next(),
    })
}

/// Stops every process of the container but its PID 1: SIGTERM, then SIGKILL after
/// `grace`. Returns once they are all gone.
pub fn stop(socket: &Path, grace: Duration) -> Result<()> {
    let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
    match request(socket, &Request::Stop { grace_ms })? {
        (_, Response::Stopped, _) => Ok(()),
        (_, r, _) => Err(unexpected("stop", &r)),
    }
}

/// A connection that wshd never answers: reading it returns EOF when wshd exits.
pub fn watch(socket: &Path) -> Result<UnixStream> {
    let stream =
        UnixStream::connect(socket).map_err(io(format!("connect {}", socket.display())))?;
    fdpass::send(stream.as_fd(), &Request::Watch, &[])?;
    Ok(stream)
}

/// Checks that wshd serves its socket.
pub fn ping(socket: &Path) -> Result<()> {
    match request(socket, &Request::Ping)? {
        (_, Response::Pong, _) => Ok(()),
        (_, r, _) => Err(unexpected("ping", &r)),
    }
}

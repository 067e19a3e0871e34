//! wshd's life as PID 1 of the container: one thread, one `poll` over the listening socket,
//! a signalfd for SIGCHLD and every connection in progress.
//!
//! A connection goes `Reading` (until one request has parsed), then, by request:
//! - Ping: answered `Pong`, closed.
//! - Spawn: forked at once (`spawn::start`), then `Spawning` until the child's errors pipe
//!   reaches EOF (exec worked: `Spawned` with the fds) or carries a message (`Error`).
//! - Stop: SIGTERM to every process but us (`kill(-1)` from a PID namespace's init reaches
//!   all of them), `Stopping` until no child is left; SIGKILL when the grace time (a poll
//!   timeout) has passed. Answered `Stopped`.
//! - Watch: `Watching`, never answered; dropped when the client hangs up.
//!
//! A request that cannot be carried out is answered `Error` and never ends wshd.

use std::convert::Infallible;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::error::{io, Result};
use crate::fdpass;
use crate::proto::{Request, Response, SpawnRequest};
use crate::reaper::{self, Jobs, Left};
use crate::spawn;

pub struct Server {
    listener: UnixListener,
    signals: SignalFd,
    conns: Vec<Conn>,
    jobs: Jobs,
    /// False after accept failed for want of fds (EMFILE): polling the listener would
    /// return at once, forever. True again once a connection or a job releases fds.
    accepting: bool,
}

struct Conn {
    stream: UnixStream,
    state: State,
}

enum State {
    Reading {
        buf: Vec<u8>,
    },
    Spawning {
        pid: Pid,
        errors: File,
        message: Vec<u8>,
        fds: Vec<OwnedFd>,
    },
    Stopping {
        deadline: Instant,
        killed: bool,
    },
    Watching,
    Done,
}

impl Server {
    /// Takes over SIGCHLD (blocked, read from a signalfd) and reaps what has exited already
    /// (orphans of the hooks). After this, no child exit goes unnoticed.
    pub fn new(listener: UnixListener) -> Result<Server> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(io("block SIGCHLD"))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io("signalfd"))?;
        listener
            .set_nonblocking(true)
            .map_err(io("set listener non-blocking"))?;
        let mut jobs = Jobs::new();
        reaper::reap(&mut jobs);
        Ok(Server {
            listener,
            signals,
            conns: Vec::new(),
            jobs,
            accepting: true,
        })
    }

    /// Serves until wshd is killed.
    pub fn run(mut self) -> Result<Infallible> {
        loop {
            self.turn()?;
        }
    }

    /// One poll and the work it found.
    fn turn(&mut self) -> Result<()> {
        // Which connection each poll entry after the first two belongs to.
        let mut owners = Vec::with_capacity(self.conns.len());
        let revents: Vec<PollFlags> = {
            let listen = if self.accepting {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            let mut fds = vec![
                PollFd::new(self.listener.as_fd(), listen),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            for (i, c) in self.conns.iter().enumerate() {
                let entry: Option<(BorrowedFd, PollFlags)> = match &c.state {
                    State::Reading { .. } => Some((c.stream.as_fd(), PollFlags::POLLIN)),
                    State::Spawning { errors, .. } => Some((errors.as_fd(), PollFlags::POLLIN)),
                    // Only hang-up and errors (always reported) matter.
                    State::Watching => Some((c.stream.as_fd(), PollFlags::empty())),
                    State::Stopping { .. } | State::Done => None,
                };
                if let Some((fd, ev)) = entry {
                    fds.push(PollFd::new(fd, ev));
                    owners.push(i);
                }
            }
            match poll(&mut fds, self.timeout()) {
                Ok(_) => {}
                Err(Errno::EINTR) => return Ok(()),
                Err(e) => return Err(io("poll")(e)),
            }
            fds.iter()
                .map(|f| f.revents().unwrap_or(PollFlags::empty()))
                .collect()
        };

        if !revents[1].is_empty() {
            while let Ok(Some(_)) = self.signals.read_signal() {}
            reaper::reap(&mut self.jobs);
            self.accepting = true;
        }
        for (k, &i) in owners.iter().enumerate() {
            let ev = revents[2 + k];
            if !ev.is_empty() {
                step(&mut self.conns[i], ev, &mut self.jobs);
            }
        }
        if revents[0].contains(PollFlags::POLLIN) {
            self.accept();
        }
        self.advance_stops();
        let before = self.conns.len();
        self.conns.retain(|c| !matches!(c.state, State::Done));
        if self.conns.len() < before {
            self.accepting = true;
        }
        Ok(())
    }

    /// Until the earliest grace time of a stop runs out; forever if there is none.
    fn timeout(&self) -> PollTimeout {
        let now = Instant::now();
        self.conns
            .iter()
            .filter_map(|c| match c.state {
                State::Stopping {
                    deadline,
                    killed: false,
                } => Some(deadline.saturating_duration_since(now)),
                _ => None,
            })
            .min()
            // Round up: waking a millisecond early would cost another turn.
            .map(|d| {
                PollTimeout::try_from(d + Duration::from_nanos(999_999)).unwrap_or(PollTimeout::MAX)
            })
            .unwrap_or(PollTimeout::NONE)
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = stream.set_nonblocking(false) {
                        log::warn!("accept-failed error={e}");
                        continue;
                    }
                    self.conns.push(Conn {
                        stream,
                        state: State::Reading { buf: Vec::new() },
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("accept-failed error={e}");
                    self.accepting = false;
                    return;
                }
            }
        }
    }

    /// SIGKILL where the grace time is over; `Stopped` once no child is left.
    fn advance_stops(&mut self) {
        let now = Instant::now();
        let mut stopping = false;
        for c in &mut self.conns {
            if let State::Stopping { deadline, killed } = &mut c.state {
                stopping = true;
                if !*killed && now >= *deadline {
                    log::info!("stop-kill");
                    kill_all(Signal::SIGKILL);
                    *killed = true;
                }
            }
        }
        if stopping && reaper::reap(&mut self.jobs) == Left::None {
            for c in &mut self.conns {
                if let State::Stopping { .. } = c.state {
                    log::info!("stopped");
                    reply(c, &Response::Stopped, &[]);
                }
            }
        }
    }
}

/// Signals every process of the container but PID 1 (kill(2): "If pid equals -1, then sig
/// is sent to every process for which the calling process has permission to send signals,
/// except for process 1 (init)" — which is us).
fn kill_all(sig: Signal) {
    match kill(Pid::from_raw(-1), sig) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => log::warn!("kill-failed signal={sig} error={e}"),
    }
}

/// Sends the answer and closes the connection.
fn reply(c: &mut Conn, resp: &Response, fds: &[BorrowedFd<'_>]) {
    if let Err(e) = fdpass::send(&c.stream, resp, fds) {
        log::warn!("reply-failed error={e}");
    }
    c.state = State::Done;
}

/// Works on a connection whose fd has `ev` pending.
fn step(c: &mut Conn, ev: PollFlags, jobs: &mut Jobs) {
    match &mut c.state {
        State::Reading { buf } => {
            let mut fds = Vec::new(); // a client has no business sending fds: dropped
            let n = match fdpass::recv_some(&c.stream, buf, &mut fds) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!("bad-request error={e}");
                    return reply(
                        c,
                        &Response::Error {
                            message: e.to_string(),
                        },
                        &[],
                    );
                }
            };
            match fdpass::parse::<Request>(buf) {
                Ok(Some(req)) => dispatch(c, req, jobs),
                Ok(None) if n == 0 => {
                    log::debug!("hangup-before-request");
                    c.state = State::Done;
                }
                Ok(None) => {}
                Err(e) => {
                    log::warn!("bad-request error={e}");
                    reply(
                        c,
                        &Response::Error {
                            message: format!("invalid request: {e}"),
                        },
                        &[],
                    );
                }
            }
        }
        State::Spawning {
            pid,
            errors,
            message,
            ..
        } => {
            let mut chunk = [0u8; 4096];
            let pid = *pid;
            match errors.read(&mut chunk) {
                Ok(0) => {}
                Ok(n) => return message.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => return,
                Err(e) => message.extend_from_slice(format!("read errors pipe: {e}").as_bytes()),
            }
            let State::Spawning { fds, message, .. } = std::mem::replace(&mut c.state, State::Done)
            else {
                unreachable!()
            };
            if message.is_empty() {
                log::info!("spawned pid={pid}");
                let borrowed: Vec<BorrowedFd> = fds.iter().map(|f| f.as_fd()).collect();
                reply(c, &Response::Spawned { pid: pid.as_raw() }, &borrowed);
            } else {
                let message = String::from_utf8_lossy(&message).into_owned();
                log::info!("spawn-failed pid={pid} error={message}");
                // Nobody will read its status.
                jobs.remove(&pid.as_raw());
                reply(c, &Response::Error { message }, &[]);
            }
        }
        State::Watching => {
            if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                c.state = State::Done;
            }
        }
        State::Stopping { .. } | State::Done => {}
    }
}

fn dispatch(c: &mut Conn, req: Request, jobs: &mut Jobs) {
    match req {
        Request::Ping => reply(c, &Response::Pong, &[]),
        Request::Watch => c.state = State::Watching,
        Request::Stop { grace_ms } => {
            log::info!("stop grace_ms={grace_ms}");
            let now = Instant::now();
            let killed = grace_ms == 0;
            kill_all(if killed {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            });
            let deadline = now
                .checked_add(Duration::from_millis(grace_ms))
                .unwrap_or(now + Duration::from_secs(1 << 40));
            c.state = State::Stopping { deadline, killed };
        }
        Request::Spawn(req) => start(c, &req, jobs),
    }
}

fn start(c: &mut Conn, req: &SpawnRequest, jobs: &mut Jobs) {
    log::info!(
        "spawn argv={:?} user={:?} tty={}",
        req.argv,
        req.user,
        req.tty
    );
    match spawn::start(req) {
        Ok(s) => {
            jobs.insert(s.pid.as_raw(), s.status);
            c.state = State::Spawning {
                pid: s.pid,
                errors: s.errors,
                message: Vec::new(),
                fds: s.client_fds,
            };
        }
        Err(e) => {
            log::info!("spawn-failed error={e}");
            reply(
                c,
                &Response::Error {
                    message: e.to_string(),
                },
                &[],
            );
        }
    }
}

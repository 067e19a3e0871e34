//! `wsh`: runs a command in a running container through its `wshd.sock` and relays its
//! stdio, like `ssh host cmd` (with `--tty`, like `ssh -t`).
//!
//! Pipes: one thread per stream (stdin, stdout, stderr), so that a process that does not
//! read its input never stalls its output. Tty: the local terminal goes to raw mode (and
//! back at the end, or on SIGTERM/SIGHUP/SIGINT/SIGQUIT); a thread copies stdin to the pty
//! master; the main thread polls the master, the status pipe and a signalfd (SIGWINCH: the
//! window size is copied to the master).
//!
//! The exit status is the command's, 128+N if a signal N killed it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::client::{self, Stdio};
use crate::error::{io, Error, Result};
use crate::proto::{ExitStatus, SpawnRequest};
use crate::sys;

/// Runs a command in a running container (default: a login shell).
#[derive(Parser, Debug)]
#[command(name = "wsh", version)]
pub struct Args {
    /// The container's wshd socket (<container>/run/wshd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
    /// User name or uid in the container [default: vcap].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Extra environment variable (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory in the container [default: the user's home].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<String>,
    /// Allocate a pseudo-terminal (put the local terminal in raw mode).
    #[arg(long)]
    pub tty: bool,
    /// The command and its arguments [default: /bin/sh -l].
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// Runs the command; returns the exit code wsh should exit with.
pub fn run(args: Args) -> Result<i32> {
    let argv = if args.command.is_empty() {
        vec!["/bin/sh".to_string(), "-l".to_string()]
    } else {
        args.command
    };
    let mut env = args.env;
    if args.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        if let Ok(term) = std::env::var("TERM") {
            env.push(format!("TERM={term}"));
        }
    }
    let req = SpawnRequest {
        argv,
        env,
        user: args.user,
        dir: args.dir,
        rlimits: Vec::new(),
        tty: args.tty,
    };
    // The pty relay takes its signals through a signalfd: block them before any thread
    // exists, so that every thread inherits the mask.
    let signals = if args.tty {
        Some(terminal_signals()?)
    } else {
        None
    };
    let spawned = client::spawn(&args.socket, &req)?;
    let status = match (spawned.stdio, signals) {
        (
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            },
            _,
        ) => relay_pipes(stdin, stdout, stderr, spawned.status)?,
        (Stdio::Pty { master }, Some(signals)) => match relay_pty(master, spawned.status, signals)?
        {
            Relayed::Exited(s) => s,
            Relayed::Interrupted(sig) => return Ok(128 + sig as i32),
        },
        (Stdio::Pty { .. }, None) => {
            return Err(Error::Protocol(
                "a pty came back for a request without tty".into(),
            ))
        }
    };
    Ok(status.shell_code())
}

/// Reads a status pipe to EOF.
fn read_status(fd: OwnedFd) -> Result<ExitStatus> {
    let mut buf = Vec::new();
    File::from(fd)
        .read_to_end(&mut buf)
        .map_err(io("read exit status"))?;
    ExitStatus::parse(&buf).ok_or_else(|| {
        Error::Protocol("wshd did not report the exit status (was the container stopped?)".into())
    })
}

/// `fd` of ours (stdout, stderr) as a `File` of its own, unbuffered.
fn own(fd: BorrowedFd<'_>) -> Result<File> {
    Ok(File::from(fd.try_clone_to_owned().map_err(io("dup"))?))
}

fn relay_pipes(
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    status: OwnedFd,
) -> Result<ExitStatus> {
    let copy = |from: OwnedFd, mut to: File| {
        std::thread::spawn(move || {
            // EPIPE on our side (wsh | head): dropping `from` then gives the process EPIPE too.
            let _ = io::copy(&mut File::from(from), &mut to);
        })
    };
    let out = copy(stdout, own(io::stdout().as_fd())?);
    let err = copy(stderr, own(io::stderr().as_fd())?);
    // Not joined: it may block reading our stdin after the process is gone.
    std::thread::spawn(move || {
        let mut to = File::from(stdin);
        let _ = io::copy(&mut io::stdin().lock(), &mut to);
        // Dropping `to` closes the process's stdin: it sees EOF.
    });
    let status = read_status(status)?;
    // All output, up to the EOF of both pipes, before the exit code.
    let _ = out.join();
    let _ = err.join();
    Ok(status)
}

/// Signals that end the pty relay or resize the terminal, blocked and read from a signalfd.
fn terminal_signals() -> Result<SignalFd> {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        mask.add(s);
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(io("sigprocmask"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(io("signalfd"))
}

/// The local terminal in raw mode while this lives.
struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Result<RawMode> {
        let saved = tcgetattr(fd).map_err(io("tcgetattr"))?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSADRAIN, &raw).map_err(io("tcsetattr"))?;
        Ok(RawMode {
            fd: fd.try_clone_to_owned().map_err(io("dup"))?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}

enum Relayed {
    Exited(ExitStatus),
    /// wsh itself got this signal; the terminal is restored.
    Interrupted(Signal),
}

fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Ok(ws) = sys::window_size(from) {
        let _ = sys::set_window_size(to, &ws);
    }
}

fn relay_pty(master: OwnedFd, status: OwnedFd, signals: SignalFd) -> Result<Relayed> {
    let stdin = io::stdin();
    let local_tty = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false);
    let _raw = if local_tty {
        Some(RawMode::enter(stdin.as_fd())?)
    } else {
        None
    };
    if local_tty {
        copy_window_size(stdin.as_fd(), master.as_fd());
    }
    let mut to_master = File::from(master.try_clone().map_err(io("dup"))?);
    std::thread::spawn(move || {
        let _ = io::copy(&mut io::stdin().lock(), &mut to_master);
    });

    let mut out = own(io::stdout().as_fd())?;
    let mut master = File::from(master);
    // Readable (the status line, then EOF right after) once the process has exited.
    let mut exited = false;
    let mut output_done = false;
    let mut buf = [0u8; 16 * 1024];
    while !output_done {
        let (m, s, st) = {
            let mut fds = vec![
                PollFd::new(master.as_fd(), PollFlags::POLLIN),
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            ];
            if !exited {
                fds.push(PollFd::new(status.as_fd(), PollFlags::POLLIN));
            }
            // Once the process has exited, its output is in the pty already: drain what
            // comes, and do not wait for a background process that keeps the tty open.
            let timeout = if exited {
                PollTimeout::try_from(Duration::from_millis(200)).unwrap()
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
                Ok(0) => break,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(io("poll")(e)),
            }
            let ev = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .unwrap_or(PollFlags::empty())
            };
            (ev(0), ev(1), ev(2))
        };
        if !m.is_empty() {
            match master.read(&mut buf) {
                // EIO: every holder of the slave has closed it.
                Ok(0) => output_done = true,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => output_done = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io("read pty")(e)),
                Ok(n) => out.write_all(&buf[..n]).map_err(io("write stdout"))?,
            }
        }
        if !s.is_empty() {
            while let Ok(Some(info)) = signals.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) if local_tty => {
                        copy_window_size(stdin.as_fd(), master.as_fd())
                    }
                    Ok(Signal::SIGWINCH) => {}
                    Ok(sig) => return Ok(Relayed::Interrupted(sig)),
                    Err(_) => {}
                }
            }
        }
        if !st.is_empty() {
            exited = true;
        }
    }
    read_status(status).map(Relayed::Exited)
}

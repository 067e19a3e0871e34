//! Starting one requested process in the container (wshd is its PID 1 and its parent).
//!
//! ```text
//! wshd                                        child (fork)
//! check the request, make pipes or a pty
//! fork ─────────────────────────────────────▶ setsid, default signals, stdio (pty: TIOCSCTTY)
//! keep: status write end (reaper),             rlimits, user from /etc/passwd + /etc/group,
//!       errors read end (server polls it)      groups/gid/uid, capabilities, clean env, chdir,
//! send to client: stdin/stdout/stderr or       every fd >= 3 CLOEXEC, execvp
//!       pty master, status read end  ◀──────── on failure: message on the errors pipe, _exit(127)
//! ```
//!
//! The errors pipe is O_CLOEXEC: a successful exec closes it, so EOF with nothing read means
//! the program runs; anything read is why it does not.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::pty::Winsize;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, pipe2, Pid};

use crate::error::{io, Error, Result};
use crate::proto::{SpawnRequest, DEFAULT_USER};
use crate::sys::{self, Forked};
use crate::{privs, user};

/// PATH of every spawned process (before the request's own env, which may replace it).
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A forked process, as wshd sees it.
pub struct Started {
    pub pid: Pid,
    /// The fds for the client, in the order of `proto::SPAWN_FDS_PIPES` / `SPAWN_FDS_TTY`.
    pub client_fds: Vec<OwnedFd>,
    /// Where the reaper writes the exit status.
    pub status: OwnedFd,
    /// EOF once the program runs; a message if it could not be started.
    pub errors: File,
}

/// The stdio of the child, before it is moved to fds 0, 1, 2.
enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty {
        slave: OwnedFd,
    },
}

/// The request, checked and converted before the fork.
struct Plan {
    argv: Vec<CString>,
    env: Vec<(String, String)>,
    user: String,
    dir: Option<String>,
    rlimits: Vec<(Resource, u64, u64)>,
}

/// Maps a `proto::Rlimit::resource` name to the kernel's resource.
pub fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "as" => Resource::RLIMIT_AS,
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

fn plan(req: &SpawnRequest) -> Result<Plan> {
    if req.argv.is_empty() {
        return Err(Error::Invalid("spawn: argv is empty".into()));
    }
    let argv = req
        .argv
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| Error::Invalid("spawn: argv contains a NUL byte".into()))?;
    let mut env = Vec::new();
    for e in &req.env {
        match e.split_once('=') {
            Some((k, v)) if !k.is_empty() && !e.contains('\0') => {
                env.push((k.to_string(), v.to_string()))
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "spawn: environment entry {e:?} is not KEY=VALUE"
                )))
            }
        }
    }
    let mut rlimits = Vec::new();
    for r in &req.rlimits {
        let res = resource(&r.resource)
            .ok_or_else(|| Error::Invalid(format!("spawn: unknown rlimit {:?}", r.resource)))?;
        if r.soft > r.hard {
            return Err(Error::Invalid(format!(
                "spawn: rlimit {}: soft limit {} above hard limit {}",
                r.resource, r.soft, r.hard
            )));
        }
        rlimits.push((res, r.soft, r.hard));
    }
    Ok(Plan {
        argv,
        env,
        user: req.user.clone().unwrap_or_else(|| DEFAULT_USER.to_string()),
        dir: req.dir.clone(),
        rlimits,
    })
}

fn cloexec(fd: &OwnedFd) -> Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(io("fcntl(FD_CLOEXEC)"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(io("pipe2"))
}

/// Checks `req`, forks, and returns at once in wshd; the child execs or reports failure.
pub fn start(req: &SpawnRequest) -> Result<Started> {
    let plan = plan(req)?;
    let (status_r, status_w) = pipe()?;
    let (errors_r, errors_w) = pipe()?;
    let (stdio, mut client_fds) = if req.tty {
        // The client sets the real size on the master once it has it; until then, the
        // classic 24x80 rather than 0x0 (what ssh assumes when it is told no size).
        let size = Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(&size, None).map_err(io("openpty"))?;
        cloexec(&pty.master)?;
        cloexec(&pty.slave)?;
        (ChildStdio::Pty { slave: pty.slave }, vec![pty.master])
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        (
            ChildStdio::Pipes {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            },
            vec![in_w, out_r, err_r],
        )
    };
    client_fds.push(status_r);
    match sys::fork().map_err(io("fork"))? {
        Forked::Child => {
            drop(client_fds);
            drop(status_w);
            drop(errors_r);
            let err = match exec(&plan, stdio) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            let _ = File::from(errors_w).write_all(err.to_string().as_bytes());
            sys::exit_now(127)
        }
        Forked::Parent(pid) => Ok(Started {
            pid,
            client_fds,
            status: status_w,
            errors: File::from(errors_r),
        }),
    }
}

/// The child's side: becomes what the request asked for, and execs. Returns only on failure.
fn exec(plan: &Plan, stdio: ChildStdio) -> Result<Infallible> {
    nix::unistd::setsid().map_err(io("setsid"))?;
    sys::default_signal_dispositions();
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(io("sigprocmask"))?;

    let tty = matches!(stdio, ChildStdio::Pty { .. });
    match &stdio {
        ChildStdio::Pty { slave } => {
            // We are a session leader without a terminal: this one becomes ours.
            sys::set_controlling_tty(slave.as_fd()).map_err(io("ioctl(TIOCSCTTY)"))?;
            for dup in [dup2_stdin, dup2_stdout, dup2_stderr] {
                dup(slave).map_err(io("dup2"))?;
            }
        }
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            dup2_stdin(stdin).map_err(io("dup2"))?;
            dup2_stdout(stdout).map_err(io("dup2"))?;
            dup2_stderr(stderr).map_err(io("dup2"))?;
        }
    }
    drop(stdio);

    // Before giving up root: raising a hard limit needs CAP_SYS_RESOURCE.
    for &(res, soft, hard) in &plan.rlimits {
        setrlimit(res, soft, hard).map_err(io(format!("setrlimit {res:?}")))?;
    }

    let passwd = read_optional("/etc/passwd")?;
    let user = user::resolve(&passwd, &plan.user).ok_or_else(|| {
        Error::Invalid(format!(
            "unknown user {:?} (not in the container's /etc/passwd)",
            plan.user
        ))
    })?;
    let groups = user::groups(&read_optional("/etc/group")?, &user.name, user.gid);
    if tty {
        // The terminal belongs to whoever uses it, as login(1) would arrange (group: tty).
        std::os::unix::fs::fchown(std::io::stdin(), Some(user.uid), None)
            .map_err(io("fchown of the terminal"))?;
    }
    privs::become_user(&user, &groups)?;

    for (k, _) in std::env::vars_os() {
        std::env::remove_var(k);
    }
    let defaults = [
        ("HOME", user.home.as_str()),
        ("USER", user.name.as_str()),
        ("LOGNAME", user.name.as_str()),
        ("SHELL", user.shell.as_str()),
        ("PATH", PATH),
    ];
    for (k, v) in defaults {
        std::env::set_var(k, v);
    }
    for (k, v) in &plan.env {
        std::env::set_var(k, v);
    }

    // As the user, so that a directory it may not enter is refused.
    match &plan.dir {
        Some(dir) => nix::unistd::chdir(dir.as_str()).map_err(io(format!("chdir {dir}")))?,
        None => {
            if nix::unistd::chdir(user.home.as_str()).is_err() {
                nix::unistd::chdir("/").map_err(io("chdir /"))?;
            }
        }
    }

    // wshd's fds (listener, signalfd, other jobs' pipes, the log) are CLOEXEC already;
    // this also covers whatever wshd may have been given without the flag.
    sys::cloexec_from(3).map_err(io("close_range"))?;
    let argv0 = &plan.argv[0];
    // execvp: PATH lookup in the environment just set, ENOEXEC scripts run by /bin/sh.
    let e = nix::unistd::execvp(argv0, &plan.argv).unwrap_err();
    Err(io(format!("exec {}", argv0.to_string_lossy()))(e))
}

/// The file's text, or "" when it does not exist.
fn read_optional(path: &str) -> Result<String> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(io(format!("read {path}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Rlimit;

    #[test]
    fn rlimit_names_map_to_resources() {
        let names = [
            "as",
            "core",
            "cpu",
            "data",
            "fsize",
            "locks",
            "memlock",
            "msgqueue",
            "nice",
            "nofile",
            "nproc",
            "rss",
            "rtprio",
            "sigpending",
            "stack",
        ];
        for n in names {
            let r = resource(n).unwrap_or_else(|| panic!("{n} unknown"));
            assert_eq!(format!("{r:?}"), format!("RLIMIT_{}", n.to_uppercase()));
        }
        assert!(resource("NOFILE").is_none());
        assert!(resource("rlimit_nofile").is_none());
        assert!(resource("").is_none());
    }

    fn req(argv: &[&str]) -> SpawnRequest {
        SpawnRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plan_checks_the_request() {
        let err = |r: &SpawnRequest| plan(r).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(err(&req(&[])), "spawn: argv is empty");
        assert!(err(&req(&["a\0b"])).contains("NUL"));
        let mut r = req(&["true"]);
        r.env = vec!["NOEQUALS".into()];
        assert!(err(&r).contains("KEY=VALUE"), "{}", err(&r));
        r.env = vec!["=x".into()];
        assert!(err(&r).contains("KEY=VALUE"));
        r.env = vec!["A=b=c".into(), "EMPTY=".into()];
        r.rlimits = vec![Rlimit {
            resource: "nofile".into(),
            soft: 10,
            hard: 20,
        }];
        let p = plan(&r).unwrap();
        assert_eq!(
            p.env,
            [
                ("A".to_string(), "b=c".to_string()),
                ("EMPTY".to_string(), String::new())
            ]
        );
        assert_eq!(p.user, DEFAULT_USER);
        assert_eq!(p.rlimits, [(Resource::RLIMIT_NOFILE, 10, 20)]);
        r.rlimits = vec![Rlimit {
            resource: "files".into(),
            soft: 1,
            hard: 1,
        }];
        assert_eq!(err(&r), "spawn: unknown rlimit \"files\"");
        r.rlimits = vec![Rlimit {
            resource: "nofile".into(),
            soft: 30,
            hard: 20,
        }];
        assert!(err(&r).contains("above hard limit"));
    }
}

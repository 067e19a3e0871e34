//! wshd's recipe: from a prepared container directory on the host to the container's PID 1.
//!
//! ```text
//! parent (host; after unshare(NEWNS), / rslave)     child (NEWPID|NEWNET|NEWNS|NEWUTS|NEWIPC)
//! bind+listen run/wshd.sock
//! hook-parent-before-clone.sh (disk, overlay at mnt/,
//!                              bind mounts, vcap's uid),
//!   and while it runs: join --cgroup DIRs
//! clone ──────────────────────────────────────────▶ go.wait()
//! write run/wshd.pid
//! PID=<pid> hook-parent-after-clone.sh (veth)
//! go.signal() ────────────────────────────────────▶ bind mnt/ onto itself
//!                                                   hook-child-before-pivot.sh (/proc, /dev,
//!                                                     hostname, addresses, routes)
//!                                                   pivot_root(mnt/, mnt/.wshd-old-root)
//!                                                   /bin/sh /.wshd-old-root/<lib>/hook-child-after-pivot.sh
//!                                                   detach and rmdir /.wshd-old-root; setsid
//!                                                   block SIGCHLD, signalfd
//! ready.wait() ◀────────────────────────────────── ready.signal()  (or ready.fail(message))
//! exit 0                                            serve wshd.sock (server.rs) until killed
//! ```
//!
//! Both barriers are O_CLOEXEC pipes (`barrier.rs`). A failure in the child travels to the
//! parent as a message; the parent kills the child (and with it every process of the new PID
//! namespace), removes wshd.pid and exits 1 with `wshd: <message>`. Every mount made here
//! lives in namespaces that die with these two processes, so a failed start leaves no mount
//! behind. wshd never execs itself: the clone returns twice, like fork, and the child keeps
//! running this binary's code, so nothing in the container can replace it.

use std::ffi::CString;
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::args::{Args, Dirs};
use crate::barrier::{self, Outcome, Signaller, Waiter};
use crate::error::{io, Error, Result};
use crate::hook::{Hook, Stage};
use crate::server::Server;
use crate::sys::{self, Forked};
use crate::{mount, mount::OLD_ROOT};

/// The namespaces of the container (DESIGN.md section 3).
const NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWPID
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

/// Runs the start sequence. Returns in the parent once the container is ready; the child
/// never returns (it serves until killed, or exits 1 after reporting a failure).
pub fn run(args: &Args) -> Result<()> {
    let dirs = args.check()?;
    sys::ignore_sigpipe();
    // Whatever our parent left open (without O_CLOEXEC) must not reach the hooks, nor stay
    // open in the container's init. Nothing of ours is open yet but stdio.
    sys::close_from(3).map_err(io("close_range"))?;
    ensure_std_fds()?;
    // The child inherits the title (`ps`); each process names itself (`comm`).
    if let Err(e) = sys::set_cmdline(&dirs.title) {
        log::debug!("set-title-failed error={e}");
    }
    set_name("wshd:[0:parent]");

    let sock = dirs.run.join("wshd.sock");
    match fs::remove_file(&sock) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("remove {}", sock.display()))(e))
        }
        _ => {}
    }
    // Bound on the host, before any namespace: the daemon finds it at this path; the
    // container's init serves it through the inherited fd.
    let listener = UnixListener::bind(&sock).map_err(io(format!("bind {}", sock.display())))?;
    let started = start(&dirs, listener);
    if started.is_err() {
        // Nobody will ever serve it.
        let _ = fs::remove_file(&sock);
    }
    started
}

/// The sequence from the first hook on; `listener` goes to the child.
fn start(dirs: &Dirs, listener: UnixListener) -> Result<()> {
    let stage = Stage::ParentBeforeClone;
    mount::private_namespace().map_err(stage.fail())?;
    let hook = Hook::new(stage, &dirs.lib).cwd(&dirs.container).start()?;
    // Joined while the hook runs (it stays where wshd was started: not charged to the
    // container). The first write to a cgroup.procs can wait for an RCU grace period
    // (cgroup_threadgroup_rwsem), 8-20 ms here: beside the hook, it costs nothing.
    let joined = join_cgroups(&dirs.cgroups).map_err(stage.fail());
    hook.wait()?;
    joined?;

    let (go_wait, go) = barrier::new()?;
    let (ready, ready_signal) = barrier::new()?;
    match sys::clone_fork(NAMESPACES)
        .map_err(clone_error)
        .map_err(Stage::ParentAfterClone.fail())?
    {
        Forked::Child => {
            drop((go, ready));
            child(dirs, listener, go_wait, ready_signal)
        }
        Forked::Parent(pid) => {
            drop((go_wait, ready_signal, listener));
            parent(dirs, pid, go, ready)
        }
    }
}

/// Moves wshd into each of `dirs` (a cgroup per v1 hierarchy, or one on v2); the container
/// inherits them at the clone.
fn join_cgroups(dirs: &[std::path::PathBuf]) -> Result<()> {
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        fs::write(&procs, std::process::id().to_string())
            .map_err(io(format!("write {}", procs.display())))?;
    }
    Ok(())
}

/// errno turned into advice where the kernel is the likely cause (bubblewrap does this too).
fn clone_error(e: nix::errno::Errno) -> Error {
    let hint = match e {
        nix::errno::Errno::EPERM => " (wshd must run as root with CAP_SYS_ADMIN)",
        nix::errno::Errno::ENOSPC | nix::errno::Errno::EUSERS => {
            " (too many namespaces: see /proc/sys/user/max_*_namespaces)"
        }
        nix::errno::Errno::EINVAL => " (a namespace type is not supported by this kernel)",
        _ => "",
    };
    Error::Io {
        op: format!("clone{hint}"),
        source: e.into(),
    }
}

fn parent(dirs: &Dirs, pid: Pid, go: Signaller, ready: Waiter) -> Result<()> {
    let pid_file = dirs.run.join("wshd.pid");
    let stage = Stage::ParentAfterClone;
    let result = write_pid_file(&pid_file, pid)
        .map_err(stage.fail())
        .and_then(|()| {
            Hook::new(stage, &dirs.lib)
                .cwd(&dirs.container)
                .env("PID", &pid.to_string())
                .run()
        })
        .and_then(|()| go.signal().map_err(stage.fail()))
        .and_then(|()| match ready.wait()? {
            Outcome::Ok => Ok(()),
            Outcome::Failed(message) => Err(Error::Child(message)),
            Outcome::Closed => Err(Error::Child(format!(
                "the container's init died during setup ({})",
                wait_status(pid)
            ))),
        });
    match result {
        Ok(()) => {
            log::info!("started pid={pid} root={}", dirs.root.display());
            Ok(())
        }
        Err(e) => {
            // PID 1 of the namespace: the kernel kills every other process in it too.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            let _ = fs::remove_file(&pid_file);
            Err(e)
        }
    }
}

fn write_pid_file(path: &Path, pid: Pid) -> Result<()> {
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n")).map_err(io(format!("write {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!(
        "rename {} to {}",
        tmp.display(),
        path.display()
    )))
}

/// How the child ended, once it has (it has closed its barrier end, so it is exiting).
fn wait_status(pid: Pid) -> String {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, c)) => format!("exit {c}"),
        Ok(WaitStatus::Signaled(_, s, _)) => format!("killed by {s}"),
        Ok(s) => format!("{s:?}"),
        Err(e) => format!("waitpid: {e}"),
    }
}

fn child(dirs: &Dirs, listener: UnixListener, go: Waiter, ready: Signaller) -> ! {
    // If the parent dies before we are ready, so do we (and the namespace with us).
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    set_name("wshd:[1:child]");
    let server = match setup_child(dirs, listener, go) {
        Ok(server) => server,
        Err(e) => {
            log::error!("start-failed error={e}");
            let _ = ready.fail(&e.to_string());
            sys::exit_now(1);
        }
    };
    set_name(&dirs.title);
    // From now on we outlive the parent. A parent that died since is noticed by the write.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    if let Err(e) = ready.signal() {
        log::error!("start-failed error=parent gone: {e}");
        sys::exit_now(1);
    }
    log::info!("serving socket={}", dirs.run.join("wshd.sock").display());
    match server.run() {
        Ok(never) => match never {},
        Err(e) => {
            log::error!("serve-failed error={e}");
            sys::exit_now(1)
        }
    }
}

fn setup_child(dirs: &Dirs, listener: UnixListener, go: Waiter) -> Result<Server> {
    let stage = Stage::ChildBeforePivot;
    match go.wait().map_err(stage.fail())? {
        Outcome::Ok => {}
        // The parent's hook failed (it reports that itself) or the parent died.
        _ => sys::exit_now(1),
    }
    mount::bind_onto_itself(&dirs.root).map_err(stage.fail())?;
    Hook::new(stage, &dirs.lib).cwd(&dirs.container).run()?;
    mount::pivot(&dirs.root).map_err(stage.fail())?;

    let stage = Stage::ChildAfterPivot;
    let script = Path::new("/")
        .join(OLD_ROOT)
        .join(dirs.lib.strip_prefix("/").unwrap_or(&dirs.lib))
        .join(stage.script());
    Hook::with_sh(stage, script).cwd(Path::new("/")).run()?;
    mount::detach_old_root().map_err(stage.fail())?;
    nix::unistd::setsid()
        .map_err(io("setsid"))
        .map_err(stage.fail())?;
    Server::new(listener).map_err(stage.fail())
}

/// Fds 0, 1 and 2 open (on /dev/null if need be), so that no pipe or socket of ours ever
/// gets one of those numbers and is then clobbered or exposed by a dup2 onto stdio.
fn ensure_std_fds() -> Result<()> {
    for fd in 0..3 {
        if fs::metadata(format!("/proc/self/fd/{fd}")).is_err() {
            // open(2) returns the lowest free number: this one.
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(io("open /dev/null"))?;
            std::mem::forget(f);
        }
    }
    Ok(())
}

/// Sets `comm`, what top and pgrep show (the kernel keeps 15 bytes).
fn set_name(name: &str) {
    if let Ok(c) = CString::new(name) {
        let _ = nix::sys::prctl::set_name(&c);
    }
}

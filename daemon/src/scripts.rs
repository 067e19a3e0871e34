//! Runs the shell scripts of a container (`lib/net.sh`, `lib/teardown.sh`) and of the host
//! (`net-host.sh`) as child processes: arguments and environment in, exit status and the
//! tail of stderr out. Scripts decide *how* (ip, iptables, mount); Rust decides *what*.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use log::debug;
use tokio::process::Command;

use crate::error::{io, Error, Result};

/// How much of a failed script's stderr goes into the error message.
const STDERR_TAIL: usize = 2048;

/// Keeps the daemon from starting a process while it writes a file that it (or wshd) will
/// execute. A process started by one thread gets a copy of every fd of the daemon, a file
/// being written by another thread included, and keeps it until its exec; executing that
/// file meanwhile fails with ETXTBSY ("Text file busy"). Starting a process holds this
/// shared ([`spawning`]) until the child has exec'd (`spawn` returns then); writing hooks
/// into a container's `lib/` holds it exclusively ([`writing_executables`]).
static EXEC_FILES: RwLock<()> = RwLock::new(());

/// Held while a child process is started.
pub fn spawning() -> RwLockReadGuard<'static, ()> {
    EXEC_FILES.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while files that will be executed are written.
pub fn writing_executables() -> RwLockWriteGuard<'static, ()> {
    EXEC_FILES.write().unwrap_or_else(|e| e.into_inner())
}

/// Runs `script args...` with `cwd` as working directory and `env` added to the daemon's
/// environment (so `DEBUG` and `PATH` pass through). Succeeds on exit status 0.
pub async fn run<I, K, V>(script: &Path, args: &[&str], cwd: &Path, env: I) -> Result<()>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let started = Instant::now();
    let mut cmd = Command::new(script);
    cmd.args(args)
        .current_dir(cwd)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = {
        let _exec = spawning();
        cmd.spawn().map_err(io("run", script))?
    };
    let out = child.wait_with_output().await.map_err(io("run", script))?;
    let name = format!(
        "{} {}",
        script.file_name().unwrap_or_default().to_string_lossy(),
        args.join(" ")
    );
    debug!(
        "script name={name:?} took_ms={:.1}",
        started.elapsed().as_secs_f64() * 1e3
    );
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Script {
        name,
        code: out.status.code(),
        stderr_tail: tail(&out.stderr, STDERR_TAIL),
    })
}

/// The last `max` bytes of `bytes`, as text, starting at a line boundary where possible.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    let mut s = &bytes[start..];
    if start > 0 {
        if let Some(nl) = s.iter().position(|&b| b == b'\n') {
            s = &s[nl + 1..];
        }
    }
    String::from_utf8_lossy(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_at_a_line() {
        assert_eq!(tail(b"abc", 10), "abc");
        assert_eq!(tail(b"line1\nline2\nline3", 8), "line3");
    }

    #[tokio::test]
    async fn reports_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let s = dir.path().join("s.sh");
        std::fs::write(&s, "#!/bin/sh\necho \"bad $1 $X\" >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&s, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let e = run(&s, &["setup"], dir.path(), [("X", "y")])
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "s.sh setup failed (exit 3): bad setup y");
    }
}

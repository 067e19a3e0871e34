//! The four start stages and their hook scripts (`lib/hook-<stage>.sh`).
//!
//! A hook runs synchronously with stdin from /dev/null. Its stdout and stderr both go to
//! wshd's stderr (the container's `run/wshd.log`, so `DEBUG=1` traces are visible there);
//! the last bytes of its stderr are kept for the error message when it fails.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{in_stage, io, Error, Result};

/// Bytes of a failed hook's stderr kept for the error message.
const TAIL: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Host namespaces except a private mount namespace; cwd = container dir.
    ParentBeforeClone,
    /// Host namespaces, `PID` = the container's init; cwd = container dir.
    ParentAfterClone,
    /// The container's namespaces, host file system; cwd = container dir.
    ChildBeforePivot,
    /// The container's namespaces and root, the old root under `/.wshd-old-root`.
    ChildAfterPivot,
}

impl Stage {
    /// The stage's name, as in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Stage::ParentBeforeClone => "parent-before-clone",
            Stage::ParentAfterClone => "parent-after-clone",
            Stage::ChildBeforePivot => "child-before-pivot",
            Stage::ChildAfterPivot => "child-after-pivot",
        }
    }

    /// The hook's file name in `lib/`.
    pub fn script(self) -> &'static str {
        match self {
            Stage::ParentBeforeClone => "hook-parent-before-clone.sh",
            Stage::ParentAfterClone => "hook-parent-after-clone.sh",
            Stage::ChildBeforePivot => "hook-child-before-pivot.sh",
            Stage::ChildAfterPivot => "hook-child-after-pivot.sh",
        }
    }

    /// Wraps an error of a non-hook step of this stage.
    pub fn fail(self) -> impl FnOnce(Error) -> Error {
        in_stage(self.name())
    }
}

/// How to start a stage's hook.
pub struct Hook {
    stage: Stage,
    command: Command,
    shown: PathBuf,
}

impl Hook {
    /// The hook `lib/<script>`, run as an executable (its `#!` line picks the shell).
    pub fn new(stage: Stage, lib: &Path) -> Hook {
        let path = lib.join(stage.script());
        Hook {
            stage,
            command: Command::new(&path),
            shown: path,
        }
    }

    /// The hook at `path`, interpreted by `/bin/sh` (used after pivot_root: the container's
    /// shell, so the script may only use what the container has).
    pub fn with_sh(stage: Stage, path: PathBuf) -> Hook {
        let mut command = Command::new("/bin/sh");
        command.arg(&path);
        Hook {
            stage,
            command,
            shown: path,
        }
    }

    pub fn cwd(mut self, dir: &Path) -> Hook {
        self.command.current_dir(dir);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Hook {
        self.command.env(key, value);
        self
    }

    /// Runs the hook to its end.
    pub fn run(self) -> Result<()> {
        self.start()?.wait()
    }

    /// Starts the hook; [`Running::wait`] ends it. What wshd does meanwhile runs beside it.
    pub fn start(mut self) -> Result<Running> {
        let stage = self.stage;
        let started = std::time::Instant::now();
        log::debug!(
            "hook-start stage={} path={}",
            stage.name(),
            self.shown.display()
        );
        let out = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(io("dup stderr"))?;
        let child = self
            .command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("run {}", self.shown.display())))
            .map_err(stage.fail())?;
        Ok(Running {
            stage,
            child,
            shown: self.shown,
            started,
        })
    }
}

/// A hook that was started and not yet waited for.
pub struct Running {
    stage: Stage,
    child: std::process::Child,
    shown: PathBuf,
    started: std::time::Instant,
}

impl Running {
    /// Relays the hook's output to wshd's stderr until it ends, then reports how it ended.
    pub fn wait(mut self) -> Result<()> {
        let stage = self.stage;
        let mut pipe = self.child.stderr.take().expect("stderr is piped");
        let mut tail = Vec::new();
        let mut buf = [0u8; 4096];
        let mut stderr = std::io::stderr();
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = stderr.write_all(&buf[..n]);
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * TAIL {
                        tail.drain(..tail.len() - TAIL);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(stage.fail()(io("read hook stderr")(e))),
            }
        }
        let status = self
            .child
            .wait()
            .map_err(io(format!("wait for {}", self.shown.display())))
            .map_err(stage.fail())?;
        // The daemon relays these durations into its own log (create-step ... step=hook-...).
        log::debug!(
            "hook-done stage={} took_ms={:.1} status={status}",
            stage.name(),
            self.started.elapsed().as_secs_f64() * 1e3
        );
        if status.success() {
            Ok(())
        } else {
            Err(Error::Hook {
                stage: stage.name(),
                status,
                stderr_tail: tail_of(&tail),
            })
        }
    }
}

/// The end of a hook's stderr, at most `TAIL` bytes, starting at a line, trimmed.
fn tail_of(bytes: &[u8]) -> String {
    let mut start = bytes.len().saturating_sub(TAIL);
    if start > 0 {
        if let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
            if start + nl + 1 < bytes.len() {
                start += nl + 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, stage: Stage, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(stage.script());
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn names_match_scripts() {
        for s in [
            Stage::ParentBeforeClone,
            Stage::ParentAfterClone,
            Stage::ChildBeforePivot,
            Stage::ChildAfterPivot,
        ] {
            assert_eq!(s.script(), format!("hook-{}.sh", s.name()));
        }
    }

    #[test]
    fn success_with_env_and_cwd() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            Stage::ParentAfterClone,
            r#"[ "$PID" = 42 ] && [ "$(pwd)" = / ] || exit 3"#,
        );
        Hook::new(Stage::ParentAfterClone, d.path())
            .cwd(Path::new("/"))
            .env("PID", "42")
            .run()
            .unwrap();
    }

    #[test]
    fn failure_names_stage_status_and_tail() {
        let d = tempfile::tempdir().unwrap();
        script(
            d.path(),
            Stage::ChildBeforePivot,
            "i=0; while [ $i -lt 500 ]; do echo line$i >&2; i=$((i+1)); done; exit 7",
        );
        let e = Hook::new(Stage::ChildBeforePivot, d.path())
            .run()
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("child-before-pivot hook failed (exit 7): line"),
            "{m}"
        );
        assert!(m.ends_with("line499"), "{m}");
        assert!(m.len() < TAIL + 100, "{m}");
    }

    #[test]
    fn missing_hook_is_an_error_of_its_stage() {
        let d = tempfile::tempdir().unwrap();
        let m = Hook::new(Stage::ParentBeforeClone, d.path())
            .run()
            .unwrap_err()
            .to_string();
        assert!(m.starts_with("parent-before-clone: run "), "{m}");
        assert!(m.ends_with("No such file or directory"), "{m}");
    }

    #[test]
    fn with_sh_needs_no_exec_bit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.sh");
        std::fs::write(&p, "exit 0\n").unwrap();
        Hook::with_sh(Stage::ChildAfterPivot, p).run().unwrap();
    }
}

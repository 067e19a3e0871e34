//! wshd is PID 1 of the container: every process that dies in it ends up its child. The
//! reaper collects them all and writes the exit status of spawned ones to their status pipe.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::proto::ExitStatus;

/// Status pipes of spawned processes that still run, by pid.
pub type Jobs = HashMap<i32, OwnedFd>;

/// Whether any child is left after a round of reaping.
#[derive(Debug, PartialEq, Eq)]
pub enum Left {
    Some,
    None,
}

/// Reaps every child that has exited, without blocking; writes and closes the status pipe
/// of the spawned ones.
pub fn reap(jobs: &mut Jobs) -> Left {
    loop {
        let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitStatus::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) => return Left::Some,
            Ok(_) => continue, // stopped/continued: not asked for (no WUNTRACED)
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Left::None,
            Err(e) => {
                log::warn!("waitpid-failed error={e}");
                return Left::Some;
            }
        };
        match jobs.remove(&pid.as_raw()) {
            Some(fd) => {
                log::info!("exited pid={pid} status={status:?}");
                // EPIPE when the client is gone: nobody to tell.
                let _ = File::from(fd).write_all(&status.to_line());
            }
            None => log::debug!("reaped pid={pid} status={status:?}"),
        }
    }
}

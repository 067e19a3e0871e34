//! Process file descriptors (pidfd_open(2)): the kernel's notification that a process
//! exited, for any process, not only a child, and signals that can never reach a process
//! that merely reuses the pid. The daemon uses them to kill a container's PID 1 and wait
//! until it and everything in its PID namespace are gone.

use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::sys;

pub struct PidFd(OwnedFd);

impl PidFd {
    /// Refers to process `pid`; fails with ESRCH when there is none.
    pub fn open(pid: i32) -> nix::Result<PidFd> {
        sys::pidfd_open(pid).map(PidFd)
    }

    pub fn kill(&self, sig: Signal) -> nix::Result<()> {
        sys::pidfd_send_signal(self.0.as_fd(), sig)
    }

    /// Blocks until the process has exited (it may still be a zombie to reap). When it is
    /// the init of a PID namespace, the kernel ends every other process of the namespace
    /// before that, and the process has left its cgroups.
    pub fn wait_exited(&self) -> nix::Result<()> {
        loop {
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_and_wait_for_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let p = PidFd::open(child.id() as i32).unwrap();
        p.kill(Signal::SIGKILL).unwrap();
        p.wait_exited().unwrap();
        // Exited: a zombie now, reaped at once.
        let st = child.try_wait().unwrap().expect("exited");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        // Signals to a reaped process fail instead of reaching a stranger.
        assert_eq!(p.kill(Signal::SIGKILL), Err(nix::errno::Errno::ESRCH));
    }
}

//! One-shot handshake between wshd's parent and child over a pipe (warden's `barrier.c`).
//!
//! The signalling side writes `ok`, or `err` followed by a message, and closes; the waiting
//! side reads to EOF. EOF with nothing written means the other process died (or dropped its
//! end) without saying anything. Both ends are O_CLOEXEC, so hooks never hold them open.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;

use crate::error::{io, Result};

const OK: &[u8] = b"ok";
const ERR: &[u8] = b"err ";

/// The end that waits.
pub struct Waiter(File);

/// The end that signals.
pub struct Signaller(File);

/// What the waiter learnt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The other side signalled success.
    Ok,
    /// The other side reported this failure.
    Failed(String),
    /// The other side went away without a word.
    Closed,
}

pub fn new() -> Result<(Waiter, Signaller)> {
    let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io("pipe2"))?;
    Ok((Waiter(File::from(r)), Signaller(File::from(w))))
}

impl Waiter {
    /// Blocks until the other side signals or goes away.
    pub fn wait(mut self) -> Result<Outcome> {
        let mut buf = Vec::new();
        self.0.read_to_end(&mut buf).map_err(io("read barrier"))?;
        Ok(if buf == OK {
            Outcome::Ok
        } else if let Some(msg) = buf.strip_prefix(ERR) {
            Outcome::Failed(String::from_utf8_lossy(msg).into_owned())
        } else if buf.is_empty() {
            Outcome::Closed
        } else {
            Outcome::Failed(format!(
                "unexpected barrier message {:?}",
                String::from_utf8_lossy(&buf)
            ))
        })
    }
}

impl Signaller {
    /// Tells the waiter to go on. Fails (EPIPE) when the waiter is gone.
    pub fn signal(mut self) -> Result<()> {
        self.0.write_all(OK).map_err(io("write barrier"))
    }

    /// Tells the waiter that this side failed, and why.
    pub fn fail(mut self, message: &str) -> Result<()> {
        let mut m = ERR.to_vec();
        m.extend_from_slice(message.as_bytes());
        self.0.write_all(&m).map_err(io("write barrier"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_then_wait() {
        let (w, s) = new().unwrap();
        s.signal().unwrap();
        assert_eq!(w.wait().unwrap(), Outcome::Ok);
    }

    #[test]
    fn failure_carries_its_message() {
        let (w, s) = new().unwrap();
        s.fail("child-before-pivot hook failed (exit 7): no")
            .unwrap();
        assert_eq!(
            w.wait().unwrap(),
            Outcome::Failed("child-before-pivot hook failed (exit 7): no".into())
        );
    }

    #[test]
    fn dropped_signaller_is_closed() {
        let (w, s) = new().unwrap();
        drop(s);
        assert_eq!(w.wait().unwrap(), Outcome::Closed);
    }

    #[test]
    fn waits_across_threads() {
        let (w, s) = new().unwrap();
        let t = std::thread::spawn(move || w.wait().unwrap());
        s.signal().unwrap();
        assert_eq!(t.join().unwrap(), Outcome::Ok);
    }

    #[test]
    fn signal_to_a_gone_waiter_fails() {
        crate::sys::ignore_sigpipe();
        let (w, s) = new().unwrap();
        drop(w);
        assert!(s.signal().is_err());
    }
}

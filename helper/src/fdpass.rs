//! One JSON message with file descriptors over a unix stream socket (warden's `un.c`).
//!
//! A message is a JSON value written with one `sendmsg`; its fds ride in one `SCM_RIGHTS`
//! control message of that call (unix(7)). The receiver reads until the bytes parse as one
//! complete JSON value; fds arrive with `MSG_CMSG_CLOEXEC`, so they never leak into a
//! program the receiver starts.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{io, Error, Result};
use crate::proto::{MAX_FDS, MAX_MESSAGE};

/// Sends `msg` as JSON with `fds` attached.
pub fn send<T: Serialize>(sock: impl AsFd, msg: &T, fds: &[BorrowedFd<'_>]) -> Result<()> {
    let body = serde_json::to_vec(msg)
        .map_err(|e| Error::Protocol(format!("cannot encode message: {e}")))?;
    if body.len() > MAX_MESSAGE {
        return Err(Error::Invalid(format!(
            "message of {} bytes is larger than {MAX_MESSAGE}",
            body.len()
        )));
    }
    if fds.len() > MAX_FDS {
        return Err(Error::Invalid(format!(
            "{} fds are more than {MAX_FDS}",
            fds.len()
        )));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    let fd = sock.as_fd().as_raw_fd();
    let mut sent = 0;
    while sent < body.len() {
        // The fds go with the first byte; the kernel keeps them attached to it.
        let c = if sent == 0 { cmsgs } else { &[] };
        match sendmsg::<UnixAddr>(
            fd,
            &[IoSlice::new(&body[sent..])],
            c,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io("sendmsg")(e)),
        }
    }
    Ok(())
}

/// One `recvmsg` of up to `MAX_MESSAGE - buf.len()` bytes, appended to `buf`; received fds
/// are appended to `fds`. Returns the number of bytes read, 0 at EOF.
pub fn recv_some(sock: impl AsFd, buf: &mut Vec<u8>, fds: &mut Vec<OwnedFd>) -> Result<usize> {
    let room = MAX_MESSAGE.saturating_sub(buf.len());
    if room == 0 {
        return Err(Error::Protocol(format!(
            "message larger than {MAX_MESSAGE} bytes"
        )));
    }
    // Read straight into `buf`, then cut it back to what arrived.
    let old = buf.len();
    buf.resize(old + room.min(16 * 1024), 0);
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let received = loop {
        let mut iov = [IoSliceMut::new(&mut buf[old..])];
        match recvmsg::<UnixAddr>(
            sock.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => match msg.cmsgs() {
                Ok(cmsgs) => {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw.into_iter().map(crate::sys::own_received_fd));
                        }
                    }
                    break Ok((msg.bytes, msg.flags.contains(MsgFlags::MSG_CTRUNC)));
                }
                Err(e) => break Err(io("recvmsg")(e)),
            },
            Err(Errno::EINTR) => continue,
            Err(e) => break Err(io("recvmsg")(e)),
        }
    };
    let (n, truncated) = match received {
        Ok(r) => r,
        Err(e) => {
            buf.truncate(old);
            return Err(e);
        }
    };
    buf.truncate(old + n);
    if truncated {
        return Err(Error::Protocol(format!("more than {MAX_FDS} fds sent")));
    }
    Ok(n)
}

/// The first JSON value in `buf`: `Ok(None)` while it is incomplete.
pub fn parse<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<T>, serde_json::Error> {
    match serde_json::Deserializer::from_slice(buf)
        .into_iter::<T>()
        .next()
    {
        None => Ok(None),
        Some(Ok(v)) => Ok(Some(v)),
        Some(Err(e)) if e.is_eof() => Ok(None),
        Some(Err(e)) => Err(e),
    }
}

/// Blocks until one complete message has arrived; returns it with the fds that came with it.
pub fn recv<T: DeserializeOwned>(sock: impl AsFd) -> Result<(T, Vec<OwnedFd>)> {
    let mut buf = Vec::new();
    let mut fds = Vec::new();
    loop {
        let n = recv_some(sock.as_fd(), &mut buf, &mut fds)?;
        let parsed = parse(&buf).map_err(|e| Error::Protocol(format!("invalid message: {e}")))?;
        if let Some(v) = parsed {
            return Ok((v, fds));
        }
        if n == 0 {
            return Err(Error::Protocol(if buf.is_empty() {
                "connection closed without a message".into()
            } else {
                "connection closed in the middle of a message".into()
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use crate::proto::{Request, Response};

    #[test]
    fn message_and_fds_arrive_and_work() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let file = tempfile::tempfile().unwrap();
        send(
            &a,
            &Response::Spawned { pid: 7 },
            &[r.as_fd(), w.as_fd(), file.as_fd()],
        )
        .unwrap();
        drop((r, w));
        let (msg, fds): (Response, _) = recv(&b).unwrap();
        assert_eq!(msg, Response::Spawned { pid: 7 });
        assert_eq!(fds.len(), 3);
        for fd in &fds {
            let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(flags & libc::FD_CLOEXEC, 0, "received fds are CLOEXEC");
        }
        let mut it = fds.into_iter();
        let (r, w, f) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        // The pipe still works end to end through the passed fds.
        std::fs::File::from(w).write_all(b"through").unwrap();
        let mut got = String::new();
        std::fs::File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "through");
        // The file is the same open file description.
        let mut f = std::fs::File::from(f);
        f.write_all(b"x").unwrap();
        assert_eq!(f.metadata().unwrap().len(), 1);
    }

    #[test]
    fn message_without_fds() {
        let (a, b) = UnixStream::pair().unwrap();
        send(&a, &Request::Ping, &[]).unwrap();
        let (msg, fds): (Request, _) = recv(&b).unwrap();
        assert_eq!(msg, Request::Ping);
        assert!(fds.is_empty());
    }

    #[test]
    fn message_split_over_writes_is_reassembled() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            a.write_all(b"{\"stop\":{\"grace").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
            a.write_all(b"_ms\":5}}").unwrap();
        });
        let (msg, _): (Request, _) = recv(&b).unwrap();
        assert_eq!(msg, Request::Stop { grace_ms: 5 });
        t.join().unwrap();
    }

    #[test]
    fn large_message_round_trips() {
        let (a, b) = UnixStream::pair().unwrap();
        let req = Request::Spawn(crate::proto::SpawnRequest {
            argv: vec!["x".repeat(200 * 1024)],
            ..Default::default()
        });
        let sent = req.clone();
        let t = std::thread::spawn(move || send(&a, &sent, &[]).unwrap());
        let (msg, _): (Request, _) = recv(&b).unwrap();
        assert_eq!(msg, req);
        t.join().unwrap();
    }

    #[test]
    fn eof_and_garbage_are_protocol_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(recv::<Request>(&b), Err(Error::Protocol(_))));
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"{\"pi").unwrap();
        drop(a);
        let e = recv::<Request>(&b).unwrap_err().to_string();
        assert!(e.contains("middle"), "{e}");
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"[1,2]").unwrap();
        let e = recv::<Request>(&b).unwrap_err().to_string();
        assert!(e.starts_with("protocol error: invalid message"), "{e}");
    }

    #[test]
    fn too_many_fds_are_refused() {
        let (a, _b) = UnixStream::pair().unwrap();
        let fds: Vec<BorrowedFd> = (0..MAX_FDS + 1).map(|_| a.as_fd()).collect();
        assert!(matches!(
            send(&a, &Request::Ping, &fds),
            Err(Error::Invalid(_))
        ));
    }
}

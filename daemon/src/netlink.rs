//! Waiting for the kernel to finish tearing a container down, without polling: netlink
//! sockets subscribed to link events (rtnetlink(7), `RTMGRP_LINK`) and to the kernel's
//! uevents (`NETLINK_KOBJECT_UEVENT`) wake the waiter, which then looks again.
//!
//! Once a container's last process has exited, its veth pair goes away with its network
//! namespace and its loop device is released with its mount namespace, each a few
//! milliseconds later and in the kernel's own time (a workqueue). Waiting for that is
//! cheaper than `ip link delete` (which waits for the same removal in the caller, ~20 ms
//! here) or `losetup -d` (a process, and on a busy device only a request).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// rtnetlink(7) multicast group of link events.
const RTMGRP_LINK: u32 = 1;
/// The kernel's uevent multicast group (what udev listens to).
const UEVENT_KERNEL: u32 = 1;

/// A netlink socket subscribed to one kind of kernel event.
pub struct Events {
    socket: OwnedFd,
}

impl Events {
    fn subscribe(protocol: SockProtocol, groups: u32) -> std::io::Result<Events> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            protocol,
        )?;
        bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        Ok(Events { socket })
    }

    /// Network interfaces added, changed or removed.
    pub fn links() -> std::io::Result<Events> {
        Events::subscribe(SockProtocol::NetlinkRoute, RTMGRP_LINK)
    }

    /// Devices changed: among them a loop device that lets go of its file.
    pub fn uevents() -> std::io::Result<Events> {
        Events::subscribe(SockProtocol::NetlinkKObjectUEvent, UEVENT_KERNEL)
    }

    /// Reads and drops what has arrived. Overflow (events lost) is fine: the caller looks
    /// again anyway.
    fn drain(&self, buf: &mut [u8]) {
        loop {
            match recv(self.socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(_) | Err(Errno::ENOBUFS) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }
}

/// Waits until `done()` holds, looking again after each event on any of `events`, for at
/// most `timeout`. Subscribe before whatever starts the change, so none is missed. True if
/// `done()` held in time.
pub fn wait_until(events: &[Events], timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if done() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || events.is_empty() {
            return false;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds: Vec<PollFd> = events
            .iter()
            .map(|e| PollFd::new(e.socket.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return done(),
        }
        for e in events {
            e.drain(&mut buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_at_once_when_done_and_times_out_otherwise() {
        // Subscribing to link events needs no privilege.
        let events = [Events::links().unwrap()];
        assert!(wait_until(&events, Duration::from_secs(5), || true));
        let t = Instant::now();
        assert!(!wait_until(&events, Duration::from_millis(30), || false));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}

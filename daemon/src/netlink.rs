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

/// A netlink socket subscribed to one kind of kernel event, and which of its messages are
/// worth looking again for (a busy host sends many).
pub struct Events {
    socket: OwnedFd,
    relevant: fn(&[u8]) -> bool,
}

/// Message type of a removed link (linux/rtnetlink.h), after the 4-byte length in each
/// `struct nlmsghdr`.
const RTM_DELLINK: u16 = 17;

/// True if the rtnetlink messages in `buf` include a link's removal.
fn link_removed(buf: &[u8]) -> bool {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap());
        if kind == RTM_DELLINK {
            return true;
        }
        if len < 16 {
            break;
        }
        // Messages are aligned to 4 bytes (NLMSG_ALIGN).
        off += (len + 3) & !3;
    }
    false
}

/// True for a uevent (`ACTION@DEVPATH\0KEY=VALUE\0...`) about a loop device.
fn loop_event(buf: &[u8]) -> bool {
    let head = buf.split(|&b| b == 0).next().unwrap_or_default();
    head.windows(11).any(|w| w == b"/block/loop")
}

impl Events {
    fn subscribe(
        protocol: SockProtocol,
        groups: u32,
        relevant: fn(&[u8]) -> bool,
    ) -> std::io::Result<Events> {
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            protocol,
        )?;
        bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        Ok(Events { socket, relevant })
    }

    /// Network interfaces added, changed or removed.
    pub fn links() -> std::io::Result<Events> {
        Events::subscribe(SockProtocol::NetlinkRoute, RTMGRP_LINK, link_removed)
    }

    /// Devices changed: among them a loop device that lets go of its file.
    pub fn uevents() -> std::io::Result<Events> {
        Events::subscribe(
            SockProtocol::NetlinkKObjectUEvent,
            UEVENT_KERNEL,
            loop_event,
        )
    }

    /// Reads what has arrived; true if any of it is relevant, or if events were lost
    /// (overflow) or cannot be read: then the caller must look again.
    fn drain(&self, buf: &mut [u8]) -> bool {
        let mut relevant = false;
        loop {
            match recv(self.socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => relevant |= (self.relevant)(&buf[..n]),
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return relevant,
                Err(_) => return true,
            }
        }
    }
}

/// Waits until `done()` holds, looking again after each relevant event on any of `events`,
/// for at most `timeout`. Subscribe before whatever starts the change, so none is missed.
/// True if `done()` held in time.
pub fn wait_until(events: &[Events], timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 16 * 1024];
    let mut look = true;
    loop {
        if look && done() {
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
        look = false;
        for e in events {
            look |= e.drain(&mut buf);
        }
        if Instant::now() >= deadline {
            return done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtnl(kind: u16) -> Vec<u8> {
        let mut m = 32u32.to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.resize(32, 0);
        m
    }

    #[test]
    fn relevant_messages() {
        let mut two = rtnl(16); // RTM_NEWLINK
        assert!(!link_removed(&two));
        two.extend(rtnl(RTM_DELLINK));
        assert!(link_removed(&two));
        assert!(loop_event(
            b"change@/devices/virtual/block/loop7\0ACTION=change\0"
        ));
        assert!(!loop_event(
            b"add@/devices/virtual/net/w-0afc0004-0\0ACTION=add\0"
        ));
        assert!(!loop_event(b"add@/devices/x\0DEVPATH=/block/loop1\0"));
    }

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

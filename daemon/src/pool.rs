//! Pools of the numbered resources a container takes for its lifetime: its /30 network
//! (which is also its handle), the host uid of its unprivileged user, and host ports for
//! `net in`.
//!
//! Owns: which entries are free and which are taken, and the order they are handed out in.
//! A pool is plain data with `&mut self` methods; the daemon keeps its pools in a Mutex.
//!
//! Must not: touch the system. A pool does not know whether a port is bound or a uid is in
//! /etc/passwd; it only guarantees that two live containers never get the same entry.
//! After a restart the daemon re-`claim`s the entries of the containers it finds again.
//!
//! Order (guardian's pools): entries never handed out come first, in increasing order; then
//! released entries, oldest release first. So a handle just destroyed is not given to the
//! next container, and a client still holding the old handle gets "unknown handle" rather
//! than someone else's container.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::net::Ipv4Addr;

use crate::config::Cidr;

/// An entry type of a [`Pool`]: the `i`-th entry after a start entry.
pub trait Entry: Copy + fmt::Display {
    /// The pool's name in messages: "network", "uid", "port".
    const KIND: &'static str;
    /// The entry `i` steps after `start`. Callers keep `i` below the pool's size.
    fn nth(start: Self, i: u32) -> Self;
    /// The `i` such that `nth(start, i) == entry`, if there is one.
    fn index(start: Self, entry: Self) -> Option<u32>;
}

/// `size` consecutive entries from `start`: acquire one, claim a given one, release it.
#[derive(Debug, Clone)]
pub struct Pool<T> {
    start: T,
    size: u32,
    /// Entries with index >= `next` have never been handed out by `acquire`.
    next: u32,
    /// Released entries with index < `next`, oldest first.
    released: VecDeque<u32>,
    taken: HashSet<u32>,
}

impl<T: Entry> Pool<T> {
    fn with_range(start: T, size: u32) -> Pool<T> {
        Pool {
            start,
            size,
            next: 0,
            released: VecDeque::new(),
            taken: HashSet::new(),
        }
    }

    /// Takes a free entry: a never-used one if any is left, else the oldest released one.
    pub fn acquire(&mut self) -> Result<T, PoolExhausted> {
        while self.next < self.size {
            let i = self.next;
            self.next += 1;
            // A claimed entry above `next` is skipped here; it joins `released` if freed.
            if self.taken.insert(i) {
                return Ok(T::nth(self.start, i));
            }
        }
        let i = self
            .released
            .pop_front()
            .ok_or(PoolExhausted { pool: T::KIND })?;
        self.taken.insert(i);
        Ok(T::nth(self.start, i))
    }

    /// Takes this particular entry (a container found again after a restart).
    pub fn claim(&mut self, entry: T) -> Result<(), Taken> {
        let Some(i) = self.index(entry) else {
            return Err(Taken::NotInPool {
                pool: T::KIND,
                entry: entry.to_string(),
            });
        };
        if !self.taken.insert(i) {
            return Err(Taken::InUse {
                pool: T::KIND,
                entry: entry.to_string(),
            });
        }
        if i < self.next {
            self.released.retain(|r| *r != i);
        }
        Ok(())
    }

    /// Gives the entry back. Returns false (and changes nothing) when it was not taken,
    /// so a double release cannot hand one entry to two containers.
    pub fn release(&mut self, entry: T) -> bool {
        let Some(i) = self.index(entry) else {
            return false;
        };
        if !self.taken.remove(&i) {
            return false;
        }
        if i < self.next {
            self.released.push_back(i);
        }
        true
    }

    /// Whether `entry` belongs to this pool (taken or not).
    pub fn contains(&self, entry: T) -> bool {
        self.index(entry).is_some()
    }

    pub fn is_taken(&self, entry: T) -> bool {
        self.index(entry).is_some_and(|i| self.taken.contains(&i))
    }

    /// Number of entries in the pool.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of entries `acquire` can still hand out.
    pub fn available(&self) -> u32 {
        self.size - self.taken.len() as u32
    }

    /// The first entry of the pool.
    pub fn start(&self) -> T {
        self.start
    }

    fn index(&self, entry: T) -> Option<u32> {
        T::index(self.start, entry).filter(|i| *i < self.size)
    }
}

/// `acquire` found no free entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolExhausted {
    pub pool: &'static str,
}

impl fmt::Display for PoolExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pool exhausted", self.pool)
    }
}

impl std::error::Error for PoolExhausted {}

/// `claim` could not take the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Another container has it.
    InUse { pool: &'static str, entry: String },
    /// The pool does not have it (the configuration changed since it was handed out).
    NotInPool { pool: &'static str, entry: String },
}

impl fmt::Display for Taken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Taken::InUse { pool, entry } => write!(f, "{pool} {entry} is already taken"),
            Taken::NotInPool { pool, entry } => {
                write!(f, "{pool} {entry} is outside the configured {pool} pool")
            }
        }
    }
}

impl std::error::Error for Taken {}

/// One container's /30 network: `network` (the handle), `network+1` the host end of its veth
/// pair, `network+2` the container's address, `network+3` the broadcast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subnet {
    network: Ipv4Addr,
}

impl Subnet {
    pub const PREFIX_LEN: u8 = 30;

    /// `None` unless `network` is /30 aligned (its last two bits are zero).
    pub fn new(network: Ipv4Addr) -> Option<Subnet> {
        (u32::from(network) % 4 == 0).then_some(Subnet { network })
    }

    /// The subnet whose handle this is: exactly 8 lowercase hex digits of a /30-aligned
    /// address (`0afe0004` is 10.254.0.4/30).
    pub fn from_handle(handle: &str) -> Option<Subnet> {
        if handle.len() != 8
            || !handle
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        let n = u32::from_str_radix(handle, 16).ok()?;
        Subnet::new(Ipv4Addr::from(n))
    }

    /// The container's handle: 8 lowercase hex digits of the network address.
    pub fn handle(&self) -> String {
        format!("{:08x}", u32::from(self.network))
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The host end of the veth pair (network + 1), the container's gateway.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The container's address (network + 2).
    pub fn container_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// 255.255.255.252.
    pub fn netmask(&self) -> Ipv4Addr {
        self.cidr().netmask()
    }

    pub fn prefix_len(&self) -> u8 {
        Self::PREFIX_LEN
    }

    pub fn cidr(&self) -> Cidr {
        Cidr::new(self.network, Self::PREFIX_LEN).expect("30 is a valid prefix length")
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, Self::PREFIX_LEN)
    }
}

impl Entry for Subnet {
    const KIND: &'static str = "network";
    fn nth(start: Subnet, i: u32) -> Subnet {
        Subnet {
            network: Ipv4Addr::from(u32::from(start.network) + 4 * i),
        }
    }
    fn index(start: Subnet, entry: Subnet) -> Option<u32> {
        let offset = u32::from(entry.network).checked_sub(u32::from(start.network))?;
        Some(offset / 4) // both are /30 aligned, so the offset is a multiple of 4
    }
}

/// A host uid.
impl Entry for u32 {
    const KIND: &'static str = "uid";
    fn nth(start: u32, i: u32) -> u32 {
        start + i
    }
    fn index(start: u32, entry: u32) -> Option<u32> {
        entry.checked_sub(start)
    }
}

/// A host TCP port.
impl Entry for u16 {
    const KIND: &'static str = "port";
    fn nth(start: u16, i: u32) -> u16 {
        start + i as u16
    }
    fn index(start: u16, entry: u16) -> Option<u32> {
        entry.checked_sub(start).map(u32::from)
    }
}

/// The containers' /30 networks (config `network.pool_start_address`, `network.pool_size`).
pub type NetworkPool = Pool<Subnet>;
/// Host uids for the containers' unprivileged users (config `user.*`).
pub type UidPool = Pool<u32>;
/// Host ports for `net in`.
pub type PortPool = Pool<u16>;

impl Pool<Subnet> {
    /// `size` networks of 4 addresses from `start`. Config validation rejects a misaligned
    /// start or a pool running past 255.255.255.255; here the start is rounded down to a /30
    /// and the size cut to what fits, rather than panicking.
    pub fn new(start: Ipv4Addr, size: u32) -> NetworkPool {
        let start = u32::from(start) & !3;
        let fits = ((1u64 << 32) - u64::from(start)) / 4;
        let size = u64::from(size).min(fits) as u32;
        Pool::with_range(
            Subnet {
                network: Ipv4Addr::from(start),
            },
            size,
        )
    }

    /// The smallest CIDR block holding every network of the pool, for firewall rules about
    /// "any container". It is exactly the pool when the size is a power of two and the start
    /// is aligned to it (the default: 10.254.0.0/22); otherwise it also covers a few
    /// addresses on either side.
    pub fn cidr(&self) -> Cidr {
        let first = u32::from(self.start.network);
        // `new` keeps the pool below 2^32, so this fits even for a pool of every address.
        let last = (u64::from(first) + u64::from(self.size.max(1)) * 4 - 1) as u32;
        let len = (first ^ last).leading_zeros() as u8;
        Cidr::new(Ipv4Addr::from(first), len).expect("leading_zeros is at most 32")
    }
}

impl Pool<u32> {
    /// Uids `start .. start+size-1`, cut short of 4294967295 ((uid_t)-1, "no uid").
    pub fn new(start: u32, size: u32) -> UidPool {
        let size = size.min(u32::MAX - start);
        Pool::with_range(start, size)
    }
}

impl Pool<u16> {
    /// Ports `start .. start+size-1`, cut at 65535.
    pub fn new(start: u16, size: u16) -> PortPool {
        let size = u32::from(size).min(65536 - u32::from(start));
        Pool::with_range(start, size)
    }

    /// 61001..=65000: above Linux's default ephemeral range (32768-60999,
    /// net.ipv4.ip_local_port_range), so a forwarded port never collides with the source
    /// port of an outgoing connection of the host.
    pub fn default_range() -> PortPool {
        PortPool::new(61001, 4000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn subnet(s: &str) -> Subnet {
        Subnet::new(ip(s)).unwrap()
    }

    #[test]
    fn acquire_in_order_until_exhausted() {
        let mut p = UidPool::new(10000, 3);
        assert_eq!(p.available(), 3);
        assert_eq!(p.acquire(), Ok(10000));
        assert_eq!(p.acquire(), Ok(10001));
        assert_eq!(p.acquire(), Ok(10002));
        assert_eq!(p.available(), 0);
        let e = p.acquire().unwrap_err();
        assert_eq!(e.to_string(), "uid pool exhausted");
        assert_eq!(
            NetworkPool::new(ip("10.0.0.0"), 0)
                .acquire()
                .unwrap_err()
                .to_string(),
            "network pool exhausted"
        );
        assert_eq!(
            PortPool::new(61001, 0).acquire().unwrap_err().to_string(),
            "port pool exhausted"
        );
    }

    #[test]
    fn released_entries_come_back_last_oldest_first() {
        let mut p = UidPool::new(1, 4);
        assert_eq!(p.acquire(), Ok(1));
        assert!(p.release(1));
        // Fresh entries first, although 1 is free again.
        assert_eq!(p.acquire(), Ok(2));
        assert_eq!(p.acquire(), Ok(3));
        assert!(p.release(3));
        assert!(p.release(2));
        assert_eq!(p.acquire(), Ok(4));
        // Then released ones in the order they were released: 1, 3, 2.
        assert_eq!(p.acquire(), Ok(1));
        assert_eq!(p.acquire(), Ok(3));
        assert_eq!(p.acquire(), Ok(2));
        assert!(p.acquire().is_err());
    }

    #[test]
    fn release_only_what_is_taken() {
        let mut p = UidPool::new(100, 2);
        assert!(!p.release(100), "never acquired");
        let a = p.acquire().unwrap();
        assert!(p.release(a));
        assert!(!p.release(a), "double release");
        assert!(!p.release(99), "outside");
        assert!(!p.release(102), "outside");
        // A double release must not make the entry come out twice.
        assert_eq!(p.acquire(), Ok(101));
        assert_eq!(p.acquire(), Ok(100));
        assert!(p.acquire().is_err());
    }

    #[test]
    fn claim() {
        let mut p = NetworkPool::new(ip("10.254.0.0"), 4);
        // Claim a never-used entry: acquire skips it.
        p.claim(subnet("10.254.0.8")).unwrap();
        assert!(p.is_taken(subnet("10.254.0.8")));
        assert_eq!(
            p.claim(subnet("10.254.0.8")).unwrap_err().to_string(),
            "network 10.254.0.8/30 is already taken"
        );
        assert_eq!(p.acquire(), Ok(subnet("10.254.0.0")));
        assert_eq!(p.acquire(), Ok(subnet("10.254.0.4")));
        assert_eq!(p.acquire(), Ok(subnet("10.254.0.12")));
        assert!(p.acquire().is_err());
        // Claim a released entry: it leaves the released queue.
        assert!(p.release(subnet("10.254.0.4")));
        assert!(p.release(subnet("10.254.0.0")));
        p.claim(subnet("10.254.0.4")).unwrap();
        assert_eq!(p.acquire(), Ok(subnet("10.254.0.0")));
        assert!(p.acquire().is_err());
        // Outside the pool.
        let e = p.claim(subnet("10.254.0.16")).unwrap_err();
        assert_eq!(
            e,
            Taken::NotInPool {
                pool: "network",
                entry: "10.254.0.16/30".into()
            }
        );
        assert_eq!(
            e.to_string(),
            "network 10.254.0.16/30 is outside the configured network pool"
        );
        assert!(p.claim(subnet("10.253.255.252")).is_err());
        assert!(PortPool::default_range().claim(80).is_err());
    }

    #[test]
    fn claimed_then_released_before_acquire_reaches_it() {
        let mut p = UidPool::new(0, 3);
        p.claim(2).unwrap();
        assert!(p.release(2));
        // 2 was never handed out by acquire: it comes in its fresh turn, once.
        assert_eq!(p.acquire(), Ok(0));
        assert_eq!(p.acquire(), Ok(1));
        assert_eq!(p.acquire(), Ok(2));
        assert!(p.acquire().is_err());
    }

    #[test]
    fn never_hands_out_a_taken_entry() {
        // A pseudo-random mix of operations against a plain set as the model.
        let mut p = PortPool::new(1000, 16);
        let mut taken = std::collections::BTreeSet::new();
        let mut x: u32 = 12345;
        for _ in 0..5000 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let port = 998 + (x >> 16) as u16 % 20;
            match (x >> 8) % 3 {
                0 => match p.acquire() {
                    Ok(got) => assert!(taken.insert(got), "{got} handed out twice"),
                    Err(_) => assert_eq!(taken.len(), 16),
                },
                1 => assert_eq!(
                    p.claim(port).is_ok(),
                    (1000..1016).contains(&port) && taken.insert(port)
                ),
                _ => assert_eq!(p.release(port), taken.remove(&port)),
            }
            assert_eq!(p.available() as usize, 16 - taken.len());
        }
    }

    #[test]
    fn subnet_addresses_and_handle() {
        let s = subnet("10.254.0.4");
        assert_eq!(s.network(), ip("10.254.0.4"));
        assert_eq!(s.host_ip(), ip("10.254.0.5"));
        assert_eq!(s.container_ip(), ip("10.254.0.6"));
        assert_eq!(s.netmask(), ip("255.255.255.252"));
        assert_eq!(s.prefix_len(), 30);
        assert_eq!(s.to_string(), "10.254.0.4/30");
        assert_eq!(s.cidr().to_string(), "10.254.0.4/30");
        assert_eq!(s.handle(), "0afe0004");
        assert_eq!(Subnet::from_handle("0afe0004"), Some(s));
        assert_eq!(subnet("0.0.0.0").handle(), "00000000");
        assert_eq!(subnet("255.255.255.252").handle(), "fffffffc");
        assert_eq!(
            Subnet::from_handle("fffffffc"),
            Some(subnet("255.255.255.252"))
        );
        for bad in [
            "0afe0005",
            "0AFE0004",
            "afe0004",
            "0afe00040",
            "",
            "0afe000g",
            "+afe0004",
            " afe0004",
        ] {
            assert_eq!(Subnet::from_handle(bad), None, "{bad:?}");
        }
        assert_eq!(Subnet::new(ip("10.254.0.6")), None);
    }

    #[test]
    fn network_pool_hands_out_slash_30s() {
        let mut p = NetworkPool::new(ip("10.254.0.0"), 256);
        assert_eq!(p.acquire().unwrap().handle(), "0afe0000");
        assert_eq!(p.acquire().unwrap().handle(), "0afe0004");
        assert_eq!(p.cidr().to_string(), "10.254.0.0/22");
        assert!(p.contains(subnet("10.254.3.252")));
        assert!(!p.contains(subnet("10.254.4.0")));
        assert_eq!(
            NetworkPool::new(ip("10.254.0.0"), 1).cidr().to_string(),
            "10.254.0.0/30"
        );
        // Not a power of two, not aligned: the enclosing block.
        assert_eq!(
            NetworkPool::new(ip("10.254.0.4"), 2).cidr().to_string(),
            "10.254.0.0/28"
        );
        assert_eq!(
            NetworkPool::new(ip("0.0.0.0"), u32::MAX).cidr().to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(NetworkPool::new(ip("0.0.0.0"), u32::MAX).size(), 1 << 30);
        // Misaligned start and overflowing size are corrected, not a panic.
        let mut p = NetworkPool::new(ip("255.255.255.250"), 5);
        assert_eq!(p.size(), 2);
        assert_eq!(p.start(), subnet("255.255.255.248"));
        assert_eq!(p.acquire().unwrap().to_string(), "255.255.255.248/30");
        assert_eq!(p.acquire().unwrap().to_string(), "255.255.255.252/30");
        assert!(p.acquire().is_err());
    }

    #[test]
    fn port_and_uid_ranges() {
        let mut p = PortPool::default_range();
        assert_eq!(p.size(), 4000);
        assert_eq!(p.acquire(), Ok(61001));
        assert!(p.contains(65000));
        assert!(!p.contains(65001));
        assert!(!p.contains(61000));
        let mut p = PortPool::new(65534, 10);
        assert_eq!(p.size(), 2);
        assert_eq!(p.acquire(), Ok(65534));
        assert_eq!(p.acquire(), Ok(65535));
        assert!(p.acquire().is_err());
        let p = UidPool::new(u32::MAX - 2, 10);
        assert_eq!(p.size(), 2);
        assert!(!p.contains(u32::MAX));
    }
}

//! Test hosts: network namespaces the tests make themselves, joined to the host by a veth
//! pair, so that traffic to and from containers can be checked without ever leaving the
//! machine. Host-side interface names start with `tpeer` (never confused with a container's).

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;

use nix::sched::{setns, CloneFlags};

pub struct TestHost {
    pub name: String,
    /// The host's address on the link (a local address of the host).
    pub host_ip: Ipv4Addr,
    /// The test host's address.
    pub ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("run ip");
    assert!(st.success(), "ip {} failed", args.join(" "));
}

impl TestHost {
    /// Creates netns `name` with `ip`/30 inside and `host_ip`/30 on the host side (interface
    /// `tpeer-<tag>`), and a default route back to the host.
    pub fn new(tag: &str, host_ip: Ipv4Addr, ip_addr: Ipv4Addr) -> TestHost {
        let name = format!("warden-test-{tag}");
        let ifname = format!("tpeer-{tag}");
        // Left over from a crashed run: start clean.
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &ifname])
            .stderr(std::process::Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &ifname, "type", "veth", "peer", "name", "eth0", "netns", &name,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ifname]);
        ip(&["link", "set", &ifname, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{ip_addr}/30"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &name, "link", "set", "eth0", "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &name,
            "route",
            "add",
            "default",
            "via",
            &host_ip.to_string(),
        ]);
        TestHost {
            name,
            host_ip,
            ip: ip_addr,
        }
    }

    /// Runs `f` on a thread that has joined this host's network namespace; sockets made
    /// there belong to the test host.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(format!("/run/netns/{}", self.name)).expect("open netns");
        std::thread::spawn(move || {
            setns(ns, CloneFlags::CLONE_NEWNET).expect("setns into the test host");
            f()
        })
        .join()
        .expect("test host thread panicked")
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // The namespace's end of the pair goes with the namespace, and the host's with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let ifname = format!("tpeer-{}", &self.name["warden-test-".len()..]);
        let _ = Command::new("ip")
            .args(["link", "del", &ifname])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

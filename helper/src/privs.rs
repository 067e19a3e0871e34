//! Identity and privileges of a spawned process: groups, gid, uid and capability sets.
//!
//! - root (uid 0) keeps only [`ROOT_CAPS`], Docker's default set: it is the bounding,
//!   inheritable, permitted and effective set, ambient is empty. After exec the kernel
//!   gives root `inheritable | bounding` (capabilities(7), "Capabilities and execution of
//!   programs by root"), that is exactly [`ROOT_CAPS`].
//! - every other user gets no capability at all: all five sets are empty, and
//!   `no_new_privs` is set, so a set-user-ID binary in the container cannot make it root
//!   again.

use caps::{CapSet, Capability, CapsHashSet};
use nix::unistd::{Gid, Uid};

use crate::error::{io, Error, Result};
use crate::user::User;

/// The capabilities root keeps in a container: Docker's default set (moby
/// `oci/caps/defaults.go`, `DefaultCapabilities`), in the kernel's order:
///
/// | cap | lets root |
/// |---|---|
/// | CHOWN | change file owners |
/// | DAC_OVERRIDE | bypass file permission checks |
/// | FOWNER | act as the owner of any file (chmod, utime) |
/// | FSETID | keep set-user/group-ID bits on write |
/// | KILL | signal any process (of the container) |
/// | SETGID, SETUID | change its gid/uid (su, login) |
/// | SETPCAP | drop capabilities from the bounding set of its children |
/// | NET_BIND_SERVICE | bind ports below 1024 |
/// | NET_RAW | raw and packet sockets (ping) |
/// | SYS_CHROOT | chroot(2) |
/// | MKNOD | create device nodes (the cgroup device allow-list still decides use: v1 controller, v2 BPF filter) |
/// | AUDIT_WRITE | write to the kernel audit log (login programs) |
/// | SETFCAP | set file capabilities |
///
/// Everything else (SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_PTRACE, ...) is dropped.
pub const ROOT_CAPS: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_RAW,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_MKNOD,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_SETFCAP,
];

fn caps_err(op: &'static str) -> impl FnOnce(caps::errors::CapsError) -> Error {
    move |e| Error::Io {
        op: op.to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Turns the calling process (root with every capability) into `user` with `groups`.
pub fn become_user(user: &User, groups: &[u32]) -> Result<()> {
    let keep: CapsHashSet = if user.uid == 0 {
        ROOT_CAPS.into_iter().collect()
    } else {
        CapsHashSet::new()
    };
    // Bounding set first: dropping needs CAP_SETPCAP, which the later steps take away.
    for cap in caps::read(None, CapSet::Bounding).map_err(caps_err("read bounding set"))? {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("drop from bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient set"))?;
    caps::set(None, CapSet::Inheritable, &keep).map_err(caps_err("set inheritable set"))?;

    let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
    nix::unistd::setgroups(&gids).map_err(io("setgroups"))?;
    nix::unistd::setgid(Gid::from_raw(user.gid)).map_err(io(format!("setgid {}", user.gid)))?;
    // From uid 0 to another uid the kernel clears the permitted and effective sets
    // (capabilities(7), "Effect of user ID changes on capabilities"; no SECBIT_KEEP_CAPS).
    nix::unistd::setuid(Uid::from_raw(user.uid)).map_err(io(format!("setuid {}", user.uid)))?;

    // Effective before permitted: effective must stay a subset of permitted.
    caps::set(None, CapSet::Effective, &keep).map_err(caps_err("set effective set"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(caps_err("set permitted set"))?;
    if user.uid != 0 {
        nix::sys::prctl::set_no_new_privs().map_err(io("prctl(PR_SET_NO_NEW_PRIVS)"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_caps_are_dockers_default_mask() {
        // The value of CapEff/CapBnd that `docker run` shows for root.
        let mask: u64 = ROOT_CAPS.iter().map(|c| c.bitmask()).fold(0, |a, b| a | b);
        assert_eq!(mask, 0x0000_0000_a804_25fb);
    }
}

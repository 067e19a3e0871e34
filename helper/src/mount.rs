//! Mount namespace steps of the start sequence: the private namespace of the parent, the
//! pivot into the container's root, and the detach of the old root.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{io, Result};

/// Where the old root is put by pivot_root, relative to the new root.
pub const OLD_ROOT: &str = ".wshd-old-root";

const NONE: Option<&str> = None;

/// Gives wshd a mount namespace of its own whose mounts never show on the host.
pub fn private_namespace() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(io("unshare(CLONE_NEWNS)"))?;
    // Slave, not private: mounts from the host still reach us (a bind-mount source mounted
    // later), ours never reach the host (mount_namespaces(7), "MS_SLAVE").
    mount(NONE, "/", NONE, MsFlags::MS_REC | MsFlags::MS_SLAVE, NONE).map_err(io("make / rslave"))
}

/// Makes `root` a mount point of its own (bind on itself, with what is mounted below it):
/// pivot_root(2) requires "new_root must be a path to a mount point". runc does the same in
/// `prepareRoot`.
pub fn bind_onto_itself(root: &Path) -> Result<()> {
    mount(
        Some(root),
        root,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(io(format!("bind {} onto itself", root.display())))
}

/// pivot_root(2) into `root`, with the old root at `/.wshd-old-root`; the cwd becomes `/`.
pub fn pivot(root: &Path) -> Result<()> {
    let old = root.join(OLD_ROOT);
    match std::fs::create_dir(&old) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(io(format!("mkdir {}", old.display()))(e));
        }
        _ => {}
    }
    nix::unistd::chdir(root).map_err(io(format!("chdir {}", root.display())))?;
    nix::unistd::pivot_root(".", OLD_ROOT).map_err(io(format!(
        "pivot_root {} {}",
        root.display(),
        old.display()
    )))?;
    // The cwd is the new root already (it was `root`); make it `/` by name too.
    nix::unistd::chdir("/").map_err(io("chdir /"))
}

/// Detaches the old root (and everything mounted under it) and removes its mount point.
pub fn detach_old_root() -> Result<()> {
    let old = Path::new("/").join(OLD_ROOT);
    // Already slave of the host (see `private_namespace`); say it again so the umount can
    // never propagate, whatever the hooks did (runc's pivotRoot does the same).
    mount(NONE, &old, NONE, MsFlags::MS_REC | MsFlags::MS_SLAVE, NONE)
        .map_err(io(format!("make {} rslave", old.display())))?;
    umount2(&old, MntFlags::MNT_DETACH).map_err(io(format!("umount {}", old.display())))?;
    std::fs::remove_dir(&old).map_err(io(format!("rmdir {}", old.display())))
}

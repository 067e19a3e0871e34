//! Control groups of containers: one cgroup per container, with its memory limit, CPU share,
//! device allow-list, usage statistics and OOM notification.
//!
//! Owns: everything under `<cgroup root>/<parent>/` (v2) or `<cgroup root>/<controller>/<parent>/`
//! (v1), where parent is normally `warden`. A container's cgroup is `instance-<handle>` in
//! there, so an operator finds it with a glob. Both cgroup versions are supported and the
//! layout is detected ([`Layout::detect`]), never assumed: development machines are hybrid
//! (v1 controllers), most hosts in the field are v2 only.
//!
//! Must not: touch anything outside its parent directories (other programs own cgroups
//! beside ours; the one exception is enabling controllers in the v2 root's
//! `cgroup.subtree_control`), or move processes itself except through
//! [`ContainerCgroup::attach`]:
//! normally `wshd --cgroup DIR` joins each of [`ContainerCgroup::join_dirs`] before it
//! clones, so every process of the container starts inside. Killing the processes before
//! [`ContainerCgroup::remove`] is the caller's job.
//!
//! All paths come from the `Layout` root, so unit tests run against a temporary directory laid
//! out like cgroupfs. On a real cgroupfs the kernel creates the control files in a new
//! directory; in a temporary directory a write creates them, so the same code runs on both.
//! The one thing a temporary directory cannot take is v2's device filter, a BPF program the
//! kernel attaches only to a real cgroup: the root tests (`test/tests/cgroup*.rs`,
//! `test/tests/bpfdev.rs`) cover it.
//!
//! Devices: v1 writes [`DEVICES_ALLOW`] to the devices controller's `devices.allow`; v2 has
//! no devices controller, so the same list becomes a `BPF_PROG_TYPE_CGROUP_DEVICE` program
//! attached to the container's cgroup (`warden_helper::bpfdev`, raw bpf(2) with a small
//! instruction list as runc and crun do; it lives in the helper crate because bpf(2) needs
//! `unsafe`, which this crate denies). Either way the kernel refuses every other device at
//! open and mknod, to every process of the container, root included.
//!
//! v2 and the "no internal processes" rule: a cgroup (other than the root) can only enable
//! controllers for its children while no process sits in it. The parent (`<root>/warden`)
//! holds only container cgroups, never a process; the daemon itself stays wherever it was
//! started (on a systemd host, its service or session cgroup).
//!
//! Kernel documentation: cgroup v1 memory, devices and cpu controllers
//! (<https://docs.kernel.org/admin-guide/cgroup-v1/>), cgroup v2
//! (<https://docs.kernel.org/admin-guide/cgroup-v2.html>).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use warden_helper::bpfdev::DeviceRule;

/// Where cgroupfs is mounted on every Linux distribution.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers a container gets a directory in, when the host has them.
/// cpuset is left out: a new cpuset cgroup has no CPUs until cpuset.cpus/mems are copied in.
const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "devices", "pids", "freezer"];

/// The v2 controllers enabled for containers, when the host offers them. v2 has no devices
/// controller: device access is a BPF program attached to each container's cgroup.
const V2_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// The devices a container may use (make, read, write), in v1's `devices.allow` syntax: the
/// nodes its /dev holds. v1 writes each after `devices.deny a`; v2 compiles the list into
/// the BPF device filter. Nothing else, not even a node the container makes itself.
pub const DEVICES_ALLOW: [&str; 8] = [
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts/*
];

/// Equal share for every container: v1 `cpu.shares` and v2 `cpu.weight` defaults.
const V1_CPU_SHARES: &str = "1024";
const V2_CPU_WEIGHT: &str = "100";

/// v1 shows "no limit" as PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages).
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// A cgroup file operation that failed: `write /sys/fs/cgroup/.../memory.max: Invalid argument`.
#[derive(Debug)]
pub struct CgroupError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl CgroupError {
    fn new(op: &'static str, path: &Path, source: io::Error) -> CgroupError {
        CgroupError {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// An error with no errno behind it.
    fn other(op: &'static str, path: &Path, kind: io::ErrorKind, message: String) -> CgroupError {
        CgroupError::new(op, path, io::Error::new(kind, message))
    }
}

impl fmt::Display for CgroupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.op, self.path.display(), self.source)
    }
}

impl std::error::Error for CgroupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Which cgroup version the host gives us, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One hierarchy per controller: `<root>/memory`, `<root>/cpu`, ...
    V1 { root: PathBuf },
    /// The unified hierarchy mounted at `root`.
    V2 { root: PathBuf },
}

impl Layout {
    /// Looks at /sys/fs/cgroup: see [`Layout::detect_at`].
    pub fn detect() -> Result<Layout, CgroupError> {
        Layout::detect_at(Path::new(DEFAULT_ROOT))
    }

    /// v2 if `root` is a cgroup2 mount offering the memory controller; else v1 if
    /// `root/memory` exists; else v2 at `root/unified` if that is a cgroup2 mount offering
    /// memory (a hybrid host with memory moved to v2). We need the memory controller either
    /// way: it enforces the memory limit and reports OOMs.
    pub fn detect_at(root: &Path) -> Result<Layout, CgroupError> {
        const OP: &str = "find the cgroup memory controller under";
        if is_cgroup2(root) {
            let offered = read_set(&root.join("cgroup.controllers"))?;
            if offered.contains("memory") {
                return Ok(Layout::V2 {
                    root: root.to_owned(),
                });
            }
            return Err(CgroupError::other(
                OP,
                root,
                io::ErrorKind::NotFound,
                "cgroup v2 is mounted here but does not offer the memory controller \
                 (is it enabled in the kernel, or taken by a v1 hierarchy?)"
                    .into(),
            ));
        }
        if root.join("memory").is_dir() {
            return Ok(Layout::V1 {
                root: root.to_owned(),
            });
        }
        let unified = root.join("unified");
        if is_cgroup2(&unified) && read_set(&unified.join("cgroup.controllers"))?.contains("memory")
        {
            return Ok(Layout::V2 { root: unified });
        }
        Err(CgroupError::other(
            OP,
            root,
            io::ErrorKind::NotFound,
            "neither a cgroup v2 mount with the memory controller nor a v1 memory hierarchy".into(),
        ))
    }

    pub fn root(&self) -> &Path {
        match self {
            Layout::V1 { root } | Layout::V2 { root } => root,
        }
    }

    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }
}

/// statfs(2): is `path` the root of a cgroup2 filesystem?
fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The daemon's cgroups: a parent directory (per v1 controller, or one on v2) holding one
/// `instance-<handle>` cgroup per container.
#[derive(Debug, Clone)]
pub struct Cgroups {
    layout: Layout,
    parent: String,
}

impl Cgroups {
    /// `parent` is a relative path under each hierarchy, normally "warden".
    pub fn new(layout: Layout, parent: &str) -> Cgroups {
        Cgroups {
            layout,
            parent: parent.trim_matches('/').to_owned(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The v1 controllers this host has, each with its hierarchy's directory. Co-mounted
    /// controllers (`cpu` and `cpuacct` as symlinks to `cpu,cpuacct`) share one directory.
    fn v1_hierarchies(root: &Path) -> Vec<(&'static str, PathBuf)> {
        V1_CONTROLLERS
            .iter()
            .filter_map(|c| {
                let dir = root.join(c);
                dir.is_dir()
                    .then(|| (*c, fs::canonicalize(&dir).unwrap_or(dir)))
            })
            .collect()
    }

    /// The parent directories, one per distinct hierarchy.
    pub fn parent_dirs(&self) -> Vec<PathBuf> {
        match &self.layout {
            Layout::V1 { root } => distinct(
                Self::v1_hierarchies(root)
                    .into_iter()
                    .map(|(_, dir)| dir.join(&self.parent)),
            ),
            Layout::V2 { root } => vec![root.join(&self.parent)],
        }
    }

    /// Creates the parent directories. On v2 also enables the cpu, memory and pids
    /// controllers (those the host offers) for the children of the root, of each directory
    /// down to the parent, and of the parent itself. Run once at daemon start; repeating it
    /// is harmless.
    pub fn setup(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { root } => {
                for (controller, dir) in Self::v1_hierarchies(root) {
                    let parent = dir.join(&self.parent);
                    fs::create_dir_all(&parent)
                        .map_err(|e| CgroupError::new("mkdir", &parent, e))?;
                    if controller == "memory" {
                        // Charge children to the parent too. Always on since Linux 6.x (and
                        // then read-only), refused on old kernels once the parent has
                        // children: either way there is nothing to do about an error.
                        let _ = fs::write(parent.join("memory.use_hierarchy"), "1");
                    }
                }
                Ok(())
            }
            Layout::V2 { root } => {
                let offered = read_set(&root.join("cgroup.controllers"))?;
                if !offered.contains("memory") {
                    return Err(CgroupError::other(
                        "enable controllers in",
                        root,
                        io::ErrorKind::NotFound,
                        "the memory controller is not offered (cgroup.controllers)".into(),
                    ));
                }
                let wanted: Vec<&str> = V2_CONTROLLERS
                    .iter()
                    .copied()
                    .filter(|c| offered.contains(*c))
                    .collect();
                // A controller is usable in a cgroup only when enabled in the subtree_control
                // of every ancestor: the root, each level of `parent`, and the parent itself.
                let mut dir = root.clone();
                enable_v2(&dir, &wanted)?;
                for part in Path::new(&self.parent).components() {
                    dir.push(part);
                    match fs::create_dir(&dir) {
                        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                            return Err(CgroupError::new("mkdir", &dir, e));
                        }
                        _ => {}
                    }
                    enable_v2(&dir, &wanted)?;
                }
                Ok(())
            }
        }
    }

    /// Creates the container's cgroup (an existing one is reused) and sets it up: v1 devices
    /// whitelist, equal CPU share. No memory limit is set here. Needs [`Cgroups::setup`]
    /// first. On failure, whatever was created is removed again.
    pub fn create(&self, handle: &str) -> Result<ContainerCgroup, CgroupError> {
        if !valid_handle(handle) {
            return Err(CgroupError::other(
                "create cgroup for",
                Path::new(handle),
                io::ErrorKind::InvalidInput,
                "not a valid handle (letters, digits, - and _ only)".into(),
            ));
        }
        let cgroup = self.open(handle);
        for dir in cgroup.join_dirs() {
            match fs::create_dir(&dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    let _ = cgroup.remove();
                    return Err(CgroupError::new("mkdir", &dir, e));
                }
                _ => {}
            }
        }
        if let Err(e) = self.configure(&cgroup) {
            let _ = cgroup.remove();
            return Err(e);
        }
        Ok(cgroup)
    }

    fn configure(&self, cgroup: &ContainerCgroup) -> Result<(), CgroupError> {
        match &cgroup.dirs {
            Dirs::V1(_) => {
                if let Some(devices) = cgroup.dir("devices") {
                    // One rule per write: the kernel parses a single rule each time.
                    write(&devices.join("devices.deny"), "a")?;
                    for rule in DEVICES_ALLOW {
                        write(&devices.join("devices.allow"), rule)?;
                    }
                }
                if let Some(cpu) = cgroup.dir("cpu") {
                    write(&cpu.join("cpu.shares"), V1_CPU_SHARES)?;
                }
                Ok(())
            }
            Dirs::V2(dir) => {
                let parent = dir.parent().expect("an instance dir has a parent");
                let enabled = read_set(&parent.join("cgroup.subtree_control"))?;
                if enabled.contains("cpu") {
                    write(&dir.join("cpu.weight"), V2_CPU_WEIGHT)?;
                }
                // Attached before any process joins (wshd joins after this returns). The
                // program fd is dropped: the cgroup holds the program until it is removed.
                // A temporary directory standing in for cgroupfs has no kernel cgroup to
                // attach to (see the module docs).
                if is_cgroup2(dir) {
                    warden_helper::bpfdev::attach_device_filter(dir, &device_rules())
                        .map_err(|e| device_filter_error(dir, e))?;
                }
                Ok(())
            }
        }
    }

    /// The container's cgroup, without creating or checking anything: for a container found
    /// again after a restart, or the leftovers of one. An invalid handle gives a cgroup with
    /// no directories, on which `remove` does nothing.
    pub fn open(&self, handle: &str) -> ContainerCgroup {
        let name = format!("instance-{handle}");
        let valid = valid_handle(handle);
        let dirs = match &self.layout {
            Layout::V1 { root } => Dirs::V1(
                Self::v1_hierarchies(root)
                    .into_iter()
                    .filter(|_| valid)
                    .map(|(controller, dir)| (controller, dir.join(&self.parent).join(&name)))
                    .collect(),
            ),
            Layout::V2 { root } if valid => Dirs::V2(root.join(&self.parent).join(&name)),
            // No directories at all: every operation is a no-op or "not available".
            Layout::V2 { .. } => Dirs::V1(Vec::new()),
        };
        ContainerCgroup {
            handle: handle.to_owned(),
            dirs,
        }
    }

    /// Handles of every `instance-<handle>` cgroup under the parent (in any hierarchy),
    /// sorted: the leftovers to destroy when no container directory matches them.
    pub fn instances(&self) -> Result<Vec<String>, CgroupError> {
        let mut handles = BTreeSet::new();
        for parent in self.parent_dirs() {
            let entries = match fs::read_dir(&parent) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::new("list", &parent, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| CgroupError::new("list", &parent, e))?;
                let name = entry.file_name();
                let Some(handle) = name.to_str().and_then(|n| n.strip_prefix("instance-")) else {
                    continue;
                };
                if valid_handle(handle) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                    handles.insert(handle.to_owned());
                }
            }
        }
        Ok(handles.into_iter().collect())
    }

    /// Removes the parent directories (v2: only the last level of `parent`). Fails, naming
    /// the directory, while any container cgroup is left in one. For tests and uninstall.
    pub fn remove_parent(&self) -> Result<(), CgroupError> {
        rmdir_all(&self.parent_dirs())
    }
}

/// Writes `+a +b` to `dir/cgroup.subtree_control` unless all are enabled already.
fn enable_v2(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = match fs::read_to_string(&path) {
        Ok(text) => parse_set(&text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => return Err(CgroupError::new("read", &path, e)),
    };
    let missing: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.contains(**c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // The kernel takes the whole list in one write, and refuses it with EBUSY if `dir`
    // (not the root) holds processes itself: the "no internal processes" rule of cgroup v2.
    fs::write(&path, missing.join(" ")).map_err(|e| {
        if e.raw_os_error() == Some(libc::EBUSY) {
            CgroupError::other(
                "enable controllers in",
                &path,
                io::ErrorKind::ResourceBusy,
                format!(
                    "{e}: processes sit in {} itself, and cgroup v2 lets a cgroup with \
                     processes enable no controllers for its children (move them into a \
                     leaf cgroup, or start wardend in one)",
                    dir.display()
                ),
            )
        } else {
            CgroupError::new("write", &path, e)
        }
    })
}

/// [`DEVICES_ALLOW`] as the BPF filter's rules.
fn device_rules() -> Vec<DeviceRule> {
    DEVICES_ALLOW
        .iter()
        .map(|r| {
            r.parse()
                .expect("DEVICES_ALLOW is valid v1 syntax (unit-tested)")
        })
        .collect()
}

fn device_filter_error(dir: &Path, e: warden_helper::Error) -> CgroupError {
    let source = match e {
        warden_helper::Error::Io { op, source } => {
            io::Error::new(source.kind(), format!("{op}: {source}"))
        }
        other => io::Error::other(other.to_string()),
    };
    CgroupError::new("set the device filter of", dir, source)
}

fn valid_handle(handle: &str) -> bool {
    !handle.is_empty()
        && handle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn distinct(dirs: impl Iterator<Item = PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !out.contains(&dir) {
            out.push(dir);
        }
    }
    out
}

/// rmdir each directory; a missing one is fine. Tries them all, returns the first error.
fn rmdir_all(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let mut first = None;
    for dir in dirs {
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                // EBUSY on cgroupfs: processes (or child cgroups) are still in it.
                first.get_or_insert(CgroupError::new("rmdir", dir, e));
            }
        }
    }
    first.map_or(Ok(()), Err)
}

fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::new("read", path, e))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|e| CgroupError::new("write", path, e))
}

fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    text.trim().parse().map_err(|_| {
        CgroupError::other(
            "parse",
            path,
            io::ErrorKind::InvalidData,
            format!("not a number: {:?}", text.trim()),
        )
    })
}

/// A space-separated controller list (`cgroup.controllers`, `cgroup.subtree_control`);
/// a leading `+` is dropped, so what we wrote into a temporary directory reads back the same.
fn read_set(path: &Path) -> Result<BTreeSet<String>, CgroupError> {
    Ok(parse_set(&read(path)?))
}

fn parse_set(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .map(|c| c.trim_start_matches('+').to_owned())
        .collect()
}

/// `key value` lines (`memory.stat`, `memory.events`, `cpu.stat`); other lines are skipped.
fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(read(path)?
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect())
}

/// One container's cgroup.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    handle: String,
    dirs: Dirs,
}

#[derive(Debug, Clone)]
enum Dirs {
    /// Each controller with its directory; co-mounted controllers repeat a directory.
    V1(Vec<(&'static str, PathBuf)>),
    V2(PathBuf),
}

impl ContainerCgroup {
    pub fn handle(&self) -> &str {
        &self.handle
    }

    /// The directory holding `controller`'s files (on v2 the one directory).
    fn dir(&self, controller: &str) -> Option<&Path> {
        match &self.dirs {
            Dirs::V1(dirs) => dirs
                .iter()
                .find(|(c, _)| *c == controller)
                .map(|(_, d)| d.as_path()),
            Dirs::V2(dir) => Some(dir),
        }
    }

    fn require(&self, controller: &'static str) -> Result<&Path, CgroupError> {
        self.dir(controller).ok_or_else(|| {
            CgroupError::other(
                "find the cgroup of",
                Path::new(&self.handle),
                io::ErrorKind::NotFound,
                format!("the {controller} controller is not available"),
            )
        })
    }

    /// The directories whose `cgroup.procs` a process must be written to, to be in this
    /// container's cgroup: one per v1 hierarchy, one on v2. `wshd --cgroup DIR` takes each.
    pub fn join_dirs(&self) -> Vec<PathBuf> {
        match &self.dirs {
            Dirs::V1(dirs) => distinct(dirs.iter().map(|(_, d)| d.clone())),
            Dirs::V2(dir) => vec![dir.clone()],
        }
    }

    /// Moves process `pid` (with all its threads) into the cgroup by writing it to each join
    /// dir's `cgroup.procs`. Its children forked afterwards start inside.
    pub fn attach(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.join_dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Sets the memory limit; 0 removes it. Swap is not a way around it: v1 bounds
    /// memory+swap (`memory.memsw.limit_in_bytes`, when the kernel accounts swap) to the
    /// same value, and v2, whose swap limit is separate, gets `memory.swap.max` 0, which
    /// bounds memory+swap the same way. The kernel rounds down to whole pages.
    pub fn set_memory_limit(&self, bytes: u64) -> Result<(), CgroupError> {
        let dir = self.require("memory")?;
        match &self.dirs {
            Dirs::V1(_) => {
                let value = if bytes == 0 {
                    "-1".to_owned()
                } else {
                    bytes.to_string()
                };
                let mem = dir.join("memory.limit_in_bytes");
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if !memsw.exists() {
                    return write(&mem, &value);
                }
                // The kernel keeps memsw >= mem at every step (EINVAL otherwise): raise memsw
                // before mem, lower it after.
                let current_memsw = read_v1_limit(&memsw)?;
                let new = if bytes == 0 { u64::MAX } else { bytes };
                if new > current_memsw {
                    write(&memsw, &value)?;
                    write(&mem, &value)
                } else {
                    write(&mem, &value)?;
                    write(&memsw, &value)
                }
            }
            Dirs::V2(_) => {
                let (max, swap) = if bytes == 0 {
                    ("max".to_owned(), "max")
                } else {
                    (bytes.to_string(), "0")
                };
                write(&dir.join("memory.max"), &max)?;
                let swap_max = dir.join("memory.swap.max");
                if swap_max.exists() {
                    write(&swap_max, swap)?;
                }
                Ok(())
            }
        }
    }

    /// The memory limit in bytes; 0 when there is none.
    pub fn memory_limit(&self) -> Result<u64, CgroupError> {
        let dir = self.require("memory")?;
        match &self.dirs {
            Dirs::V1(_) => read_v1_limit(&dir.join("memory.limit_in_bytes")).map(|l| {
                if l >= V1_UNLIMITED_FROM {
                    0
                } else {
                    l
                }
            }),
            Dirs::V2(_) => {
                let path = dir.join("memory.max");
                if read(&path)?.trim() == "max" {
                    Ok(0)
                } else {
                    read_u64(&path)
                }
            }
        }
    }

    /// Memory in use now, in bytes (page cache included, as the limit counts it).
    pub fn memory_usage(&self) -> Result<u64, CgroupError> {
        let dir = self.require("memory")?;
        match &self.dirs {
            Dirs::V1(_) => read_u64(&dir.join("memory.usage_in_bytes")),
            Dirs::V2(_) => read_u64(&dir.join("memory.current")),
        }
    }

    /// The `memory.stat` counters (`cache`, `rss`, ... on v1; `anon`, `file`, ... on v2).
    pub fn memory_stat(&self) -> Result<BTreeMap<String, u64>, CgroupError> {
        read_keyed(&self.require("memory")?.join("memory.stat"))
    }

    /// CPU time used by every process that ever ran in the cgroup, in nanoseconds.
    pub fn cpu_usage_ns(&self) -> Result<u64, CgroupError> {
        match &self.dirs {
            Dirs::V1(_) => read_u64(&self.require("cpuacct")?.join("cpuacct.usage")),
            Dirs::V2(dir) => {
                // cpu.stat's usage_usec is there even without the cpu controller.
                let path = dir.join("cpu.stat");
                let usec = read_keyed(&path)?
                    .get("usage_usec")
                    .copied()
                    .ok_or_else(|| {
                        CgroupError::other(
                            "parse",
                            &path,
                            io::ErrorKind::InvalidData,
                            "no usage_usec line".into(),
                        )
                    })?;
                Ok(usec.saturating_mul(1000))
            }
        }
    }

    /// The processes in the cgroup (sorted, each once). A hierarchy whose directory is gone
    /// counts as empty.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in self.join_dirs() {
            let path = dir.join("cgroup.procs");
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CgroupError::new("read", &path, e)),
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let pid = line.trim().parse().map_err(|_| {
                    CgroupError::other(
                        "parse",
                        &path,
                        io::ErrorKind::InvalidData,
                        format!("not a pid: {line:?}"),
                    )
                })?;
                pids.insert(pid);
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// Starts watching for OOM kills in this cgroup; [`OomWatch::wait`] returns at the next.
    /// v1: an eventfd registered on `memory.oom_control` through `cgroup.event_control`.
    /// v2: inotify on `memory.events`, whose `oom` and `oom_kill` counters the kernel bumps
    /// (cgroupfs notifies a modification of the file at each change of a counter).
    /// Must be called inside a tokio runtime.
    pub fn oom_watch(&self) -> Result<OomWatch, CgroupError> {
        let dir = self.require("memory")?.to_owned();
        let watch = match &self.dirs {
            Dirs::V1(_) => {
                let control_path = dir.join("memory.oom_control");
                let control = fs::File::open(&control_path)
                    .map_err(|e| CgroupError::new("open", &control_path, e))?;
                let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| CgroupError::new("eventfd for", &dir, e.into()))?;
                // "<eventfd> <fd of memory.oom_control>": the kernel signals the eventfd at
                // each OOM in this cgroup, and once more when the cgroup is removed.
                write(
                    &dir.join("cgroup.event_control"),
                    &format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd()),
                )?;
                let eventfd =
                    register(eventfd).map_err(|e| CgroupError::new("poll", &control_path, e))?;
                Watch::V1 {
                    eventfd,
                    _control: control,
                    dir,
                }
            }
            Dirs::V2(_) => {
                let events = dir.join("memory.events");
                let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                    .map_err(|e| CgroupError::new("inotify for", &events, e.into()))?;
                // Watch first, then read: a change between the two still wakes `wait`.
                inotify
                    .add_watch(&events, AddWatchFlags::IN_MODIFY)
                    .map_err(|e| CgroupError::new("watch", &events, e.into()))?;
                let seen = OomCounts::read(&events)?;
                let inotify = register(InotifyFd(inotify))
                    .map_err(|e| CgroupError::new("poll", &events, e))?;
                Watch::V2 {
                    inotify,
                    events,
                    seen,
                }
            }
        };
        Ok(OomWatch { watch })
    }

    /// v2: the ids of the device filter programs attached to the cgroup (one after
    /// [`Cgroups::create`]). v1 has none: its devices controller filters.
    pub fn device_filters(&self) -> Result<Vec<u32>, CgroupError> {
        match &self.dirs {
            Dirs::V1(_) => Ok(Vec::new()),
            Dirs::V2(dir) => {
                warden_helper::bpfdev::device_filters(dir).map_err(|e| device_filter_error(dir, e))
            }
        }
    }

    /// Removes the cgroup: rmdir of each directory, a missing one being fine. Its processes
    /// must be gone first; while one is left, the error names the directory (EBUSY).
    pub fn remove(&self) -> Result<(), CgroupError> {
        rmdir_all(&self.join_dirs())
    }
}

/// v1 limits read back as a number; `-1` (what we write for "none", and what a temporary
/// directory then holds) means none.
fn read_v1_limit(path: &Path) -> Result<u64, CgroupError> {
    if read(path)?.trim() == "-1" {
        return Ok(u64::MAX);
    }
    read_u64(path)
}

/// Notification of OOM kills in one container cgroup, from [`ContainerCgroup::oom_watch`].
#[derive(Debug)]
pub struct OomWatch {
    watch: Watch,
}

#[derive(Debug)]
enum Watch {
    V1 {
        eventfd: AsyncFd<EventFd>,
        /// Kept open for the registration's lifetime (the kernel holds its own reference
        /// too; this makes the pairing explicit).
        _control: fs::File,
        dir: PathBuf,
    },
    V2 {
        inotify: AsyncFd<InotifyFd>,
        events: PathBuf,
        seen: OomCounts,
    },
}

/// Registers `fd` with tokio's reactor (must run inside a runtime).
///
/// tokio 1.54 deprecates the safe `AsyncFd::new` because it cannot know that `T` owns its fd
/// (tokio-rs/tokio#8587); the replacement `AsyncFd::register` is `unsafe`, which this crate
/// denies. The call is sound here: `T` is only ever `EventFd` or `InotifyFd`, each of which
/// owns its descriptor (an `OwnedFd` inside), and the `AsyncFd` owns `T`, so the descriptor
/// stays open until the `AsyncFd` has deregistered it on drop.
#[allow(deprecated)]
fn register<T: AsRawFd>(fd: T) -> io::Result<AsyncFd<T>> {
    AsyncFd::new(fd)
}

/// nix's Inotify has AsFd but not the AsRawFd tokio's AsyncFd wants.
#[derive(Debug)]
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The OOM counters of a v2 `memory.events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct OomCounts {
    oom: u64,
    oom_kill: u64,
}

impl OomCounts {
    fn read(path: &Path) -> Result<OomCounts, CgroupError> {
        let keyed = read_keyed(path)?;
        Ok(OomCounts {
            oom: keyed.get("oom").copied().unwrap_or(0),
            oom_kill: keyed.get("oom_kill").copied().unwrap_or(0),
        })
    }
}

impl OomWatch {
    /// Returns at the next OOM in the cgroup (each call waits for a new one). Fails with
    /// `NotFound` when the cgroup was removed before any OOM (v1: the eventfd fires at the
    /// removal; v2: inotify reports that `memory.events` went away). Cancel-safe: drop the
    /// future (or the task) to stop waiting.
    pub async fn wait(&mut self) -> Result<(), CgroupError> {
        match &mut self.watch {
            Watch::V1 { eventfd, dir, .. } => {
                loop {
                    let mut ready = eventfd
                        .readable()
                        .await
                        .map_err(|e| CgroupError::new("wait for OOM in", dir, e))?;
                    match ready.try_io(|fd| fd.get_ref().read().map_err(io::Error::from)) {
                        Ok(Ok(_count)) => break,
                        Ok(Err(e)) => return Err(CgroupError::new("read OOM eventfd of", dir, e)),
                        Err(_would_block) => continue,
                    }
                }
                // The same eventfd also fires when the cgroup is removed.
                if !dir.exists() {
                    return Err(CgroupError::other(
                        "wait for OOM in",
                        dir,
                        io::ErrorKind::NotFound,
                        "the cgroup was removed".into(),
                    ));
                }
                Ok(())
            }
            Watch::V2 {
                inotify,
                events,
                seen,
            } => loop {
                let now = match OomCounts::read(events) {
                    Err(e) if e.source.kind() == io::ErrorKind::NotFound => {
                        return Err(CgroupError::other(
                            "wait for OOM in",
                            events.parent().unwrap_or(events),
                            io::ErrorKind::NotFound,
                            "the cgroup was removed".into(),
                        ));
                    }
                    r => r?,
                };
                let oom = now.oom > seen.oom || now.oom_kill > seen.oom_kill;
                *seen = now;
                if oom {
                    return Ok(());
                }
                let mut ready = inotify
                    .readable()
                    .await
                    .map_err(|e| CgroupError::new("wait for OOM in", events, e))?;
                match ready.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(Ok(_events)) => {} // whatever changed, read the counters again
                    Ok(Err(e)) => {
                        return Err(CgroupError::new("read inotify events of", events, e))
                    }
                    Err(_would_block) => {}
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A temporary directory laid out like a v1 cgroupfs with cpu and cpuacct co-mounted.
    fn fake_v1() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in [
            "memory",
            "cpu,cpuacct",
            "devices",
            "pids",
            "freezer",
            "cpuset",
        ] {
            fs::create_dir(root.path().join(c)).unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", root.path().join("cpuacct")).unwrap();
        root
    }

    /// A temporary directory laid out like a v2 cgroupfs root.
    fn fake_v2() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
        root
    }

    fn real(root: &Path) -> PathBuf {
        fs::canonicalize(root).unwrap()
    }

    fn content(path: impl AsRef<Path>) -> String {
        fs::read_to_string(path.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
    }

    /// Empties the directories (cgroupfs files vanish with rmdir; a tempdir's do not).
    fn remove_files(dirs: &[PathBuf]) {
        for dir in dirs.iter().filter(|d| d.exists()) {
            for entry in fs::read_dir(dir).unwrap() {
                fs::remove_file(entry.unwrap().path()).unwrap();
            }
        }
    }

    #[test]
    fn one_device_list_for_both_versions() {
        let rules: Vec<String> = device_rules().iter().map(|r| r.to_string()).collect();
        assert_eq!(rules, DEVICES_ALLOW);
        // The BPF filter compiles: prologue, 8 rules, final deny.
        assert!(warden_helper::bpfdev::program(&device_rules()).len() > 6 + 8 * 2 + 2);
    }

    #[test]
    fn detect_v1_and_nothing() {
        let root = fake_v1();
        assert_eq!(
            Layout::detect_at(root.path()).unwrap(),
            Layout::V1 {
                root: root.path().to_owned()
            }
        );
        let empty = tempfile::tempdir().unwrap();
        let e = Layout::detect_at(empty.path()).unwrap_err().to_string();
        assert!(
            e.contains(&empty.path().display().to_string()) && e.contains("memory"),
            "{e}"
        );
    }

    #[test]
    fn v1_setup_create_configure() {
        let root = fake_v1();
        let r = real(root.path());
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        assert_eq!(
            cgroups.parent_dirs(),
            ["memory", "cpu,cpuacct", "devices", "pids", "freezer"]
                .map(|c| r.join(c).join("warden"))
        );
        assert!(!r.join("cpuset/warden").exists(), "cpuset is not used");
        assert_eq!(content(r.join("memory/warden/memory.use_hierarchy")), "1");

        let c = cgroups.create("0afe0004").unwrap();
        let dirs = c.join_dirs();
        assert_eq!(
            dirs,
            ["memory", "cpu,cpuacct", "devices", "pids", "freezer"]
                .map(|ctrl| r.join(ctrl).join("warden/instance-0afe0004"))
        );
        assert!(dirs.iter().all(|d| d.is_dir()));
        assert_eq!(
            content(r.join("devices/warden/instance-0afe0004/devices.deny")),
            "a"
        );
        // Each rule is its own write; the file keeps the last one.
        assert_eq!(
            content(r.join("devices/warden/instance-0afe0004/devices.allow")),
            "c 136:* rwm"
        );
        assert_eq!(
            content(r.join("cpu,cpuacct/warden/instance-0afe0004/cpu.shares")),
            "1024"
        );
        // Creating again reuses the directories.
        cgroups.create("0afe0004").unwrap();
        assert_eq!(cgroups.instances().unwrap(), vec!["0afe0004".to_owned()]);
    }

    #[test]
    fn v1_memory_limit_usage_procs() {
        let root = fake_v1();
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        let c = cgroups.create("h1").unwrap();
        let mem = real(root.path()).join("memory/warden/instance-h1");

        // Without swap accounting only memory.limit_in_bytes is written.
        c.set_memory_limit(64 << 20).unwrap();
        assert_eq!(content(mem.join("memory.limit_in_bytes")), "67108864");
        assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
        assert_eq!(c.memory_limit().unwrap(), 64 << 20);

        // With it, memsw follows.
        fs::write(
            mem.join("memory.memsw.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        c.set_memory_limit(32 << 20).unwrap();
        assert_eq!(content(mem.join("memory.memsw.limit_in_bytes")), "33554432");
        assert_eq!(content(mem.join("memory.limit_in_bytes")), "33554432");
        c.set_memory_limit(0).unwrap();
        assert_eq!(content(mem.join("memory.limit_in_bytes")), "-1");
        assert_eq!(content(mem.join("memory.memsw.limit_in_bytes")), "-1");
        assert_eq!(c.memory_limit().unwrap(), 0);
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        assert_eq!(c.memory_limit().unwrap(), 0, "the kernel's 'unlimited'");

        fs::write(mem.join("memory.usage_in_bytes"), "12345\n").unwrap();
        assert_eq!(c.memory_usage().unwrap(), 12345);
        fs::write(mem.join("memory.stat"), "cache 4096\nrss 8192\n").unwrap();
        assert_eq!(c.memory_stat().unwrap().get("rss"), Some(&8192));
        fs::write(
            real(root.path()).join("cpu,cpuacct/warden/instance-h1/cpuacct.usage"),
            "987654321\n",
        )
        .unwrap();
        assert_eq!(c.cpu_usage_ns().unwrap(), 987654321);

        // procs: the union over the hierarchies.
        fs::write(mem.join("cgroup.procs"), "12\n7\n").unwrap();
        fs::write(
            real(root.path()).join("pids/warden/instance-h1/cgroup.procs"),
            "7\n30\n",
        )
        .unwrap();
        assert_eq!(c.procs().unwrap(), vec![7, 12, 30]);
        c.attach(99).unwrap();
        for dir in c.join_dirs() {
            assert_eq!(content(dir.join("cgroup.procs")), "99");
        }

        fs::write(mem.join("memory.usage_in_bytes"), "lots\n").unwrap();
        let e = c.memory_usage().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "parse {}",
                mem.join("memory.usage_in_bytes").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn remove_names_the_busy_dir_and_tolerates_missing_ones() {
        let root = fake_v1();
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        let c = cgroups.create("h2").unwrap();
        let dirs = c.join_dirs();
        // A tempdir with files in it stands in for a busy cgroup: rmdir fails.
        let e = c.remove().unwrap_err();
        // The empty ones (pids, freezer) went: remove tries every directory.
        assert!(!dirs.last().unwrap().exists());
        assert_eq!(e.op, "rmdir");
        assert!(dirs.contains(&e.path), "{e}");
        assert!(
            e.to_string()
                .starts_with(&format!("rmdir {}: ", e.path.display())),
            "{e}"
        );
        remove_files(&dirs);
        c.remove().unwrap();
        assert!(dirs.iter().all(|d| !d.exists()));
        c.remove().unwrap();
        assert!(cgroups.instances().unwrap().is_empty());
        remove_files(&cgroups.parent_dirs());
        cgroups.remove_parent().unwrap();
        assert!(cgroups.parent_dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn handles_are_checked() {
        let root = fake_v1();
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        for bad in ["", "../x", "a/b", ".", "a b"] {
            assert!(cgroups.create(bad).is_err(), "{bad:?}");
            assert!(cgroups.open(bad).join_dirs().is_empty(), "{bad:?}");
        }
        let v2 = Cgroups::new(
            Layout::V2 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        assert!(v2.open("../x").join_dirs().is_empty());
    }

    #[test]
    fn v1_create_fails_cleanly_without_setup() {
        let root = fake_v1();
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        let e = cgroups.create("h3").unwrap_err();
        assert_eq!(e.op, "mkdir");
        assert_eq!(e.source.kind(), io::ErrorKind::NotFound);
        assert!(!real(root.path()).join("memory/warden").exists());
    }

    #[test]
    fn v2_setup_create_limits() {
        let root = fake_v2();
        let cgroups = Cgroups::new(
            Layout::V2 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        assert_eq!(
            content(root.path().join("cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        assert_eq!(
            content(root.path().join("warden/cgroup.subtree_control")),
            "+cpu +memory +pids"
        );
        // Already enabled: nothing is written again.
        fs::write(
            root.path().join("cgroup.subtree_control"),
            "cpu memory pids io",
        )
        .unwrap();
        cgroups.setup().unwrap();
        assert_eq!(
            content(root.path().join("cgroup.subtree_control")),
            "cpu memory pids io"
        );

        let c = cgroups.create("0afe0008").unwrap();
        let dir = root.path().join("warden/instance-0afe0008");
        assert_eq!(c.join_dirs(), vec![dir.clone()]);
        assert_eq!(content(dir.join("cpu.weight")), "100");
        assert!(!dir.join("devices.deny").exists());

        c.set_memory_limit(100 << 20).unwrap();
        assert_eq!(content(dir.join("memory.max")), "104857600");
        assert!(
            !dir.join("memory.swap.max").exists(),
            "no swap accounting: not written"
        );
        fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
        c.set_memory_limit(50 << 20).unwrap();
        assert_eq!(content(dir.join("memory.swap.max")), "0");
        assert_eq!(c.memory_limit().unwrap(), 50 << 20);
        c.set_memory_limit(0).unwrap();
        assert_eq!(content(dir.join("memory.max")), "max");
        assert_eq!(content(dir.join("memory.swap.max")), "max");
        assert_eq!(c.memory_limit().unwrap(), 0);

        fs::write(dir.join("memory.current"), "4096\n").unwrap();
        assert_eq!(c.memory_usage().unwrap(), 4096);
        fs::write(
            dir.join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        )
        .unwrap();
        assert_eq!(c.cpu_usage_ns().unwrap(), 1_500_000);
        fs::write(dir.join("cgroup.procs"), "5\n3\n").unwrap();
        assert_eq!(c.procs().unwrap(), vec![3, 5]);
        assert_eq!(cgroups.instances().unwrap(), vec!["0afe0008".to_owned()]);

        remove_files(&c.join_dirs());
        c.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn v2_without_cpu_and_nested_parent() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "memory io\n").unwrap();
        let cgroups = Cgroups::new(
            Layout::V2 {
                root: root.path().to_owned(),
            },
            "/test/warden/",
        );
        cgroups.setup().unwrap();
        for dir in ["", "test", "test/warden"] {
            assert_eq!(
                content(root.path().join(dir).join("cgroup.subtree_control")),
                "+memory",
                "{dir}"
            );
        }
        let c = cgroups.create("x").unwrap();
        assert_eq!(
            c.join_dirs(),
            vec![root.path().join("test/warden/instance-x")]
        );
        assert!(!root
            .path()
            .join("test/warden/instance-x/cpu.weight")
            .exists());

        let none = tempfile::tempdir().unwrap();
        fs::write(none.path().join("cgroup.controllers"), "cpu pids\n").unwrap();
        let e = Cgroups::new(
            Layout::V2 {
                root: none.path().to_owned(),
            },
            "warden",
        )
        .setup()
        .unwrap_err();
        assert!(e.to_string().contains("memory controller"), "{e}");
    }

    #[tokio::test]
    async fn v2_oom_watch_fires_on_a_new_oom_kill_only() {
        let root = fake_v2();
        let cgroups = Cgroups::new(
            Layout::V2 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        let c = cgroups.create("oom").unwrap();
        let events = root.path().join("warden/instance-oom/memory.events");
        fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        let mut watch = c.oom_watch().unwrap();

        // A change that is not an OOM (and the OOM from before the watch) does not count.
        fs::write(&events, "low 0\nhigh 0\nmax 9\noom 1\noom_kill 1\n").unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), watch.wait())
                .await
                .is_err()
        );

        let writer = tokio::spawn({
            let events = events.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                fs::write(&events, "low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n").unwrap();
            }
        });
        tokio::time::timeout(Duration::from_secs(5), watch.wait())
            .await
            .expect("no OOM notification within 5s")
            .unwrap();
        writer.await.unwrap();
        // Each wait is for a new OOM.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), watch.wait())
                .await
                .is_err()
        );
        fs::write(&events, "oom 2\noom_kill 3\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), watch.wait())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn v1_oom_watch_registers_an_eventfd() {
        let root = fake_v1();
        let cgroups = Cgroups::new(
            Layout::V1 {
                root: root.path().to_owned(),
            },
            "warden",
        );
        cgroups.setup().unwrap();
        let c = cgroups.create("oom").unwrap();
        let mem = real(root.path()).join("memory/warden/instance-oom");
        let e = c.oom_watch().unwrap_err();
        assert_eq!(
            (e.op, e.path.clone()),
            ("open", mem.join("memory.oom_control"))
        );
        fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
        )
        .unwrap();
        let _watch = c.oom_watch().unwrap();
        let registration = content(mem.join("cgroup.event_control"));
        let fds: Vec<i32> = registration
            .split(' ')
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(fds.len(), 2, "{registration}");
        assert!(fds.iter().all(|fd| *fd > 2));
    }
}

//! `warden_daemon::cgroup` against this machine's kernel (root only): detection, limits,
//! devices, membership, OOM notification and removal. Every cgroup lives under a parent
//! `warden-unit-<pid>` of its own; nothing outside it is touched, and it is removed even when
//! an assertion fails.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_daemon::cgroup::{Cgroups, ContainerCgroup, Layout};

const MIB: u64 = 1 << 20;

fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroup tests need root (real cgroups are created); run them as root, as CI does"
    );
}

/// Removes what a test created, also when it panics: kills the processes it started (by
/// pid), then removes its cgroups and the parent.
struct Scratch {
    cgroups: Cgroups,
    handles: Vec<String>,
    children: Vec<Child>,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        assert_root();
        let layout = Layout::detect().expect("detect the cgroup layout");
        let parent = format!("warden-unit-{}-{tag}", std::process::id());
        let cgroups = Cgroups::new(layout, &parent);
        cgroups.setup().expect("set up the parent cgroup");
        Scratch {
            cgroups,
            handles: Vec::new(),
            children: Vec::new(),
        }
    }

    fn create(&mut self, handle: &str) -> ContainerCgroup {
        self.handles.push(handle.to_owned());
        self.cgroups
            .create(handle)
            .unwrap_or_else(|e| panic!("create {handle}: {e}"))
    }

    fn spawn(&mut self, command: &mut Command) -> u32 {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    fn wait(&mut self, pid: u32) -> std::process::ExitStatus {
        let at = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a child of this test");
        let mut child = self.children.remove(at);
        child.wait().expect("wait")
    }

    fn kill(&mut self, pid: u32) -> std::process::ExitStatus {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id() == pid)
            .expect("a child of this test");
        child.kill().expect("kill");
        self.wait(pid)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for handle in &self.handles {
            let cgroup = self.cgroups.open(handle);
            // A killed process leaves its cgroup a moment after wait() returns.
            retry(|| cgroup.remove().map_err(|e| e.to_string()));
        }
        retry(|| self.cgroups.remove_parent().map_err(|e| e.to_string()));
    }
}

fn retry(mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                eprintln!("cleanup failed: {e}");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The directory of `controller`'s files among the join dirs (v2: the only one).
fn dir_of(layout: &Layout, c: &ContainerCgroup, controller: &str) -> PathBuf {
    let dirs = c.join_dirs();
    match layout {
        Layout::V2 { .. } => dirs[0].clone(),
        Layout::V1 { root } => {
            let mount = std::fs::canonicalize(root.join(controller)).unwrap();
            dirs.into_iter().find(|d| d.starts_with(&mount)).unwrap()
        }
    }
}

#[test]
fn detects_the_hosts_layout() {
    assert_root();
    let layout = Layout::detect().unwrap();
    // Check against the mount table: a cgroup2 mount at /sys/fs/cgroup means v2.
    let mountinfo = read("/proc/self/mountinfo");
    let fstype_at = |point: &str| {
        mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (left.split(' ').nth(4)? == point).then(|| right.split(' ').next().unwrap().to_owned())
        })
    };
    match fstype_at("/sys/fs/cgroup").as_deref() {
        Some("cgroup2") => assert_eq!(
            layout,
            Layout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        ),
        _ if fstype_at("/sys/fs/cgroup/memory").as_deref() == Some("cgroup") => {
            assert_eq!(
                layout,
                Layout::V1 {
                    root: "/sys/fs/cgroup".into()
                }
            )
        }
        _ => assert_eq!(
            layout,
            Layout::V2 {
                root: "/sys/fs/cgroup/unified".into()
            }
        ),
    }
}

#[test]
fn limits_devices_membership_and_removal() {
    let mut s = Scratch::new("basic");
    let layout = s.cgroups.layout().clone();
    let c = s.create("t1");

    // Real cgroup directories: the kernel made their control files.
    for dir in c.join_dirs() {
        assert!(
            dir.join("cgroup.procs").is_file(),
            "{} is not a cgroup",
            dir.display()
        );
        assert!(dir.file_name().unwrap().to_str().unwrap() == "instance-t1");
    }
    assert_eq!(s.cgroups.instances().unwrap(), vec!["t1".to_owned()]);

    match &layout {
        Layout::V1 { .. } => {
            let list = read(dir_of(&layout, &c, "devices").join("devices.list"));
            for rule in [
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:2 rwm",
                "c 136:* rwm",
            ] {
                assert!(
                    list.lines().any(|l| l == rule),
                    "{rule} missing from devices.list:\n{list}"
                );
            }
            assert!(
                !list.contains("a *:* rwm"),
                "devices not restricted:\n{list}"
            );
            assert_eq!(list.lines().count(), 8, "{list}");
            assert_eq!(
                read(dir_of(&layout, &c, "cpu").join("cpu.shares")).trim(),
                "1024"
            );
        }
        Layout::V2 { .. } => {
            let dir = &c.join_dirs()[0];
            if dir.join("cpu.weight").exists() {
                assert_eq!(read(dir.join("cpu.weight")).trim(), "100");
            }
        }
    }

    // Limits: lower, raise (v1 must order memsw and mem), lower, none.
    let mem = dir_of(&layout, &c, "memory");
    for limit in [64 * MIB, 128 * MIB, 32 * MIB, 0, 48 * MIB] {
        c.set_memory_limit(limit)
            .unwrap_or_else(|e| panic!("limit {limit}: {e}"));
        assert_eq!(c.memory_limit().unwrap(), limit);
        let memsw = mem.join("memory.memsw.limit_in_bytes");
        if limit != 0 && memsw.exists() {
            assert_eq!(read(&memsw).trim(), limit.to_string());
        }
    }

    // Membership: a process attached shows in procs() and in its own /proc/PID/cgroup.
    let rt = runtime();
    let mut watch = rt.block_on(async { c.oom_watch() }).unwrap();
    let pid = s.spawn(Command::new("sleep").arg("1000"));
    c.attach(pid as i32).unwrap();
    assert_eq!(c.procs().unwrap(), vec![pid as i32]);
    let own = read(format!("/proc/{pid}/cgroup"));
    let parent = format!("warden-unit-{}-basic/instance-t1", std::process::id());
    assert!(own.lines().any(|l| l.ends_with(&parent)), "{own}");
    c.memory_usage().unwrap();
    c.memory_stat().unwrap();
    // No OOM, no notification.
    let waited =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), watch.wait()).await });
    assert!(waited.is_err(), "OOM reported without an OOM: {waited:?}");
    drop(watch);

    // Busy: rmdir fails and the error names the directory.
    let e = c.remove().unwrap_err();
    assert_eq!(e.op, "rmdir");
    assert!(c.join_dirs().contains(&e.path), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("rmdir {}: ", e.path.display())),
        "{e}"
    );

    let status = s.kill(pid);
    assert_eq!(status.signal(), Some(9));
    retry_until(
        || c.procs().unwrap().is_empty(),
        "the killed sleep to leave the cgroup",
    );
    c.remove().unwrap();
    for dir in c.join_dirs() {
        assert!(!dir.exists(), "{} still there", dir.display());
    }
    c.remove().unwrap();
    assert!(s.cgroups.instances().unwrap().is_empty());
}

#[test]
fn oom_is_reported() {
    let mut s = Scratch::new("oom");
    let layout = s.cgroups.layout().clone();
    let c = s.create("oom");
    c.set_memory_limit(32 * MIB).unwrap();
    let rt = runtime();
    let mut watch = rt.block_on(async { c.oom_watch() }).unwrap();

    // The shell joins the cgroup itself, then becomes tail, which buffers /dev/zero (it
    // never sees a newline) until the OOM killer stops it.
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"for d in "$@"; do echo $$ > "$d/cgroup.procs" || exit 99; done; exec tail /dev/zero"#)
        .arg("sh")
        .args(c.join_dirs());
    let pid = s.spawn(&mut sh);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), watch.wait()).await })
        .expect("no OOM notification within 60s")
        .expect("OOM watch failed");
    let status = s.wait(pid);
    assert_eq!(
        status.signal(),
        Some(9),
        "tail should have been OOM-killed: {status:?}"
    );

    // The kernel's own count agrees.
    let mem = dir_of(&layout, &c, "memory");
    let counters = match layout {
        Layout::V1 { .. } => read(mem.join("memory.oom_control")),
        Layout::V2 { .. } => read(mem.join("memory.events")),
    };
    let oom_kills: u64 = counters
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .unwrap_or_else(|| panic!("no oom_kill in {counters}"))
        .parse()
        .unwrap();
    assert!(oom_kills >= 1, "{counters}");
    assert!(c.cpu_usage_ns().unwrap() > 0, "tail used no CPU?");

    retry_until(
        || c.procs().unwrap().is_empty(),
        "the killed tail to leave the cgroup",
    );
    drop(watch);
    c.remove().unwrap();
}

#[test]
fn oom_watch_after_the_cgroup_is_removed() {
    let mut s = Scratch::new("gone");
    let c = s.create("gone");
    let rt = runtime();
    let mut watch = rt.block_on(async { c.oom_watch() }).unwrap();
    c.remove().unwrap();
    let waited =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(3), watch.wait()).await });
    // v1 signals the eventfd once more at removal, v2's inotify reports that memory.events
    // went away: either way wait ends with NotFound.
    let e = waited
        .expect("the watch did not end within 3s of the removal")
        .unwrap_err();
    assert_eq!(e.source.kind(), std::io::ErrorKind::NotFound, "{e}");
}

fn retry_until(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "waited 5s for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

//! `warden_helper::bpfdev` against this machine's kernel (root only): the cgroup v2 device
//! filter is loaded through the verifier, attached to a real cgroup2 directory, enforced on
//! open and mknod, inherited by child cgroups, and replaced (not stacked) when attached again.
//!
//! It runs on both kinds of host: a BPF device program works on any cgroup2 directory, also
//! on the unified hierarchy of a hybrid host (`/sys/fs/cgroup/unified`), where the kernel
//! asks it in addition to the v1 devices controller. Each test makes its own cgroup
//! `warden-bpfdev-<pid>-<tag>` at the top of the cgroup2 mount and removes it, also when an
//! assertion fails.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use warden_helper::bpfdev::{attach_device_filter, device_filters, DeviceRule};

/// The cgroup2 mount: /sys/fs/cgroup on a v2 host, /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for candidate in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let is_cgroup2 = mountinfo.lines().any(|l| {
            let Some((left, right)) = l.split_once(" - ") else {
                return false;
            };
            left.split(' ').nth(4) == Some(candidate) && right.starts_with("cgroup2 ")
        });
        if is_cgroup2 {
            return candidate.into();
        }
    }
    panic!("no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified:\n{mountinfo}");
}

/// A cgroup2 directory of the test's own, and a scratch directory for device nodes.
struct Scratch {
    cgroup: PathBuf,
    nodes: tempfile::TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the bpfdev tests load BPF programs and make cgroups: run them as root, as CI does"
        );
        let cgroup = cgroup2_root().join(format!("warden-bpfdev-{}-{tag}", std::process::id()));
        std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("mkdir {}: {e}", cgroup.display()));
        // Device nodes in $TMPDIR or /tmp (a tmpfs in `make test-v2`'s guest, where the
        // project directory is a 9p share that takes no mknod). Opening them needs a mount
        // without nodev: the first probe below says so if it is not.
        let nodes = tempfile::Builder::new()
            .prefix("warden-bpfdev-")
            .tempdir()
            .unwrap();
        Scratch { cgroup, nodes }
    }

    fn node(&self, name: &str, kind: &str, major: u32, minor: u32) -> PathBuf {
        let path = self.nodes.path().join(name);
        let st = Command::new("mknod")
            .arg(&path)
            .arg(kind)
            .arg(major.to_string())
            .arg(minor.to_string())
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mknod {} {kind} {major} {minor}",
            path.display()
        );
        path
    }

    /// Runs `script` under `sh` inside the cgroup (the shell joins it first); its stdout.
    fn run_inside(&self, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs || exit 99\n{script}",
                self.cgroup.display()
            ))
            .current_dir(self.nodes.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {:?} {}",
            out.status.code().or(out.status.signal()),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // The shells have exited; the kernel moves a dead process out a moment later.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = std::fs::remove_dir(&self.cgroup) {
            if Instant::now() > deadline {
                eprintln!("rmdir {}: {e}", self.cgroup.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn rules(list: &[&str]) -> Vec<DeviceRule> {
    list.iter().map(|r| r.parse().unwrap()).collect()
}

/// Shell functions that print `NAME ok` or `NAME denied`: open a node for reading (`rd`) or
/// writing (`wr`), or make one (`mk`).
const PROBES: &str = r#"rd() { if (exec 3<"$2") 2>/dev/null; then echo "$1 ok"; else echo "$1 denied"; fi; }
wr() { if (exec 3>"$2") 2>/dev/null; then echo "$1 ok"; else echo "$1 denied"; fi; }
mk() { if mknod "$2" "$3" "$4" "$5" 2>/dev/null; then echo "$1 ok"; rm -f "$2"; else echo "$1 denied"; fi; }
"#;

#[test]
fn the_filter_allows_the_listed_devices_only() {
    let s = Scratch::new("allow");
    let null = s.node("null", "c", 1, 3);
    let zero = s.node("zero", "c", 1, 5);
    let full = s.node("full", "c", 1, 7);
    let blk = s.node("loop0", "b", 7, 0);
    let probes = format!(
        "{PROBES}rd null-r {n}; wr null-w {n}; rd zero-r {z}; wr zero-w {z}; rd full-r {f}; \
         rd blk-r {b}; mk mk-null null2 c 1 3; mk mk-blk blk2 b 7 0",
        n = null.display(),
        z = zero.display(),
        f = full.display(),
        b = blk.display(),
    );

    // Before any filter: everything opens (b 7:0 may have no loop device behind it, so
    // only the filter's verdict on it is checked below).
    let before = s.run_inside(&probes);
    assert!(
        before.starts_with("null-r ok"),
        "{} is on a nodev mount (set TMPDIR to another directory):\n{before}",
        s.nodes.path().display()
    );
    for p in [
        "null-r ok",
        "null-w ok",
        "zero-r ok",
        "zero-w ok",
        "full-r ok",
        "mk-null ok",
    ] {
        assert!(
            before.lines().any(|l| l == p),
            "{p} before the filter:\n{before}"
        );
    }

    let prog = attach_device_filter(&s.cgroup, &rules(&["c 1:3 rw", "c 1:5 r"])).unwrap();
    drop(prog); // the cgroup keeps the program attached
    let ids = device_filters(&s.cgroup).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let after = s.run_inside(&probes);
    assert_eq!(
        after,
        "null-r ok\nnull-w ok\nzero-r ok\nzero-w denied\nfull-r denied\nblk-r denied\n\
         mk-null denied\nmk-blk denied\n",
        "with c 1:3 rw, c 1:5 r"
    );

    // Attaching again replaces the filter: one program, the new rules.
    attach_device_filter(&s.cgroup, &rules(&["c 1:3 rwm", "c 1:7 rw", "b 7:* r"])).unwrap();
    let again = device_filters(&s.cgroup).unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(again, ids, "the old program is still attached");
    let replaced = s.run_inside(&probes);
    for p in [
        "null-w ok",
        "zero-r denied",
        "full-r ok",
        "mk-null ok",
        "mk-blk denied",
    ] {
        assert!(
            replaced.lines().any(|l| l == p),
            "{p} after replacing:\n{replaced}"
        );
    }
    // b 7:0 passes the filter now: open may still fail (ENXIO without a loop device
    // behind it), but not with the filter's EPERM.
    let blk_open = s.run_inside(&format!("cat {} 2>&1 >/dev/null || true", blk.display()));
    assert!(!blk_open.contains("not permitted"), "{blk_open}");
}

#[test]
fn the_filter_applies_to_child_cgroups_and_needs_a_cgroup() {
    let s = Scratch::new("nested");
    let zero = s.node("zero", "c", 1, 5);
    attach_device_filter(&s.cgroup, &rules(&["c 1:3 rwm"])).unwrap();
    let child = s.cgroup.join("leaf");
    std::fs::create_dir(&child).unwrap();
    // A process in a child cgroup is under the parent's filter too.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs || exit 99\n{PROBES}rd zero-r {}",
            child.display(),
            zero.display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "zero-r denied\n");
    assert!(
        device_filters(&child).unwrap().is_empty(),
        "inherited, not attached"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::remove_dir(&child).is_err() {
        assert!(Instant::now() < deadline, "rmdir {}", child.display());
        std::thread::sleep(Duration::from_millis(20));
    }

    // A verifier-checked load needs no cgroup; attaching to a directory that is not a
    // cgroup fails and says where.
    let e = attach_device_filter(s.nodes.path(), &rules(&["c 1:3 rwm"]))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&*s.nodes.path().to_string_lossy()), "{e}");
}

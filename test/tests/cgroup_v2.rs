//! cgroup v2 end to end: a real `wardend` on a host whose kernel has no cgroup v1 at all
//! (`cgroup_no_v1=all`), driven through its socket. Each test checks one promise of the
//! daemon on such a host against the kernel's own files: the memory limit is `memory.max`,
//! an allocation past it ends in `stopped` with `"oom"`, devices are filtered by a BPF
//! program even for the container's root, every process of the container is in its cgroup,
//! and nothing is left under the parent after destroy.
//!
//! This suite only makes sense on a v2-only host, so it is not part of `cargo test`
//! (`test = false` in Cargo.toml): `make test-v2` builds it on the host and runs it inside
//! the guest of `test/v2/test-v2.sh`. Started anywhere else it fails at once (it never
//! skips). It has its own `main` (harness = false): one daemon for the suite, tests one
//! after the other, and a final check that the daemon's parent cgroup is empty.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use warden_daemon::cgroup::{Cgroups, Layout};
use warden_test::daemon_env::{bin_dir, init_pid, leftovers, suite, Client, Daemon};

const PARENT: &str = "/sys/fs/cgroup/warden";

struct Env {
    daemon: Daemon,
}

impl Env {
    fn client(&self) -> Client {
        self.daemon.client()
    }

    fn destroy_clean(&self, c: &mut Client, handle: &str) {
        self.daemon.destroy_clean(c, handle);
        assert!(
            !cgroup(handle).exists(),
            "{} is left",
            cgroup(handle).display()
        );
    }

    /// Runs `script` under `sh` in the container as its root, through wsh; (status, output).
    fn as_root(&self, handle: &str, script: &str) -> (i32, String) {
        let out = Command::new(bin_dir().join("wsh"))
            .arg("--socket")
            .arg(self.daemon.depot.join(handle).join("run/wshd.sock"))
            .args(["--user", "root", "--", "/bin/sh", "-c", script])
            .output()
            .expect("run wsh");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

fn cgroup(handle: &str) -> PathBuf {
    Path::new(PARENT).join(format!("instance-{handle}"))
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

/// `key value` lines of a cgroup file (memory.events, cpu.stat).
fn keyed(path: impl AsRef<Path>, key: &str) -> u64 {
    let text = read(path.as_ref());
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {}:\n{text}", path.as_ref().display()))
}

fn procs(handle: &str) -> BTreeSet<i32> {
    read(cgroup(handle).join("cgroup.procs"))
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Every process in the PID namespace of `init` (the container's PID 1), from /proc.
fn pid_namespace_members(init: i32) -> BTreeSet<i32> {
    let ns = std::fs::read_link(format!("/proc/{init}/ns/pid")).expect("container's pid ns");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
        })
        .collect()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------

fn the_host_is_v2_only_and_the_parent_is_set_up(_env: &Env) {
    assert_eq!(
        Layout::detect().unwrap(),
        Layout::V2 {
            root: "/sys/fs/cgroup".into()
        }
    );
    let own = read("/proc/self/cgroup");
    assert_eq!(own.lines().count(), 1, "v1 hierarchies present: {own}");
    assert!(own.starts_with("0::/"), "{own}");
    let mounts = read("/proc/self/mounts");
    assert!(
        !mounts
            .lines()
            .any(|l| l.split(' ').nth(2) == Some("cgroup")),
        "a cgroup v1 hierarchy is mounted:\n{mounts}"
    );
    // The daemon enabled its controllers for the containers, and keeps no process there.
    let enabled = read(Path::new(PARENT).join("cgroup.subtree_control"));
    for c in ["cpu", "memory", "pids"] {
        assert!(enabled.split_whitespace().any(|e| e == c), "{c}: {enabled}");
    }
    assert_eq!(read(Path::new(PARENT).join("cgroup.procs")), "");
}

fn create_makes_the_cgroup_with_weight_and_device_filter(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let dir = cgroup(&h);
    assert_eq!(read(dir.join("cpu.weight")).trim(), "100");
    assert_eq!(read(dir.join("memory.max")).trim(), "max");
    assert!(
        dir.join("pids.current").exists(),
        "pids controller not enabled"
    );
    let filters = warden_helper::bpfdev::device_filters(&dir).unwrap();
    assert_eq!(
        filters.len(),
        1,
        "device programs on {}: {filters:?}",
        dir.display()
    );
    // Usage from memory.current and cpu.stat, after some work.
    c.sh(&h, "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done");
    let info = c.ok(json!(["info", h]));
    assert!(info["stats"]["mem_usage_B"].as_u64().unwrap() > 0, "{info}");
    assert!(
        info["stats"]["cpu_usage_ns"].as_u64().unwrap() > 0,
        "{info}"
    );
    assert!(keyed(dir.join("cpu.stat"), "usage_usec") > 0);
    env.destroy_clean(&mut c, &h);
}

fn every_process_of_the_container_is_in_its_cgroup(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let init = init_pid(&env.daemon.depot, &h);
    c.ok(json!(["spawn", h, "sleep 1000"]));
    c.ok(json!(["spawn", h, "sleep 1000 & sleep 1000 & wait"]));
    let (status, out) = env.as_root(
        &h,
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo started",
    );
    assert_eq!((status, out.trim()), (0, "started"));
    // init, 1 + (sh + 2) + 1 sleeps at least; the kernel's list and /proc's must agree.
    wait_for("the container's processes", Duration::from_secs(20), || {
        let members = pid_namespace_members(init);
        members.len() >= 6 && members == procs(&h)
    });
    let members = pid_namespace_members(init);
    assert!(members.contains(&init));
    assert_eq!(members, procs(&h));
    // The pids controller counts the same tasks (all single-threaded).
    let tasks: usize = read(cgroup(&h).join("pids.current"))
        .trim()
        .parse()
        .unwrap();
    assert!(tasks >= members.len(), "pids.current {tasks} < {members:?}");
    env.destroy_clean(&mut c, &h);
}

fn memory_limit_is_memory_max_and_an_oom_stops_the_container(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let dir = cgroup(&h);
    let limit = 48u64 << 20;
    assert_eq!(c.ok(json!(["limit", h, "mem", limit])), json!("ok"));
    assert_eq!(read(dir.join("memory.max")).trim(), limit.to_string());
    if dir.join("memory.swap.max").exists() {
        assert_eq!(
            read(dir.join("memory.swap.max")).trim(),
            "0",
            "swap is a way around"
        );
    }
    assert_eq!(c.ok(json!(["limit", h, "mem"])), json!(limit));
    assert_eq!(keyed(dir.join("memory.events"), "oom_kill"), 0);
    // dd's 200 MB buffer is touched by its read of /dev/zero: past the limit.
    let r = c.ok(json!([
        "run",
        h,
        "dd if=/dev/zero of=/dev/null bs=200M count=1"
    ]));
    assert_ne!(r[0], json!(0), "allocation past the limit succeeded: {r}");
    wait_for(
        "state stopped after the OOM",
        Duration::from_secs(30),
        || c.ok(json!(["info", h]))["state"] == json!("stopped"),
    );
    let info = c.ok(json!(["info", h]));
    assert!(
        info["events"].as_array().unwrap().contains(&json!("oom")),
        "{info}"
    );
    assert!(keyed(dir.join("memory.events"), "oom_kill") >= 1);
    let e = c.err(json!(["run", h, "true"]));
    assert!(e.contains("state"), "{e}");
    env.destroy_clean(&mut c, &h);
}

/// Prints `NAME ok` or `NAME denied: <error>` for reading a node.
const PROBE: &str = r#"rd() { if err=$( (exec 3<"$2") 2>&1); then echo "$1 ok"; else echo "$1 denied: $err"; fi; }
"#;

fn devices_are_filtered_even_for_the_containers_root(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let init = init_pid(&env.daemon.depot, &h);

    // The container's root has CAP_MKNOD: an allowed device can be made and used ...
    let (status, out) = env.as_root(
        &h,
        "mknod /tmp/null2 c 1 3 && echo hi > /tmp/null2 && head -c 3 /dev/zero | wc -c",
    );
    assert_eq!((status, out.trim()), (0, "3"), "{out}");
    // ... but not a disk: the filter refuses the mknod of a block device (EPERM) ...
    let (status, out) = env.as_root(&h, "mknod /dev/loop0 b 7 0");
    assert_ne!(status, 0, "mknod of b 7:0 succeeded: {out}");
    assert!(out.contains("not permitted"), "{out}");

    // ... and one made from outside the cgroup (here through the container's root from the
    // host, on its /dev tmpfs, which is not nodev) cannot be opened, while the host can.
    let dev = PathBuf::from(format!("/proc/{init}/root/dev"));
    for (name, kind, major, minor) in [("blk", "b", 7, 0), ("null3", "c", 1, 3), ("mem", "c", 1, 1)]
    {
        let st = Command::new("mknod")
            .arg(dev.join(name))
            .args([kind, &major.to_string(), &minor.to_string()])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mknod {name} in the container's /dev from the host"
        );
    }
    let host = Command::new("sh")
        .arg("-c")
        .arg(format!("{PROBE}rd blk {}", dev.join("blk").display()))
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&host.stdout);
    assert!(
        !host.contains("not permitted"),
        "the host itself is filtered: {host}"
    );
    let (status, out) = env.as_root(
        &h,
        &format!("{PROBE}rd blk /dev/blk; rd null3 /dev/null3; rd mem /dev/mem; rd zero /dev/zero"),
    );
    assert_eq!(status, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("blk denied") && lines[0].contains("not permitted"),
        "{out}"
    );
    assert_eq!(lines[1], "null3 ok", "{out}");
    assert!(
        lines[2].starts_with("mem denied") && lines[2].contains("not permitted"),
        "{out}"
    );
    assert_eq!(lines[3], "zero ok", "{out}");
    // The unprivileged user, through the daemon, likewise.
    let r = c.ok(json!([
        "run",
        h,
        format!("{PROBE}rd blk /dev/blk; rd null /dev/null")
    ]));
    let out = r[1].as_str().unwrap();
    assert!(
        out.starts_with("blk denied") && out.contains("not permitted"),
        "{r}"
    );
    env.destroy_clean(&mut c, &h);
}

fn nothing_is_left_under_the_parent_after_destroy(env: &Env) {
    let mut c = env.client();
    let handles: Vec<String> = (0..3).map(|_| c.create(json!({}))).collect();
    for h in &handles {
        c.ok(json!(["spawn", h, "sleep 1000"]));
        assert!(cgroup(h).is_dir());
    }
    for h in &handles {
        env.destroy_clean(&mut c, h);
    }
    let left: Vec<_> = std::fs::read_dir(PARENT)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left under {PARENT}: {left:?}");
}

/// cgroup v2's "no internal processes" rule: a parent cgroup that holds a process cannot
/// enable controllers for its children. The daemon's setup says so, naming the cgroup.
fn a_parent_cgroup_with_processes_in_it_is_refused_with_the_reason(_env: &Env) {
    let outer = PathBuf::from(format!("/sys/fs/cgroup/warden-busy-{}", std::process::id()));
    std::fs::create_dir(&outer).unwrap();
    let mut sleeper = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = sleeper.id();
    let result = std::panic::catch_unwind(|| {
        std::fs::write(outer.join("cgroup.procs"), pid.to_string()).unwrap();
        let cgroups = Cgroups::new(
            Layout::V2 {
                root: "/sys/fs/cgroup".into(),
            },
            &format!("{}/warden", outer.file_name().unwrap().to_str().unwrap()),
        );
        let e = cgroups.setup().unwrap_err().to_string();
        assert!(
            e.contains(&*outer.to_string_lossy()) && e.contains("leaf cgroup"),
            "{e}"
        );
        assert!(
            !outer.join("warden").exists(),
            "setup went on past the busy parent"
        );
    });
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    wait_for(
        "the killed sleep to leave its cgroup",
        Duration::from_secs(5),
        || read(outer.join("cgroup.procs")).is_empty(),
    );
    std::fs::remove_dir(&outer).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

type Test = suite::Test<Env>;

fn main() {
    warden_test::daemon_env::assert_root();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    assert!(
        own.lines().count() == 1 && own.starts_with("0::"),
        "cgroup_v2 needs a host with cgroup v2 only (this one has v1 hierarchies:\n{own}); \
         run it with `make test-v2`, which boots such a kernel in a VM"
    );
    let tests: Vec<Test> = vec![
        (
            "the_host_is_v2_only_and_the_parent_is_set_up",
            the_host_is_v2_only_and_the_parent_is_set_up,
        ),
        (
            "create_makes_the_cgroup_with_weight_and_device_filter",
            create_makes_the_cgroup_with_weight_and_device_filter,
        ),
        (
            "every_process_of_the_container_is_in_its_cgroup",
            every_process_of_the_container_is_in_its_cgroup,
        ),
        (
            "memory_limit_is_memory_max_and_an_oom_stops_the_container",
            memory_limit_is_memory_max_and_an_oom_stops_the_container,
        ),
        (
            "devices_are_filtered_even_for_the_containers_root",
            devices_are_filtered_even_for_the_containers_root,
        ),
        (
            "nothing_is_left_under_the_parent_after_destroy",
            nothing_is_left_under_the_parent_after_destroy,
        ),
        (
            "a_parent_cgroup_with_processes_in_it_is_refused_with_the_reason",
            a_parent_cgroup_with_processes_in_it_is_refused_with_the_reason,
        ),
    ];
    let tests = suite::selected(tests);
    let mut env = Env {
        daemon: Daemon::start(
            "  container_disk_size_mb: 64\n  container_stop_grace_time: 1\n  container_grace_time: null\n",
            "  pool_start_address: 10.254.192.0\n  pool_size: 16",
        ),
    };
    let results = suite::run(&env, tests, 1);
    let code = suite::finish("cgroup_v2", &mut env.daemon, results, || {
        let left: Vec<_> = std::fs::read_dir(PARENT)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        match left.is_empty() {
            true => vec![],
            false => vec![format!(
                "cgroups left under {PARENT} after shutdown: {left:?}"
            )],
        }
    });
    drop(env);
    std::process::exit(code);
}

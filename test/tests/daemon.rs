//! The daemon end to end: a real `wardend` (as root) with real containers, driven through
//! its socket. One daemon serves the whole suite (the host-wide firewall chains are one per
//! host); tests run on a few threads at once, each with its own containers, and each checks
//! that its destroyed containers left nothing behind.
//!
//! This file has its own `main` (harness = false) so that the daemon is started once and
//! stopped, with a final leak check, after the last test.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_test::daemon_env::{init_pid, leftovers, suite, Client, Daemon};
use warden_test::netns::TestHost;

struct Env {
    daemon: Daemon,
    /// A test host whose network is in deny_networks.
    denied: TestHost,
    /// A test host whose network is in allow_networks (and in deny_networks).
    allowed: TestHost,
}

impl Env {
    fn client(&self) -> Client {
        self.daemon.client()
    }

    /// Destroys `handle` and asserts that nothing of it is left on the host.
    fn destroy_clean(&self, c: &mut Client, handle: &str) {
        self.daemon.destroy_clean(c, handle);
    }
}

fn info(c: &mut Client, h: &str) -> Value {
    c.ok(json!(["info", h]))
}

// ---------------------------------------------------------------------------------------
// Protocol

fn protocol_errors_keep_the_connection(env: &Env) {
    let mut c = env.client();
    assert_eq!(c.ok(json!(["ping"])), json!("pong"));
    for (line, phrase) in [
        ("this is not json\n", "invalid request"),
        ("{\"a\":1}\n", "invalid request"),
        ("[]\n", "invalid request"),
        ("[\"frobnicate\"]\n", "unknown command"),
        ("[\"ping\", 1]\n", "invalid number of arguments"),
        ("[\"destroy\"]\n", "invalid number of arguments"),
        ("[\"info\", \"00000000\"]\n", "unknown handle"),
        ("[\"spawn\", 12, \"x\"]\n", "invalid request"),
        ("[\"limit\", \"00000000\", \"cpu\", 1]\n", "unknown limit"),
        (
            "[\"limit\", \"00000000\", \"mem\", \"lots\"]\n",
            "Invalid limit",
        ),
        ("[\"link\", \"00000000\", \"seven\"]\n", "to be an integer"),
        (
            "[\"create\", {\"disk_size_mb\": \"big\"}]\n",
            "to be an integer",
        ),
        (
            "[\"create\", {\"bind_mounts\": [[\"/tmp\", \"/mnt/x\", {\"mode\": \"rx\"}]]}]\n",
            "Invalid mode",
        ),
        ("[\"create\", {\"frob\": 1}]\n", "invalid request"),
    ] {
        c.send_raw(line.as_bytes());
        let e = c.read_reply().expect_err(line);
        assert!(
            e.contains(phrase),
            "{line:?} gave {e:?}, expected {phrase:?}"
        );
    }
    // A line longer than the limit is refused, the connection goes on.
    let mut long = vec![b'x'; (1 << 20) + 10];
    long.push(b'\n');
    c.send_raw(&long);
    assert!(c.read_reply().unwrap_err().contains("longer than"));
    assert_eq!(c.ok(json!(["ping"])), json!("pong"));
}

fn pipelined_requests_answer_in_order(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    // Several requests written before any reply is read: the slow one first.
    c.send_raw(
        format!(
            "[\"run\",\"{h}\",\"sleep 0.3; echo slow\"]\n[\"ping\"]\n[\"run\",\"{h}\",\"echo fast\"]\n[\"nope\"]\n[\"list\"]\n"
        )
        .as_bytes(),
    );
    assert_eq!(c.read_reply().unwrap()[1], json!("slow\n"));
    assert_eq!(c.read_reply().unwrap(), json!("pong"));
    assert_eq!(c.read_reply().unwrap()[1], json!("fast\n"));
    assert!(c.read_reply().unwrap_err().contains("unknown command"));
    assert!(c
        .read_reply()
        .unwrap()
        .as_array()
        .unwrap()
        .contains(&json!(h)));
    env.destroy_clean(&mut c, &h);
}

fn slow_request_does_not_block_others(env: &Env) {
    let mut a = env.client();
    let h = a.create(json!({}));
    let job = a.ok(json!(["spawn", h, "sleep 2; echo done"]));
    let started = Instant::now();
    let waiter = {
        let mut b = env.client();
        let h = h.clone();
        let job = job.clone();
        std::thread::spawn(move || b.ok(json!(["link", h, job])))
    };
    // While another connection waits on link, this one is served at once.
    let mut c = env.client();
    assert_eq!(c.ok(json!(["ping"])), json!("pong"));
    assert_eq!(c.sh(&h, "echo quick"), "quick\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ping waited for another connection's link"
    );
    let r = waiter.join().unwrap();
    assert_eq!(r, json!([0, "done\n", ""]));
    env.destroy_clean(&mut a, &h);
}

// ---------------------------------------------------------------------------------------
// Create, jobs, info

fn create_run_info_destroy(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    assert_eq!(h.len(), 8);
    assert!(
        h.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{h}"
    );
    let i = info(&mut c, &h);
    assert_eq!(i["state"], json!("active"));
    assert_eq!(i["events"], json!([]));
    let net = u32::from_str_radix(&h, 16).unwrap();
    assert_eq!(i["host_ip"], json!(Ipv4Addr::from(net + 1).to_string()));
    assert_eq!(
        i["container_ip"],
        json!(Ipv4Addr::from(net + 2).to_string())
    );
    assert_eq!(
        i["container_path"],
        json!(env.daemon.depot.join(&h).to_string_lossy())
    );
    assert!(i["stats"]["mem_usage_B"].as_u64().unwrap() > 0, "{i}");
    assert!(i["stats"].get("cpu_usage_ns").is_some() && i["stats"].get("disk_usage_B").is_some());
    assert!(c
        .ok(json!(["list"]))
        .as_array()
        .unwrap()
        .contains(&json!(h)));

    // The job runs as the unprivileged user, in its home, in the container's namespaces.
    let out = c.sh(
        &h,
        "id -un; pwd; hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo",
    );
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines[0], "vcap");
    assert_eq!(lines[1], "/home/vcap");
    assert_eq!(lines[2], h);
    assert!(lines[3].contains("wshd"), "PID 1 is {:?}", lines[3]);
    let r = c.ok(json!(["run", h, "echo out; echo err >&2; exit 3"]));
    assert_eq!(r, json!([3, "out\n", "err\n"]));
    // Namespaces differ from the host's.
    let pid = init_pid(&env.daemon.depot, &h);
    for ns in ["pid", "net", "mnt", "uts", "ipc"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let cont = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        assert_ne!(host, cont, "{ns} namespace shared with the host");
    }
    // Every process of the container is in its cgroups: PID 1 and what jobs start.
    // (`run` returns when sh exits; the background sleep stays.)
    c.sh(&h, "sleep 30 >/dev/null 2>&1 &");
    let container_pidns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    for controller in ["memory", "cpu", "pids", "devices"] {
        let f = cgroup_file(&h, controller, "cgroup.procs");
        let procs: Vec<i32> = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert!(
            procs.contains(&pid),
            "{} lacks PID 1 ({pid}): {procs:?}",
            f.display()
        );
        assert!(
            procs.len() >= 2,
            "{} lacks the job's process: {procs:?}",
            f.display()
        );
        for p in procs.iter().filter(|&&p| p != pid) {
            let ns = std::fs::read_link(format!("/proc/{p}/ns/pid")).unwrap();
            assert_eq!(
                ns,
                container_pidns,
                "process {p} in {} is not the container's",
                f.display()
            );
        }
    }
    let i = info(&mut c, &h);
    assert_eq!(i["job_ids"], json!([1, 2, 3]));
    env.destroy_clean(&mut c, &h);
    assert!(c.err(json!(["destroy", h])).contains("unknown handle"));
    assert!(c.err(json!(["info", h])).contains("unknown handle"));
    assert!(!c
        .ok(json!(["list"]))
        .as_array()
        .unwrap()
        .contains(&json!(h)));
}

fn link_from_many_connections_and_after_reconnect(env: &Env) {
    let mut a = env.client();
    let h = a.create(json!({"grace_time": 30}));
    let job = a.ok(json!(["spawn", h, "read x; echo got; exit 5"]));
    let job_id = job.as_u64().expect("job id is an integer");
    // The spawning connection goes away before the job ends.
    drop(a);
    let linkers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = env.client();
            let h = h.clone();
            std::thread::spawn(move || c.ok(json!(["link", h, job_id])))
        })
        .collect();
    let results: Vec<_> = linkers.into_iter().map(|t| t.join().unwrap()).collect();
    // stdin was the script itself, so `read x` read its first line... and the script went on.
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0][0], json!(5));
    assert_eq!(results[0][1], json!("got\n"));
    // And once more, after the end.
    let mut c = env.client();
    assert_eq!(c.ok(json!(["link", h, job_id])), results[0]);
    assert!(c.err(json!(["link", h, 999])).contains("no such job"));
    env.destroy_clean(&mut c, &h);
}

fn destroy_returns_a_run_in_progress(env: &Env) {
    let mut a = env.client();
    let h = a.create(json!({}));
    let runner = {
        let mut b = env.client();
        let h = h.clone();
        std::thread::spawn(move || {
            let r = b.ok(json!(["run", h, "sleep 100"]));
            (r, Instant::now())
        })
    };
    // Wait until the job runs (bounded): its id shows in info.
    let deadline = Instant::now() + Duration::from_secs(10);
    while info(&mut a, &h)["job_ids"] == json!([]) {
        assert!(Instant::now() < deadline, "the job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    env.destroy_clean(&mut a, &h);
    let destroyed = Instant::now();
    let (r, returned) = runner.join().unwrap();
    assert!(r[0].is_null() || r[0] != json!(0), "{r}");
    assert!(
        returned.saturating_duration_since(destroyed) < Duration::from_secs(5),
        "run hung after destroy"
    );
}

fn output_is_cut_at_the_limit(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    // job_output_limit is 4096 in this suite's config.
    let r = c.ok(json!([
        "run",
        h,
        "i=0; while [ $i -lt 2000 ]; do echo 0123456789; i=$((i+1)); done; echo end"
    ]));
    assert_eq!(r[0], json!(0));
    assert_eq!(r[1].as_str().unwrap().len(), 4096);
    env.destroy_clean(&mut c, &h);
}

fn concurrent_creates_are_distinct(env: &Env) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = env.client();
            std::thread::spawn(move || {
                let h = c.create(json!({}));
                let ip = c.ok(json!(["info", h]))["container_ip"].clone();
                (c, h, ip)
            })
        })
        .collect();
    let done: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let handles: HashSet<_> = done.iter().map(|(_, h, _)| h.clone()).collect();
    let ips: HashSet<_> = done.iter().map(|(_, _, ip)| ip.to_string()).collect();
    assert_eq!(handles.len(), 4);
    assert_eq!(ips.len(), 4);
    for (mut c, h, _) in done {
        env.destroy_clean(&mut c, &h);
    }
}

// ---------------------------------------------------------------------------------------
// Stop, limits, OOM

fn stop_ends_jobs_and_refuses_new_ones(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let job = c.ok(json!(["spawn", h, "sleep 100"]));
    // A process that ignores TERM is killed after the grace time.
    let stubborn = c.ok(json!(["spawn", h, "trap '' TERM; sleep 100"]));
    assert_eq!(c.ok(json!(["stop", h])), json!("ok"));
    let r = c.ok(json!(["link", h, job]));
    assert!(r[0].is_null() || r[0].as_i64().unwrap() != 0, "{r}");
    let r = c.ok(json!(["link", h, stubborn]));
    assert!(r[0].is_null() || r[0].as_i64().unwrap() != 0, "{r}");
    assert_eq!(info(&mut c, &h)["state"], json!("stopped"));
    let e = c.err(json!(["run", h, "true"]));
    assert!(e.contains("state"), "{e}");
    // Only PID 1 is left in the container's cgroup.
    let procs = std::fs::read_to_string(cgroup_file(&h, "memory", "cgroup.procs")).unwrap();
    assert_eq!(
        procs.lines().count(),
        1,
        "processes left after stop: {procs}"
    );
    env.destroy_clean(&mut c, &h);
}

/// A file of the container's cgroup (v1 here: /sys/fs/cgroup/<controller>/warden/instance-H).
fn cgroup_file(h: &str, controller: &str, file: &str) -> std::path::PathBuf {
    let v1 = Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(format!("warden/instance-{h}"));
    if v1.exists() {
        return v1.join(file);
    }
    Path::new("/sys/fs/cgroup")
        .join(format!("warden/instance-{h}"))
        .join(file)
}

fn memory_limit_and_oom(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    assert_eq!(c.ok(json!(["limit", h, "mem"])), json!(0));
    let limit = 64u64 << 20;
    assert_eq!(c.ok(json!(["limit", h, "mem", limit])), json!("ok"));
    assert_eq!(c.ok(json!(["limit", h, "mem"])), json!(limit));
    let file = if cgroup_file(&h, "memory", "memory.limit_in_bytes").exists() {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    };
    let in_kernel: u64 = std::fs::read_to_string(cgroup_file(&h, "memory", file))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(in_kernel, limit);
    assert_eq!(info(&mut c, &h)["limits"]["mem"], json!(limit));
    // Allocate past the limit: dd's 200 MB buffer is written by its read of /dev/zero.
    let r = c.ok(json!([
        "run",
        h,
        "dd if=/dev/zero of=/dev/null bs=200M count=1"
    ]));
    assert_ne!(r[0], json!(0), "allocation past the limit succeeded: {r}");
    // The daemon hears of the OOM from the kernel and stops the container; that happens
    // beside the job's own end, so wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let i = info(&mut c, &h);
        if i["state"] == json!("stopped") && i["events"].as_array().unwrap().contains(&json!("oom"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no oom event and stop after 10 s: {i}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    env.destroy_clean(&mut c, &h);
}

// ---------------------------------------------------------------------------------------
// Disk and bind mounts

fn disk_size_and_bind_mounts(env: &Env) {
    let host = tempfile::tempdir().unwrap();
    let ro = host.path().join("ro");
    let rw = host.path().join("rw");
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    std::fs::write(ro.join("hello"), "from the host\n").unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = env.client();
    let h = c.create(json!({
        "disk_size_mb": 32,
        "bind_mounts": [
            [ro.to_str().unwrap(), "/mnt/ro", {"mode": "ro"}],
            [rw.to_str().unwrap(), "/mnt/rw", {"mode": "rw"}],
        ],
    }));
    assert_eq!(c.sh(&h, "cat /mnt/ro/hello"), "from the host\n");
    let r = c.ok(json!(["run", h, "echo x > /mnt/ro/new"]));
    assert_ne!(r[0], json!(0));
    assert!(r[2].as_str().unwrap().contains("Read-only"), "{r}");
    c.sh(&h, "echo written > /mnt/rw/new");
    assert_eq!(
        std::fs::read_to_string(rw.join("new")).unwrap(),
        "written\n"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains("/mnt/ro")
            && !mounts.contains(&*env.daemon.depot.join(&h).to_string_lossy())
    );
    // The scratch disk is 32 MB: writing 40 MB fails.
    let r = c.ok(json!([
        "run",
        h,
        "dd if=/dev/zero of=/home/vcap/big bs=1M count=40"
    ]));
    assert_ne!(r[0], json!(0));
    assert!(
        r[2].as_str().unwrap().contains("No space left on device"),
        "{r}"
    );
    env.destroy_clean(&mut c, &h);
    assert!(c
        .err(json!(["create", {"bind_mounts": [["/nonexistent-warden", "/x"]]}]))
        .contains("does not exist"));
}

// ---------------------------------------------------------------------------------------
// Copy

fn copy_in_and_out(env: &Env) {
    let src = tempfile::tempdir().unwrap();
    let app = src.path().join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::write(app.join("run.sh"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(app.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(app.join("data"), "data\n").unwrap();
    std::fs::set_permissions(app.join("data"), std::fs::Permissions::from_mode(0o604)).unwrap();
    std::os::unix::fs::symlink("data", app.join("link")).unwrap();
    std::fs::hard_link(app.join("data"), app.join("hard")).unwrap();

    let mut c = env.client();
    let h = c.create(json!({}));
    // Without a trailing slash: the directory itself.
    assert_eq!(
        c.ok(json!([
            "copy",
            h,
            "in",
            app.to_str().unwrap(),
            "/home/vcap/dst"
        ])),
        json!("ok")
    );
    let out = c.sh(&h, "cd /home/vcap/dst/app && stat -c '%n %a %U %h' run.sh data hard && readlink link && ./run.sh");
    assert_eq!(
        out,
        "run.sh 750 vcap 1\ndata 604 vcap 1\nhard 604 vcap 1\ndata\nran\n"
    );
    // With a trailing slash: the contents.
    c.ok(json!([
        "copy",
        h,
        "in",
        format!("{}/", app.display()),
        "/home/vcap/flat"
    ]));
    assert_eq!(
        c.sh(&h, "ls /home/vcap/flat | sort | tr '\\n' ' '"),
        "data hard link run.sh "
    );
    // A single file to a new name.
    c.ok(json!([
        "copy",
        h,
        "in",
        app.join("data").to_str().unwrap(),
        "/home/vcap/renamed"
    ]));
    assert_eq!(c.sh(&h, "cat /home/vcap/renamed"), "data\n");

    // Out again, to root by default and to an owner when asked.
    c.sh(&h, "mkdir -p /home/vcap/res/sub && echo r > /home/vcap/res/sub/f && chmod 640 /home/vcap/res/sub/f && ln -s f /home/vcap/res/sub/l && ln /home/vcap/res/sub/f /home/vcap/res/sub/h");
    let dst = tempfile::tempdir().unwrap();
    c.ok(json!([
        "copy",
        h,
        "out",
        "/home/vcap/res",
        dst.path().to_str().unwrap()
    ]));
    let f = dst.path().join("res/sub/f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "r\n");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o640, 0, 0));
    assert_eq!(
        std::fs::read_link(dst.path().join("res/sub/l")).unwrap(),
        Path::new("f")
    );
    // A directory to a new destination without a trailing slash lands inside it.
    c.ok(json!([
        "copy",
        h,
        "out",
        "/home/vcap/res",
        format!("{}/new", dst.path().display())
    ]));
    assert_eq!(
        std::fs::read_to_string(dst.path().join("new/res/sub/f")).unwrap(),
        "r\n"
    );
    let hm = std::fs::metadata(dst.path().join("res/sub/h")).unwrap();
    assert_ne!(hm.ino(), m.ino(), "hard link was not materialised");
    c.ok(json!([
        "copy",
        h,
        "out",
        "/home/vcap/res/",
        format!("{}/owned", dst.path().display()),
        "nobody:nogroup"
    ]));
    let m = std::fs::metadata(dst.path().join("owned/sub/f")).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(m.uid(), nobody.uid.as_raw());

    // A symlink in the container pointing at a host path must not make the copy touch the host.
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("secret"), "host secret\n").unwrap();
    c.sh(
        &h,
        &format!("ln -s {} /home/vcap/escape", secret.path().display()),
    );
    let out_dir = tempfile::tempdir().unwrap();
    let r = c.call(json!([
        "copy",
        h,
        "out",
        "/home/vcap/escape/",
        out_dir.path().to_str().unwrap()
    ]));
    assert!(
        r.is_err(),
        "copy out through a symlink to a host path succeeded: {r:?}"
    );
    assert!(!out_dir.path().join("secret").exists());
    // Copy in to a path that is a symlink to a host directory writes inside the container only.
    c.sh(
        &h,
        &format!("ln -s {} /home/vcap/evil", secret.path().display()),
    );
    let _ = c.call(json!([
        "copy",
        h,
        "in",
        app.join("data").to_str().unwrap(),
        "/home/vcap/evil/"
    ]));
    assert!(
        !secret.path().join("data").exists(),
        "copy in wrote to the host through a symlink"
    );
    assert!(c
        .err(json!(["copy", h, "in", "/nonexistent-warden", "/x"]))
        .contains("copy in"));
    assert!(c
        .err(json!(["copy", h, "sideways", "/a", "/b"]))
        .contains("invalid request"));
    env.destroy_clean(&mut c, &h);
}

// ---------------------------------------------------------------------------------------
// Network

/// Listens on `port` in a test host and returns what the first connection sends.
fn serve_once(host: &TestHost, port: u16) -> std::thread::JoinHandle<String> {
    let ip = host.ip;
    let listener = host.run(move || TcpListener::bind((ip, port)).expect("bind in test host"));
    std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        got
    })
}

fn net_out_and_deny_networks(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    // The allowed network is reachable.
    let srv = serve_once(&env.allowed, 7001);
    c.sh(&h, &format!("echo hello | nc -w 3 {} 7001", env.allowed.ip));
    assert_eq!(srv.join().unwrap(), "hello\n");
    // The denied one is not, until `net out` opens it for this port.
    let srv = serve_once(&env.denied, 7002);
    let r = c.ok(json!([
        "run",
        h,
        format!("echo no | nc -w 1 {} 7002", env.denied.ip)
    ]));
    assert_ne!(r[0], json!(0), "denied network reached: {r}");
    assert!(c
        .err(json!(["net", h, "out", "10.0.0.0/99"]))
        .contains("invalid request"));
    assert_eq!(
        c.ok(json!([
            "net",
            h,
            "out",
            format!("{}/32:7002", env.denied.ip)
        ])),
        json!("ok")
    );
    c.sh(&h, &format!("echo yes | nc -w 3 {} 7002", env.denied.ip));
    assert_eq!(srv.join().unwrap(), "yes\n");
    // Another port of the same host stays closed.
    let _srv = serve_once(&env.denied, 7003);
    let r = c.ok(json!([
        "run",
        h,
        format!("echo no | nc -w 1 {} 7003", env.denied.ip)
    ]));
    assert_ne!(r[0], json!(0), "port outside the rule reached: {r}");
    // The host IP answers ping from the unprivileged user.
    let i = info(&mut c, &h);
    c.sh(
        &h,
        &format!("ping -c 1 -W 2 {}", i["host_ip"].as_str().unwrap()),
    );
    env.destroy_clean(&mut c, &h);
    // Unblock the listener of port 7003 (never reached) so its thread ends.
    let ip = env.denied.ip;
    env.denied.run(move || drop(TcpStream::connect((ip, 7003))));
}

fn net_in_forwards_a_port(env: &Env) {
    let mut c = env.client();
    let h = c.create(json!({}));
    let port = c.ok(json!(["net", h, "in"])).as_u64().expect("port") as u16;
    assert!(port > 32768, "{port}");
    for (from, via) in [
        ("test host", env.allowed.host_ip),
        ("host", env.allowed.host_ip),
    ] {
        let job = c.ok(json!(["spawn", h, format!("nc -l -p {port}")]));
        let msg = format!("through {from}\n");
        let send = {
            let msg = msg.clone();
            move || -> std::io::Result<()> {
                // The listener may not be up yet: retry refused connections, bounded.
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match TcpStream::connect_timeout(&(via, port).into(), Duration::from_secs(2)) {
                        Ok(mut s) => return s.write_all(msg.as_bytes()),
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        if from == "host" {
            send().expect("connect from the host");
        } else {
            env.allowed.run(send).expect("connect from the test host");
        }
        let r = c.ok(json!(["link", h, job]));
        assert_eq!(r[1], json!(msg), "{r}");
    }
    let p2 = c.ok(json!(["net", h, "in"])).as_u64().unwrap();
    assert_ne!(p2, port as u64);
    env.destroy_clean(&mut c, &h);
}

// ---------------------------------------------------------------------------------------
// Grace time

fn grace_time_expiry_cancel_and_null(env: &Env) {
    let mut a = env.client();
    let expires = a.create(json!({"grace_time": 0.5}));
    let pid_expires = init_pid(&env.daemon.depot, &expires);
    let cancelled = a.create(json!({"grace_time": 1}));
    let never = a.create(json!({"grace_time": null}));
    drop(a);
    // A new reference within the grace time cancels the timer.
    let mut b = env.client();
    info(&mut b, &cancelled);
    std::thread::sleep(Duration::from_millis(1800));
    let list = b.ok(json!(["list"]));
    let list = list.as_array().unwrap();
    assert!(
        !list.contains(&json!(expires)),
        "grace time did not destroy {expires}"
    );
    // The handle leaves the list as the grace destroy starts; the rest goes while it runs
    // (seconds on a slow machine, such as make test-v2's emulated one).
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = loop {
        let left = leftovers(&expires, &env.daemon.depot, Some(pid_expires));
        if left.is_empty() || Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(left.is_empty(), "grace destroy left {left:#?}");
    assert!(list.contains(&json!(cancelled)));
    assert!(list.contains(&json!(never)));
    env.destroy_clean(&mut b, &cancelled);
    env.destroy_clean(&mut b, &never);
}

// ---------------------------------------------------------------------------------------
// Other daemons: configuration errors, leftovers of an earlier run

fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, key) in [
        ("server:\n  pool_sizee: 3\n", "pool_sizee"),
        ("network:\n  pool_size: many\n", "pool_size"),
        (
            "network:\n  deny_networks: [\"10.0.0.0/99\"]\n",
            "deny_networks",
        ),
    ] {
        let cfg = dir.path().join("bad.yml");
        std::fs::write(&cfg, yaml).unwrap();
        let out = std::process::Command::new(warden_test::daemon_env::bin_dir().join("wardend"))
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "error for {yaml:?} does not name {key}: {err}"
        );
    }
}

fn leftovers_of_an_earlier_run_are_destroyed(env: &Env) {
    // A second daemon on its own depot and pool, killed without a chance to clean up.
    let mut d = Daemon::start(
        "  container_disk_size_mb: 32\n",
        "  pool_start_address: 10.254.192.0\n  pool_size: 4\n  deny_networks: [10.253.0.0/16]\n  allow_networks: [10.253.201.0/30]",
    );
    let mut c = d.client();
    let h = c.create(json!({}));
    let pid = init_pid(&d.depot, &h);
    let mut child = d.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(d.depot.join(&h).exists());
    // A new daemon on the same depot removes it at start.
    let depot = d.depot.clone();
    let cfg = d.dir.path().join("config.yml");
    let mut again = std::process::Command::new(warden_test::daemon_env::bin_dir().join("wardend"))
        .arg("--config")
        .arg(&cfg)
        .arg("--hooks")
        .arg(warden_test::daemon_env::repo_root().join("hooks"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It logs "listening" once the leftovers are gone.
    let mut err = std::io::BufReader::new(again.stderr.take().unwrap());
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut err, &mut line).unwrap() > 0
        && !line.contains("listening")
    {
        line.clear();
    }
    assert!(line.contains("listening"), "second daemon did not start");
    // The killed daemon's container init was orphaned to this process (a subreaper, see
    // main); the new daemon must have killed it: reap it as a host's init would.
    if let Ok(p) = warden_helper::pidfd::PidFd::open(pid) {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            p.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(5000u16)).unwrap();
        assert_eq!(n, 1, "container init {pid} still alive after the restart");
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    }
    let left = leftovers(&h, &depot, Some(pid));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    again.wait().unwrap();
    assert!(
        left.is_empty(),
        "leftovers not destroyed at start: {left:#?}"
    );
    let _ = env;
}

// ---------------------------------------------------------------------------------------

type Test = suite::Test<Env>;

fn main() {
    warden_test::daemon_env::assert_root();
    // Orphans of a killed daemon (leftovers test) come to this process, not to the host's
    // init, so the test can reap them.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let tests: Vec<Test> = vec![
        (
            "protocol_errors_keep_the_connection",
            protocol_errors_keep_the_connection,
        ),
        (
            "pipelined_requests_answer_in_order",
            pipelined_requests_answer_in_order,
        ),
        (
            "slow_request_does_not_block_others",
            slow_request_does_not_block_others,
        ),
        ("create_run_info_destroy", create_run_info_destroy),
        (
            "link_from_many_connections_and_after_reconnect",
            link_from_many_connections_and_after_reconnect,
        ),
        ("output_is_cut_at_the_limit", output_is_cut_at_the_limit),
        (
            "destroy_returns_a_run_in_progress",
            destroy_returns_a_run_in_progress,
        ),
        (
            "concurrent_creates_are_distinct",
            concurrent_creates_are_distinct,
        ),
        (
            "stop_ends_jobs_and_refuses_new_ones",
            stop_ends_jobs_and_refuses_new_ones,
        ),
        ("memory_limit_and_oom", memory_limit_and_oom),
        ("disk_size_and_bind_mounts", disk_size_and_bind_mounts),
        ("copy_in_and_out", copy_in_and_out),
        ("net_out_and_deny_networks", net_out_and_deny_networks),
        ("net_in_forwards_a_port", net_in_forwards_a_port),
        (
            "grace_time_expiry_cancel_and_null",
            grace_time_expiry_cancel_and_null,
        ),
        ("bad_config_names_the_key", |_| bad_config_names_the_key()),
        (
            "leftovers_of_an_earlier_run_are_destroyed",
            leftovers_of_an_earlier_run_are_destroyed,
        ),
    ];
    let tests = suite::selected(tests);
    let mut env = Env {
        daemon: Daemon::start(
            "  container_disk_size_mb: 64\n  container_stop_grace_time: 1\n  job_output_limit: 4096\n  container_grace_time: null\n",
            "  pool_start_address: 10.254.0.0\n  pool_size: 64\n  deny_networks: [10.253.0.0/16]\n  allow_networks: [10.253.201.0/30]",
        ),
        denied: TestHost::new("den", "10.253.200.1".parse().unwrap(), "10.253.200.2".parse().unwrap()),
        allowed: TestHost::new("all", "10.253.201.1".parse().unwrap(), "10.253.201.2".parse().unwrap()),
    };
    // Three at a time: enough to exercise concurrency on two cores without starving timers.
    let results = suite::run(&env, tests, 3);
    let depot = env.daemon.depot.clone();
    let code = suite::finish("daemon", &mut env.daemon, results, || {
        let left: Vec<_> = std::fs::read_dir(&depot)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        match left.is_empty() {
            true => vec![],
            false => vec![format!("depot not empty after shutdown: {left:?}")],
        }
    });
    drop(env);
    std::process::exit(code);
}

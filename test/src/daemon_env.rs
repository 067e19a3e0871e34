//! A real `wardend` for integration tests: started on a temporary depot and socket with a
//! config of the test's choosing, driven through its socket with a tiny line client, and
//! stopped with SIGTERM (which destroys its containers). Also the checks that a destroyed
//! container left nothing behind.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub use crate::wshd_env::{assert_root, bin_dir, repo as repo_root, rootfs};

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub depot: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    /// Starts wardend with a config that puts the socket and depot in a temporary
    /// directory, plus `server` lines (indented by two spaces) and the `network` section's
    /// lines (likewise).
    pub fn start(server: &str, network: &str) -> Daemon {
        assert_root();
        let rootfs = rootfs();
        let dir = tempfile::Builder::new()
            .prefix("warden-test-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("warden.sock");
        let depot = dir.path().join("depot");
        let config = format!(
            "server:\n  unix_domain_path: {}\n  container_depot_path: {}\n  container_rootfs_path: {}\n{server}\nnetwork:\n{network}\n",
            socket.display(),
            depot.display(),
            rootfs.display(),
        );
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let mut child = Command::new(bin_dir().join("wardend"))
            .arg("--config")
            .arg(&cfg)
            .arg("--hooks")
            .arg(repo_root().join("hooks"))
            .arg("--wshd")
            .arg(bin_dir().join("wshd"))
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wardend");
        // The daemon logs "listening" once its socket is bound: read its stderr (a pipe, so
        // the wait is the kernel's) into the log file until that line or EOF.
        let stderr = child.stderr.take().unwrap();
        let log_path = dir.path().join("wardend.log");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut log = std::fs::File::create(&log_path).unwrap();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("listening socket=") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(60));
        let mut d = Daemon {
            dir,
            socket,
            depot,
            child: Some(child),
        };
        if ready.is_err() {
            let st = d.child.as_mut().unwrap().try_wait().unwrap();
            panic!("wardend not ready (exit status {st:?}):\n{}", d.log());
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wardend.log")).unwrap_or_default()
    }

    /// Destroys `handle` through `c` and asserts that nothing of it is left on the host.
    pub fn destroy_clean(&self, c: &mut Client, handle: &str) {
        let pid = init_pid(&self.depot, handle);
        assert_eq!(c.ok(json!(["destroy", handle])), json!("ok"));
        let left = leftovers(handle, &self.depot, Some(pid));
        assert!(left.is_empty(), "destroy of {handle} left: {left:#?}");
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to wardend")
    }

    /// SIGTERM and wait: the daemon destroys its containers on the way out.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon running");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        child.wait().expect("wait for wardend")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// One connection to the daemon.
pub struct Client {
    stream: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        Ok(Client {
            stream: BufReader::new(UnixStream::connect(path)?),
        })
    }

    pub fn send_raw(&mut self, line: &[u8]) {
        self.stream
            .get_mut()
            .write_all(line)
            .expect("write request");
    }

    /// Reads one reply: `Ok(payload)` for an object, `Err(message)` for an error.
    pub fn read_reply(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self.stream.read_line(&mut line).expect("read reply");
        assert!(n > 0, "daemon closed the connection");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"));
        match v["type"].as_str() {
            Some("object") => Ok(v["payload"].clone()),
            Some("error") => Err(v["payload"]
                .as_str()
                .expect("error payload is a string")
                .to_string()),
            _ => panic!("reply without a known type: {line}"),
        }
    }

    pub fn call(&mut self, req: Value) -> Result<Value, String> {
        let mut line = serde_json::to_vec(&req).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
        self.read_reply()
    }

    /// A call that must succeed.
    pub fn ok(&mut self, req: Value) -> Value {
        let r = self.call(req.clone());
        r.unwrap_or_else(|e| panic!("{req} failed: {e}"))
    }

    /// A call that must fail; returns the message.
    pub fn err(&mut self, req: Value) -> String {
        match self.call(req.clone()) {
            Ok(v) => panic!("{req} succeeded with {v}, expected an error"),
            Err(e) => e,
        }
    }

    pub fn create(&mut self, config: Value) -> String {
        let v = self.ok(json!(["create", config]));
        v.as_str().expect("handle is a string").to_string()
    }

    /// `run` that must exit 0; returns stdout.
    pub fn sh(&mut self, handle: &str, script: &str) -> String {
        let r = self.ok(json!(["run", handle, script]));
        assert_eq!(r[0], json!(0), "script {script:?} failed: {r}");
        r[1].as_str().unwrap().to_string()
    }
}

/// Everything a container could leave on the host, for one handle; empty when clean.
pub fn leftovers(handle: &str, depot: &Path, init_pid: Option<i32>) -> Vec<String> {
    let mut found = Vec::new();
    let dir = depot.join(handle);
    if dir.exists() {
        found.push(format!("directory {}", dir.display()));
    }
    if Path::new(&format!("/sys/class/net/w-{handle}-0")).exists() {
        found.push(format!("veth w-{handle}-0"));
    }
    for m in std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
    {
        if m.contains(&*dir.to_string_lossy()) {
            found.push(format!("mount {m}"));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let bf = e.path().join("loop/backing_file");
            if let Ok(f) = std::fs::read_to_string(&bf) {
                if f.contains(&*dir.to_string_lossy()) {
                    found.push(format!(
                        "loop device {} on {}",
                        e.file_name().to_string_lossy(),
                        f.trim()
                    ));
                }
            }
        }
    }
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        if let Ok(ctrls) = std::fs::read_dir(root) {
            for c in ctrls.flatten() {
                let p = c.path().join(format!("warden/instance-{handle}"));
                if p.exists() {
                    found.push(format!("cgroup {}", p.display()));
                }
            }
            let p = Path::new(root).join(format!("warden/instance-{handle}"));
            if p.exists() {
                found.push(format!("cgroup {}", p.display()));
            }
        }
    }
    for table in ["filter", "nat"] {
        let out = Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .expect("iptables-save");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.contains(handle) {
                found.push(format!("iptables {table}: {l}"));
            }
        }
    }
    if let Some(pid) = init_pid {
        if Path::new(&format!("/proc/{pid}")).exists() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            found.push(format!("process {pid}: {stat}"));
        }
    }
    found
}

/// The host pid of a container's PID 1, from its depot directory.
pub fn init_pid(depot: &Path, handle: &str) -> i32 {
    std::fs::read_to_string(depot.join(handle).join("run/wshd.pid"))
        .expect("run/wshd.pid")
        .trim()
        .parse()
        .expect("pid")
}

/// The runner of the `harness = false` suites (one daemon for many tests): which tests the
/// command line selects, running them on a few threads, and the closing report.
pub mod suite {
    use std::sync::Mutex;
    use std::time::Instant;

    use super::Daemon;

    pub type Test<E> = (&'static str, fn(&E));

    /// The tests whose names contain a word of the command line (all, with none).
    pub fn selected<E>(tests: Vec<Test<E>>) -> Vec<Test<E>> {
        let words: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        tests
            .into_iter()
            .filter(|(n, _)| words.is_empty() || words.iter().any(|w| n.contains(w.as_str())))
            .collect()
    }

    /// Runs `tests` on `threads` threads, each test's panic caught and reported; returns the
    /// number passed and the names of those that failed.
    pub fn run<E: Sync>(
        env: &E,
        tests: Vec<Test<E>>,
        threads: usize,
    ) -> (usize, Vec<&'static str>) {
        println!("\nrunning {} tests", tests.len());
        let queue = Mutex::new(tests);
        let results = Mutex::new((0usize, Vec::new()));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let Some((name, f)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let started = Instant::now();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(env)));
                    let took = started.elapsed().as_secs_f64();
                    let mut res = results.lock().unwrap();
                    if r.is_ok() {
                        println!("test {name} ... ok ({took:.1}s)");
                        res.0 += 1;
                    } else {
                        println!("test {name} ... FAILED ({took:.1}s)");
                        res.1.push(name);
                    }
                });
            }
        });
        results.into_inner().unwrap()
    }

    /// Stops the suite's daemon (which destroys what is left), then counts as failures its
    /// exit status and the `problems` that `check` finds on the host afterwards; prints the
    /// daemon's log tail when anything failed and the closing line `NAME: P passed, F
    /// failed`, and returns the exit code (the caller drops what else it set up, test hosts
    /// for instance, before it exits).
    pub fn finish(
        name: &str,
        daemon: &mut Daemon,
        (passed, failed): (usize, Vec<&str>),
        check: impl FnOnce() -> Vec<String>,
    ) -> i32 {
        let status = daemon.stop();
        let problems = check();
        let mut failures = failed.len() + problems.len();
        for p in problems {
            println!("{p}");
        }
        if !status.success() {
            println!("wardend exited with {status}");
            failures += 1;
        }
        if failures > 0 {
            println!("\n--- wardend log (last 200 lines) ---");
            let log = daemon.log();
            let lines: Vec<_> = log.lines().collect();
            for l in &lines[lines.len().saturating_sub(200)..] {
                println!("{l}");
            }
            println!("failed: {failed:?}");
        }
        println!("\n{name}: {passed} passed, {failures} failed");
        i32::from(failures > 0)
    }
}

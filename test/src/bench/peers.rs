//! The peers, crun and runc, on the same machine and the same busybox root file system, each
//! command timed as a whole process.
//!
//! The commands run in a *peer runner*: this benchmark binary started again with
//! `--peer-runner`, in a private mount namespace (`/` a recursive slave, so nothing it
//! mounts shows on the host). crun 1.8 refuses a hybrid cgroup layout whose cgroup2
//! hierarchy offers a controller ("cgroups in hybrid mode not supported"); on such a host the
//! runner unmounts `/sys/fs/cgroup/unified` in its own namespace, where both runtimes then
//! see plain cgroup v1 (the host keeps its layout). The runner is a child subreaper: the
//! containers' first processes, orphaned when `run -d` returns, are its children and are
//! reaped after each command (this host's PID 1 reaps nothing).
//!
//! A networked peer container gets what ours gets, made the same way: a veth pair created
//! in place (the container end directly in the container's new network namespace, no move),
//! both ends addressed and up, a default route; by a `createRuntime` hook (a shell script,
//! like our hooks). Its teardown is the death of the namespace, and a timed command that
//! ends a networked container also waits until the host end is gone: nothing is left behind
//! when the timer stops, as with our destroy.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Debian packages of the peers, installed by the benchmark when missing.
pub const PACKAGES: [&str; 2] = ["crun", "runc"];

/// Peer containers' addresses: one /30 per container from here (10.252.8.0/21, beside our
/// own pool 10.252.0.0/21; nothing leaves the machine).
const PEER_NET: Ipv4Addr = Ipv4Addr::new(10, 252, 8, 0);
const PEER_SLOTS: u32 = 512;

/// cgroup parent (relative to each hierarchy) of the peers' containers.
pub const CGROUP_PARENT: &str = "warden-bench";

/// Installs the peers with apt-get if a binary is missing. Returns what was installed.
pub fn ensure_installed() -> Vec<String> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p} >/dev/null")])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        })
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    eprintln!("bench: installing {} (apt-get)", missing.join(" "));
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !install() {
        let st = Command::new("apt-get").args(["update", "-qq"]).status();
        assert!(
            st.map(|s| s.success()).unwrap_or(false),
            "apt-get update failed"
        );
        assert!(install(), "apt-get install {} failed", missing.join(" "));
    }
    missing.iter().map(|s| s.to_string()).collect()
}

/// `crun --version` / `runc --version`, first line.
pub fn version(runtime: &str) -> String {
    Command::new(runtime)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// True when /sys/fs/cgroup is a v1 tmpfs and cgroup2 at `unified/` offers controllers: the
/// layout crun refuses.
pub fn hybrid_with_controllers() -> bool {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    match fs::read_to_string(unified) {
        Ok(c) => !c.trim().is_empty(),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// The runner (child process side)

/// Main of `bench --peer-runner`: one JSON request per stdin line, one answer per line.
/// Request `{"argv": [...], "gone": "IFACE"|null}`; answer `{"ms": f64, "ok": bool,
/// "stderr": "..."}` where `ms` covers the command and, with `gone`, the wait until the
/// host interface IFACE no longer exists.
pub fn runner_main(stderr_file: &Path) -> ! {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare(CLONE_NEWNS)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .expect("make / a recursive slave");
    let mut note = String::from("private mount namespace");
    if hybrid_with_controllers() {
        umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH)
            .expect("unmount /sys/fs/cgroup/unified in the runner's namespace");
        note = "private mount namespace without /sys/fs/cgroup/unified \
                (crun refuses this host's hybrid cgroups: the peers see cgroup v1)"
            .into();
    }
    nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({ "note": note })).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let req: Value = serde_json::from_str(&line).expect("runner request");
        let argv: Vec<String> = req["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .map(|a| a.as_str().expect("argv string").to_string())
            .collect();
        let gone = req["gone"].as_str().map(str::to_string);
        let answer = run_one(&argv, gone.as_deref(), stderr_file);
        reap_orphans();
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
    std::process::exit(0)
}

fn run_one(argv: &[String], gone: Option<&str>, stderr_file: &Path) -> Value {
    // stderr to a file, not a pipe: a detached container inherits it and would keep a pipe
    // open forever.
    let err = fs::File::create(stderr_file).expect("runner stderr file");
    let started = Instant::now();
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status();
    let mut ok = matches!(&status, Ok(s) if s.success());
    if let (true, Some(iface)) = (ok, gone) {
        ok = wait_gone(iface, Duration::from_secs(10));
    }
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let mut stderr = fs::read_to_string(stderr_file).unwrap_or_default();
    if let Err(e) = &status {
        stderr = format!("{}: {e}", argv[0]);
    } else if ok && !stderr.is_empty() {
        stderr.clear();
    } else if !ok && stderr.is_empty() {
        stderr = format!("{status:?}; interface {gone:?} still there");
    }
    json!({ "ms": ms, "ok": ok, "stderr": stderr })
}

/// Waits until `/sys/class/net/IFACE` is gone (the kernel deletes a veth pair shortly after
/// its namespace died). Polls every 100 µs: this is the measuring tool, not the product.
pub fn wait_gone(iface: &str, timeout: Duration) -> bool {
    let p = PathBuf::from(format!("/sys/class/net/{iface}"));
    let until = Instant::now() + timeout;
    while p.exists() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    true
}

fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The runner (benchmark side)

pub struct Runner {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// How the runner set up its namespace, for the report.
    pub note: String,
}

impl Runner {
    pub fn start(exe: &Path, work: &Path) -> Runner {
        let mut child = Command::new(exe)
            .arg("--peer-runner")
            .arg(work.join("runner-stderr"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer runner");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut hello = String::new();
        stdout.read_line(&mut hello).expect("peer runner hello");
        let v: Value = serde_json::from_str(&hello).expect("peer runner hello is JSON");
        Runner {
            child,
            stdin,
            stdout,
            note: v["note"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Runs `argv` in the runner's namespace; the milliseconds it took, or the error.
    pub fn run(&mut self, argv: &[&str], gone: Option<&str>) -> Result<f64, String> {
        let req = json!({ "argv": argv, "gone": gone });
        writeln!(self.stdin, "{req}").expect("write to the peer runner");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .expect("read the peer runner");
        assert!(n > 0, "the peer runner died");
        let v: Value = serde_json::from_str(&line).expect("peer runner answer");
        if v["ok"].as_bool() == Some(true) {
            Ok(v["ms"].as_f64().unwrap())
        } else {
            Err(format!(
                "{}: {}",
                argv.join(" "),
                v["stderr"].as_str().unwrap_or_default().trim()
            ))
        }
    }

    /// A command that must work (timings are not kept).
    pub fn must(&mut self, argv: &[&str]) {
        if let Err(e) = self.run(argv, None) {
            panic!("peer runner: {e}");
        }
    }

    pub fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Bundles

/// One OCI bundle per peer container (its config names its id, cgroup and address), all on
/// the one busybox root file system ours use, mounted read-only.
pub struct Bundles {
    dir: PathBuf,
    template: Value,
    hook: PathBuf,
}

/// A peer container about to be run.
pub struct PeerContainer {
    pub runtime: &'static str,
    pub id: String,
    pub bundle: PathBuf,
    /// Host end of its veth pair, when it has a network.
    pub iface: Option<String>,
}

impl Bundles {
    /// `crun spec` (the runtime's own defaults) adapted: no terminal, our root file system
    /// read-only, no cgroup mount (ours have none).
    pub fn new(work: &Path, rootfs: &Path) -> Bundles {
        let dir = work.join("bundles");
        fs::create_dir_all(&dir).unwrap();
        let _ = fs::remove_file(dir.join("config.json"));
        let st = Command::new("crun").arg("spec").current_dir(&dir).status();
        assert!(st.map(|s| s.success()).unwrap_or(false), "crun spec failed");
        let spec = dir.join("config.json");
        let mut template: Value =
            serde_json::from_str(&fs::read_to_string(&spec).unwrap()).expect("crun spec JSON");
        fs::remove_file(&spec).unwrap();
        template["process"]["terminal"] = json!(false);
        template["root"] = json!({ "path": rootfs, "readonly": true });
        if let Some(m) = template["mounts"].as_array_mut() {
            m.retain(|m| m["destination"] != "/sys/fs/cgroup");
        }
        let hook = work.join("peer-net.sh");
        fs::write(&hook, PEER_NET_HOOK).unwrap();
        Bundles {
            dir,
            template,
            hook,
        }
    }

    /// Writes the bundle of container number `n` of `runtime` (`crun` or `runc`), running
    /// `args`, with a veth network if `net`.
    pub fn make(&self, runtime: &'static str, n: u32, args: &[&str], net: bool) -> PeerContainer {
        let tag = &runtime[..1];
        let id = format!("wb-{runtime}-{n}");
        let bundle = self.dir.join(&id);
        fs::create_dir_all(&bundle).unwrap();
        let mut c = self.template.clone();
        c["process"]["args"] = json!(args);
        c["hostname"] = json!(id);
        c["linux"]["cgroupsPath"] = json!(format!("/{CGROUP_PARENT}/{id}"));
        let mut iface = None;
        if net {
            // crun's in the first half of the slots, runc's in the second.
            let half = PEER_SLOTS / 2;
            let slot = n % half + if tag == "r" { half } else { 0 };
            let base = u32::from(PEER_NET) + 4 * slot;
            let host = Ipv4Addr::from(base + 1).to_string();
            let ct = Ipv4Addr::from(base + 2).to_string();
            let name = format!("wb{tag}-{n}");
            c["hooks"] = json!({
                "createRuntime": [{
                    "path": "/bin/sh",
                    "args": ["sh", self.hook, name, host, ct],
                }]
            });
            iface = Some(name);
        }
        fs::write(
            bundle.join("config.json"),
            serde_json::to_vec_pretty(&c).unwrap(),
        )
        .unwrap();
        PeerContainer {
            runtime,
            id,
            bundle,
            iface,
        }
    }
}

impl PeerContainer {
    pub fn bundle_str(&self) -> &str {
        self.bundle.to_str().unwrap()
    }

    pub fn remove_bundle(&self) {
        let _ = fs::remove_dir_all(&self.bundle);
    }
}

/// The peers' network hook (`createRuntime`: host namespaces, after the container's were
/// made; the container's state, with its pid, on stdin). The same two `ip -batch` calls our
/// hooks make: the pair made in place, then the container's end configured from inside.
const PEER_NET_HOOK: &str = r#"#!/bin/sh
# createRuntime hook of the benchmark's networked peer containers.
# Args: HOST_IFACE HOST_IP CONTAINER_IP. State JSON (with "pid") on stdin.
set -o nounset -o errexit
state=
read -r state || :
pid=${state#*\"pid\"}
pid=${pid#*:}
pid=${pid#"${pid%%[0-9]*}"}
pid=${pid%%[!0-9]*}
[ -n "$pid" ] || { echo "peer-net.sh: no pid in state: $state" >&2; exit 1; }
ip -batch - <<EOF
link add $1 mtu 1500 type veth peer name eth0 mtu 1500 netns $pid
address add $2/30 dev $1
link set $1 up
EOF
nsenter -t "$pid" -n ip -batch - <<EOF
link set lo up
link set eth0 up
address add $3/30 dev eth0
route replace default via $2 dev eth0
EOF
"#;

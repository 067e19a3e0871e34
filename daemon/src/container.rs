//! One container: its create (directory, cgroup, firewall, wshd), the requests that act on
//! it, and its teardown. The container's directory in the depot is the truth about it
//! (DESIGN.md section 6): a teardown needs nothing but the directory and the cgroup name.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use warden_helper::client;
use warden_helper::pidfd::PidFd;
use warden_helper::proto::{Rlimit, SpawnRequest};

use crate::cgroup::ContainerCgroup;
use crate::daemon::Daemon;
use crate::error::{bad, io, Error, Result};
use crate::jobs::{Job, JobId};
use crate::pool::Subnet;
use crate::protocol::{CreateOptions, NetOutRule};
use crate::{copy, netlink, scripts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Stopped,
    Destroying,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Stopped => "stopped",
            State::Destroying => "destroying",
        }
    }
}

pub struct Container {
    pub handle: String,
    pub subnet: Subnet,
    pub uid: u32,
    pub dir: PathBuf,
    pub grace_time: Option<Duration>,
    pub cgroup: ContainerCgroup,
    /// Host pid of the container's PID 1 (wshd).
    pub init_pid: i32,
    inner: Mutex<Inner>,
    /// Held across each `net.sh in|out`: the first of them makes the container's chains,
    /// and two at once would both try.
    net_lock: tokio::sync::Mutex<()>,
}

struct Inner {
    state: State,
    events: Vec<String>,
    jobs: BTreeMap<JobId, Arc<Job>>,
    next_job: JobId,
    ports: Vec<u16>,
    /// Connections that reference this container.
    refs: usize,
    /// Bumped by every new reference: a grace timer only fires if none came in between.
    generation: u64,
}

/// The unprivileged user of every container (created by the rootfs scripts).
pub const USER: &str = "vcap";

impl Container {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/wshd.sock")
    }

    pub fn state(&self) -> State {
        self.inner().state
    }

    fn require_active(&self, command: &'static str) -> Result<()> {
        match self.state() {
            State::Active => Ok(()),
            s => Err(Error::State {
                handle: self.handle.clone(),
                state: s.name(),
                command,
            }),
        }
    }

    pub fn add_ref(&self) {
        let mut i = self.inner();
        i.refs += 1;
        i.generation += 1;
    }

    /// Drops one reference; when none is left and the container has a grace time, returns
    /// it with the generation a timer must still see when it fires.
    pub fn drop_ref(&self) -> Option<(Duration, u64)> {
        let mut i = self.inner();
        i.refs = i.refs.saturating_sub(1);
        if i.refs > 0 || i.state == State::Destroying {
            return None;
        }
        self.grace_time.map(|g| (g, i.generation))
    }

    pub fn grace_expired(&self, generation: u64) -> bool {
        let i = self.inner();
        i.refs == 0 && i.generation == generation && i.state != State::Destroying
    }

    /// Watches the container for its end (EOF on a `Watch` connection to wshd) and for an
    /// OOM in its cgroup; an OOM adds the event and stops the container.
    pub fn watch(self: Arc<Self>, daemon: Arc<Daemon>) {
        tokio::spawn(async move {
            let sock = self.socket();
            let watch = tokio::task::spawn_blocking(move || client::watch(&sock)).await;
            let stream = match watch {
                Ok(Ok(s)) => s
                    .set_nonblocking(true)
                    .and_then(|_| tokio::net::UnixStream::from_std(s)),
                Ok(Err(e)) => Err(std::io::Error::other(e.to_string())),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    warn!("watch-failed handle={} error={e}", self.handle);
                    return;
                }
            };
            let mut oom = match self.cgroup.oom_watch() {
                Ok(o) => Some(o),
                Err(e) => {
                    warn!("oom-watch-failed handle={} error={e}", self.handle);
                    None
                }
            };
            let oom_fired = async {
                match oom.as_mut() {
                    Some(o) => o.wait().await,
                    None => std::future::pending().await,
                }
            };
            let mut buf = [0u8; 64];
            tokio::select! {
                _ = stream.read(&mut buf) => {
                    let mut i = self.inner();
                    if i.state == State::Active {
                        warn!("container-exited handle={}", self.handle);
                        i.state = State::Stopped;
                    }
                }
                r = oom_fired => {
                    if let Err(e) = r {
                        warn!("oom-watch-failed handle={} error={e}", self.handle);
                        return;
                    }
                    info!("oom handle={}", self.handle);
                    self.inner().events.push("oom".into());
                    if let Err(e) = self.stop(daemon.stop_grace()).await {
                        warn!("oom-stop-failed handle={} error={e}", self.handle);
                    }
                }
            }
        });
    }

    pub async fn spawn(&self, daemon: &Daemon, script: String) -> Result<JobId> {
        self.require_active("spawn")?;
        let req = SpawnRequest {
            argv: vec!["/bin/sh".into()],
            user: Some(USER.into()),
            rlimits: rlimits(daemon),
            ..Default::default()
        };
        let sock = self.socket();
        let spawned = tokio::task::spawn_blocking(move || client::spawn(&sock, &req))
            .await
            .map_err(|e| Error::Step {
                step: "spawn",
                message: e.to_string(),
            })??;
        let mut i = self.inner();
        i.next_job += 1;
        let id = i.next_job;
        let limit = daemon.config.server.job_output_limit as usize;
        let job = Job::start(id, spawned, script.into_bytes(), limit)
            .map_err(io("spawn: job pipes of", &self.dir))?;
        i.jobs.insert(id, Arc::new(job));
        Ok(id)
    }

    pub fn job(&self, id: JobId) -> Result<Arc<Job>> {
        self.inner()
            .jobs
            .get(&id)
            .cloned()
            .ok_or(Error::NoSuchJob(id))
    }

    pub fn set_memory_limit(&self, bytes: u64) -> Result<()> {
        self.cgroup.set_memory_limit(bytes).map_err(|e| {
            bad(format!(
                "Invalid limit: cannot set the memory limit to {bytes} bytes ({e})"
            ))
        })
    }

    pub fn memory_limit(&self) -> Result<u64> {
        Ok(self.cgroup.memory_limit()?)
    }

    pub async fn net_in(&self, daemon: &Daemon) -> Result<u16> {
        self.require_active("net in")?;
        let port = daemon
            .pools()
            .ports
            .acquire()
            .map_err(|e| Error::PoolExhausted(e.to_string()))?;
        let p = port.to_string();
        let env = [("HOST_PORT", p.as_str()), ("CONTAINER_PORT", p.as_str())];
        let _serial = self.net_lock.lock().await;
        if let Err(e) = net_script(&self.dir, "in", env).await {
            daemon.pools().ports.release(port);
            return Err(e);
        }
        self.inner().ports.push(port);
        Ok(port)
    }

    pub async fn net_out(&self, rule: NetOutRule) -> Result<()> {
        self.require_active("net out")?;
        let network = rule.network.to_string();
        let port = rule.port.map(|p| p.to_string()).unwrap_or_default();
        let _serial = self.net_lock.lock().await;
        net_script(
            &self.dir,
            "out",
            [("NETWORK", network.as_str()), ("PORT", port.as_str())],
        )
        .await
    }

    pub async fn copy_in(&self, daemon: &Daemon, src: String, dst: String) -> Result<()> {
        self.require_active("copy in")?;
        let sock = self.socket();
        let rl = rlimits(daemon);
        tokio::task::spawn_blocking(move || copy::copy_in(&sock, &src, &dst, USER, rl))
            .await
            .map_err(|e| Error::Step {
                step: "copy in",
                message: e.to_string(),
            })?
    }

    /// Allowed on a stopped container too, to fetch what its jobs left.
    pub async fn copy_out(&self, src: String, dst: String, owner: Option<String>) -> Result<()> {
        if self.state() == State::Destroying {
            return Err(Error::State {
                handle: self.handle.clone(),
                state: "destroying",
                command: "copy out",
            });
        }
        let sock = self.socket();
        tokio::task::spawn_blocking(move || copy::copy_out(&sock, &src, &dst, owner.as_deref()))
            .await
            .map_err(|e| Error::Step {
                step: "copy out",
                message: e.to_string(),
            })?
    }

    /// Ends every process of the container but its PID 1: TERM, then KILL after `grace`.
    /// Jobs end without a status. The container stays, in state `stopped`.
    pub async fn stop(&self, grace: Duration) -> Result<()> {
        {
            let mut i = self.inner();
            if i.state == State::Destroying {
                return Err(Error::State {
                    handle: self.handle.clone(),
                    state: "destroying",
                    command: "stop",
                });
            }
            i.state = State::Stopped;
        }
        let sock = self.socket();
        match tokio::task::spawn_blocking(move || client::stop(&sock, grace)).await {
            Ok(Ok(())) => Ok(()),
            // wshd is gone: nothing is running any more, which is what stop asks for.
            Ok(Err(e)) => {
                debug!("stop handle={} wshd={e}", self.handle);
                Ok(())
            }
            Err(e) => Err(Error::Step {
                step: "stop",
                message: e.to_string(),
            }),
        }
    }

    pub async fn destroy(&self, daemon: &Daemon) -> Result<()> {
        let ports = {
            let mut i = self.inner();
            i.state = State::Destroying;
            std::mem::take(&mut i.ports)
        };
        let stop = Some(daemon.stop_grace());
        let result = teardown_stopping(&self.dir, Some(self.init_pid), &self.cgroup, stop).await;
        let mut p = daemon.pools();
        for port in ports {
            p.ports.release(port);
        }
        p.networks.release(self.subnet);
        p.uids.release(self.uid);
        result
    }

    pub fn info(&self) -> Result<Value> {
        // The kernel's files are read before the lock is taken, not under it.
        let stats = json!({
            "mem_usage_B": self.cgroup.memory_usage().unwrap_or(0),
            "cpu_usage_ns": self.cgroup.cpu_usage_ns().unwrap_or(0),
            "disk_usage_B": disk_usage(self.init_pid).unwrap_or(0),
        });
        let mem_limit = self.cgroup.memory_limit().unwrap_or(0);
        let i = self.inner();
        Ok(json!({
            "state": i.state.name(),
            "events": i.events,
            "host_ip": self.subnet.host_ip().to_string(),
            "container_ip": self.subnet.container_ip().to_string(),
            "container_path": self.dir.to_string_lossy(),
            "limits": { "mem": mem_limit },
            "stats": stats,
            "job_ids": i.jobs.keys().collect::<Vec<_>>(),
            "net_in_ports": i.ports,
        }))
    }
}

/// Bytes used on the container's scratch disk: the overlay reports its upper file system.
fn disk_usage(init_pid: i32) -> Option<u64> {
    let root = PathBuf::from(format!("/proc/{init_pid}/root"));
    let s = nix::sys::statvfs::statvfs(&root).ok()?;
    Some((s.blocks() - s.blocks_free()) as u64 * s.fragment_size() as u64)
}

fn rlimits(daemon: &Daemon) -> Vec<Rlimit> {
    daemon
        .config
        .server
        .container_rlimits
        .iter()
        .map(|(name, &v)| Rlimit {
            resource: name.name().to_string(),
            soft: v,
            hard: v,
        })
        .collect()
}

async fn net_script<'a>(
    dir: &Path,
    action: &str,
    env: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<()> {
    scripts::run(&dir.join("lib/net.sh"), &[action], dir, env).await
}

/// Creates a container: pools, directory, cgroup, firewall chains and wshd. On failure,
/// everything done so far is undone and the error names the step.
pub async fn create(
    daemon: &Arc<Daemon>,
    opts: CreateOptions,
    grace_time: Option<Duration>,
) -> Result<Container> {
    let (subnet, uid) = {
        let mut p = daemon.pools();
        let subnet = p
            .networks
            .acquire()
            .map_err(|e| Error::PoolExhausted(e.to_string()))?;
        match p.uids.acquire() {
            Ok(uid) => (subnet, uid),
            Err(e) => {
                p.networks.release(subnet);
                return Err(Error::PoolExhausted(e.to_string()));
            }
        }
    };
    let handle = subnet.handle();
    let dir = daemon.depot().join(&handle);
    let result = start(daemon, &handle, &dir, subnet, uid, &opts).await;
    match result {
        Ok((cgroup, init_pid)) => Ok(Container {
            handle,
            subnet,
            uid,
            dir,
            grace_time,
            cgroup,
            init_pid,
            inner: Mutex::new(Inner {
                state: State::Active,
                events: Vec::new(),
                jobs: BTreeMap::new(),
                next_job: 0,
                ports: Vec::new(),
                refs: 0,
                generation: 0,
            }),
            net_lock: tokio::sync::Mutex::new(()),
        }),
        Err(e) => {
            warn!("create-failed-cleanup handle={handle} error={e}");
            let cg = daemon.cgroups.open(&handle);
            if let Err(e2) = teardown(&dir, None, &cg).await {
                warn!("create-cleanup-failed handle={handle} error={e2}");
            }
            let mut p = daemon.pools();
            p.networks.release(subnet);
            p.uids.release(uid);
            Err(e)
        }
    }
}

async fn start(
    daemon: &Daemon,
    handle: &str,
    dir: &Path,
    subnet: Subnet,
    uid: u32,
    opts: &CreateOptions,
) -> Result<(ContainerCgroup, i32)> {
    let t = Instant::now();
    let disk_mb = opts
        .disk_size_mb
        .unwrap_or(daemon.config.server.container_disk_size_mb);
    prepare_dir(daemon, handle, dir, subnet, uid, disk_mb, opts)?;
    debug!(
        "create-step handle={handle} step=dir took_ms={:.1}",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let cgroup = daemon.cgroups.create(handle)?;
    debug!(
        "create-step handle={handle} step=cgroup took_ms={:.1}",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let (net, pid) = tokio::join!(
        async {
            let r = net_script(dir, "setup", []).await;
            debug!(
                "create-step handle={handle} step=net took_ms={:.1}",
                t.elapsed().as_secs_f64() * 1e3
            );
            r
        },
        async {
            let r = start_wshd(daemon, handle, dir, &cgroup).await;
            debug!(
                "create-step handle={handle} step=wshd took_ms={:.1}",
                t.elapsed().as_secs_f64() * 1e3
            );
            r
        }
    );
    let pid = pid?;
    net?;
    if log::log_enabled!(log::Level::Debug) {
        relay_hook_timings(handle, dir);
    }
    Ok((cgroup, pid))
}

/// Copies the durations of wshd's hooks (its `hook-done ... took_ms=` debug lines in
/// `run/wshd.log`) into the daemon's log as `create-step handle=H step=hook-STAGE`.
fn relay_hook_timings(handle: &str, dir: &Path) {
    let Ok(log) = fs::read_to_string(dir.join("run/wshd.log")) else {
        return;
    };
    for line in log.lines() {
        let Some(rest) = line.split_once("hook-done stage=").map(|(_, r)| r) else {
            continue;
        };
        let mut words = rest.split(' ');
        let stage = words.next().unwrap_or_default();
        if let Some(ms) = words.find_map(|w| w.strip_prefix("took_ms=")) {
            debug!("create-step handle={handle} step=hook-{stage} took_ms={ms}");
        }
    }
}

/// Single-quotes a value for `etc/config`.
fn shell_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

fn prepare_dir(
    daemon: &Daemon,
    handle: &str,
    dir: &Path,
    subnet: Subnet,
    uid: u32,
    disk_mb: u64,
    opts: &CreateOptions,
) -> Result<()> {
    for b in &opts.bind_mounts {
        if !b.host_path.exists() {
            return Err(bad(format!(
                "invalid request: bind mount source {} does not exist",
                b.host_path.display()
            )));
        }
    }
    if dir.exists() {
        return Err(Error::Step {
            step: "create",
            message: format!("{} already exists", dir.display()),
        });
    }
    for d in ["etc", "lib", "run"] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(io("create", &p))?;
    }
    let lib = dir.join("lib");
    let hooks = &daemon.paths.hooks;
    {
        // No process may start while these are open for writing (scripts::EXEC_FILES).
        let _writing = scripts::writing_executables();
        for e in fs::read_dir(hooks).map_err(io("read", hooks))? {
            let e = e.map_err(io("read", hooks))?;
            if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                let to = lib.join(e.file_name());
                fs::copy(e.path(), &to).map_err(io("copy hook to", &to))?;
            }
        }
    }
    let s = &daemon.config.server;
    let n = &daemon.config.network;
    let vars: [(&str, String); 14] = [
        ("id", handle.to_string()),
        ("container_path", dir.to_string_lossy().into_owned()),
        (
            "rootfs_path",
            s.container_rootfs_path.to_string_lossy().into_owned(),
        ),
        ("disk_size_mb", disk_mb.to_string()),
        ("network_host_ip", subnet.host_ip().to_string()),
        ("network_container_ip", subnet.container_ip().to_string()),
        ("network_netmask", "255.255.255.252".into()),
        ("network_prefix_len", "30".into()),
        ("network_host_iface", format!("w-{handle}-0")),
        ("network_container_iface", format!("w-{handle}-1")),
        ("network_mtu", n.mtu.to_string()),
        ("user_uid", uid.to_string()),
        ("user_name", USER.into()),
        ("pool_network", daemon.pools().networks.cidr().to_string()),
    ];
    let mut config = String::from("# Written by wardend at create; read by the hooks in lib/.\n");
    for (k, v) in vars {
        let _ = writeln!(config, "{k}={}", shell_quote(&v));
    }
    let p = dir.join("etc/config");
    fs::write(&p, config).map_err(io("write", &p))?;
    let mut mounts = String::new();
    for b in &opts.bind_mounts {
        let mode = if b.read_only { "ro" } else { "rw" };
        let _ = writeln!(
            mounts,
            "{}\t{}\t{mode}",
            b.host_path.display(),
            b.container_path.display()
        );
    }
    let p = dir.join("etc/bind_mounts");
    fs::write(&p, mounts).map_err(io("write", &p))?;
    prepare_home(&s.container_rootfs_path, dir, uid)?;
    fs::set_permissions(dir.join("run"), fs::Permissions::from_mode(0o700))
        .map_err(io("chmod", dir))?;
    Ok(())
}

/// Makes `disk/upper/<home>` owned by `uid`, what `hook-parent-before-clone.sh` would
/// otherwise make with `install` (a process, 2-3 ms) before `mkfs.ext4 -d disk` copies it
/// into the scratch disk: the overlay then shows the user's home with that owner. The home
/// is the user's in the base's `etc/passwd`; without one, the hook says what is wrong.
fn prepare_home(rootfs: &Path, dir: &Path, uid: u32) -> Result<()> {
    let Ok(passwd) = fs::read_to_string(rootfs.join("etc/passwd")) else {
        return Ok(());
    };
    let home = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == USER).then(|| f[5].to_string())
    });
    let Some(home) = home.filter(|h| h.starts_with('/') && !h.contains("..")) else {
        return Ok(());
    };
    let p = dir.join("disk/upper").join(home.trim_start_matches('/'));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&p)
        .map_err(io("create", &p))?;
    std::os::unix::fs::chown(&p, Some(uid), Some(uid)).map_err(io("chown", &p))
}

/// Starts wshd on the container directory and waits until it reports the container ready.
/// Returns the host pid of the container's PID 1.
async fn start_wshd(
    daemon: &Daemon,
    handle: &str,
    dir: &Path,
    cgroup: &ContainerCgroup,
) -> Result<i32> {
    let log_path = dir.join("run/wshd.log");
    let log = fs::File::create(&log_path).map_err(io("create", &log_path))?;
    let log2 = log.try_clone().map_err(io("open", &log_path))?;
    let mut cmd = tokio::process::Command::new(&daemon.paths.wshd);
    cmd.arg("--run")
        .arg(dir.join("run"))
        .arg("--lib")
        .arg(dir.join("lib"))
        .arg("--root")
        .arg(dir.join("mnt"))
        .arg("--title")
        .arg(format!("wshd: {handle}"));
    for d in cgroup.join_dirs() {
        cmd.arg("--cgroup").arg(d);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true);
    let failed = |e: std::io::Error| Error::Step {
        step: "start wshd",
        message: format!("{}: {e}", daemon.paths.wshd.display()),
    };
    let mut child = {
        let _exec = scripts::spawning();
        cmd.spawn().map_err(failed)?
    };
    let status = child.wait().await.map_err(failed)?;
    if !status.success() {
        let out = fs::read(&log_path).unwrap_or_default();
        let msg = scripts::tail(&out, 2048);
        return Err(Error::Step {
            step: "start container",
            message: msg.trim_end().to_string(),
        });
    }
    let pid_path = dir.join("run/wshd.pid");
    let pid = fs::read_to_string(&pid_path).map_err(io("read", &pid_path))?;
    pid.trim().parse().map_err(|_| Error::Step {
        step: "start container",
        message: format!("bad pid in {}", pid_path.display()),
    })
}

/// True when `pid` is a live wshd (so that a stale pid file never makes us signal a stranger).
fn is_wshd(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|&b| b == 0)
                .next()
                .is_some_and(|a0| a0.ends_with(b"wshd") || a0.starts_with(b"wshd"))
        })
        .unwrap_or(false)
}

/// Kills the container's PID 1 and waits until it exited: the kernel then has ended every
/// process of its PID namespace, and none of them is left in the container's cgroups. The
/// wait is the pidfd's (readable at exit), which also works when the daemon is not the
/// process's reaper (a container of an earlier run); where it is, the zombie is reaped.
fn kill_init(pid: i32) {
    let Ok(pidfd) = PidFd::open(pid) else { return };
    // The pidfd pins the process: checked once, it cannot turn into another one.
    if !is_wshd(pid) {
        return;
    }
    if pidfd.kill(Signal::SIGKILL).is_ok() {
        let _ = pidfd.wait_exited();
    }
    // ECHILD when another process is its parent.
    let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
}

/// Removes everything of a container: its processes, network rules and veth, mounts and
/// loop device (via `lib/teardown.sh`), cgroup and directory. Safe on a half-made container
/// and on one already torn down; every step runs even if an earlier one failed, and the
/// first error is returned.
pub async fn teardown(dir: &Path, init_pid: Option<i32>, cgroup: &ContainerCgroup) -> Result<()> {
    teardown_stopping(dir, init_pid, cgroup, None).await
}

/// How long a destroy waits for the kernel to remove the container's veth pair (with its
/// network namespace) and release its loop device (with its mount namespace) before
/// `teardown.sh` deletes them (something else may hold a namespace: a process that entered
/// it, a bind mount of it).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// True while the loop device `dev` (as the hook wrote it in `run/loop`: `/dev/loopN`) is
/// bound to `backing`.
fn loop_bound(dev: &str, backing: &Path) -> bool {
    let name = dev.trim().trim_start_matches("/dev/");
    if name.is_empty() || name.contains('/') {
        return false;
    }
    fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        .map(|f| f.starts_with(&*backing.to_string_lossy()))
        .unwrap_or(false)
}

/// [`teardown`], first stopping the container's processes (TERM, then KILL after `stop`)
/// if a grace time is given. The firewall goes at the same time as the processes: a
/// container without its own chains gets warden-forward's default policy, so nothing opens
/// meanwhile (hooks/README.md, "Firewall model").
async fn teardown_stopping(
    dir: &Path,
    init_pid: Option<i32>,
    cgroup: &ContainerCgroup,
    stop: Option<Duration>,
) -> Result<()> {
    let started = Instant::now();
    let handle = dir.file_name().unwrap_or_default().to_string_lossy();
    let configured = dir.join("etc/config").exists();
    let pid = init_pid.or_else(|| {
        fs::read_to_string(dir.join("run/wshd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let firewall = async {
        if !configured {
            return Ok(());
        }
        let t = Instant::now();
        let r = net_script(dir, "teardown", []).await;
        step_done("destroy", &handle, "net", t);
        r
    };
    let processes = async {
        if let Some(grace) = stop {
            let t = Instant::now();
            let sock = dir.join("run/wshd.sock");
            let _ = tokio::task::spawn_blocking(move || client::stop(&sock, grace)).await;
            step_done("destroy", &handle, "stop", t);
        }
        if let Some(pid) = pid {
            let t = Instant::now();
            let veth = PathBuf::from(format!("/sys/class/net/w-{handle}-0"));
            let loop_dev = fs::read_to_string(dir.join("run/loop")).unwrap_or_default();
            let backing = dir.join("disk.img");
            let h = handle.to_string();
            let _ = tokio::task::spawn_blocking(move || {
                // Subscribed before the kill, so that no removal is missed.
                let events: Vec<_> = [netlink::Events::links(), netlink::Events::uevents()]
                    .into_iter()
                    .filter_map(|e| e.ok())
                    .collect();
                kill_init(pid);
                step_done("destroy", &h, "kill", t);
                let t = Instant::now();
                let released = || !veth.exists() && !loop_bound(&loop_dev, &backing);
                if !netlink::wait_until(&events, RELEASE_TIMEOUT, released) {
                    info!("release-slow handle={h}: teardown.sh deletes the veth and loop device");
                }
                step_done("destroy", &h, "release", t);
            })
            .await;
        }
        if !configured {
            return Ok(());
        }
        let t = Instant::now();
        let teardown_sh = dir.join("lib/teardown.sh");
        let r = scripts::run(&teardown_sh, &[], dir, std::iter::empty::<(&str, &str)>()).await;
        step_done("destroy", &handle, "teardown-sh", t);
        r
    };
    let (net, rest) = tokio::join!(firewall, processes);
    let mut first_err: Option<Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            warn!("teardown-step-failed dir={} error={e}", dir.display());
            first_err.get_or_insert(e);
        }
    };
    keep(net);
    keep(rest);
    let t = Instant::now();
    keep(cgroup.remove().map_err(Error::from));
    step_done("destroy", &handle, "cgroup", t);
    let t = Instant::now();
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => keep(Err(Error::Io {
            op: "remove",
            path: dir.to_path_buf(),
            source: e,
        })),
    }
    step_done("destroy", &handle, "dir", t);
    debug!(
        "teardown dir={} took_ms={:.1}",
        dir.display(),
        started.elapsed().as_secs_f64() * 1e3
    );
    first_err.map_or(Ok(()), Err)
}

/// Logs the duration of one step of a create or destroy (debug level), as
/// `WHAT-step handle=H step=S took_ms=X`.
fn step_done(what: &str, handle: &str, step: &str, started: Instant) {
    debug!(
        "{what}-step handle={handle} step={step} took_ms={:.1}",
        started.elapsed().as_secs_f64() * 1e3
    );
}

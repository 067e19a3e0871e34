//! Real containers started by `wshd` directly (no daemon), for `tests/wshd.rs`.
//!
//! - [`assert_root`]: these tests need root and fail loudly without it.
//! - [`bin`]: the built binaries (`WARDEN_BIN_DIR`, or the `target/debug` this test binary
//!   lives in; `cargo build --workspace --bins` first).
//! - [`rootfs`]: the busybox base root, built once into `target/test-rootfs`.
//! - [`prepare`] a container directory with `hooks/setup.sh` (id `0afd00xx`, network
//!   10.253.0.xx/30: one per test, never 10.254.x, which the daemon tests use), then
//!   [`Prepared::start`] runs wshd on it. Dropping a [`Container`] kills its PID 1, reaps
//!   it, runs `lib/teardown.sh` and removes the directory; [`Container::destroy`] does the
//!   same and returns what was left on the host ([`leftovers`]).
//!
//! The test process makes itself a child subreaper, so that the container's PID 1, orphaned
//! when wshd's first process exits, becomes its child and can be waited for.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use warden_helper::client::{self, Stdio};
use warden_helper::proto::{ExitStatus, SpawnRequest};

/// Panics unless the effective uid is 0.
pub fn assert_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests create real containers and must run as root (euid 0); they are never skipped"
    );
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test/ has a parent")
        .to_path_buf()
}

/// Where the binaries are: `WARDEN_BIN_DIR`, else the directory above this test binary's
/// `deps/` (i.e. `target/debug`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WARDEN_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary in target/<profile>/deps")
        .to_path_buf()
}

/// A built binary; panics with what to do when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (or set WARDEN_BIN_DIR)",
        p.display()
    );
    p
}

/// The busybox base root (`rootfs/build-busybox.sh target/test-rootfs`), built at most once
/// per run; the script itself skips an up-to-date tree. A file lock keeps test binaries that
/// run at the same time from building it together.
pub fn rootfs() -> PathBuf {
    static BUILD: Once = Once::new();
    let target = repo().join("target");
    let dir = target.join("test-rootfs");
    BUILD.call_once(|| {
        fs::create_dir_all(&target).expect("mkdir target");
        let lock = fs::File::create(target.join("test-rootfs.lock")).expect("create lock file");
        lock.lock().expect("lock test-rootfs.lock");
        let out = Command::new("sh")
            .arg(repo().join("rootfs/build-busybox.sh"))
            .arg(&dir)
            .output()
            .expect("run rootfs/build-busybox.sh");
        assert!(
            out.status.success(),
            "rootfs/build-busybox.sh failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    dir
}

/// Makes this process the reaper of its orphaned descendants (the containers' PID 1s).
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER"));
}

/// A container directory made by `hooks/setup.sh`, not started (or failed to start).
pub struct Prepared {
    /// The handle, `0afd00xx`.
    pub id: String,
    /// `<tmp>/<id>`.
    pub dir: PathBuf,
    /// The test's slot: network 10.253.0.(4 * index)/30.
    pub index: u8,
    parent: Option<tempfile::TempDir>,
    torn_down: bool,
}

/// Prepares container number `index` (1..=63, one per test) with `config` overrides of
/// etc/config (`rootfs_path` and `user_uid` = 10000 + index are set already).
pub fn prepare(index: u8, config: &[(&str, &str)]) -> Prepared {
    assert_root();
    assert!(
        (1..=63).contains(&index),
        "container index {index} out of 1..=63"
    );
    become_subreaper();
    let rootfs = rootfs();
    let parent = tempfile::Builder::new()
        .prefix("warden-wshd-test-")
        .tempdir()
        .expect("tempdir");
    let id = format!("0afd{:04x}", 4 * index as u32);
    let dir = parent.path().join(&id);
    let mut cmd = Command::new("sh");
    cmd.arg(repo().join("hooks/setup.sh"))
        .arg(&dir)
        .arg(format!("rootfs_path={}", rootfs.display()))
        .arg(format!("user_uid={}", 10000 + index as u32));
    for (k, v) in config {
        cmd.arg(format!("{k}={v}"));
    }
    let out = cmd.output().expect("run hooks/setup.sh");
    assert!(
        out.status.success(),
        "hooks/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Prepared {
        id,
        dir,
        index,
        parent: Some(parent),
        torn_down: false,
    }
}

/// How a start failed.
#[derive(Debug)]
pub struct StartFailure {
    pub status: std::process::ExitStatus,
    /// Everything wshd wrote (stdout and stderr: `run/wshd.log`).
    pub log: String,
}

impl Prepared {
    /// The host end's address, network + 1.
    pub fn host_ip(&self) -> String {
        format!("10.253.0.{}", 4 * self.index as u32 + 1)
    }

    /// The container end's address, network + 2.
    pub fn container_ip(&self) -> String {
        format!("10.253.0.{}", 4 * self.index as u32 + 2)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/wshd.sock")
    }

    /// Appends a line to etc/bind_mounts.
    pub fn add_bind_mount(&self, host: &Path, container: &str, mode: &str) {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("etc/bind_mounts"))
            .expect("open bind_mounts");
        writeln!(f, "{}\t{container}\t{mode}", host.display()).expect("write bind_mounts");
    }

    /// The container's copy of a hook (`lib/<script>`).
    pub fn hook(&self, script: &str) -> PathBuf {
        self.dir.join("lib").join(script)
    }

    /// Runs wshd on the directory, as the daemon does (stdout and stderr to run/wshd.log),
    /// and waits for its first process to exit.
    pub fn start(self) -> Result<Container, (Prepared, StartFailure)> {
        self.start_with(&[], &[])
    }

    /// [`Prepared::start`] with extra environment for wshd and `--cgroup` directories.
    pub fn start_with(
        self,
        env: &[(&str, &str)],
        cgroups: &[PathBuf],
    ) -> Result<Container, (Prepared, StartFailure)> {
        let log_path = self.dir.join("run/wshd.log");
        let log = fs::File::create(&log_path).expect("create wshd.log");
        let mut cmd = Command::new(bin("wshd"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        for c in cgroups {
            cmd.arg("--cgroup").arg(c);
        }
        let status = cmd
            .arg("--run")
            .arg(self.dir.join("run"))
            .arg("--lib")
            .arg(self.dir.join("lib"))
            .arg("--root")
            .arg(self.dir.join("mnt"))
            .arg("--title")
            .arg(format!("wshd: {}", self.id))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .status()
            .expect("run wshd");
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        if !status.success() {
            return Err((self, StartFailure { status, log }));
        }
        let pid: i32 = fs::read_to_string(self.dir.join("run/wshd.pid"))
            .expect("wshd exited 0 without run/wshd.pid")
            .trim()
            .parse()
            .expect("run/wshd.pid holds a pid");
        Ok(Container {
            prepared: self,
            pid: Some(pid),
        })
    }

    /// Runs lib/teardown.sh and removes the directory (refusing if anything is still
    /// mounted below it: a recursive delete would go into the mounted file system).
    /// Returns what is left on the host afterwards.
    pub fn teardown(mut self) -> Vec<String> {
        self.teardown_inner(true);
        leftovers(&self.id, &self.dir, None)
    }

    fn teardown_inner(&mut self, must: bool) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        let out = Command::new("sh")
            .arg(self.hook("teardown.sh"))
            .output()
            .expect("run teardown.sh");
        let failed = |what: String| {
            if must {
                panic!("{what}");
            } else {
                eprintln!("warning: {what}");
            }
        };
        if !out.status.success() {
            return failed(format!(
                "{}: teardown.sh failed: {}",
                self.id,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mounted = mounts_below(&self.dir);
        if !mounted.is_empty() {
            return failed(format!(
                "{}: still mounted after teardown, not deleting: {mounted:?}",
                self.id
            ));
        }
        if let Some(parent) = self.parent.take() {
            if let Err(e) = parent.close() {
                failed(format!(
                    "{}: cannot remove the container directory: {e}",
                    self.id
                ));
            }
        }
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.teardown_inner(!std::thread::panicking());
    }
}

/// A running container.
pub struct Container {
    pub prepared: Prepared,
    /// Host pid of its PID 1; `None` once killed.
    pid: Option<i32>,
}

/// What a process wrote and how it ended (`None`: wshd reported no status).
#[derive(Debug)]
pub struct Output {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics unless it exited 0; returns its stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.status, Some(ExitStatus::Code(0)), "failed: {self:?}");
        self.stdout
    }
}

/// Reads `fd` to EOF.
pub fn read_all(fd: OwnedFd) -> Vec<u8> {
    let mut v = Vec::new();
    fs::File::from(fd).read_to_end(&mut v).expect("read to EOF");
    v
}

impl Container {
    pub fn id(&self) -> &str {
        &self.prepared.id
    }

    pub fn dir(&self) -> &Path {
        &self.prepared.dir
    }

    pub fn socket(&self) -> PathBuf {
        self.prepared.socket()
    }

    /// Host pid of the container's PID 1.
    pub fn pid(&self) -> i32 {
        self.pid.expect("container already killed")
    }

    /// Spawns `req` through wshd, feeds it `stdin`, and collects its output and status.
    pub fn run_req(&self, req: &SpawnRequest, stdin: &[u8]) -> Output {
        let s = client::spawn(&self.socket(), req)
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", req.argv));
        let Stdio::Pipes {
            stdin: w,
            stdout,
            stderr,
        } = s.stdio
        else {
            panic!("pipes expected")
        };
        let input = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            // EPIPE if the process does not read it all: fine.
            let _ = fs::File::from(w).write_all(&input);
        });
        let err = std::thread::spawn(move || read_all(stderr));
        let stdout = read_all(stdout);
        let stderr = err.join().expect("stderr reader");
        let status = ExitStatus::parse(&read_all(s.status));
        feeder.join().expect("stdin feeder");
        Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Runs `script` with `/bin/sh -c` as `user` (default: vcap).
    pub fn sh(&self, user: Option<&str>, script: &str) -> Output {
        let req = SpawnRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            user: user.map(str::to_string),
            ..Default::default()
        };
        self.run_req(&req, b"")
    }

    /// Kills PID 1 (the kernel kills the rest of its PID namespace) and waits until it is
    /// gone: reaped as our orphan, or, if it is not our child, its pidfd polled.
    pub fn kill(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let pid = Pid::from_raw(pid);
        let pidfd = pidfd_open(pid);
        kill(pid, Signal::SIGKILL).expect("kill the container's PID 1");
        match waitpid(pid, None) {
            Ok(_) => {}
            Err(nix::errno::Errno::ECHILD) => {
                if let Some(fd) = pidfd {
                    let mut fds = [nix::poll::PollFd::new(
                        fd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE).expect("poll pidfd");
                }
            }
            Err(e) => panic!("waitpid {pid}: {e}"),
        }
    }

    /// Kills the container, tears it down, removes its directory; returns what is left of
    /// it on the host (nothing, if all is well).
    pub fn destroy(mut self) -> Vec<String> {
        let pid = self.pid;
        self.kill();
        let id = self.prepared.id.clone();
        let dir = self.prepared.dir.clone();
        // Move the directory out: Drop must not tear down twice.
        let prepared = std::mem::replace(
            &mut self.prepared,
            Prepared {
                id: String::new(),
                dir: PathBuf::new(),
                index: 0,
                parent: None,
                torn_down: true,
            },
        );
        let mut left = prepared.teardown();
        left.extend(leftovers(&id, &dir, pid));
        left.sort();
        left.dedup();
        left
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.kill();
        // Then `prepared` drops: teardown.sh and the directory.
    }
}

/// pidfd_open(2): a handle that becomes readable when `pid` exits.
fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    // SAFETY: a non-negative return value is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Mount points (of this, the host's, mount namespace) at or below `dir`.
pub fn mounts_below(dir: &Path) -> Vec<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").expect("read /proc/self/mounts");
    let prefix = dir.to_string_lossy().replace(' ', "\\040");
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// What a container (handle `id`, directory `dir`, PID 1 `pid`) left on the host: mounts
/// below its directory, loop devices backed by its disk.img, its host veth, processes
/// (its PID 1, anything whose command line names it), its directory.
pub fn leftovers(id: &str, dir: &Path, pid: Option<i32>) -> Vec<String> {
    let mut left: Vec<String> = mounts_below(dir)
        .into_iter()
        .map(|m| format!("mount {m}"))
        .collect();
    let img = dir.join("disk.img").to_string_lossy().into_owned();
    for entry in fs::read_dir("/sys/block")
        .expect("read /sys/block")
        .flatten()
    {
        if let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) {
            let backing = backing.trim_end();
            if backing == img || backing == format!("{img} (deleted)") {
                left.push(format!(
                    "loop device {} for {backing}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    let veth = format!("w-{id}-0");
    if Path::new("/sys/class/net").join(&veth).exists() {
        left.push(format!("interface {veth}"));
    }
    if let Some(pid) = pid {
        if Path::new(&format!("/proc/{pid}")).exists() {
            left.push(format!("process {pid} (the container's PID 1)"));
        }
    }
    let dir_s = dir.to_string_lossy().into_owned();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&format!("wshd: {id}")) || cmdline.contains(&dir_s) {
                left.push(format!("process {name}: {cmdline}"));
            }
        }
    }
    if dir.exists() {
        left.push(format!("directory {}", dir.display()));
    }
    left
}

//! The `warden` command end to end: the built binary against a real `wardend` (as root), one
//! command per process, and the interactive shell driven through a pseudo-terminal.
//!
//! Only one daemon may own the host's firewall chains at a time, so the tests that need a
//! daemon take `DAEMON`, start their own daemon (network pool 10.254.128.0/28, apart from
//! the daemon suite's) and stop it before they let go; at the end each checks that its
//! containers are gone and that the depot is empty. The tests without a daemon (usage
//! errors, daemon not running) run beside them.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_test::daemon_env::{bin_dir, init_pid, leftovers, Daemon};

static DAEMON: Mutex<()> = Mutex::new(());

fn warden_bin() -> PathBuf {
    bin_dir().join("warden")
}

/// A daemon for one test; `f` runs with it, then every container still alive is destroyed,
/// the daemon is stopped and its depot must be empty.
fn with_daemon(f: impl FnOnce(&Daemon)) {
    let _one_daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let mut daemon = Daemon::start(
        "  container_disk_size_mb: 64\n  container_stop_grace_time: 1\n  container_grace_time: null\n",
        "  pool_start_address: 10.254.128.0\n  pool_size: 16",
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&daemon)));
    let mut c = daemon.client();
    let alive = c.ok(json!(["list"]));
    for h in alive.as_array().unwrap() {
        let _ = c.call(json!(["destroy", h]));
    }
    drop(c);
    let status = daemon.stop();
    let depot_left: Vec<_> = std::fs::read_dir(&daemon.depot)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if let Err(panic) = result {
        let log = daemon.log();
        let lines: Vec<_> = log.lines().collect();
        eprintln!("--- wardend log (last 100 lines) ---");
        for l in &lines[lines.len().saturating_sub(100)..] {
            eprintln!("{l}");
        }
        std::panic::resume_unwind(panic);
    }
    assert!(
        alive.as_array().unwrap().is_empty(),
        "the test left containers alive: {alive}"
    );
    assert!(status.success(), "wardend exited with {status}");
    assert!(
        depot_left.is_empty(),
        "depot not empty after shutdown: {depot_left:?}"
    );
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `warden ARGS` with `WARDEN_SOCKET=socket`, in `cwd`, with `stdin` as its input.
fn warden_at(socket: &Path, cwd: &Path, args: &[&str], stdin: &[u8]) -> Out {
    let mut child = Command::new(warden_bin())
        .args(args)
        .env("WARDEN_SOCKET", socket)
        .env("HOME", cwd)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for warden");
    feeder.join().unwrap();
    Out {
        code: out.status.code().expect("warden ended by a signal"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// `warden ARGS` against `d`, which must succeed; returns stdout.
fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = warden_at(&d.socket, d.dir.path(), args, b"");
    assert_eq!(o.code, 0, "warden {args:?}: {o:?}");
    o.stdout
}

fn run(d: &Daemon, args: &[&str]) -> Out {
    warden_at(&d.socket, d.dir.path(), args, b"")
}

/// `warden --json ARGS`, parsed back.
fn json_of(d: &Daemon, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(d, &all);
    assert_eq!(
        out.lines().count(),
        1,
        "--json printed more than a line: {out}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?} is not JSON: {e}"))
}

fn destroy_clean(d: &Daemon, h: &str) {
    let pid = init_pid(&d.depot, h);
    assert_eq!(ok(d, &["destroy", h]), "ok\n");
    let left = leftovers(h, &d.depot, Some(pid));
    assert!(left.is_empty(), "destroy of {h} left: {left:#?}");
}

fn is_handle(s: &str) -> bool {
    s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------
// Without a daemon

#[test]
fn help_names_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("none.sock");
    let o = warden_at(&none, dir.path(), &["--help"], b"");
    assert_eq!(o.code, 0, "{o:?}");
    let commands = [
        "ping", "create", "spawn", "link", "run", "limit", "net", "copy", "stop", "destroy",
        "info", "list", "shell",
    ];
    for c in commands {
        assert!(
            o.stdout.lines().any(|l| l.trim_start().starts_with(c)),
            "--help does not list {c}:\n{}",
            o.stdout
        );
        let sub = warden_at(&none, dir.path(), &[c, "--help"], b"");
        assert_eq!(sub.code, 0, "{c} --help: {sub:?}");
        assert!(sub.stdout.contains("Usage: warden "), "{c} --help: {sub:?}");
    }
    let o = warden_at(&none, dir.path(), &["create", "--help"], b"");
    for flag in ["--bind-mount", "--grace-time", "--disk-size-mb"] {
        assert!(o.stdout.contains(flag), "create --help lacks {flag}");
    }
}

#[test]
fn usage_errors_exit_2_and_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // No daemon behind this socket: a usage error must be found before connecting (2, not 1).
    let none = dir.path().join("none.sock");
    for args in [
        &["frobnicate"][..],
        &["run", "0afe8000"],
        &["run"],
        &["link", "0afe8000", "seven"],
        &["limit", "0afe8000", "cpu"],
        &["limit", "0afe8000", "mem", "lots"],
        &["limit", "0afe8000", "mem", "12Q"],
        &["net", "0afe8000", "out"],
        &["net", "0afe8000", "in", "10.0.0.0/8"],
        &["net", "0afe8000", "sideways"],
        &["copy", "0afe8000", "in", "/a"],
        &["copy", "0afe8000", "in", "/a", "/b", "--owner", "root:root"],
        &["create", "--bind-mount", "/only-one-path"],
        &["create", "--bind-mount", "/a:/b:rx"],
        &["create", "--grace-time", "soon"],
        &["create", "--disk-size-mb", "big"],
        &["info"],
        &["info", "0afe8000", "extra"],
        &["--no-such-flag", "list"],
    ] {
        let o = warden_at(&none, dir.path(), args, b"");
        assert_eq!(o.code, 2, "warden {args:?}: {o:?}");
        assert!(o.stdout.is_empty(), "warden {args:?}: {o:?}");
        assert!(o.stderr.starts_with("error: "), "warden {args:?}: {o:?}");
        assert!(!o.stderr.contains("not running"), "warden {args:?}: {o:?}");
    }
}

#[test]
fn daemon_not_running_is_one_sentence_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sock");
    // A socket file whose daemon is gone: connecting is refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    for socket in [&missing, &stale] {
        for args in [&["ping"][..], &["list"], &["info", "0afe8000"]] {
            let o = warden_at(socket, dir.path(), args, b"");
            assert_eq!(o.code, 1, "{args:?} on {}: {o:?}", socket.display());
            assert!(o.stdout.is_empty(), "{o:?}");
            assert_eq!(o.stderr.lines().count(), 1, "{o:?}");
            assert!(o.stderr.contains("not running"), "{o:?}");
            assert!(o.stderr.contains(&*socket.to_string_lossy()), "{o:?}");
        }
        // --socket wins over WARDEN_SOCKET.
        let o = warden_at(
            Path::new("/nonexistent/env.sock"),
            dir.path(),
            &["--socket", &socket.to_string_lossy(), "ping"],
            b"",
        );
        assert!(o.stderr.contains(&*socket.to_string_lossy()), "{o:?}");
    }
    // The default socket is the daemon's default.
    let o = Command::new(warden_bin())
        .args(["--help"])
        .env_remove("WARDEN_SOCKET")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("/tmp/warden.sock"));
}

// ---------------------------------------------------------------------------------------
// One command per process

#[test]
fn every_command_end_to_end() {
    with_daemon(|d| {
        let cwd = d.dir.path();
        assert_eq!(ok(d, &["ping"]), "pong\n");
        assert_eq!(json_of(d, &["ping"]), json!("pong"));
        // --socket wins over WARDEN_SOCKET.
        let o = warden_at(
            Path::new("/nonexistent/warden.sock"),
            cwd,
            &["--socket", &d.socket.to_string_lossy(), "ping"],
            b"",
        );
        assert_eq!(o.stdout, "pong\n", "{o:?}");

        // create with every flag; a relative bind-mount source is taken from our directory.
        let shared = cwd.join("shared");
        std::fs::create_dir(&shared).unwrap();
        // Writable by the container's user, whose uid is not ours.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(shared.join("note"), "from the host\n").unwrap();
        let out = ok(
            d,
            &[
                "create",
                "--bind-mount",
                "shared:/mnt/shared",
                "--bind-mount",
                &format!("{}:/mnt/rw:rw", shared.display()),
                "--grace-time",
                "none",
                "--disk-size-mb",
                "32",
            ],
        );
        let h = out.trim_end().to_string();
        assert!(is_handle(&h), "create printed {out:?}");
        assert_eq!(
            ok(d, &["run", &h, "cat /mnt/shared/note"]),
            "from the host\n"
        );
        let o = run(d, &["run", &h, "touch /mnt/shared/x"]);
        assert_ne!(o.code, 0, "a read-only bind mount was writable: {o:?}");
        ok(d, &["run", &h, "echo w > /mnt/rw/written"]);
        assert_eq!(
            std::fs::read_to_string(shared.join("written")).unwrap(),
            "w\n"
        );

        // run: output where it belongs, the job's exit status as ours.
        let o = run(d, &["run", &h, "echo out; echo err >&2; exit 7"]);
        assert_eq!(
            (o.code, o.stdout.as_str(), o.stderr.as_str()),
            (7, "out\n", "err\n")
        );
        assert_eq!(ok(d, &["run", &h, "echo hi; id -un"]), "hi\nvcap\n");
        let o = warden_at(
            &d.socket,
            cwd,
            &["run", &h, "-"],
            b"echo from stdin\nexit 3\n",
        );
        assert_eq!((o.code, o.stdout.as_str()), (3, "from stdin\n"), "{o:?}");
        // --json: the payload on one line, and success whatever the job's status.
        assert_eq!(
            json_of(d, &["run", &h, "echo out; echo err >&2; exit 7"]),
            json!([7, "out\n", "err\n"])
        );

        // spawn + link.
        let job = ok(d, &["spawn", &h, "sleep 0.2; echo later; exit 5"]);
        let job = job.trim_end();
        assert!(job.parse::<u64>().is_ok(), "spawn printed {job:?}");
        let o = run(d, &["link", &h, job]);
        assert_eq!((o.code, o.stdout.as_str()), (5, "later\n"), "{o:?}");
        assert_eq!(json_of(d, &["link", &h, job]), json!([5, "later\n", ""]));
        let job = json_of(d, &["spawn", &h, "-"]);
        assert!(job.is_u64(), "{job}");
        let o = run(d, &["link", &h, "999999"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains("no such job"), "{o:?}");

        // limit, with sizes for people.
        assert_eq!(ok(d, &["limit", &h, "mem"]), "0 (no limit)\n");
        assert_eq!(ok(d, &["limit", &h, "mem", "64M"]), "ok\n");
        assert_eq!(ok(d, &["limit", &h, "mem"]), "67108864 (64M)\n");
        assert_eq!(json_of(d, &["limit", &h, "mem"]), json!(64u64 << 20));
        assert_eq!(ok(d, &["limit", &h, "mem", "1G"]), "ok\n");
        assert_eq!(json_of(d, &["limit", &h, "mem"]), json!(1u64 << 30));
        assert_eq!(ok(d, &["limit", &h, "mem", "67108864"]), "ok\n");

        // net in prints the port; net out takes a rule; a bad rule is the daemon's error.
        let port = ok(d, &["net", &h, "in"]);
        let port: u16 = port.trim_end().parse().expect("net in prints a port");
        assert_eq!(ok(d, &["net", &h, "out", "10.253.9.0/24:80"]), "ok\n");
        let o = run(d, &["net", &h, "out", "not-a-network"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains("invalid request"), "{o:?}");

        // copy in and out, host paths relative to the caller's directory.
        let src = cwd.join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
        std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
        assert_eq!(ok(d, &["copy", &h, "in", "src/", "/home/vcap/app"]), "ok\n");
        assert_eq!(
            ok(d, &["run", &h, "cat app/a.txt app/sub/b.txt"]),
            "alpha\nbeta\n"
        );
        assert_eq!(
            ok(d, &["copy", &h, "out", "/home/vcap/app", "back/"]),
            "ok\n"
        );
        assert_eq!(
            std::fs::read_to_string(cwd.join("back/app/sub/b.txt")).unwrap(),
            "beta\n"
        );
        assert_eq!(
            ok(
                d,
                &[
                    "copy",
                    &h,
                    "out",
                    "/home/vcap/app/a.txt",
                    "owned.txt",
                    "--owner",
                    "65534:65534"
                ]
            ),
            "ok\n"
        );
        let meta = std::fs::metadata(cwd.join("owned.txt")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        let o = run(d, &["copy", &h, "in", "does-not-exist", "/tmp"]);
        assert_eq!(o.code, 1, "{o:?}");

        // info: for people, aligned key: value lines with state first; --json parsed back.
        let info = ok(d, &["info", &h]);
        let lines: Vec<&str> = info.lines().collect();
        assert!(lines[0].starts_with("state:"), "{info}");
        assert!(lines[0].ends_with(" active"), "{info}");
        let column = lines[0].len() - "active".len();
        for l in &lines {
            let (key, _) = l.split_once(':').expect("key: value");
            assert!(!key.contains(' '), "{l:?}");
            assert!(
                l.len() >= column
                    && l.as_bytes()[column - 1] == b' '
                    && l.as_bytes()[column] != b' ',
                "values are not aligned:\n{info}"
            );
        }
        assert!(
            info.contains("net_in_ports:") && info.contains(&port.to_string()),
            "{info}"
        );
        assert!(info.contains("limits.mem:"), "{info}");
        let v = json_of(d, &["info", &h]);
        assert_eq!(v["state"], json!("active"));
        assert_eq!(v["limits"]["mem"], json!(64u64 << 20));
        assert_eq!(v["net_in_ports"], json!([port]));
        assert_eq!(
            v["container_path"],
            json!(d.depot.join(&h).to_string_lossy())
        );
        assert!(v["stats"]["mem_usage_B"].as_u64().unwrap() > 0);

        // list: one handle a line.
        let h2 = json_of(d, &["create"]);
        let h2 = h2.as_str().expect("--json create is a string").to_string();
        let mut listed: Vec<String> = ok(d, &["list"]).lines().map(String::from).collect();
        listed.sort();
        let mut expected = vec![h.clone(), h2.clone()];
        expected.sort();
        assert_eq!(listed, expected);
        let mut listed: Vec<String> = serde_json::from_value(json_of(d, &["list"])).unwrap();
        listed.sort();
        assert_eq!(listed, expected);

        // Unknown handles: the daemon's sentence, exit 1, nothing on stdout.
        for args in [
            &["info", "00000000"][..],
            &["run", "00000000", "true"],
            &["destroy", "00000000"],
            &["limit", "00000000", "mem"],
        ] {
            let o = run(d, args);
            assert_eq!(o.code, 1, "{args:?}: {o:?}");
            assert!(o.stdout.is_empty(), "{o:?}");
            assert!(o.stderr.contains("unknown handle"), "{o:?}");
        }

        // stop: jobs end by TERM (128 + 15); new jobs are refused; info still works.
        let job = ok(d, &["spawn", &h, "sleep 60"]);
        assert_eq!(ok(d, &["stop", &h]), "ok\n");
        let o = run(d, &["link", &h, job.trim_end()]);
        assert_eq!(o.code, 143, "{o:?}");
        let o = run(d, &["run", &h, "true"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains("state"), "{o:?}");
        assert_eq!(json_of(d, &["info", &h])["state"], json!("stopped"));

        // Commands read from a pipe run one after another, as a script.
        let script = format!("ping\nrun {h2} \"echo piped; exit 4\"\n");
        let o = warden_at(&d.socket, cwd, &[], script.as_bytes());
        assert_eq!((o.code, o.stdout.as_str()), (4, "pong\npiped\n"), "{o:?}");

        destroy_clean(d, &h);
        destroy_clean(d, &h2);
        assert_eq!(ok(d, &["list"]), "");
        assert_eq!(json_of(d, &["list"]), json!([]));
    });
}

// ---------------------------------------------------------------------------------------
// The interactive shell, through a pseudo-terminal

/// `warden` on the slave side of a pty; the test types on the master side and reads the
/// screen, with the terminal's escape sequences and carriage returns taken out.
struct Shell {
    child: Child,
    master: File,
    screen: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// How much of the cleaned screen earlier `expect`s consumed.
    seen: usize,
    prompt: String,
}

impl Shell {
    fn start(d: &Daemon, home: &Path) -> Shell {
        let winsize = nix::pty::Winsize {
            ws_row: 50,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&winsize), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let child = Command::new(warden_bin())
            .env("WARDEN_SOCKET", &d.socket)
            .env("HOME", home)
            .env("TERM", "xterm")
            .current_dir(home)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("start warden");
        let master = File::from(pty.master);
        let screen = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut reader = master.try_clone().unwrap();
        let s = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the shell and everything it started closed the slave.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                s.0.lock().unwrap().extend_from_slice(&buf[..n]);
                s.1.notify_all();
            }
        });
        let mut sh = Shell {
            child,
            master,
            screen,
            seen: 0,
            prompt: format!("warden {}> ", d.socket.display()),
        };
        sh.expect("`help` lists the commands");
        sh.expect_prompt();
        sh
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until `pattern` shows after what earlier calls consumed; returns the text up to
    /// the end of it and consumes it.
    fn expect(&mut self, pattern: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (lock, cond) = &*self.screen;
        let mut raw = lock.lock().unwrap();
        loop {
            let text = clean(&raw);
            if let Some(i) = text[self.seen..].find(pattern) {
                let end = self.seen + i + pattern.len();
                let got = text[self.seen..end].to_string();
                self.seen = end;
                return got;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "the shell did not show {pattern:?}; after the last match it shows:\n{}",
                    &text[self.seen..]
                );
            }
            raw = cond.wait_timeout(raw, deadline - now).unwrap().0;
        }
    }

    fn expect_prompt(&mut self) -> String {
        let p = self.prompt.clone();
        self.expect(&p)
    }

    /// Types a line and returns the line as the screen shows it (after completion) and what
    /// the command printed, up to the next prompt.
    fn line(&mut self, keys: &str) -> String {
        self.send(keys);
        self.send("\r");
        // Completion redraws the prompt and the line; the line ends at the newline of Enter.
        let mut out = self.expect("\n");
        out.push_str(&self.expect_prompt());
        out.truncate(out.len() - self.prompt.len());
        out
    }

    fn wait(mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "the shell did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The screen's text without escape sequences, carriage returns and bells. An escape
/// sequence cut off at the end is left out until it is complete, so the text of a prefix
/// is a prefix of the text of the whole.
fn clean(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            0x1b => {
                let Some(&next) = raw.get(i + 1) else { break };
                if next == b'[' {
                    // CSI: parameters and intermediates, then one final byte 0x40..=0x7e.
                    let mut j = i + 2;
                    while j < raw.len() && !(0x40..=0x7e).contains(&raw[j]) {
                        j += 1;
                    }
                    if j == raw.len() {
                        break;
                    }
                    i = j + 1;
                } else {
                    i += 2;
                }
            }
            b'\r' | 0x07 => i += 1,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn common_prefix(a: &str, b: &str) -> String {
    a.chars()
        .zip(b.chars())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

fn handle_in(output: &str) -> String {
    output
        .lines()
        .map(str::trim)
        .find(|l| is_handle(l))
        .unwrap_or_else(|| panic!("no handle in {output:?}"))
        .to_string()
}

#[test]
fn interactive_shell() {
    with_daemon(|d| {
        let home = tempfile::tempdir().unwrap();
        let mut sh = Shell::start(d, home.path());

        let a = handle_in(&sh.line("create"));
        // One container: a prefix of its handle completes to it.
        let out = sh.line(&format!("run {}\t \"echo hi; echo there; ls /\"", &a[..4]));
        assert!(
            out.contains(&format!("run {a} ")),
            "the handle was not completed: {out:?}"
        );
        assert!(out.contains("hi\nthere\nbin\n"), "{out:?}");
        // Command names complete too, and a failing job shows its status.
        let out = sh.line("lis\t");
        assert!(out.contains(&format!("\n{a}\n")), "{out:?}");
        let out = sh.line(&format!("run {a} 'exit 4'"));
        assert!(out.contains("[exit status 4]"), "{out:?}");
        let out = sh.line(&format!("run {a} \"printf '%s' \\\"a b\\\"\""));
        assert!(out.contains("\na b"), "{out:?}");

        // Two containers: the common prefix lists both; sub-commands complete.
        let b = handle_in(&sh.line("create --grace-time none"));
        let prefix = common_prefix(&a, &b);
        sh.send(&format!("info {prefix}\t\t"));
        let listing = sh.expect(&b);
        assert!(listing.contains(&a), "{listing:?}");
        // Below the list, the line is shown again as it was.
        let redrawn = format!("{}info {prefix}", sh.prompt);
        sh.expect(&redrawn);
        sh.send("\x15"); // Ctrl-U: drop the line
        let out = sh.line(&format!("net {b} o\t10.253.9.0/24:443"));
        assert!(
            out.contains(&format!("net {b} out 10.253.9.0/24:443")),
            "{out:?}"
        );
        assert!(out.contains("\nok\n"), "{out:?}");
        let out = sh.line(&format!("limit {b} m\t512M"));
        assert!(out.contains("\nok\n"), "{out:?}");
        let out = sh.line(&format!("limit {b} mem"));
        assert!(out.contains("536870912 (512M)"), "{out:?}");
        let out = sh.line(&format!("--json info {b}"));
        let json_line = out
            .lines()
            .find(|l| l.starts_with('{'))
            .expect("a JSON line");
        let v: Value = serde_json::from_str(json_line).unwrap();
        assert_eq!(v["limits"]["mem"], json!(512u64 << 20));

        // help, errors and usage errors leave the shell running.
        let out = sh.line("help");
        for c in ["create", "run", "copy", "destroy", "exit"] {
            assert!(
                out.contains(&format!("\n  {c} ")),
                "help lacks {c}: {out:?}"
            );
        }
        let out = sh.line("help limit");
        assert!(out.contains("limit <HANDLE> mem [BYTES]"), "{out:?}");
        let out = sh.line("info 00000000");
        assert!(out.contains("unknown handle"), "{out:?}");
        let out = sh.line("run");
        assert!(out.contains("required arguments"), "{out:?}");
        let out = sh.line("run 'unclosed");
        assert!(out.contains("unclosed quote"), "{out:?}");
        let out = sh.line(&format!("run {a} -"));
        assert!(out.contains("only outside the shell"), "{out:?}");
        assert!(sh.line("ping").contains("\npong\n"));

        // destroy both, through completion; then nothing is listed.
        let out = sh.line(&format!("destroy {a}"));
        assert!(out.contains("\nok\n"), "{out:?}");
        let out = sh.line(&format!("destroy {}\t", &b[..3]));
        assert!(out.contains(&format!("destroy {b} ")), "{out:?}");
        assert!(out.contains("\nok\n"), "{out:?}");
        let out = sh.line("list");
        assert!(!out.contains(&a) && !out.contains(&b), "{out:?}");
        sh.send("exit\r");
        let st = sh.wait();
        assert!(st.success(), "the shell exited with {st}");

        // History survives: a new shell recalls the last line with the Up arrow.
        let history = std::fs::read_to_string(home.path().join(".warden_history")).unwrap();
        assert!(history.contains("create --grace-time none"), "{history}");
        let mut sh = Shell::start(d, home.path());
        sh.send("\x1b[A");
        sh.expect("exit");
        sh.send("\r");
        let st = sh.wait();
        assert!(st.success(), "the shell exited with {st}");

        // Ctrl-D leaves too.
        let mut sh = Shell::start(d, home.path());
        let out = sh.line("list");
        assert_eq!(out.trim(), "list", "{out:?}");
        sh.send("\x04");
        assert!(sh.wait().success());
    });
}

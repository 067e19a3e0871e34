//! wshd on its own (no daemon), as root: real namespaces, mounts, veth, through the client
//! library and through `wsh`. Each test has its own container slot (id 0afd00xx, network
//! 10.253.0.xx/30) and checks what its container leaves behind.
//!
//! Every wait is on a kernel notification (process exit, pipe or socket EOF); timeouts
//! appear only as upper bounds that turn a hang into a failure.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use warden_helper::client;
use warden_helper::proto::{ExitStatus, Rlimit, SpawnRequest};
use warden_helper::Error;
use warden_test::wshd_env::{self, leftovers, prepare, read_all, Container, Prepared};

fn start(index: u8, config: &[(&str, &str)]) -> Container {
    start_prepared(prepare(index, config))
}

fn start_prepared(p: Prepared) -> Container {
    match p.start() {
        Ok(c) => c,
        Err((_, f)) => panic!("wshd failed ({}): {}", f.status, f.log),
    }
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn assert_clean(left: Vec<String>) {
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The host pid of a process of the container, from its pid in the container (NSpid).
fn host_pid(c: &Container, container_pid: i32) -> i32 {
    let init_ns = fs::read_link(format!("/proc/{}/ns/pid", c.pid())).expect("init's pid ns");
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok().as_ref() != Some(&init_ns) {
            continue;
        }
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let nspid = status
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .unwrap_or("");
        if nspid.split_whitespace().last() == Some(&container_pid.to_string()) {
            return pid;
        }
    }
    panic!("no host process for container pid {container_pid}")
}

// ---------------------------------------------------------------------------------------
// Isolation

#[test]
fn namespaces_hostname_processes_and_network() {
    let c = start(1, &[]);
    let p = &c.prepared;

    // Every namespace of a spawned process differs from the host's, and is the init's.
    let inside = c
        .sh(
            None,
            "for n in pid net mnt uts ipc; do readlink /proc/self/ns/$n; done",
        )
        .ok();
    let inside: Vec<&str> = inside.lines().collect();
    assert_eq!(inside.len(), 5, "{inside:?}");
    for (n, got) in ["pid", "net", "mnt", "uts", "ipc"].iter().zip(&inside) {
        let host = fs::read_link(format!("/proc/self/ns/{n}")).unwrap();
        assert_ne!(
            host.to_string_lossy(),
            *got,
            "{n} namespace shared with the host"
        );
        let init = fs::read_link(format!("/proc/{}/ns/{n}", c.pid())).unwrap();
        assert_eq!(
            init.to_string_lossy(),
            *got,
            "{n} namespace differs from the init's"
        );
    }

    // PID 1 is wshd, titled; ps sees only the container's processes.
    let out = c
        .sh(
            None,
            "cat /proc/1/comm; tr '\\0' '|' </proc/1/cmdline; echo; ps -o pid,args",
        )
        .ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(format!("wshd: {}", p.id).as_str()));
    assert_eq!(lines.next(), Some(format!("wshd: {}|", p.id).as_str()));
    let ps: Vec<&str> = lines.skip(1).collect();
    assert_eq!(ps.len(), 3, "only wshd, sh and ps: {ps:#?}");
    assert!(
        ps[0].trim_start().starts_with(&format!("1 wshd: {}", p.id)),
        "{ps:?}"
    );
    assert!(
        ps.iter().any(|l| l.contains("sh -c")) && ps.iter().any(|l| l.contains("ps -o")),
        "{ps:?}"
    );
    // The host sees the title too.
    let host_cmdline = fs::read(format!("/proc/{}/cmdline", c.pid())).unwrap();
    assert_eq!(host_cmdline, format!("wshd: {}\0", p.id).into_bytes());

    // Hostname, interfaces, address, route.
    assert_eq!(c.sh(None, "hostname").ok(), format!("{}\n", p.id));
    let ifaces = c.sh(None, "ls /sys/class/net").ok();
    let ifaces: BTreeSet<&str> = ifaces.split_whitespace().collect();
    let veth = format!("w-{}-1", p.id);
    assert_eq!(ifaces, BTreeSet::from(["lo", veth.as_str()]));
    let addr = c.sh(None, &format!("ip -4 -o addr show dev {veth}")).ok();
    assert!(
        addr.contains(&format!("inet {}/30", p.container_ip())),
        "{addr}"
    );
    // The host end exists on the host, with the host address.
    let host_addr = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &format!("w-{}-0", p.id)])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&host_addr.stdout).contains(&format!("inet {}/30", p.host_ip()))
    );

    // The unprivileged user reaches the host end with ICMP echo.
    let ping = c.sh(None, &format!("ping -c1 -W5 {}", p.host_ip()));
    assert_eq!(
        ping.status,
        Some(ExitStatus::Code(0)),
        "ping as vcap: {ping:?}"
    );

    assert_clean(c.destroy());
}

#[test]
fn users_and_capabilities() {
    let c = start(2, &[]);
    let uid = 10000 + 2;

    // Default user: vcap with the configured uid, in its home, no capabilities at all.
    let out = c.sh(None, "id -u; id -un; id -g; pwd; echo $HOME $USER $LOGNAME $SHELL; echo $PATH; grep ^Cap /proc/self/status; grep NoNewPrivs /proc/self/status").ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        &l[..6],
        [
            &uid.to_string(),
            "vcap",
            &uid.to_string(),
            "/home/vcap",
            "/home/vcap vcap vcap /bin/sh",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ]
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            l.contains(&format!("{set}:\t0000000000000000").as_str()),
            "{set} of vcap: {l:?}"
        );
    }
    assert!(l.contains(&"NoNewPrivs:\t1"), "{l:?}");

    // Root only when asked: Docker's default set (see helper/src/privs.rs).
    let out = c
        .sh(Some("root"), "id -u; pwd; grep ^Cap /proc/self/status")
        .ok();
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(&l[..2], ["0", "/root"]);
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd"] {
        assert!(
            l.contains(&format!("{set}:\t00000000a80425fb").as_str()),
            "{set} of root: {l:?}"
        );
    }
    assert!(l.contains(&"CapAmb:\t0000000000000000"), "{l:?}");
    // Root cannot do what the dropped capabilities allow (CAP_SYS_ADMIN: mount).
    let m = c.sh(Some("root"), "mount -t tmpfs none /mnt");
    assert_ne!(
        m.status,
        Some(ExitStatus::Code(0)),
        "mount worked without CAP_SYS_ADMIN: {m:?}"
    );

    // By uid, with groups from /etc/group; an unknown name is refused.
    assert_eq!(c.sh(Some(&uid.to_string()), "id -un").ok(), "vcap\n");
    assert_eq!(c.sh(Some("65534"), "id -u; id -g").ok(), "65534\n65534\n");
    let e = client::spawn(
        &c.socket(),
        &SpawnRequest {
            argv: argv(&["true"]),
            user: Some("nosuch".into()),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Remote(m) if m.contains("unknown user \"nosuch\"")),
        "{e}"
    );

    assert_clean(c.destroy());
}

// ---------------------------------------------------------------------------------------
// Spawning: stdio, status, env, errors

#[test]
fn stdio_status_env_and_errors_through_the_client() {
    let c = start(3, &[]);
    let s = c.socket();

    // stdin in, stdout and stderr out, exit code.
    let req = SpawnRequest {
        argv: argv(&["sh", "-c", "cat; echo to-stderr >&2; exit 5"]),
        ..Default::default()
    };
    let out = c.run_req(&req, b"hello\nworld\n");
    assert_eq!(
        (out.status, out.stdout.as_str(), out.stderr.as_str()),
        (Some(ExitStatus::Code(5)), "hello\nworld\n", "to-stderr\n")
    );

    // Death by signal.
    let out = c.sh(None, "kill -TERM $$");
    assert_eq!(out.status, Some(ExitStatus::Signal(15)));
    assert_eq!(out.status.unwrap().shell_code(), 143);

    // Environment, working directory, rlimits.
    let req = SpawnRequest {
        argv: argv(&["sh", "-c", "echo $FOO $PATH; pwd; ulimit -n"]),
        env: vec!["FOO=bar baz".into(), "PATH=/bin".into()],
        dir: Some("/tmp".into()),
        rlimits: vec![Rlimit {
            resource: "nofile".into(),
            soft: 64,
            hard: 128,
        }],
        ..Default::default()
    };
    assert_eq!(c.run_req(&req, b"").ok(), "bar baz /bin\n/tmp\n64\n");

    // No host fd reaches the process: only its 0, 1, 2.
    let fds = c.sh(None, "ls /proc/$$/fd").ok();
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    // wshd itself holds its stdio, the listener and the signalfd, nothing it inherited
    // (this test process has more open), and the container's root may not look at them:
    // PID 1 has capabilities that root in the container lacks (ptrace access mode check).
    let wshd_fds: BTreeSet<String> = fs::read_dir(format!("/proc/{}/fd", c.pid()))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let targets: Vec<String> = wshd_fds
        .iter()
        .map(|fd| {
            let t = fs::read_link(format!("/proc/{}/fd/{fd}", c.pid()));
            format!("{fd} -> {t:?}")
        })
        .collect();
    assert_eq!(
        wshd_fds,
        ["0", "1", "2", "3", "4"].map(String::from).into(),
        "wshd's open fds: {targets:?}"
    );
    let out = c.sh(Some("root"), "ls -l /proc/1/fd/");
    assert!(out.stderr.contains("Permission denied"), "{out:?}");

    // Failures the client learns about, and wshd keeps serving.
    let err = |req: SpawnRequest| client::spawn(&s, &req).map(|_| ()).unwrap_err().to_string();
    let e = err(SpawnRequest {
        argv: argv(&["/no/such/program"]),
        ..Default::default()
    });
    assert_eq!(e, "exec /no/such/program: No such file or directory");
    let e = err(SpawnRequest {
        argv: argv(&["nosuchcommand"]),
        ..Default::default()
    });
    assert_eq!(e, "exec nosuchcommand: No such file or directory");
    let e = err(SpawnRequest {
        argv: argv(&["true"]),
        dir: Some("/nonexistent".into()),
        ..Default::default()
    });
    assert_eq!(e, "chdir /nonexistent: No such file or directory");
    let e = err(SpawnRequest {
        argv: argv(&["true"]),
        dir: Some("/root".into()),
        ..Default::default()
    });
    assert_eq!(e, "chdir /root: Permission denied");
    let e = err(SpawnRequest {
        argv: vec![],
        ..Default::default()
    });
    assert_eq!(e, "spawn: argv is empty");
    let e = err(SpawnRequest {
        argv: argv(&["true"]),
        rlimits: vec![Rlimit {
            resource: "bogus".into(),
            soft: 1,
            hard: 1,
        }],
        ..Default::default()
    });
    assert_eq!(e, "spawn: unknown rlimit \"bogus\"");

    // A bad request gets an Error, never kills wshd.
    for garbage in [&b"not json"[..], b"{\"spawn\":{}}", b"[1]"] {
        let mut conn = std::os::unix::net::UnixStream::connect(&s).unwrap();
        conn.write_all(garbage).unwrap();
        let (resp, fds): (warden_helper::proto::Response, _) =
            warden_helper::fdpass::recv(&conn).unwrap();
        assert!(
            matches!(resp, warden_helper::proto::Response::Error { .. }),
            "{resp:?}"
        );
        assert!(fds.is_empty());
    }
    // A client that hangs up in the middle of a request.
    drop(
        std::os::unix::net::UnixStream::connect(&s)
            .unwrap()
            .write_all(b"{\"spa"),
    );
    client::ping(&s).expect("wshd still serves");

    assert_clean(c.destroy());
}

/// The first line a spawned process writes on its stdout.
fn first_line(s: &client::Spawned) -> String {
    let client::Stdio::Pipes { stdout, .. } = &s.stdio else {
        panic!("pipes expected")
    };
    let mut f = fs::File::from(stdout.try_clone().unwrap());
    let (mut line, mut b) = (Vec::new(), [0u8; 1]);
    while f.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn stop_terms_then_kills_and_watch_sees_the_end() {
    let mut c = start(4, &[]);
    let s = c.socket();
    let spawn = |script: &str| {
        client::spawn(
            &s,
            &SpawnRequest {
                argv: argv(&["sh", "-c", script]),
                ..Default::default()
            },
        )
        .unwrap()
    };
    // Dies of SIGTERM / ignores it and needs the SIGKILL after the grace time.
    let soft = spawn("echo ready; exec sleep 1000");
    let hard = spawn("trap '' TERM; echo ready; exec sleep 1000");
    // An orphan: not wshd's spawn, reparented to PID 1.
    let orphan = spawn("sleep 1000 & echo $!");
    // Each has set itself up (the trap) before the stop.
    assert_eq!(first_line(&soft), "ready");
    assert_eq!(first_line(&hard), "ready");
    assert!(first_line(&orphan).parse::<i32>().is_ok());

    let t0 = std::time::Instant::now();
    client::stop(&s, Duration::from_millis(300)).unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "stop did not wait for the grace time: {took:?}"
    );
    assert_eq!(
        ExitStatus::parse(&read_all(soft.status)),
        Some(ExitStatus::Signal(15))
    );
    assert_eq!(
        ExitStatus::parse(&read_all(hard.status)),
        Some(ExitStatus::Signal(9))
    );
    // Only PID 1 is left.
    let ps = c.sh(Some("root"), "ps -o pid,args").ok();
    assert_eq!(ps.lines().count(), 1 + 3, "{ps}");
    // A stop with nothing to stop answers at once.
    client::stop(&s, Duration::from_secs(3600)).unwrap();

    // Watch: never answered, EOF when wshd dies; killing PID 1 kills everything in it.
    let mut watch = client::watch(&s).unwrap();
    let running = spawn("sleep 1000 & echo $!; exec sleep 1000");
    let background: i32 = first_line(&running).parse().unwrap();
    let orphaned = spawn("sleep 1000 & echo $!");
    let orphan: i32 = first_line(&orphaned).parse().unwrap();
    let children: Vec<i32> = [running.pid, background, orphan]
        .iter()
        .map(|&p| host_pid(&c, p))
        .collect();
    c.kill();
    let mut buf = [0u8; 8];
    assert_eq!(
        watch.read(&mut buf).unwrap(),
        0,
        "watch connection reaches EOF"
    );
    // The job's status pipe ends without a status: wshd died first.
    assert_eq!(ExitStatus::parse(&read_all(running.status)), None);
    for p in children {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists(),
            "process {p} survived its PID 1"
        );
    }
    assert_clean(c.destroy());
}

// ---------------------------------------------------------------------------------------
// wsh

fn wsh(c: &Container) -> Command {
    let mut cmd = Command::new(wshd_env::bin("wsh"));
    cmd.arg("--socket").arg(c.socket());
    cmd
}

#[test]
fn wsh_relays_pipes_and_exit_status() {
    let c = start(5, &[]);
    let mut child = wsh(&c)
        .args([
            "--env",
            "X=1",
            "--dir",
            "/tmp",
            "--",
            "sh",
            "-c",
            "cat; echo $X $(pwd) $(id -un) >&2; exit 3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped input\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped input\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "1 /tmp vcap\n");
    assert_eq!(out.status.code(), Some(3));

    let out = wsh(&c)
        .args(["--user", "root", "--", "sh", "-c", "id -u; kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
    assert_eq!(out.status.code(), Some(128 + 9));

    // No command: a login shell reading stdin.
    let mut child = wsh(&c)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo from-shell $(id -un); exit 6\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-shell vcap\n");
    assert_eq!(out.status.code(), Some(6));

    let out = wsh(&c).args(["--", "/no/such"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "wsh: exec /no/such: No such file or directory\n"
    );

    assert_clean(c.destroy());
}

/// Reads the pty master `fd` until EIO/EOF (`until: None`) or until `until` has appeared
/// in what was read; fails after `limit`.
fn read_pty(fd: &OwnedFd, until: Option<&str>, limit: Duration) -> String {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + limit;
    let text = |out: &[u8]| String::from_utf8_lossy(out).into_owned();
    loop {
        if until.is_some_and(|u| text(&out).contains(u)) {
            return text(&out);
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut fds = [nix::poll::PollFd::new(
            fd.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::try_from(left).unwrap()).unwrap();
        assert!(
            n > 0,
            "waited {limit:?} for {until:?} (None: EOF); got: {:?}",
            text(&out)
        );
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) if until.is_none() => return text(&out),
            Ok(0) | Err(nix::errno::Errno::EIO) => panic!("EOF before {until:?}: {:?}", text(&out)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read pty: {e}"),
        }
    }
}

#[test]
fn wsh_tty_session() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    let c = start(6, &[]);
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let before = tcgetattr(&pty.slave).unwrap();
    assert!(before
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO));
    let slave = |p: &OwnedFd| Stdio::from(p.try_clone().unwrap());
    let mut child = wsh(&c)
        .args(["--tty", "--env", "TERM=dumb", "--", "/bin/sh"])
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .unwrap();
    let mut master = fs::File::from(pty.master.try_clone().unwrap());
    master
        .write_all(
            b"stty size; tty; echo $TERM; echo $((6*7)); echo owner=$(stat -c %U $(tty)); exit 4\n",
        )
        .unwrap();
    let status = child.wait().unwrap();
    // The local terminal is back to how it was.
    let after = tcgetattr(&pty.slave).unwrap();
    assert_eq!(after.local_flags, before.local_flags);
    assert_eq!(after.input_flags, before.input_flags);
    drop(pty.slave);
    let out = read_pty(&pty.master, None, Duration::from_secs(30));
    assert_eq!(status.code(), Some(4), "{out}");
    // The terminal belongs to the user who runs in it.
    for want in [
        "33 101\r\n",
        "/dev/pts/0\r\n",
        "dumb\r\n",
        "42\r\n",
        "owner=vcap\r\n",
    ] {
        assert!(out.contains(want), "{want:?} missing from {out:?}");
    }

    // Through the client: the pty master comes back, and the process has it as its
    // controlling terminal.
    let s = client::spawn(
        &c.socket(),
        &SpawnRequest {
            argv: argv(&["sh", "-c", "tty; read pid comm state ppid pgrp session tty rest </proc/self/stat; echo ctty=$tty"]),
            tty: true,
            ..Default::default()
        },
    )
    .unwrap();
    let client::Stdio::Pty { master } = s.stdio else {
        panic!("pty expected")
    };
    let out = read_pty(&master, None, Duration::from_secs(30));
    assert_eq!(
        ExitStatus::parse(&read_all(s.status)),
        Some(ExitStatus::Code(0)),
        "{out}"
    );
    assert!(out.starts_with("/dev/pts/0\r\n"), "{out:?}");
    let ctty = out.split("ctty=").nth(1).unwrap_or("").trim();
    assert!(
        !ctty.is_empty() && ctty != "0",
        "no controlling terminal: {out:?}"
    );

    assert_clean(c.destroy());
}

// ---------------------------------------------------------------------------------------
// File system

#[test]
fn overlay_disk_limit_and_base_untouched() {
    let c = start(7, &[("disk_size_mb", "16")]);
    let rootfs = wshd_env::rootfs();
    let passwd_before = fs::read(rootfs.join("etc/passwd")).unwrap();
    let img = c.dir().join("disk.img");
    let blocks_before = fs::metadata(&img).unwrap().blocks();

    // Writes land on the scratch disk (disk.img grows), not in the base.
    c.sh(Some("root"), "echo changed >>/etc/passwd; dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null; sync").ok();
    let blocks_after = fs::metadata(&img).unwrap().blocks();
    assert!(
        blocks_after >= blocks_before + 4 * 2048,
        "disk.img grew from {blocks_before} to {blocks_after} blocks"
    );
    assert_eq!(
        fs::read(rootfs.join("etc/passwd")).unwrap(),
        passwd_before,
        "the base rootfs changed"
    );
    assert!(!rootfs.join("root/blob").exists());
    assert_eq!(
        c.sh(Some("root"), "tail -n1 /etc/passwd; wc -c </root/blob")
            .ok(),
        "changed\n4194304\n"
    );

    // Past disk_size_mb: ENOSPC.
    let out = c.sh(None, "dd if=/dev/zero of=$HOME/big bs=1M count=32");
    assert_ne!(out.status, Some(ExitStatus::Code(0)));
    assert!(out.stderr.contains("No space left on device"), "{out:?}");

    assert_clean(c.destroy());
}

#[test]
fn bind_mounts_ro_rw_and_invisible_to_the_host() {
    let p = prepare(8, &[]);
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("file"), "read me\n").unwrap();
    // vcap (uid 10008) may write into the rw directory.
    std::os::unix::fs::chown(rw.path(), Some(10008), None).unwrap();
    p.add_bind_mount(ro.path(), "/mnt/ro", "ro");
    p.add_bind_mount(rw.path(), "/home/vcap/rw", "rw");
    let c = start_prepared(p);

    assert_eq!(c.sh(None, "cat /mnt/ro/file").ok(), "read me\n");
    let out = c.sh(Some("root"), "echo x >/mnt/ro/new");
    assert_ne!(out.status, Some(ExitStatus::Code(0)));
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert!(!ro.path().join("new").exists());
    c.sh(None, "echo written >/home/vcap/rw/new").ok();
    assert_eq!(
        fs::read_to_string(rw.path().join("new")).unwrap(),
        "written\n"
    );

    // Neither the bind mounts nor anything else of the container is in the host's table.
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        !mounts.contains(&c.dir().to_string_lossy().into_owned()),
        "host sees container mounts:\n{mounts}"
    );
    assert!(wshd_env::mounts_below(c.dir()).is_empty());

    assert_clean(c.destroy());
    // The host directories are still there, with their content.
    assert_eq!(
        fs::read_to_string(ro.path().join("file")).unwrap(),
        "read me\n"
    );
    assert_eq!(
        fs::read_to_string(rw.path().join("new")).unwrap(),
        "written\n"
    );
}

// ---------------------------------------------------------------------------------------
// Failures

#[test]
fn a_failing_hook_names_its_stage_and_leaves_nothing() {
    for stage in [
        "parent-before-clone",
        "parent-after-clone",
        "child-before-pivot",
        "child-after-pivot",
    ] {
        let p = prepare(9, &[]);
        let hook = p.hook(&format!("hook-{stage}.sh"));
        let mut f = fs::OpenOptions::new().append(true).open(&hook).unwrap();
        writeln!(f, "echo 'failing on purpose' >&2\nexit 7").unwrap();
        drop(f);
        let (id, dir) = (p.id.clone(), p.dir.clone());
        let (p, failure) = match p.start() {
            Ok(_) => panic!("wshd started although hook-{stage}.sh fails"),
            Err(e) => e,
        };
        assert_eq!(failure.status.code(), Some(1), "{stage}: {failure:?}");
        let want = format!("wshd: {stage} hook failed (exit 7): failing on purpose\n");
        assert!(
            failure.log.ends_with(&want),
            "{stage}: expected {want:?} at the end of:\n{}",
            failure.log
        );
        assert!(
            !dir.join("run/wshd.pid").exists(),
            "{stage}: wshd.pid left behind"
        );
        assert!(
            !dir.join("run/wshd.sock").exists(),
            "{stage}: wshd.sock left behind"
        );
        let mut left = p.teardown();
        left.extend(leftovers(&id, &dir, None));
        assert_clean(left);
    }
}

#[test]
fn nothing_remains_after_teardown() {
    let c = start(10, &[]);
    let (id, dir, pid) = (c.id().to_string(), c.dir().to_path_buf(), c.pid());
    // Something running, something on the disk, at the moment of the kill.
    c.sh(None, "sleep 1000 >/dev/null 2>&1 & echo data >$HOME/f")
        .ok();
    assert_clean(c.destroy());
    assert!(!dir.exists());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!std::path::Path::new(&format!("/sys/class/net/w-{id}-0")).exists());
}

/// Sets the window size of a terminal.
fn set_winsize(fd: &OwnedFd, rows: u16, cols: u16) {
    use std::os::fd::AsRawFd;
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one struct winsize through a pointer to a live value.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &ws as *const nix::pty::Winsize,
        )
    };
    assert_eq!(r, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

#[test]
fn wsh_tty_forwards_window_size_changes() {
    use std::os::unix::process::CommandExt;
    let c = start(12, &[]);
    let ws = nix::pty::Winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let slave = |p: &OwnedFd| Stdio::from(p.try_clone().unwrap());
    let mut cmd = wsh(&c);
    cmd.args([
        "--tty",
        "--",
        "sh",
        "-c",
        "read go; trap 'stty size; exit 5' WINCH; echo ready; read x",
    ])
    .stdin(slave(&pty.slave))
    .stdout(slave(&pty.slave))
    .stderr(slave(&pty.slave));
    // SAFETY: setsid and ioctl are async-signal-safe; nothing else runs in the child.
    unsafe {
        cmd.pre_exec(|| {
            // wsh in a session of its own with the pty as its controlling terminal, so that
            // a resize sends it SIGWINCH, as a terminal emulator would.
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // Our copies of the slave (the Command holds three): the master sees EOF once wsh exits.
    drop(cmd);
    drop(pty.slave);
    // The trap goes in only after our first input: wsh forwards input only once it has set
    // the initial size (a change from wshd's 24x80, which sends SIGWINCH too). The request
    // carries no size; wsh_tty_session checks that the initial one arrives.
    fs::File::from(pty.master.try_clone().unwrap())
        .write_all(b"go\n")
        .unwrap();
    read_pty(&pty.master, Some("ready\r\n"), Duration::from_secs(30));
    set_winsize(&pty.master, 40, 120);
    let rest = read_pty(&pty.master, None, Duration::from_secs(30));
    assert!(
        rest.contains("40 120\r\n"),
        "the new size did not reach the container: {rest:?}"
    );
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert_clean(c.destroy());
}

/// A cgroup directory made for one test, removed (it must be empty by then) on drop.
struct TestCgroup(std::path::PathBuf);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            if !std::thread::panicking() {
                panic!(
                    "rmdir {}: {e} (a process of the container survived?)",
                    self.0.display()
                );
            }
        }
    }
}

#[test]
fn cgroups_are_joined_and_debug_traces_the_hooks() {
    let p = prepare(11, &[]);
    // A hybrid host: a v1 hierarchy and the unified one; a v2-only host (`make test-v2`):
    // the one hierarchy at /sys/fs/cgroup.
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids").is_dir();
    let hierarchies: &[&str] = if v1 { &["pids", "unified"] } else { &[""] };
    let cgroups: Vec<TestCgroup> = hierarchies
        .iter()
        .map(|h| {
            let d = std::path::Path::new("/sys/fs/cgroup")
                .join(h)
                .join(format!("warden-wshd-test-{}", p.id));
            fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
            TestCgroup(d)
        })
        .collect();
    let paths: Vec<_> = cgroups.iter().map(|c| c.0.clone()).collect();
    let c = match p.start_with(&[("DEBUG", "1")], &paths) {
        Ok(c) => c,
        Err((_, f)) => panic!("wshd failed ({}): {}", f.status, f.log),
    };
    // PID 1 and what it spawns are in every given cgroup.
    for cg in &paths {
        let procs = fs::read_to_string(cg.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == c.pid().to_string()),
            "{}: {procs}",
            cg.display()
        );
    }
    let inside = c.sh(None, "cat /proc/self/cgroup").ok();
    assert!(
        !v1 || inside.contains(&format!(":pids:/warden-wshd-test-{}\n", c.id())),
        "{inside}"
    );
    assert!(
        inside.contains(&format!("0::/warden-wshd-test-{}\n", c.id())),
        "{inside}"
    );

    // DEBUG=1 reached every hook, and their traces are in wshd's log.
    let log = fs::read_to_string(c.dir().join("run/wshd.log")).unwrap();
    let traced = log
        .lines()
        .filter(|l| l.starts_with("+ . ./etc/config"))
        .count();
    assert_eq!(traced, 4, "xtrace of the four hooks expected in:\n{log}");

    assert_clean(c.destroy());
    drop(cgroups); // rmdir: only possible when empty
}

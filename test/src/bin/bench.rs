//! `make bench`: wardend against crun and runc, side by side, in one run (as root).
//!
//! Starts its own wardend (release build, temporary depot and socket, network pool
//! 10.252.0.0/21, default container config) and a peer runner (see `bench::peers`), then:
//!
//! 1. Latency, A/B interleaved: each iteration creates a container, runs `true` in it and
//!    destroys it, then runs the whole cycle again in one go; between those, the peers do the
//!    same work (`run -d` of a container with a veth network, `exec /bin/true`, `delete -f`,
//!    and `run /bin/true` with and without a network). Which side goes first alternates.
//!    Ratios are ours / theirs, taken pair by pair within an iteration.
//! 2. Throughput: creates per second with 1, 4 and 8 clients creating and destroying.
//! 3. Scale: `create` with 0, 50 and 250 containers alive; memory of wardend and wshd.
//! 4. Where the time goes: the daemon's own per-step debug timings.
//!
//! Prints a table, writes `target/bench/latest.json`, and checks that nothing is left on the
//! host (exit status 1 if something is). `bench --help` lists the options.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_test::bench::peers::{self, Bundles, PeerContainer, Runner};
use warden_test::bench::stats::{ratios, Summary};
use warden_test::bench::{host, steps};
use warden_test::daemon_env::{assert_root, repo_root, rootfs, Client, Daemon};

/// Our pool: 10.252.0.0/21, handles 0afc0000..0afc07fc (prefix "0afc0"). The firewall
/// policy (host-wide: net-host.sh rebuilds warden-default at every daemon start) is the
/// integration tests' own, so that a bench run beside `make test` does not change theirs;
/// it costs a create nothing (containers get their own chains only with `net in|out`).
const NETWORK: &str = "  pool_start_address: 10.252.0.0\n  pool_size: 512\n  \
deny_networks: [10.253.0.0/16]\n  allow_networks: [10.253.201.0/30]\n\
user:\n  pool_start_uid: 20000\n  pool_size: 512";
const HANDLE_PREFIX: &str = "0afc0";
const RUNTIMES: [&str; 2] = ["crun", "runc"];

struct Opts {
    iterations: usize,
    warmup: usize,
    levels: Vec<usize>,
    level_samples: usize,
    clients: Vec<usize>,
    throughput_secs: f64,
    out: PathBuf,
}

const USAGE: &str = "usage: bench [--iterations N] [--warmup N] [--levels 0,50,250] \
[--level-samples N] [--clients 1,4,8] [--throughput-secs S] [--out FILE] [--quick]
Runs as root. Defaults: 60 iterations after 5 warm-up ones, levels 0,50,250 with 50 creates \
each, 1/4/8 clients for 5 s each, --out target/bench/latest.json. --quick: 8 iterations, \
1 warm-up, levels 0,10 with 8 creates, 1/4 clients for 2 s (a smoke run).";

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut o = Opts {
            iterations: 60,
            warmup: 5,
            levels: vec![0, 50, 250],
            level_samples: 50,
            clients: vec![1, 4, 8],
            throughput_secs: 5.0,
            out: repo_root().join("target/bench/latest.json"),
        };
        let list = |v: &str| -> Vec<usize> {
            v.split(',')
                .map(|x| x.trim().parse().expect("a list of numbers"))
                .collect()
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut val = || {
                it.next()
                    .unwrap_or_else(|| panic!("{a} needs a value\n{USAGE}"))
            };
            match a.as_str() {
                "--iterations" => o.iterations = val().parse().expect("--iterations N"),
                "--warmup" => o.warmup = val().parse().expect("--warmup N"),
                "--levels" => o.levels = list(val()),
                "--level-samples" => o.level_samples = val().parse().expect("--level-samples N"),
                "--clients" => o.clients = list(val()),
                "--throughput-secs" => o.throughput_secs = val().parse().expect("seconds"),
                "--out" => o.out = PathBuf::from(val()),
                "--quick" => {
                    o.iterations = 8;
                    o.warmup = 1;
                    o.levels = vec![0, 10];
                    o.level_samples = 8;
                    o.clients = vec![1, 4];
                    o.throughput_secs = 2.0;
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                _ => panic!("unknown argument {a}\n{USAGE}"),
            }
        }
        assert!(o.iterations >= 1 && o.level_samples >= 1, "{USAGE}");
        o.levels.sort_unstable();
        o
    }
}

/// Everything the run needs, and what must be cleaned up after it.
struct Ctx {
    daemon: Daemon,
    runner: Runner,
    bundles: Bundles,
    /// Handles of ours alive right now (scale phase).
    alive: Vec<String>,
    /// Peer containers that may still exist.
    peer_live: Vec<PeerContainer>,
}

#[derive(Default)]
struct Results {
    series: BTreeMap<String, Vec<f64>>,
    /// The daemon's log lines of the latency phase after its warm-up: the breakdown.
    /// (Handles are reused, so the lines are chosen by time, not by handle.)
    log: String,
    handles: HashSet<String>,
    throughput: Vec<(usize, f64, usize)>,
    levels: Vec<Level>,
}

struct Level {
    alive: usize,
    create: Vec<f64>,
    destroy: Vec<f64>,
    wardend_rss: f64,
    wshd_rss: Vec<f64>,
    wshd_pss: Vec<f64>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--peer-runner") {
        peers::runner_main(Path::new(&args[2]));
    }
    let opts = Opts::parse(&args[1..]);
    assert_root();
    let started = Instant::now();
    let exe = std::env::current_exe().expect("current_exe");
    if std::env::var_os("WARDEN_BIN_DIR").is_none() {
        // Single-threaded still: nothing reads the environment concurrently.
        std::env::set_var("WARDEN_BIN_DIR", exe.parent().unwrap());
    }
    let bin_dir = PathBuf::from(std::env::var_os("WARDEN_BIN_DIR").unwrap());
    for b in ["wardend", "wshd"] {
        assert!(
            bin_dir.join(b).exists(),
            "{} not found: build first (cargo build --release --workspace --bins)",
            bin_dir.join(b).display()
        );
    }
    let installed = peers::ensure_installed();
    let work = repo_root().join("target/bench/work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let chains_before = host::warden_chains_exist();
    let rootfs = rootfs();

    let mut ctx = Ctx {
        daemon: Daemon::start("", NETWORK),
        runner: Runner::start(&exe, &work),
        bundles: Bundles::new(&work, &rootfs),
        alive: Vec::new(),
        peer_live: Vec::new(),
    };
    eprintln!(
        "bench: wardend and wshd from {}; peers: {} / {}; {}",
        bin_dir.display(),
        peers::version("crun"),
        peers::version("runc"),
        ctx.runner.note
    );
    let peer_note = ctx.runner.note.clone();
    let mut res = Results::default();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        latency(&mut ctx, &opts, &mut res);
        throughput(&ctx, &opts, &mut res);
        scale(&mut ctx, &opts, &mut res);
    }));
    let depot = ctx.daemon.depot.clone();
    let daemon_dir = ctx.daemon.dir.path().to_path_buf();
    let left = cleanup(ctx, chains_before, &work, &[&depot, &daemon_dir, &work]);
    if let Err(panic) = outcome {
        if !left.is_empty() {
            eprintln!("bench: left behind after the failure: {left:#?}");
        }
        std::panic::resume_unwind(panic);
    }
    let meta = json!({
        "date_unix": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "crun": peers::version("crun"),
        "runc": peers::version("runc"),
        "peers_installed_now": installed,
        "peer_namespace": peer_note,
        "iterations": opts.iterations,
        "warmup": opts.warmup,
        "level_samples": opts.level_samples,
        "throughput_secs": opts.throughput_secs,
        "binaries": bin_dir,
        "left_behind": left,
        "took_s": started.elapsed().as_secs_f64(),
    });
    let (text, figures) = report(&res, &opts);
    print!("{text}");
    let out = json!({ "meta": meta, "figures": figures });
    if let Some(d) = opts.out.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&out).unwrap()).unwrap();
    println!(
        "\nwrote {} ({:.0} s in all)",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    if !left.is_empty() {
        eprintln!("bench: LEFT BEHIND: {left:#?}");
        std::process::exit(1);
    }
    println!("left behind: nothing");
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn push(res: &mut Results, key: &str, v: f64) {
    res.series.entry(key.to_string()).or_default().push(v);
}

// ---------------------------------------------------------------------------------------
// Ours

fn create(c: &mut Client) -> String {
    c.create(json!({}))
}

fn run_true(c: &mut Client, h: &str) {
    let r = c.ok(json!(["run", h, "true"]));
    assert_eq!(r[0], json!(0), "run true in {h}: {r}");
}

fn destroy(c: &mut Client, h: &str) {
    assert_eq!(c.ok(json!(["destroy", h])), json!("ok"));
}

// ---------------------------------------------------------------------------------------
// 1. Latency

fn latency(ctx: &mut Ctx, opts: &Opts, res: &mut Results) {
    let mut c = ctx.daemon.client();
    let total = opts.warmup + opts.iterations;
    eprintln!(
        "bench: latency, {} iterations after {} warm-up",
        opts.iterations, opts.warmup
    );
    let mut log_from = if opts.warmup == 0 { Some(0) } else { None };
    for i in 0..total {
        if i == opts.warmup {
            log_from = Some(settled_log(&ctx.daemon).len());
        }
        let keep = i >= opts.warmup;
        let ours_first = i % 2 == 0;
        let n = i as u32;
        let rec = |res: &mut Results, key: &str, v: f64| {
            if keep {
                push(res, key, v);
            }
        };

        // create | run -d with network
        let peer_cs: Vec<PeerContainer> = RUNTIMES
            .iter()
            .map(|rt| ctx.bundles.make(rt, n, &["/bin/sleep", "100000"], true))
            .collect();
        let mut handle = String::new();
        for side in order(ours_first) {
            if side == 0 {
                let t = Instant::now();
                handle = create(&mut c);
                rec(res, "ours.create", ms(t));
            } else {
                let pc = &peer_cs[side - 1];
                let v = peer(
                    ctx,
                    &["run", "-d", "--bundle", pc.bundle_str(), &pc.id],
                    pc,
                    None,
                );
                rec(res, &format!("{}.create", pc.runtime), v);
            }
        }
        if keep {
            res.handles.insert(handle.clone());
        }
        ctx.peer_live.extend(peer_cs);
        // run true | exec /bin/true
        for side in order(ours_first) {
            if side == 0 {
                let t = Instant::now();
                run_true(&mut c, &handle);
                rec(res, "ours.run", ms(t));
            } else {
                let pc = &ctx.peer_live[ctx.peer_live.len() - 2 + side - 1];
                let (rt, id) = (pc.runtime, pc.id.clone());
                let v = peer_cmd(ctx, rt, &["exec", &id, "/bin/true"], None);
                rec(res, &format!("{rt}.exec"), v);
            }
        }
        // destroy | delete -f
        let live: Vec<PeerContainer> = ctx.peer_live.drain(..).collect();
        for side in order(ours_first) {
            if side == 0 {
                let t = Instant::now();
                destroy(&mut c, &handle);
                rec(res, "ours.destroy", ms(t));
            } else {
                let pc = &live[side - 1];
                let v = peer_cmd(
                    ctx,
                    pc.runtime,
                    &["delete", "-f", &pc.id],
                    pc.iface.as_deref(),
                );
                rec(res, &format!("{}.delete", pc.runtime), v);
                pc.remove_bundle();
            }
        }
        // the whole cycle | run /bin/true, with and without a network
        for side in order(ours_first) {
            if side == 0 {
                let t = Instant::now();
                let h = create(&mut c);
                run_true(&mut c, &h);
                destroy(&mut c, &h);
                rec(res, "ours.cycle", ms(t));
                if keep {
                    res.handles.insert(h);
                }
            } else {
                let rt = RUNTIMES[side - 1];
                for (net, key, k) in [(true, "run_net", 10_000), (false, "run", 20_000)] {
                    let pc = ctx.bundles.make(rt, k + n, &["/bin/true"], net);
                    let v = peer(
                        ctx,
                        &["run", "--bundle", pc.bundle_str(), &pc.id],
                        &pc,
                        pc.iface.as_deref(),
                    );
                    rec(res, &format!("{rt}.{key}"), v);
                    pc.remove_bundle();
                }
            }
        }
        if (i + 1) % 10 == 0 {
            eprintln!("bench: latency {}/{total}", i + 1);
        }
    }
    let log = settled_log(&ctx.daemon);
    res.log = log[log_from.unwrap_or(0).min(log.len())..].to_string();
}

/// The daemon's log once the lines of the last request have reached the file (a thread
/// copies them from the daemon's stderr).
fn settled_log(d: &Daemon) -> String {
    let mut log = d.log();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let again = d.log();
        if again.len() == log.len() {
            return log;
        }
        log = again;
    }
}

/// Sides in the order to measure them: 0 is ours, 1 crun, 2 runc.
fn order(ours_first: bool) -> [usize; 3] {
    if ours_first {
        [0, 1, 2]
    } else {
        [1, 2, 0]
    }
}

/// Runs `RUNTIME ARGS...` for `pc` through the runner.
fn peer(ctx: &mut Ctx, args: &[&str], pc: &PeerContainer, gone: Option<&str>) -> f64 {
    peer_cmd(ctx, pc.runtime, args, gone)
}

fn peer_cmd(ctx: &mut Ctx, runtime: &str, args: &[&str], gone: Option<&str>) -> f64 {
    let mut argv = vec![runtime];
    argv.extend_from_slice(args);
    ctx.runner
        .run(&argv, gone)
        .unwrap_or_else(|e| panic!("peer: {e}"))
}

// ---------------------------------------------------------------------------------------
// 2. Throughput

fn throughput(ctx: &Ctx, opts: &Opts, res: &mut Results) {
    for &clients in &opts.clients {
        let done = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(opts.throughput_secs);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..clients {
                let done = done.clone();
                let mut c = ctx.daemon.client();
                s.spawn(move || {
                    while Instant::now() < deadline {
                        let h = create(&mut c);
                        done.fetch_add(1, Ordering::Relaxed);
                        destroy(&mut c, &h);
                    }
                });
            }
        });
        let secs = t.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        eprintln!(
            "bench: {clients} client(s): {n} creates in {secs:.1} s ({:.1}/s)",
            n as f64 / secs
        );
        res.throughput.push((clients, n as f64 / secs, n));
    }
}

// ---------------------------------------------------------------------------------------
// 3. Scale

fn scale(ctx: &mut Ctx, opts: &Opts, res: &mut Results) {
    for &level in &opts.levels {
        fill(ctx, level);
        let wardend = ctx.daemon.child.as_ref().unwrap().id() as i32;
        let wardend_rss = host::mem_mib(wardend, "status", "VmRSS:").unwrap_or(f64::NAN);
        let mut wshd_rss = Vec::new();
        let mut wshd_pss = Vec::new();
        for h in &ctx.alive {
            let pid = warden_test::daemon_env::init_pid(&ctx.daemon.depot, h);
            wshd_rss.extend(host::mem_mib(pid, "status", "VmRSS:"));
            wshd_pss.extend(host::mem_mib(pid, "smaps_rollup", "Pss:"));
        }
        let mut c = ctx.daemon.client();
        let mut create_ms = Vec::new();
        let mut destroy_ms = Vec::new();
        for _ in 0..opts.level_samples {
            let t = Instant::now();
            let h = create(&mut c);
            create_ms.push(ms(t));
            let t = Instant::now();
            destroy(&mut c, &h);
            destroy_ms.push(ms(t));
        }
        eprintln!(
            "bench: {level} alive: create p50 {:.1} ms, wardend {wardend_rss:.1} MiB",
            Summary::of(&create_ms).p50
        );
        res.levels.push(Level {
            alive: level,
            create: create_ms,
            destroy: destroy_ms,
            wardend_rss,
            wshd_rss,
            wshd_pss,
        });
    }
}

/// Creates or destroys containers (4 clients at once) until `level` are alive.
fn fill(ctx: &mut Ctx, level: usize) {
    while ctx.alive.len() > level {
        let h = ctx.alive.pop().unwrap();
        destroy(&mut ctx.daemon.client(), &h);
    }
    let want = level - ctx.alive.len();
    let made = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let mut c = ctx.daemon.client();
            let (made, next) = (&made, &next);
            s.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < want {
                    let h = create(&mut c);
                    made.lock().unwrap().push(h);
                }
            });
        }
    });
    ctx.alive.extend(made.into_inner().unwrap());
}

// ---------------------------------------------------------------------------------------
// Cleanup

/// Destroys what is left of ours and the peers', stops the daemon and the runner, removes
/// the peers' cgroups, and the firewall chains if the benchmark made them. Returns what is
/// still on the host.
fn cleanup(mut ctx: Ctx, chains_before: bool, work: &Path, paths: &[&Path]) -> Vec<String> {
    let alive = std::mem::take(&mut ctx.alive);
    std::thread::scope(|s| {
        for chunk in alive.chunks(alive.len().div_ceil(4).max(1)) {
            let mut c = ctx.daemon.client();
            s.spawn(move || {
                for h in chunk {
                    if let Err(e) = c.call(json!(["destroy", h])) {
                        eprintln!("bench: destroy {h}: {e}");
                    }
                }
            });
        }
    });
    // Peers that a failure left (and any of an earlier, interrupted run).
    for rt in RUNTIMES {
        let out = Command::new(rt).args(["list", "-q"]).output();
        let ids: Vec<String> = out
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| l.starts_with("wb-"))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let _ = ctx.runner.run(&[rt, "delete", "-f", &id], None);
        }
    }
    for pc in ctx.peer_live.drain(..) {
        if let Some(i) = &pc.iface {
            peers::wait_gone(i, Duration::from_secs(5));
        }
    }
    ctx.runner.stop();
    let st = ctx.daemon.stop();
    if !st.success() {
        eprintln!("bench: wardend exited with {st}");
    }
    let mut left = host::remove_peer_cgroups();
    if !chains_before && !host::any_warden_instance_chains() {
        let st = Command::new(repo_root().join("hooks/net-host.sh"))
            .arg("teardown")
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            left.push("net-host.sh teardown failed".into());
        }
    }
    left.extend(host::leftovers(HANDLE_PREFIX, paths));
    let _ = std::fs::remove_dir_all(work);
    drop(ctx.daemon);
    left
}

// ---------------------------------------------------------------------------------------
// Report

struct Table {
    text: String,
    figures: Vec<Value>,
}

impl Table {
    fn latency(&mut self, name: &str, label: &str, v: &[f64], target: &str) -> Summary {
        let s = Summary::of(v);
        let _ = writeln!(
            self.text,
            "  {label:<44} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}  {target}",
            s.p50, s.p90, s.p99, s.min, s.max
        );
        let mut f = json!({ "name": name, "unit": "ms" });
        merge(&mut f, s.json());
        if !target.is_empty() {
            f["target"] = json!(target);
        }
        self.figures.push(f);
        s
    }

    fn value(&mut self, name: &str, unit: &str, v: f64, target: &str) {
        let mut f = json!({ "name": name, "unit": unit, "value": (v * 1000.0).round() / 1000.0 });
        if !target.is_empty() {
            f["target"] = json!(target);
        }
        self.figures.push(f);
    }
}

fn merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
}

fn report(res: &Results, opts: &Opts) -> (String, Vec<Value>) {
    let mut t = Table {
        text: String::new(),
        figures: Vec::new(),
    };
    let s = |k: &str| res.series.get(k).cloned().unwrap_or_default();
    let _ = writeln!(
        t.text,
        "\nLatency, ms ({} iterations after {} warm-up; A/B interleaved)\n  {:<44} {:>7} {:>7} {:>7} {:>7} {:>7}  target",
        opts.iterations, opts.warmup, "", "p50", "p90", "p99", "min", "max"
    );
    t.latency("ours.create", "ours: create", &s("ours.create"), "<= 40");
    t.latency(
        "ours.run",
        "ours: run true (spawn + link)",
        &s("ours.run"),
        "<= 3",
    );
    t.latency("ours.destroy", "ours: destroy", &s("ours.destroy"), "<= 15");
    t.latency(
        "ours.cycle",
        "ours: create + run true + destroy",
        &s("ours.cycle"),
        "",
    );
    for rt in RUNTIMES {
        t.latency(
            &format!("{rt}.create"),
            &format!("{rt}: run -d sleep, veth network"),
            &s(&format!("{rt}.create")),
            "",
        );
        t.latency(
            &format!("{rt}.exec"),
            &format!("{rt}: exec /bin/true"),
            &s(&format!("{rt}.exec")),
            "",
        );
        t.latency(
            &format!("{rt}.delete"),
            &format!("{rt}: delete -f (running), veth gone"),
            &s(&format!("{rt}.delete")),
            "",
        );
        t.latency(
            &format!("{rt}.run_net"),
            &format!("{rt}: run /bin/true, veth network"),
            &s(&format!("{rt}.run_net")),
            "",
        );
        t.latency(
            &format!("{rt}.run"),
            &format!("{rt}: run /bin/true, empty netns"),
            &s(&format!("{rt}.run")),
            "",
        );
    }

    let _ = writeln!(
        t.text,
        "\nSide by side, p50 ms; ratio = ours / theirs, p50 of the per-iteration ratios (< 1: ours faster)\n  {:<36} {:>7} {:>7} {:>6} {:>7} {:>6}",
        "ours vs theirs", "ours", "crun", "ratio", "runc", "ratio"
    );
    let pairs = [
        ("create", "ours.create", "create", "create vs run -d (veth)"),
        ("run", "ours.run", "exec", "run true vs exec /bin/true"),
        ("destroy", "ours.destroy", "delete", "destroy vs delete -f"),
        (
            "cycle_net",
            "ours.cycle",
            "run_net",
            "cycle vs run /bin/true (veth)",
        ),
        (
            "cycle",
            "ours.cycle",
            "run",
            "cycle vs run /bin/true (no net)",
        ),
    ];
    for (name, ours_key, peer_key, label) in pairs {
        let ours = s(ours_key);
        let mut line = format!("  {label:<36} {:>7.1}", Summary::of(&ours).p50);
        for rt in RUNTIMES {
            let theirs = s(&format!("{rt}.{peer_key}"));
            let r = Summary::of(&ratios(&ours, &theirs));
            let _ = write!(line, " {:>7.1} {:>6.2}", Summary::of(&theirs).p50, r.p50);
            let mut f = json!({
                "name": format!("ratio.{name}.{rt}"),
                "unit": "ratio",
                "ratio": (r.p50 * 1000.0).round() / 1000.0,
                "ours": ours_key,
                "theirs": format!("{rt}.{peer_key}"),
            });
            merge(&mut f, r.json());
            t.figures.push(f);
        }
        let _ = writeln!(t.text, "{line}");
    }

    let _ = writeln!(t.text, "\nScale");
    if let Some(base) = res.levels.first() {
        let base_p50 = Summary::of(&base.create).p50;
        let _ = writeln!(
            t.text,
            "  {:<12} {:>10} {:>8} {:>11} {:>12} {:>15} {:>15}",
            "alive",
            "create p50",
            "vs 0",
            "destroy p50",
            "wardend RSS",
            "wshd RSS p50/max",
            "wshd PSS p50"
        );
        for l in &res.levels {
            let c = Summary::of(&l.create);
            let d = Summary::of(&l.destroy);
            let ratio = c.p50 / base_p50;
            let (rss50, rssmax, pss50) = if l.wshd_rss.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                let r = Summary::of(&l.wshd_rss);
                (r.p50, r.max, Summary::of(&l.wshd_pss).p50)
            };
            let _ = writeln!(
                t.text,
                "  {:<12} {:>10.1} {:>7.2}x {:>11.1} {:>8.1} MiB {:>6.2}/{:.2} MiB {:>11.2} MiB",
                l.alive, c.p50, ratio, d.p50, l.wardend_rss, rss50, rssmax, pss50
            );
            let mut f = json!({ "name": format!("scale.create.alive_{}", l.alive), "unit": "ms" });
            merge(&mut f, c.json());
            f["ratio_to_0"] = json!((ratio * 1000.0).round() / 1000.0);
            if l.alive > 0 {
                f["target_ratio"] = json!("<= 1.25");
            }
            t.figures.push(f);
            let mut f = json!({ "name": format!("scale.destroy.alive_{}", l.alive), "unit": "ms" });
            merge(&mut f, d.json());
            t.figures.push(f);
            t.value(
                &format!("memory.wardend_rss.alive_{}", l.alive),
                "MiB",
                l.wardend_rss,
                "<= 20 at 250",
            );
            if !l.wshd_rss.is_empty() {
                let mut f = json!({ "name": format!("memory.wshd_rss.alive_{}", l.alive), "unit": "MiB", "target": "<= 2" });
                merge(&mut f, Summary::of(&l.wshd_rss).json());
                t.figures.push(f);
                let mut f =
                    json!({ "name": format!("memory.wshd_pss.alive_{}", l.alive), "unit": "MiB" });
                merge(&mut f, Summary::of(&l.wshd_pss).json());
                t.figures.push(f);
            }
        }
    }
    for &(clients, rate, n) in &res.throughput {
        let _ = writeln!(
            t.text,
            "  creates per second, {clients} client(s) creating and destroying: {rate:.1}/s ({n} in {:.0} s){}",
            opts.throughput_secs,
            if clients == 8 { "   target >= 40/s" } else { "" }
        );
        t.value(
            &format!("throughput.creates_per_s.clients_{clients}"),
            "creates/s",
            rate,
            if clients == 8 { ">= 40" } else { "" },
        );
    }

    let _ = writeln!(
        t.text,
        "\nWhere the time goes (the daemon's debug timings over the {} creates and destroys of the latency phase), ms\n  {:<44} {:>7} {:>7}",
        2 * opts.iterations, "step", "p50", "p90"
    );
    for kind in ["create", "destroy"] {
        let gathered = steps::gather(&res.log, kind, &res.handles);
        for (step, v) in &gathered {
            if v.is_empty() {
                continue;
            }
            let sm = Summary::of(v);
            let _ = writeln!(
                t.text,
                "  {:<44} {:>7.1} {:>7.1}",
                format!("{kind}: {}", describe(kind, step)),
                sm.p50,
                sm.p90
            );
            let mut f = json!({ "name": format!("steps.{kind}.{step}"), "unit": "ms" });
            merge(&mut f, sm.json());
            t.figures.push(f);
        }
    }
    (t.text, t.figures)
}

/// A step name with what it covers.
fn describe(kind: &str, step: &str) -> String {
    let what = match (kind, step) {
        ("create", "dir") => "dir: etc/config, hooks copied",
        ("create", "cgroup") => "cgroup: made and set",
        ("create", "net") => "net: net.sh setup (beside wshd)",
        ("create", "wshd") => "wshd: start to ready, hooks included",
        ("create", "hook-parent-before-clone") => "  parent-before-clone: disk, overlay",
        ("create", "hook-parent-after-clone") => "  parent-after-clone: veth",
        ("create", "hook-child-before-pivot") => "  child-before-pivot: /proc, /dev, ip",
        ("create", "hook-child-after-pivot") => "  child-after-pivot",
        ("destroy", "stop") => "stop: TERM, wait",
        ("destroy", "kill") => "kill: PID 1 killed, exited",
        ("destroy", "release") => "release: veth and loop device gone",
        ("destroy", "net") => "net: net.sh teardown (firewall)",
        ("destroy", "teardown-sh") => "teardown-sh: teardown.sh",
        ("destroy", "cgroup") => "cgroup: removed",
        ("destroy", "dir") => "dir: removed",
        _ => "",
    };
    if what.is_empty() {
        step.to_string()
    } else {
        what.to_string()
    }
}

//! wardend: loads the configuration, prepares the host, and serves the Unix socket until
//! SIGTERM or SIGINT, then destroys its containers and exits.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use log::info;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use warden_daemon::cgroup::{Cgroups, Layout};
use warden_daemon::config::Config;
use warden_daemon::daemon::{Daemon, Paths};

#[derive(Parser)]
#[command(version, about = "The warden container daemon")]
struct Args {
    /// YAML configuration (see config/linux.yml); defaults apply to every key left out.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the hook scripts copied into every container [default: the repository's
    /// hooks/ next to this binary's target directory, else /usr/share/warden/hooks]
    #[arg(long)]
    hooks: Option<PathBuf>,
    /// The wshd binary [default: wshd next to this binary]
    #[arg(long)]
    wshd: Option<PathBuf>,
}

/// `target/<profile>/wardend` -> the repository root, when run from a checkout.
fn default_hooks(exe: &Path) -> PathBuf {
    let from_checkout = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|r| r.join("hooks"));
    match from_checkout {
        Some(h) if h.join("net.sh").exists() => h,
        _ => PathBuf::from("/usr/share/warden/hooks"),
    }
}

fn init_logging(config: &Config) -> Result<(), String> {
    let mut b = env_logger::Builder::new();
    b.filter_level(config.logging.level.to_level_filter());
    if let Ok(f) = std::env::var("RUST_LOG") {
        b.parse_filters(&f);
    }
    if let Some(path) = &config.logging.file {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("logging.file {}: {e}", path.display()))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    b.init();
    Ok(())
}

async fn run(args: Args) -> Result<(), String> {
    let config = match &args.config {
        Some(p) => Config::load(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    init_logging(&config)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let paths = Paths {
        hooks: args.hooks.unwrap_or_else(|| default_hooks(&exe)),
        wshd: args.wshd.unwrap_or_else(|| exe.with_file_name("wshd")),
    };
    for (what, p) in [
        ("hooks", &paths.hooks.join("net.sh")),
        ("wshd", &paths.wshd),
    ] {
        if !p.exists() {
            return Err(format!("{what}: {} does not exist", p.display()));
        }
    }
    if !config.server.container_rootfs_path.join("bin/sh").exists() {
        return Err(format!(
            "server.container_rootfs_path: {} has no bin/sh; build it with `make rootfs`",
            config.server.container_rootfs_path.display()
        ));
    }
    // Containers' first processes are orphaned when wshd's parent exits: become their
    // reaper, so that a destroyed container leaves no zombie behind.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let layout = Layout::detect().map_err(|e| e.to_string())?;
    let cgroups = Cgroups::new(layout, "warden");
    let sock = config.server.unix_domain_path.clone();
    let perms = config.server.unix_domain_permissions;
    let daemon = Daemon::new(config, paths, cgroups);
    daemon.start().await.map_err(|e| format!("start: {e}"))?;

    match std::fs::remove_file(&sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("remove stale socket {}: {e}", sock.display())),
    }
    let listener =
        UnixListener::bind(&sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(perms))
        .map_err(|e| format!("chmod {}: {e}", sock.display()))?;
    info!("listening socket={}", sock.display());

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let shutdown = async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    warden_daemon::server::run(listener, daemon, shutdown).await;
    let _ = std::fs::remove_file(&sock);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wardend: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wardend: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The host as the benchmark sees it: what it could leave behind (checked at the end, must
//! be nothing), and processes' memory.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::peers::CGROUP_PARENT;

/// Everything of the benchmark's still on the host: containers of ours (by handle prefix:
/// the benchmark's own network pool), the peers' containers, interfaces, cgroups, firewall
/// rules, mounts and loop devices under `paths`. Empty when clean.
pub fn leftovers(handle_prefix: &str, paths: &[&Path]) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = fs::read_dir("/sys/class/net") {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&format!("w-{handle_prefix}"))
                || n.starts_with("wbc-")
                || n.starts_with("wbr-")
            {
                found.push(format!("interface {n}"));
            }
        }
    }
    for m in fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
    {
        if paths.iter().any(|p| m.contains(&*p.to_string_lossy())) {
            found.push(format!("mount {m}"));
        }
    }
    if let Ok(entries) = fs::read_dir("/sys/block") {
        for e in entries.flatten() {
            let bf = e.path().join("loop/backing_file");
            if let Ok(f) = fs::read_to_string(&bf) {
                if paths.iter().any(|p| f.contains(&*p.to_string_lossy())) {
                    found.push(format!(
                        "loop device {} on {}",
                        e.file_name().to_string_lossy(),
                        f.trim()
                    ));
                }
            }
        }
    }
    for dir in cgroup_dirs() {
        if dir.ends_with(CGROUP_PARENT) {
            found.push(format!("cgroup {}", dir.display()));
        } else if dir.ends_with("warden") {
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let n = e.file_name().to_string_lossy().into_owned();
                    if n.starts_with(&format!("instance-{handle_prefix}")) {
                        found.push(format!("cgroup {}", e.path().display()));
                    }
                }
            }
        }
    }
    for table in ["filter", "nat"] {
        if let Ok(out) = Command::new("iptables-save").args(["-t", table]).output() {
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                if l.contains(handle_prefix) {
                    found.push(format!("iptables {table}: {l}"));
                }
            }
        }
    }
    for runtime in ["crun", "runc"] {
        if let Ok(entries) = fs::read_dir(format!("/run/{runtime}")) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("wb-") {
                    found.push(format!("{runtime} container {n}"));
                }
            }
        }
    }
    found
}

/// `warden` and the peers' parent directories in every cgroup hierarchy, where they exist.
pub fn cgroup_dirs() -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    let mut roots = vec![Path::new("/sys/fs/cgroup").to_path_buf()];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                roots.push(e.path());
            }
        }
    }
    for r in roots {
        for name in ["warden", CGROUP_PARENT] {
            let d = r.join(name);
            if d.is_dir() {
                v.push(d);
            }
        }
    }
    v
}

/// Removes the peers' cgroup parent directories (empty once their containers are deleted):
/// children first.
pub fn remove_peer_cgroups() -> Vec<String> {
    let mut errors = Vec::new();
    for dir in cgroup_dirs() {
        if !dir.ends_with(CGROUP_PARENT) {
            continue;
        }
        let mut subdirs = Vec::new();
        collect_dirs(&dir, &mut subdirs);
        subdirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in subdirs {
            if let Err(e) = fs::remove_dir(&d) {
                errors.push(format!("rmdir {}: {e}", d.display()));
            }
        }
    }
    errors
}

fn collect_dirs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&e.path(), out);
            }
        }
    }
}

/// A field of /proc/PID/status or /proc/PID/smaps_rollup in kB, as MiB.
pub fn mem_mib(pid: i32, file: &str, field: &str) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// True if the firewall chains of the daemon (`warden-forward`) exist on this host.
pub fn warden_chains_exist() -> bool {
    Command::new("iptables-save")
        .args(["-t", "filter"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(":warden-forward "))
        .unwrap_or(false)
}

/// True if some daemon (not only ours) has containers on this host: chains of instances.
pub fn any_warden_instance_chains() -> bool {
    Command::new("iptables-save")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(":warden-instance-"))
        .unwrap_or(false)
}

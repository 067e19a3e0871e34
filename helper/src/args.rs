//! wshd's command line.

use std::path::{Path, PathBuf};

use clap::Parser;

use crate::error::{io, Error, Result};

/// Starts a container on a prepared container directory and becomes its PID 1.
///
/// The parent process exits 0 once the container is ready (its init's host pid is in
/// `RUN/wshd.pid`, its socket is `RUN/wshd.sock`), or non-zero with the failed stage.
/// `DEBUG=1` in the environment traces the hooks (their output goes to stderr).
#[derive(Parser, Debug, Clone)]
#[command(name = "wshd", version)]
pub struct Args {
    /// Directory for wshd.sock and wshd.pid (the container's run/).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Directory holding the hooks (the container's lib/).
    #[arg(long, value_name = "DIR")]
    pub lib: PathBuf,
    /// The container's root file system, mounted by hook-parent-before-clone.sh (mnt/);
    /// only its parent needs to exist before that hook.
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Process title, "wshd: <id>" by convention; default: "wshd: " and the container
    /// directory's name.
    #[arg(long, value_name = "NAME")]
    pub title: Option<String>,
    /// A cgroup directory to join before the clone (its cgroup.procs gets our pid);
    /// repeatable, one per hierarchy.
    #[arg(long = "cgroup", value_name = "DIR")]
    pub cgroups: Vec<PathBuf>,
}

/// The arguments, checked: absolute paths of existing directories.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub run: PathBuf,
    pub lib: PathBuf,
    pub root: PathBuf,
    /// The container directory: the parent of `lib`, the hooks' cwd.
    pub container: PathBuf,
    pub title: String,
    pub cgroups: Vec<PathBuf>,
}

fn directory(flag: &str, p: &Path) -> Result<PathBuf> {
    let abs = p
        .canonicalize()
        .map_err(io(format!("--{flag} {}", p.display())))?;
    if !abs.is_dir() {
        return Err(Error::Invalid(format!(
            "--{flag} {}: not a directory",
            p.display()
        )));
    }
    Ok(abs)
}

/// A path whose parent exists; the hooks make the rest.
fn not_yet(flag: &str, p: &Path) -> Result<PathBuf> {
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(directory(flag, parent)?.join(name))
        }
        _ => Err(Error::Invalid(format!(
            "--{flag} {}: not a directory below another",
            p.display()
        ))),
    }
}

impl Args {
    pub fn check(&self) -> Result<Dirs> {
        let lib = directory("lib", &self.lib)?;
        let container = lib.parent().unwrap_or(Path::new("/")).to_path_buf();
        let title = self.title.clone().unwrap_or_else(|| {
            format!(
                "wshd: {}",
                container
                    .file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            )
        });
        Ok(Dirs {
            run: directory("run", &self.run)?,
            root: not_yet("root", &self.root)?,
            lib,
            container,
            title,
            cgroups: self
                .cgroups
                .iter()
                .map(|c| directory("cgroup", c))
                .collect::<Result<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_directories_and_defaults_title() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("0afd0001");
        for s in ["run", "lib", "mnt"] {
            std::fs::create_dir_all(c.join(s)).unwrap();
        }
        assert!(Args::try_parse_from(["wshd", "--run", "/"]).is_err());
        let p = |s: &str| c.join(s).to_string_lossy().into_owned();
        let a = Args::parse_from([
            "wshd",
            "--run",
            &p("run"),
            "--lib",
            &p("lib/"),
            "--root",
            &p("mnt"),
        ]);
        let dirs = a.check().unwrap();
        assert_eq!(dirs.container, c.canonicalize().unwrap());
        assert_eq!(dirs.title, "wshd: 0afd0001");
        let a = Args::parse_from([
            "wshd",
            "--run",
            &p("run"),
            "--lib",
            &p("lib"),
            "--root",
            &p("no/pe"),
            "--title",
            "t",
        ]);
        let e = a.check().unwrap_err().to_string();
        assert!(
            e.starts_with("--root ") && e.ends_with("No such file or directory"),
            "{e}"
        );
        let a = Args::parse_from([
            "wshd",
            "--run",
            &p("run"),
            "--lib",
            &p("lib"),
            "--root",
            &p("later"),
            "--cgroup",
            &p("run"),
        ]);
        let dirs = a.check().unwrap();
        assert_eq!(dirs.cgroups, [c.join("run").canonicalize().unwrap()]);
        assert_eq!(dirs.root, c.canonicalize().unwrap().join("later"));
    }
}

//! `copy in` and `copy out`: files travel as a tar stream through a process that wshd starts
//! in the container, so that every path on the container's side is resolved by the
//! container's own kernel view (its root, its symlinks), never by joining strings onto a host
//! path. On the host side, the archive from the container is untrusted: [`extract`] refuses
//! absolute paths, `..`, and writing through any symlink, so nothing lands outside DST.
//!
//! Semantics (rsync's, as the original's): `SRC/` copies the contents of the directory SRC,
//! `SRC` copies SRC itself into DST. A single file copied to a DST that does not end in `/`
//! and is not an existing directory is written as DST. Modes and symlinks are kept, hard
//! links are materialised as separate files. In the container, files belong to the
//! unprivileged user; on the host, to root or to OWNER.
//!
//! Everything here is blocking; the daemon runs it on tokio's blocking pool.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::thread;

use warden_helper::client::{self, Stdio};
use warden_helper::proto::{ExitStatus, Rlimit, SpawnRequest};

use crate::error::{bad, io as ioerr, Error, Result};

/// Run in the container by the unprivileged user for `copy in`: `$1` DST, `$2` "file" when the
/// archive holds one non-directory that may be renamed to DST, `$3` its name in the archive.
const UNPACK_IN_CONTAINER: &str = r#"umask 0
d=$1
if [ "$2" = file ] && [ ! -d "$d" ] && [ "${d%/}" = "$d" ]; then
  p=$(dirname -- "$d") && mkdir -p -- "$p" && t=$(mktemp -d "$p/.warden-copy.XXXXXX") || exit 1
  tar -xf - -C "$t" && mv -f -- "$t/$3" "$d"; s=$?; rm -rf -- "$t"; exit $s
fi
mkdir -p -- "$d" && exec tar -xf - -C "$d"
"#;

/// Run in the container for `copy out`: archive `$2` relative to directory `$1`.
const PACK_IN_CONTAINER: &str = r#"cd -- "$1" && exec tar -cf - -- "$2""#;

/// Splits SRC per rsync: (directory to archive from, name to archive).
fn split_source(src: &str) -> (String, String) {
    if src.ends_with('/') {
        return (src.to_string(), ".".to_string());
    }
    let p = Path::new(src);
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = parent.to_string_lossy();
            let parent = if parent.is_empty() {
                ".".to_string()
            } else {
                parent.into_owned()
            };
            (parent, name.to_string_lossy().into_owned())
        }
        // "/", ".", ".." and the like: the whole directory's contents.
        _ => (src.to_string(), ".".to_string()),
    }
}

/// `copy in`: host SRC to container DST, written by `user`.
pub fn copy_in(
    socket: &Path,
    src: &str,
    dst: &str,
    user: &str,
    rlimits: Vec<Rlimit>,
) -> Result<()> {
    let (dir, name) = split_source(src);
    let root = Path::new(&dir).join(&name);
    let meta = fs::symlink_metadata(&root).map_err(ioerr("copy in: read", &root))?;
    let single_file = name != "." && !meta.is_dir();
    let req = SpawnRequest {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            UNPACK_IN_CONTAINER.into(),
            "sh".into(),
            dst.into(),
            if single_file { "file" } else { "dir" }.into(),
            name.clone(),
        ],
        user: Some(user.into()),
        rlimits,
        ..Default::default()
    };
    run_tar(
        socket,
        &req,
        |stdin| {
            let mut b = tar::Builder::new(stdin);
            b.follow_symlinks(false);
            if name == "." {
                b.append_dir_all(".", &root)?;
            } else if meta.is_dir() {
                b.append_dir_all(&name, &root)?;
            } else {
                b.append_path_with_name(&root, &name)?;
            }
            b.into_inner()?.flush()
        },
        |stdout| io::copy(stdout, &mut io::sink()).map(drop),
    )
    .map_err(|e| Error::Step {
        step: "copy in",
        message: e,
    })
}

/// `copy out`: container SRC to host DST, owned by `owner` ("USER:GROUP") or root.
pub fn copy_out(socket: &Path, src: &str, dst: &str, owner: Option<&str>) -> Result<()> {
    let owner = owner.map(resolve_owner).transpose()?;
    let (dir, name) = split_source(src);
    let req = SpawnRequest {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            PACK_IN_CONTAINER.into(),
            "sh".into(),
            dir,
            name.clone(),
        ],
        user: Some("root".into()),
        ..Default::default()
    };
    let dst = PathBuf::from(dst);
    let may_rename =
        !dst.as_os_str().to_string_lossy().ends_with('/') && name != "." && !dst.is_dir();
    let mut written = Vec::new();
    run_tar(
        socket,
        &req,
        |stdin| {
            drop(stdin);
            Ok(())
        },
        |stdout| {
            written = extract(stdout, &dst, may_rename)?;
            Ok(())
        },
    )
    .map_err(|e| Error::Step {
        step: "copy out",
        message: e,
    })?;
    if let Some((uid, gid)) = owner {
        for p in &written {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid))
                .map_err(ioerr("copy out: chown", p))?;
        }
    }
    Ok(())
}

/// Spawns `req` through wshd, feeds its stdin with `feed` and reads its stdout with `read`, in
/// parallel; succeeds when the process exits 0. The error is a sentence with tar's stderr.
fn run_tar(
    socket: &Path,
    req: &SpawnRequest,
    feed: impl FnOnce(File) -> io::Result<()> + Send,
    read: impl FnOnce(&mut File) -> io::Result<()>,
) -> std::result::Result<(), String> {
    let spawned = client::spawn(socket, req).map_err(|e| e.to_string())?;
    let Stdio::Pipes {
        stdin,
        stdout,
        stderr,
    } = spawned.stdio
    else {
        return Err("wshd returned a pty for a copy".into());
    };
    let (stdin, mut stdout, mut stderr) =
        (File::from(stdin), File::from(stdout), File::from(stderr));
    let mut status = File::from(spawned.status);
    thread::scope(|s| {
        let feeder = s.spawn(move || feed(stdin));
        let errs = s.spawn(move || {
            let mut v = Vec::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_end(&mut v);
            let _ = io::copy(&mut stderr, &mut io::sink());
            v
        });
        let read_result = read(&mut stdout);
        // Whatever `read` left unread must not block the process.
        let _ = io::copy(&mut stdout, &mut io::sink());
        let mut st = Vec::new();
        let _ = status.read_to_end(&mut st);
        let feed_result = feeder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("archive writer panicked")));
        let stderr_text = String::from_utf8_lossy(&errs.join().unwrap_or_default())
            .trim_end()
            .to_string();
        match ExitStatus::parse(&st) {
            Some(ExitStatus::Code(0)) => {}
            Some(s) => {
                return Err(format!(
                    "tar in the container failed (exit {}): {stderr_text}",
                    s.shell_code()
                ))
            }
            None => return Err("the container went away during the copy".into()),
        }
        read_result.map_err(|e| e.to_string())?;
        // The process succeeded, so a write error here means it stopped reading early.
        feed_result.map_err(|e| format!("reading the source: {e}"))
    })
}

fn resolve_owner(owner: &str) -> Result<(u32, u32)> {
    let invalid = || {
        bad(format!(
            "invalid request: owner {owner:?} must be USER:GROUP"
        ))
    };
    let (u, g) = owner.split_once(':').ok_or_else(invalid)?;
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => nix::unistd::User::from_name(u)
            .ok()
            .flatten()
            .ok_or_else(|| bad(format!("invalid request: no such user {u:?} on the host")))?
            .uid
            .as_raw(),
    };
    let gid = match g.parse::<u32>() {
        Ok(n) => n,
        Err(_) => nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .ok_or_else(|| bad(format!("invalid request: no such group {g:?} on the host")))?
            .gid
            .as_raw(),
    };
    Ok((uid, gid))
}

/// The archive path as plain relative components; `None` for the archive's root (".").
fn sanitize(p: &Path) -> io::Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "refusing archive entry {}: absolute or with ..",
                        p.display()
                    ),
                ))
            }
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Makes sure every directory from `base` down to `rel`'s parent exists and is a real
/// directory (not a symlink), creating what is missing. Returns `base/rel`.
fn safe_target(base: &Path, rel: &Path) -> io::Result<PathBuf> {
    let mut cur = base.to_path_buf();
    let mut comps: Vec<_> = rel.components().collect();
    let last = comps.pop();
    for c in comps {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "refusing to write below {}: not a directory (a symlink?)",
                    cur.display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&cur)?,
            Err(e) => return Err(e),
        }
    }
    if let Some(l) = last {
        cur.push(l);
    }
    Ok(cur)
}

/// Removes whatever non-directory is at `p`, so a new file or link never follows an old one.
fn clear(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Err(io::Error::other(format!("{} is a directory", p.display()))),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Makes `dir` (and its parents) and checks that it is a directory.
fn make_base(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if !fs::symlink_metadata(dir)?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

/// Extracts an untrusted tar stream into `dst` (created if missing). With `may_rename`, an
/// archive whose first entry is a single non-directory is written as `dst` itself (rsync's
/// `file DST`); a directory always lands inside `dst`. Returns every path written, for chown.
pub fn extract(r: impl Read, dst: &Path, may_rename: bool) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut files: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut dir_modes = Vec::new();
    // Decided by the first entry.
    let mut rename: Option<bool> = None;
    let mut ar = tar::Archive::new(r);
    for entry in ar.entries()? {
        let mut e = entry?;
        let Some(rel) = sanitize(&e.path()?)? else {
            continue;
        };
        let is_dir = e.header().entry_type() == tar::EntryType::Directory;
        let renaming = match rename {
            Some(r) => r,
            None => {
                let r = may_rename && !is_dir && rel.components().count() == 1;
                let base = match dst.parent() {
                    Some(p) if r && !p.as_os_str().is_empty() => p,
                    _ if r => Path::new("."),
                    _ => dst,
                };
                make_base(base)?;
                rename = Some(r);
                r
            }
        };
        let target = if renaming {
            if !written.is_empty() {
                return Err(io::Error::other("expected a single file in the archive"));
            }
            dst.to_path_buf()
        } else {
            safe_target(dst, &rel)?
        };
        let mode = e.header().mode()? & 0o7777;
        let kind = e.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&target)?;
                        fs::create_dir(&target)?;
                    }
                    Err(_) => fs::create_dir(&target)?,
                }
                // Applied at the end, so a read-only directory can still be filled.
                dir_modes.push((target.clone(), mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&target)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)?;
                io::copy(&mut e, &mut f)?;
                f.set_permissions(fs::Permissions::from_mode(mode))?;
                files.insert(rel, target.clone());
            }
            tar::EntryType::Symlink => {
                let link = e
                    .link_name()?
                    .ok_or_else(|| io::Error::other("symlink without target"))?;
                clear(&target)?;
                symlink(link, &target)?;
            }
            tar::EntryType::Link => {
                // Materialise: a copy of the file the link points to, extracted earlier.
                let link = e
                    .link_name()?
                    .ok_or_else(|| io::Error::other("hard link without target"))?;
                let from = sanitize(&link)?
                    .and_then(|l| files.get(&l).cloned())
                    .ok_or_else(|| {
                        io::Error::other(format!("hard link to unknown {}", link.display()))
                    })?;
                clear(&target)?;
                fs::copy(&from, &target)?;
                files.insert(rel, target.clone());
            }
            // Devices, fifos and the like are not copied.
            _ => continue,
        }
        written.push(target);
    }
    if rename.is_none() {
        make_base(dst)?;
    }
    for (d, mode) in dir_modes.into_iter().rev() {
        fs::set_permissions(&d, fs::Permissions::from_mode(mode))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h
    }

    #[test]
    fn splits_like_rsync() {
        assert_eq!(split_source("/a/b/"), ("/a/b/".into(), ".".into()));
        assert_eq!(split_source("/a/b"), ("/a".into(), "b".into()));
        assert_eq!(split_source("b"), (".".into(), "b".into()));
        assert_eq!(split_source("/"), ("/".into(), ".".into()));
    }

    #[test]
    fn extracts_modes_symlinks_and_materialises_hardlinks() {
        let data = archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0o750, 0),
                "./d",
                io::empty(),
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 0o741, 2),
                "d/f",
                &b"hi"[..],
            )
            .unwrap();
            let mut l = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut l, "d/l", "f").unwrap();
            let mut h = header(tar::EntryType::Link, 0o741, 0);
            b.append_link(&mut h, "d/h", "d/f").unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("out");
        let written = extract(&data[..], &dst, false).unwrap();
        assert_eq!(written.len(), 4);
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"hi");
        assert_eq!(
            fs::metadata(dst.join("d/f")).unwrap().permissions().mode() & 0o7777,
            0o741
        );
        assert_eq!(
            fs::metadata(dst.join("d")).unwrap().permissions().mode() & 0o7777,
            0o750
        );
        assert_eq!(fs::read_link(dst.join("d/l")).unwrap(), Path::new("f"));
        use std::os::unix::fs::MetadataExt;
        let (f, h) = (
            fs::metadata(dst.join("d/f")).unwrap(),
            fs::metadata(dst.join("d/h")).unwrap(),
        );
        assert_ne!(f.ino(), h.ino(), "hard link materialised as its own file");
        assert_eq!(fs::read(dst.join("d/h")).unwrap(), b"hi");
    }

    #[test]
    fn refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("out");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // A symlink to outside, then a file written through it.
        let data = archive(|b| {
            let mut l = header(tar::EntryType::Symlink, 0o777, 0);
            b.append_link(&mut l, "esc", &outside).unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 0o644, 1),
                "esc/x",
                &b"x"[..],
            )
            .unwrap();
        });
        assert!(extract(&data[..], &dst, false).is_err());
        assert!(!outside.join("x").exists());
        // `..` in a path: the tar crate's builder refuses to write one, so forge the header.
        let mut h = header(tar::EntryType::Regular, 0o644, 1);
        h.as_gnu_mut().unwrap().name[..6].copy_from_slice(b"../zzz");
        h.set_cksum();
        let mut raw = h.as_bytes().to_vec();
        raw.extend_from_slice(&[b'z'; 512]);
        raw.extend_from_slice(&[0; 1024]);
        assert!(extract(&raw[..], &dst, false).is_err());
        assert!(!dir.path().join("zzz").exists());
    }

    #[test]
    fn single_file_renamed() {
        let data = archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Regular, 0o600, 3),
                "a.txt",
                &b"abc"[..],
            )
            .unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("sub/b.txt");
        extract(&data[..], &dst, true).unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"abc");
    }

    #[test]
    fn a_directory_is_never_renamed() {
        let data = archive(|b| {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                "d",
                io::empty(),
            )
            .unwrap();
            b.append_data(
                &mut header(tar::EntryType::Regular, 0o644, 1),
                "d/f",
                &b"x"[..],
            )
            .unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("new");
        extract(&data[..], &dst, true).unwrap();
        assert_eq!(fs::read(dst.join("d/f")).unwrap(), b"x");
    }
}

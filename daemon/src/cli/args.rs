//! The grammar of `warden`, shared by the command line and the interactive shell: one clap
//! definition of every protocol command ([`Cmd`]), and the translation of a parsed command
//! into its request array (DESIGN.md section 4). Values that clap can check (numbers, sizes,
//! grace times, bind mounts) are checked here, so a typo is a usage error (exit status 2)
//! before anything reaches the daemon.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

const AFTER_HELP: &str = "\
With no command, or with `shell`, warden opens an interactive shell that takes the same
commands (and `help`, `exit`), with line editing, history (~/.warden_history) and Tab
completion of commands and of the handles of live containers.

Exit status: 0 on success; for `run` and `link`, the job's exit status (1 when it is unknown);
1 when the daemon answers with an error or cannot be reached; 2 for a usage error.

Examples:
  warden create --disk-size-mb 256 --grace-time none     prints the new handle, e.g. 0afe0000
  warden run 0afe0000 'id -un; hostname'
  warden run 0afe0000 - < script.sh
  warden copy 0afe0000 in ./app/ /home/vcap/app
  warden limit 0afe0000 mem 512M
  warden --json info 0afe0000";

/// `warden`: the command line.
#[derive(Parser, Debug)]
#[command(
    name = "warden",
    version,
    about = "Talk to the warden daemon: one command per call, or an interactive shell",
    after_help = AFTER_HELP,
    subcommand_value_name = "COMMAND"
)]
pub struct Cli {
    /// The daemon's socket [default: $WARDEN_SOCKET, else /tmp/warden.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// One line typed in the shell: the same commands, without `--socket` (the shell keeps one
/// connection) and with `exit` (added by [`shell_command`]).
#[derive(Parser, Debug)]
#[command(
    name = "warden",
    no_binary_name = true,
    disable_version_flag = true,
    subcommand_value_name = "COMMAND",
    override_usage = "COMMAND [ARGS]..."
)]
pub struct ShellLine {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Args, Debug, Clone, Copy)]
pub struct OutputArgs {
    /// Print the reply's payload as one line of JSON (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
pub enum Cmd {
    /// Check that the daemon answers (prints pong)
    Ping,
    /// Create a container and print its handle
    Create(CreateArgs),
    /// Start a script in a container and print its job id, without waiting for it
    Spawn {
        /// The container's handle, as create printed it
        handle: String,
        /// Fed to /bin/sh in the container (as vcap, in its home); - reads it from stdin
        script: String,
    },
    /// Wait for a job to end, print its output and exit with its exit status
    Link {
        /// The container's handle, as create printed it
        handle: String,
        /// The job id that spawn printed
        job: u64,
    },
    /// Run a script in a container: print its stdout and stderr and exit with its status
    Run {
        /// The container's handle, as create printed it
        handle: String,
        /// Fed to /bin/sh in the container (as vcap, in its home); - reads it from stdin
        script: String,
    },
    /// Show the memory limit, or set it (BYTES as a number of bytes, or 512M, 1G, ...)
    Limit {
        /// The container's handle, as create printed it
        handle: String,
        /// The limit to show or set (only mem)
        #[arg(value_enum, value_name = "mem")]
        limit: LimitKind,
        /// The new limit: bytes, or with a suffix K, M, G, T (powers of 1024); 0 for none
        #[arg(value_parser = parse_size)]
        bytes: Option<u64>,
    },
    /// Forward a new host port into the container (in), or let it reach a network (out)
    Net {
        /// The container's handle, as create printed it
        handle: String,
        #[arg(value_enum)]
        direction: Direction,
        /// For out: ADDR[/MASK][:PORT], e.g. 10.1.2.0/24:443
        rule: Option<String>,
    },
    /// Copy files into a container, or out of it (SRC/ copies the contents of SRC)
    Copy {
        /// The container's handle, as create printed it
        handle: String,
        #[arg(value_enum)]
        direction: Direction,
        /// in: a host path (relative to this directory); out: a path in the container
        src: String,
        /// in: a path in the container; out: a host path (relative to this directory)
        dst: String,
        /// For out: the host user and group that own the copied files [default: root]
        #[arg(long, value_name = "USER:GROUP")]
        owner: Option<String>,
    },
    /// Stop every process in a container; it stays, in state stopped, until destroyed
    Stop {
        /// The container's handle, as create printed it
        handle: String,
    },
    /// Destroy a container and everything it holds
    Destroy {
        /// The container's handle, as create printed it
        handle: String,
    },
    /// Show a container's state, addresses, limits, usage and jobs
    Info {
        /// The container's handle, as create printed it
        handle: String,
    },
    /// List the handles of live containers, one a line
    List,
    /// Open the interactive shell (the default with no command)
    Shell,
}

#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct CreateArgs {
    /// Bind-mount a host directory into the container, read-only unless :rw (repeatable)
    #[arg(long = "bind-mount", value_name = "HOST:CONTAINER[:ro|rw]", value_parser = parse_bind_mount)]
    pub bind_mounts: Vec<BindMount>,
    /// Destroy the container SECS seconds after its last connection closed; none: never
    /// [default: the daemon's container_grace_time]
    #[arg(long, value_name = "SECS|none", value_parser = parse_grace_time)]
    pub grace_time: Option<GraceTime>,
    /// Size of the container's scratch disk in MiB [default: the daemon's]
    #[arg(long, value_name = "N")]
    pub disk_size_mb: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum LimitKind {
    Mem,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum Direction {
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub host: String,
    pub container: String,
    pub mode: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GraceTime {
    Never,
    Seconds(f64),
}

/// `512M`, `1G`, `64k`, `1.5G`, `1048576`: bytes, with optional K/M/G/T suffixes (powers of
/// 1024, any case, optionally followed by `B` or `iB`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size: use bytes, or a number with K, M, G or T");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    if num.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(1 << shift)
            .ok_or_else(|| format!("{s:?} is too large"));
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let bytes = f * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as u64)
}

/// `HOST:CONTAINER[:ro|rw]`; a relative HOST is taken from the current directory.
pub fn parse_bind_mount(s: &str) -> Result<BindMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, mode) = match parts[..] {
        [h, c] | [h, c, "ro"] => (h, c, "ro"),
        [h, c, "rw"] => (h, c, "rw"),
        [_, _, m] => return Err(format!("mode {m:?} is neither ro nor rw")),
        _ => return Err(format!("{s:?} is not HOST:CONTAINER[:ro|rw]")),
    };
    if host.is_empty() || container.is_empty() {
        return Err(format!("{s:?} is not HOST:CONTAINER[:ro|rw]"));
    }
    let host = host_path(host).map_err(|e| format!("{host}: {e}"))?;
    Ok(BindMount {
        host,
        container: container.to_string(),
        mode,
    })
}

/// A number of seconds (fractions allowed) or `none` / `never`.
pub fn parse_grace_time(s: &str) -> Result<GraceTime, String> {
    match s {
        "none" | "never" | "null" => return Ok(GraceTime::Never),
        _ => {}
    }
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(GraceTime::Seconds(f)),
        _ => Err(format!("{s:?} is neither a number of seconds nor none")),
    }
}

/// A host path as the daemon must see it: the daemon has its own working directory, so a
/// relative path is joined onto ours. A trailing `/` (copy the contents) is kept.
pub fn host_path(p: &str) -> std::io::Result<String> {
    if p.starts_with('/') {
        return Ok(p.to_string());
    }
    let cwd = std::env::current_dir()?;
    let mut s = absolute_from(&cwd, p);
    if p == "." || p.ends_with("/.") {
        // `.` means this directory's contents, as `./` does.
        s.truncate(s.len() - 1);
    }
    Ok(s)
}

fn absolute_from(cwd: &Path, p: &str) -> String {
    let base = cwd.to_string_lossy();
    let base = base.trim_end_matches('/');
    format!("{base}/{p}")
}

/// Where a script comes from when it is given as `-`.
pub enum Stdin<'a> {
    /// Read it from this.
    Reader(&'a mut dyn Read),
    /// Not available (the shell reads its own standard input).
    Unavailable,
}

impl Cmd {
    /// The request array for this command. Errors are usage errors.
    pub fn request(&self, stdin: Stdin<'_>) -> Result<Value, String> {
        let script = |s: &str, stdin: Stdin<'_>| -> Result<String, String> {
            if s != "-" {
                return Ok(s.to_string());
            }
            match stdin {
                Stdin::Reader(r) => {
                    let mut buf = String::new();
                    r.read_to_string(&mut buf)
                        .map_err(|e| format!("reading the script from stdin: {e}"))?;
                    Ok(buf)
                }
                Stdin::Unavailable => Err(
                    "the script - (read from stdin) works only outside the shell; quote the \
                     script instead"
                        .into(),
                ),
            }
        };
        Ok(match self {
            Cmd::Ping => json!(["ping"]),
            Cmd::List => json!(["list"]),
            Cmd::Create(c) => {
                if *c == CreateArgs::default() {
                    json!(["create"])
                } else {
                    let mut config = serde_json::Map::new();
                    if !c.bind_mounts.is_empty() {
                        let mounts: Vec<Value> = c
                            .bind_mounts
                            .iter()
                            .map(|b| json!([b.host, b.container, {"mode": b.mode}]))
                            .collect();
                        config.insert("bind_mounts".into(), Value::Array(mounts));
                    }
                    if let Some(g) = c.grace_time {
                        let v = match g {
                            GraceTime::Never => Value::Null,
                            GraceTime::Seconds(s) if s.fract() == 0.0 && s < 1e15 => {
                                json!(s as u64)
                            }
                            GraceTime::Seconds(s) => json!(s),
                        };
                        config.insert("grace_time".into(), v);
                    }
                    if let Some(mb) = c.disk_size_mb {
                        config.insert("disk_size_mb".into(), json!(mb));
                    }
                    json!(["create", config])
                }
            }
            Cmd::Spawn { handle, script: s } => json!(["spawn", handle, script(s, stdin)?]),
            Cmd::Run { handle, script: s } => json!(["run", handle, script(s, stdin)?]),
            Cmd::Link { handle, job } => json!(["link", handle, job]),
            Cmd::Limit {
                handle,
                limit: LimitKind::Mem,
                bytes,
            } => match bytes {
                None => json!(["limit", handle, "mem"]),
                Some(b) => json!(["limit", handle, "mem", b]),
            },
            Cmd::Net {
                handle,
                direction,
                rule,
            } => match (direction, rule) {
                (Direction::In, None) => json!(["net", handle, "in"]),
                (Direction::Out, Some(r)) => json!(["net", handle, "out", r]),
                (Direction::In, Some(_)) => return Err("net HANDLE in takes no RULE".into()),
                (Direction::Out, None) => {
                    return Err("net HANDLE out needs a RULE: ADDR[/MASK][:PORT]".into())
                }
            },
            Cmd::Copy {
                handle,
                direction,
                src,
                dst,
                owner,
            } => {
                let host = |p: &str| host_path(p).map_err(|e| format!("{p}: {e}"));
                match direction {
                    Direction::In if owner.is_some() => {
                        return Err("--owner applies to copy out only".into())
                    }
                    Direction::In => json!(["copy", handle, "in", host(src)?, dst]),
                    Direction::Out => {
                        let mut r = json!(["copy", handle, "out", src, host(dst)?]);
                        if let Some(o) = owner {
                            r.as_array_mut().unwrap().push(json!(o));
                        }
                        r
                    }
                }
            }
            Cmd::Stop { handle } => json!(["stop", handle]),
            Cmd::Destroy { handle } => json!(["destroy", handle]),
            Cmd::Info { handle } => json!(["info", handle]),
            Cmd::Shell => return Err("shell is not a request".into()),
        })
    }

    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Cmd::Ping => "ping",
            Cmd::Create(_) => "create",
            Cmd::Spawn { .. } => "spawn",
            Cmd::Link { .. } => "link",
            Cmd::Run { .. } => "run",
            Cmd::Limit { .. } => "limit",
            Cmd::Net { .. } => "net",
            Cmd::Copy { .. } => "copy",
            Cmd::Stop { .. } => "stop",
            Cmd::Destroy { .. } => "destroy",
            Cmd::Info { .. } => "info",
            Cmd::List => "list",
            Cmd::Shell => "shell",
        }
    }
}

/// A usage error in the style of clap's (with the subcommand's usage line), for checks that
/// span several arguments. Its exit status is 2.
pub fn usage_error(mut grammar: clap::Command, cmd: &Cmd, message: &str) -> clap::Error {
    grammar.build();
    match grammar.find_subcommand_mut(cmd.name()) {
        Some(sub) => sub.error(ErrorKind::ArgumentConflict, message),
        None => grammar.error(ErrorKind::ArgumentConflict, message),
    }
}

/// The grammar of the command line: [`Cli`] with the usage lines that clap cannot derive.
pub fn cli_command() -> clap::Command {
    with_usages(Cli::command(), "warden ")
}

/// Usage lines for the commands whose arguments depend on a direction.
fn with_usages(cmd: clap::Command, prefix: &str) -> clap::Command {
    let indent = " ".repeat("Usage: ".len());
    cmd.mut_subcommand("limit", |c| {
        c.override_usage(format!("{prefix}limit <HANDLE> mem [BYTES]"))
    })
    .mut_subcommand("net", |c| {
        c.override_usage(format!(
            "{prefix}net <HANDLE> in\n{indent}{prefix}net <HANDLE> out <RULE>"
        ))
    })
    .mut_subcommand("copy", |c| {
        c.override_usage(format!(
            "{prefix}copy <HANDLE> in <HOST_SRC> <CONTAINER_DST>\n\
             {indent}{prefix}copy <HANDLE> out <CONTAINER_SRC> <HOST_DST> [--owner <USER:GROUP>]"
        ))
    })
}

/// The grammar of a line typed in the shell: [`ShellLine`] with `exit` (alias `quit`) and
/// without the `shell` command.
pub fn shell_command() -> clap::Command {
    with_usages(ShellLine::command(), "")
        .mut_subcommand("shell", |c| c.hide(true))
        .subcommand(
            clap::Command::new("exit")
                .about("Leave the shell (so does Ctrl-D)")
                .visible_alias("quit"),
        )
        .about("Type a command and its arguments; `help COMMAND` or `COMMAND --help` shows them, Tab completes")
        .after_help("Quote arguments that hold blanks: run 0afe0000 \"echo hi; ls /\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let m = cli_command()
            .try_get_matches_from(std::iter::once("warden").chain(args.iter().copied()))?;
        Cli::from_arg_matches(&m)
    }

    fn request(args: &[&str]) -> Value {
        let cli = parse(args).unwrap();
        cli.command
            .unwrap()
            .request(Stdin::Reader(&mut &b"echo from stdin\n"[..]))
            .unwrap()
    }

    #[test]
    fn grammar_is_consistent() {
        cli_command().debug_assert();
        shell_command().debug_assert();
    }

    #[test]
    fn requests() {
        assert_eq!(request(&["ping"]), json!(["ping"]));
        assert_eq!(request(&["create"]), json!(["create"]));
        assert_eq!(
            request(&[
                "create",
                "--bind-mount",
                "/srv:/mnt/srv",
                "--bind-mount=/a:/b:rw",
                "--grace-time",
                "none",
                "--disk-size-mb",
                "256"
            ]),
            json!(["create", {
                "bind_mounts": [["/srv", "/mnt/srv", {"mode": "ro"}], ["/a", "/b", {"mode": "rw"}]],
                "grace_time": null,
                "disk_size_mb": 256
            }])
        );
        assert_eq!(
            request(&["create", "--grace-time", "60"]),
            json!(["create", {"grace_time": 60}])
        );
        assert_eq!(
            request(&["create", "--grace-time", "1.5"]),
            json!(["create", {"grace_time": 1.5}])
        );
        assert_eq!(
            request(&["run", "h", "echo hi; ls /"]),
            json!(["run", "h", "echo hi; ls /"])
        );
        assert_eq!(
            request(&["spawn", "h", "-"]),
            json!(["spawn", "h", "echo from stdin\n"])
        );
        assert_eq!(request(&["link", "h", "7"]), json!(["link", "h", 7]));
        assert_eq!(
            request(&["limit", "h", "mem"]),
            json!(["limit", "h", "mem"])
        );
        assert_eq!(
            request(&["limit", "h", "mem", "512M"]),
            json!(["limit", "h", "mem", 512u64 << 20])
        );
        assert_eq!(request(&["net", "h", "in"]), json!(["net", "h", "in"]));
        assert_eq!(
            request(&["net", "h", "out", "10.1.0.0/16:80"]),
            json!(["net", "h", "out", "10.1.0.0/16:80"])
        );
        assert_eq!(
            request(&["copy", "h", "in", "/a/", "/home/vcap"]),
            json!(["copy", "h", "in", "/a/", "/home/vcap"])
        );
        assert_eq!(
            request(&["copy", "h", "out", "/x", "/y", "--owner", "1000:1000"]),
            json!(["copy", "h", "out", "/x", "/y", "1000:1000"])
        );
        assert_eq!(request(&["stop", "h"]), json!(["stop", "h"]));
        assert_eq!(request(&["destroy", "h"]), json!(["destroy", "h"]));
        assert_eq!(request(&["info", "h"]), json!(["info", "h"]));
        assert_eq!(request(&["list"]), json!(["list"]));
        // Global flags go anywhere.
        let cli = parse(&["info", "h", "--json", "--socket", "/s"]).unwrap();
        assert!(cli.output.json);
        assert_eq!(cli.socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn relative_host_paths_are_made_absolute() {
        let cwd = std::env::current_dir().unwrap();
        let r = request(&["copy", "h", "in", "dir/", "/tmp"]);
        assert_eq!(r[3], json!(format!("{}/dir/", cwd.display())));
        let r = request(&["copy", "h", "in", ".", "/tmp"]);
        assert_eq!(r[3], json!(format!("{}/", cwd.display())));
        let r = request(&["copy", "h", "out", "/etc/hosts", "out"]);
        assert_eq!(r[4], json!(format!("{}/out", cwd.display())));
        let r = request(&["create", "--bind-mount", "data:/data"]);
        assert_eq!(
            r[1]["bind_mounts"][0][0],
            json!(format!("{}/data", cwd.display()))
        );
    }

    #[test]
    fn usage_errors() {
        for args in [
            &["frobnicate"][..],
            &["run", "h"],
            &["link", "h", "seven"],
            &["limit", "h", "cpu"],
            &["limit", "h", "mem", "lots"],
            &["net", "h", "sideways"],
            &["create", "--bind-mount", "/a"],
            &["create", "--bind-mount", "/a:/b:rx"],
            &["create", "--grace-time", "soon"],
            &["create", "--disk-size-mb", "-1"],
            &["info"],
            &["info", "h", "extra"],
        ] {
            let e = parse(args).expect_err(&format!("{args:?}"));
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        let cmd = |args: &[&str]| parse(args).unwrap().command.unwrap();
        let no_stdin = |c: Cmd| c.request(Stdin::Unavailable).unwrap_err();
        assert!(no_stdin(cmd(&["net", "h", "out"])).contains("needs a RULE"));
        assert!(no_stdin(cmd(&["net", "h", "in", "1.2.3.4"])).contains("no RULE"));
        assert!(
            no_stdin(cmd(&["copy", "h", "in", "/a", "/b", "--owner", "x:y"])).contains("--owner")
        );
        assert!(no_stdin(cmd(&["run", "h", "-"])).contains("stdin"));
        let e = usage_error(cli_command(), &cmd(&["net", "h", "out"]), "x");
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "M", "lots", "1X", "-1", "1.2.3M", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shell_grammar() {
        let m = shell_command()
            .try_get_matches_from(["run", "h", "echo hi; ls /"])
            .unwrap();
        let line = <ShellLine as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
        assert_eq!(
            line.command,
            Cmd::Run {
                handle: "h".into(),
                script: "echo hi; ls /".into()
            }
        );
        let m = shell_command().try_get_matches_from(["quit"]).unwrap();
        assert_eq!(m.subcommand_name(), Some("exit"));
        assert!(shell_command()
            .try_get_matches_from(["--socket", "/x", "list"])
            .is_err());
    }
}

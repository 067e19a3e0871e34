//! The client protocol (DESIGN.md section 4): one JSON array per line in, one JSON object per
//! line out. This module turns a line into a typed [`Request`], once, at the edge, and a
//! result into a reply line. Every rejection is an [`Error::BadRequest`] whose sentence holds
//! the phrase a client matches on.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::Cidr;
use crate::error::{bad, Error};

/// Longest request line accepted, in bytes. A longer line is answered with an error and
/// skipped without being kept in memory.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Ping,
    List,
    Create(CreateOptions),
    Spawn {
        handle: String,
        script: String,
    },
    Link {
        handle: String,
        job: u64,
    },
    Run {
        handle: String,
        script: String,
    },
    /// `value` None: get.
    LimitMem {
        handle: String,
        value: Option<u64>,
    },
    NetIn {
        handle: String,
    },
    NetOut {
        handle: String,
        rule: NetOutRule,
    },
    CopyIn {
        handle: String,
        src: String,
        dst: String,
    },
    CopyOut {
        handle: String,
        src: String,
        dst: String,
        owner: Option<String>,
    },
    Stop {
        handle: String,
    },
    Destroy {
        handle: String,
    },
    Info {
        handle: String,
    },
}

impl Request {
    /// The container this request names, if any.
    pub fn handle(&self) -> Option<&str> {
        use Request::*;
        match self {
            Ping | List | Create(_) => None,
            Spawn { handle, .. }
            | Link { handle, .. }
            | Run { handle, .. }
            | LimitMem { handle, .. }
            | NetIn { handle }
            | NetOut { handle, .. }
            | CopyIn { handle, .. }
            | CopyOut { handle, .. }
            | Stop { handle }
            | Destroy { handle }
            | Info { handle } => Some(handle),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CreateOptions {
    pub bind_mounts: Vec<BindMount>,
    /// Not given: the server's default. Given as null: never.
    pub grace_time: Option<Option<Duration>>,
    pub disk_size_mb: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// `ADDR[/MASK][:PORT]` of `net out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetOutRule {
    pub network: Cidr,
    pub port: Option<u16>,
}

impl std::str::FromStr for NetOutRule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || {
            bad(format!(
                "invalid request: net out rule {s:?} is not ADDR[/MASK][:PORT]"
            ))
        };
        let (net, port) = match s.rsplit_once(':') {
            Some((n, p)) => {
                let port: u16 = p.parse().map_err(|_| invalid())?;
                if port == 0 {
                    return Err(invalid());
                }
                (n, Some(port))
            }
            None => (s, None),
        };
        let network: Cidr = net.parse().map_err(|_| invalid())?;
        Ok(NetOutRule { network, port })
    }
}

/// Parses one request line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<Request, Error> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| bad(format!("invalid request: not JSON ({e})")))?;
    let Value::Array(items) = value else {
        return Err(bad(
            "invalid request: expected a JSON array such as [\"ping\"]",
        ));
    };
    let Some((cmd, args)) = items.split_first() else {
        return Err(bad(
            "invalid request: empty array, expected [COMMAND, ARGS...]",
        ));
    };
    let Value::String(cmd) = cmd else {
        return Err(bad("invalid request: the command must be a string"));
    };
    let a = Args { cmd, args };
    let req = match cmd.as_str() {
        "ping" => a.arity(0, 0).map(|_| Request::Ping)?,
        "list" => a.arity(0, 0).map(|_| Request::List)?,
        "create" => {
            a.arity(0, 1)?;
            Request::Create(match args.first() {
                None | Some(Value::Null) => CreateOptions::default(),
                Some(v) => parse_create(v)?,
            })
        }
        "spawn" | "run" => {
            a.arity(2, 2)?;
            let handle = a.string(0, "handle")?;
            let script = a.string(1, "script")?;
            if cmd == "spawn" {
                Request::Spawn { handle, script }
            } else {
                Request::Run { handle, script }
            }
        }
        "link" => {
            a.arity(2, 2)?;
            Request::Link {
                handle: a.string(0, "handle")?,
                job: a.integer(1, "job id")?,
            }
        }
        "limit" => {
            a.arity(2, 3)?;
            let handle = a.string(0, "handle")?;
            let kind = a.string(1, "limit name")?;
            if kind != "mem" {
                return Err(bad(format!("unknown limit: {kind:?} (known: mem)")));
            }
            let value = match args.get(2) {
                None => None,
                Some(v) => Some(limit_value(v)?),
            };
            Request::LimitMem { handle, value }
        }
        "net" => {
            a.arity(2, 3)?;
            let handle = a.string(0, "handle")?;
            match a.string(1, "direction")?.as_str() {
                "in" => {
                    a.arity(2, 2)?;
                    Request::NetIn { handle }
                }
                "out" => {
                    a.arity(3, 3)?;
                    Request::NetOut {
                        handle,
                        rule: a.string(2, "rule")?.parse()?,
                    }
                }
                d => {
                    return Err(bad(format!(
                        "invalid request: net direction {d:?}, expected in or out"
                    )))
                }
            }
        }
        "copy" => {
            a.arity(4, 5)?;
            let handle = a.string(0, "handle")?;
            let dir = a.string(1, "direction")?;
            let src = a.string(2, "source path")?;
            let dst = a.string(3, "destination path")?;
            for p in [&src, &dst] {
                if p.is_empty() || p.contains('\0') {
                    return Err(bad(
                        "invalid request: copy paths must be non-empty and contain no NUL",
                    ));
                }
            }
            // The daemon's working directory means nothing to a client.
            let host_path = if dir == "in" { &src } else { &dst };
            if !host_path.starts_with('/') {
                return Err(bad(format!(
                    "invalid request: the host path {host_path:?} of copy {dir} must be absolute"
                )));
            }
            match dir.as_str() {
                "in" => {
                    a.arity(4, 4)?;
                    Request::CopyIn { handle, src, dst }
                }
                "out" => {
                    let owner = match args.get(4) {
                        None | Some(Value::Null) => None,
                        Some(_) => Some(a.string(4, "owner")?),
                    };
                    Request::CopyOut {
                        handle,
                        src,
                        dst,
                        owner,
                    }
                }
                d => {
                    return Err(bad(format!(
                        "invalid request: copy direction {d:?}, expected in or out"
                    )))
                }
            }
        }
        "stop" => a.arity(1, 1).and_then(|_| {
            Ok(Request::Stop {
                handle: a.string(0, "handle")?,
            })
        })?,
        "destroy" => a.arity(1, 1).and_then(|_| {
            Ok(Request::Destroy {
                handle: a.string(0, "handle")?,
            })
        })?,
        "info" => a.arity(1, 1).and_then(|_| {
            Ok(Request::Info {
                handle: a.string(0, "handle")?,
            })
        })?,
        _ => return Err(bad(format!("unknown command: {cmd:?}"))),
    };
    Ok(req)
}

struct Args<'a> {
    cmd: &'a str,
    args: &'a [Value],
}

impl Args<'_> {
    fn arity(&self, min: usize, max: usize) -> Result<(), Error> {
        let n = self.args.len();
        if n < min || n > max {
            let expected = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(bad(format!(
                "invalid number of arguments for {}: expected {expected}, got {n}",
                self.cmd
            )));
        }
        Ok(())
    }

    fn string(&self, i: usize, what: &str) -> Result<String, Error> {
        match &self.args[i] {
            Value::String(s) => Ok(s.clone()),
            _ => Err(bad(format!(
                "invalid request: {what} of {} must be a string",
                self.cmd
            ))),
        }
    }

    fn integer(&self, i: usize, what: &str) -> Result<u64, Error> {
        integer(&self.args[i]).ok_or_else(|| bad(format!("{what} expected to be an integer")))
    }
}

/// A non-negative integer, given as a JSON number or a string of digits.
fn integer(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

fn limit_value(v: &Value) -> Result<u64, Error> {
    integer(v).ok_or_else(|| bad(format!("Invalid limit: {v} (expected a number of bytes)")))
}

fn parse_create(v: &Value) -> Result<CreateOptions, Error> {
    let Value::Object(map) = v else {
        return Err(bad("invalid request: the create config must be an object"));
    };
    let mut opts = CreateOptions::default();
    for (key, value) in map {
        match key.as_str() {
            "bind_mounts" => opts.bind_mounts = parse_bind_mounts(value)?,
            "grace_time" => {
                opts.grace_time = Some(match value {
                    Value::Null => None,
                    Value::Number(n) => match n.as_f64() {
                        Some(s) if (0.0..1e12).contains(&s) => Some(Duration::from_secs_f64(s)),
                        _ => return Err(bad("invalid request: grace_time must be a non-negative number of seconds or null")),
                    },
                    _ => return Err(bad("invalid request: grace_time must be a number of seconds or null")),
                })
            }
            "disk_size_mb" => {
                let mb = integer(value).ok_or_else(|| bad("disk_size_mb expected to be an integer"))?;
                if mb == 0 || mb > 1 << 20 {
                    return Err(bad("invalid request: disk_size_mb must be between 1 and 1048576"));
                }
                opts.disk_size_mb = Some(mb);
            }
            k => return Err(bad(format!("invalid request: unknown create option {k:?}"))),
        }
    }
    Ok(opts)
}

fn parse_bind_mounts(v: &Value) -> Result<Vec<BindMount>, Error> {
    let Value::Array(items) = v else {
        return Err(bad("invalid request: bind_mounts must be an array"));
    };
    items
        .iter()
        .map(|item| {
            let invalid = || bad("invalid request: each bind mount must be [host_path, container_path, {\"mode\": \"ro\"|\"rw\"}]");
            let Value::Array(parts) = item else { return Err(invalid()) };
            if parts.len() < 2 || parts.len() > 3 {
                return Err(invalid());
            }
            let (Value::String(host), Value::String(cont)) = (&parts[0], &parts[1]) else {
                return Err(invalid());
            };
            for p in [host, cont] {
                if !p.starts_with('/') || p.contains(['\t', '\n', '\0']) {
                    return Err(bad(format!(
                        "invalid request: bind mount path {p:?} must be absolute and contain no tab, newline or NUL"
                    )));
                }
                if p.split('/').any(|c| c == "..") {
                    return Err(bad(format!("invalid request: bind mount path {p:?} must not contain ..")));
                }
            }
            let read_only = match parts.get(2) {
                None | Some(Value::Null) => true,
                Some(Value::Object(o)) => match o.get("mode") {
                    None => true,
                    Some(Value::String(m)) if m == "ro" => true,
                    Some(Value::String(m)) if m == "rw" => false,
                    Some(m) => return Err(bad(format!("Invalid mode: {m} (expected \"ro\" or \"rw\")"))),
                },
                Some(_) => return Err(invalid()),
            };
            Ok(BindMount { host_path: host.into(), container_path: cont.into(), read_only })
        })
        .collect()
}

/// The reply line (with its newline) for a request's result.
pub fn reply_line(result: &Result<Value, Error>) -> Vec<u8> {
    // Written by hand to keep "type" first, as in DESIGN.md section 4.
    let (kind, payload) = match result {
        Ok(payload) => ("object", payload.clone()),
        Err(e) => ("error", Value::String(e.to_string())),
    };
    let mut line = format!("{{\"type\":\"{kind}\",\"payload\":").into_bytes();
    serde_json::to_writer(&mut line, &payload).expect("a Value serializes");
    line.extend_from_slice(b"}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(line: &str) -> String {
        parse_line(line.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse_line(br#"["ping"]"#).unwrap(), Request::Ping);
        assert_eq!(parse_line(br#"["list"]"#).unwrap(), Request::List);
        assert_eq!(
            parse_line(br#"["spawn","0afe0000","echo hi"]"#).unwrap(),
            Request::Spawn {
                handle: "0afe0000".into(),
                script: "echo hi".into()
            }
        );
        assert_eq!(
            parse_line(br#"["link","h","7"]"#).unwrap(),
            Request::Link {
                handle: "h".into(),
                job: 7
            }
        );
        assert_eq!(
            parse_line(br#"["limit","h","mem",1048576]"#).unwrap(),
            Request::LimitMem {
                handle: "h".into(),
                value: Some(1 << 20)
            }
        );
        assert_eq!(
            parse_line(br#"["limit","h","mem"]"#).unwrap(),
            Request::LimitMem {
                handle: "h".into(),
                value: None
            }
        );
        assert_eq!(
            parse_line(br#"["copy","h","out","/a","/b","root:root"]"#).unwrap(),
            Request::CopyOut {
                handle: "h".into(),
                src: "/a".into(),
                dst: "/b".into(),
                owner: Some("root:root".into())
            }
        );
    }

    #[test]
    fn create_options() {
        let r = parse_line(br#"["create",{"bind_mounts":[["/a","/b",{"mode":"rw"}],["/c","/d"]],"grace_time":null,"disk_size_mb":"64"}]"#).unwrap();
        let Request::Create(o) = r else { panic!() };
        assert_eq!(o.bind_mounts.len(), 2);
        assert!(!o.bind_mounts[0].read_only);
        assert!(o.bind_mounts[1].read_only);
        assert_eq!(o.grace_time, Some(None));
        assert_eq!(o.disk_size_mb, Some(64));
        let Request::Create(o) = parse_line(br#"["create",{"grace_time":1.5}]"#).unwrap() else {
            panic!()
        };
        assert_eq!(o.grace_time, Some(Some(Duration::from_millis(1500))));
    }

    #[test]
    fn net_rules() {
        let r: NetOutRule = "10.1.2.0/24:80".parse().unwrap();
        assert_eq!(r.port, Some(80));
        assert_eq!(r.network.to_string(), "10.1.2.0/24");
        let r: NetOutRule = "10.1.2.3".parse().unwrap();
        assert_eq!(r.port, None);
        assert!("10.1.2.3:0".parse::<NetOutRule>().is_err());
        assert!("x".parse::<NetOutRule>().is_err());
        assert!("1.2.3.4/33".parse::<NetOutRule>().is_err());
    }

    #[test]
    fn error_phrases() {
        assert!(err("nope").contains("invalid request"));
        assert!(err("{}").contains("invalid request"));
        assert!(err("[]").contains("invalid request"));
        assert!(err("[1]").contains("invalid request"));
        assert!(err(r#"["frobnicate"]"#).contains("unknown command"));
        assert!(err(r#"["ping", 1]"#).contains("invalid number of arguments"));
        assert!(err(r#"["spawn","h"]"#).contains("invalid number of arguments"));
        assert!(err(r#"["limit","h","cpu",1]"#).contains("unknown limit"));
        assert!(err(r#"["limit","h","mem","lots"]"#).contains("Invalid limit"));
        assert!(err(r#"["limit","h","mem",-1]"#).contains("Invalid limit"));
        assert!(err(r#"["link","h","x"]"#).contains("to be an integer"));
        assert!(err(r#"["create",{"disk_size_mb":"big"}]"#).contains("to be an integer"));
        assert!(
            err(r#"["create",{"bind_mounts":[["/a","/b",{"mode":"rx"}]]}]"#)
                .contains("Invalid mode")
        );
        assert!(err(r#"["net","h","out","nonsense"]"#).contains("invalid request"));
        assert!(err(r#"["copy","h","in","rel/src","/dst"]"#).contains("must be absolute"));
        assert!(err(r#"["copy","h","out","/src","rel"]"#).contains("must be absolute"));
        assert!(err(r#"["spawn",1,"x"]"#).contains("invalid request"));
    }

    #[test]
    fn replies_are_one_line() {
        let l = reply_line(&Ok(json!("a\nb")));
        assert_eq!(l.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(
            String::from_utf8(l).unwrap(),
            "{\"type\":\"object\",\"payload\":\"a\\nb\"}\n"
        );
        let l = reply_line(&Err(Error::UnknownHandle("x".into())));
        assert!(String::from_utf8(l).unwrap().contains("\"type\":\"error\""));
    }
}

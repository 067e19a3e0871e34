//! How a reply's payload is shown: for people by default (a handle, a job's output, `info` as
//! aligned `key: value` lines, `list` one handle a line), or as one line of JSON with
//! `--json`. Also the exit status a command ends with.

use std::io::{self, Write};

use serde_json::Value;

use super::args::Cmd;

/// Writes the payload of `cmd`'s reply and returns the exit status: 0, except for `run` and
/// `link` shown for people, which give the job's status (1 when it is unknown).
pub fn show(
    cmd: &Cmd,
    payload: &Value,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<u8> {
    if json {
        writeln!(out, "{payload}")?;
        return Ok(0);
    }
    match cmd {
        Cmd::Run { .. } | Cmd::Link { .. } => return show_job(payload, out, err),
        Cmd::Info { .. } => {
            for (key, value) in info_lines(payload) {
                writeln!(out, "{key}{value}")?;
            }
        }
        Cmd::List => {
            for h in payload.as_array().into_iter().flatten() {
                writeln!(out, "{}", plain(h))?;
            }
        }
        Cmd::Limit { bytes: None, .. } => match payload.as_u64() {
            Some(0) => writeln!(out, "0 (no limit)")?,
            Some(n) => writeln!(out, "{n} ({})", human_size(n))?,
            None => writeln!(out, "{}", plain(payload))?,
        },
        _ => writeln!(out, "{}", plain(payload))?,
    }
    Ok(0)
}

/// `[exit_status, stdout, stderr]`: the output goes where it came from.
fn show_job(payload: &Value, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let field = |i: usize| payload.get(i).and_then(Value::as_str).unwrap_or("");
    out.write_all(field(1).as_bytes())?;
    out.flush()?;
    err.write_all(field(2).as_bytes())?;
    match payload.get(0).and_then(Value::as_u64) {
        Some(status) => Ok(status.min(255) as u8),
        None => {
            writeln!(
                err,
                "warden: the job's exit status is unknown (it was killed, or its container was \
                 stopped or destroyed)"
            )?;
            Ok(1)
        }
    }
}

/// A string as itself, anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `info`'s object as (`"key:   "`, value) pairs, nested objects flattened to `a.b`, arrays
/// as space-separated words (`-` when empty), `state` first, keys aligned.
pub fn info_lines(payload: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    flatten("", payload, &mut rows);
    if let Some(i) = rows.iter().position(|(k, _)| k == "state") {
        let state = rows.remove(i);
        rows.insert(0, state);
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 2;
    rows.into_iter()
        .map(|(k, v)| (format!("{:<width$}", format!("{k}:")), v))
        .collect()
}

fn flatten(prefix: &str, v: &Value, rows: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, rows);
            }
        }
        Value::Array(items) if items.is_empty() => rows.push((prefix.into(), "-".into())),
        Value::Array(items) => rows.push((
            prefix.into(),
            items.iter().map(plain).collect::<Vec<_>>().join(" "),
        )),
        other => rows.push((prefix.into(), plain(other))),
    }
}

/// 536870912 -> "512M"; exact multiples only get a suffix of their own, others one decimal.
pub fn human_size(n: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    for (shift, unit) in UNITS {
        let size = 1u64 << shift;
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{}{unit}", n >> shift)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(cmd: Cmd, payload: Value, json: bool) -> (String, String, u8) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = show(&cmd, &payload, json, &mut out, &mut err).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            code,
        )
    }

    fn run() -> Cmd {
        Cmd::Run {
            handle: "h".into(),
            script: "x".into(),
        }
    }

    #[test]
    fn jobs() {
        assert_eq!(
            render(run(), json!([3, "out\n", "err\n"]), false),
            ("out\n".into(), "err\n".into(), 3)
        );
        let (_, err, code) = render(run(), json!([null, "", ""]), false);
        assert_eq!(code, 1);
        assert!(err.contains("unknown"));
        // JSON: the payload on one line, and success.
        assert_eq!(
            render(run(), json!([3, "a\nb", ""]), true),
            ("[3,\"a\\nb\",\"\"]\n".into(), String::new(), 0)
        );
    }

    #[test]
    fn info_is_aligned() {
        let info = json!({
            "state": "active", "events": [], "host_ip": "10.0.0.1",
            "limits": {"mem": 0}, "stats": {"mem_usage_B": 12}, "job_ids": [1, 2]
        });
        let (out, _, _) = render(Cmd::Info { handle: "h".into() }, info, false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "state:             active");
        assert!(lines.contains(&"events:            -"));
        assert!(lines.contains(&"job_ids:           1 2"));
        assert!(lines.contains(&"limits.mem:        0"));
        assert!(lines.contains(&"stats.mem_usage_B: 12"));
    }

    #[test]
    fn others() {
        assert_eq!(
            render(Cmd::List, json!(["a", "b"]), false).0,
            "a\nb\n".to_string()
        );
        assert_eq!(render(Cmd::List, json!([]), false).0, "");
        assert_eq!(render(Cmd::List, json!(["a"]), true).0, "[\"a\"]\n");
        assert_eq!(render(Cmd::Ping, json!("pong"), false).0, "pong\n");
        let limit = Cmd::Limit {
            handle: "h".into(),
            limit: super::super::args::LimitKind::Mem,
            bytes: None,
        };
        assert_eq!(
            render(limit.clone(), json!(64u64 << 20), false).0,
            "67108864 (64M)\n"
        );
        assert_eq!(render(limit, json!(0), false).0, "0 (no limit)\n");
        assert_eq!(human_size(1536), "1.5K");
        assert_eq!(human_size(1 << 30), "1G");
        assert_eq!(human_size(12), "12B");
    }
}

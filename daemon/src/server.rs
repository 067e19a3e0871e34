//! The accept loop and the connections. Each connection is a task: it reads one line at a
//! time, answers it, then reads the next, so replies come strictly in request order; a slow
//! request holds up only its own connection. This is the one place where an `Err` becomes
//! an error reply and a log line.

use std::future::Future;
use std::sync::Arc;

use log::{debug, info, warn};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::{Connection, Daemon};
use crate::error::Error;
use crate::protocol::{self, MAX_LINE};

/// Serves `listener` until `shutdown` completes, then destroys every container.
pub async fn run(listener: UnixListener, daemon: Arc<Daemon>, shutdown: impl Future) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let d = daemon.clone();
                    tokio::spawn(async move { serve(stream, d).await });
                }
                Err(e) => warn!("accept-failed error={e}"),
            },
            _ = &mut shutdown => break,
        }
    }
    info!("shutdown");
    daemon.shutdown().await;
}

/// What one read of a request line gave.
enum Line {
    Request(Vec<u8>),
    TooLong,
    Eof,
}

/// Reads one line of at most `max` bytes. A longer line is consumed up to its newline
/// without being kept, so a client cannot make the daemon grow.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            // EOF: a last line without a newline still counts.
            return Ok(if too_long {
                Line::TooLong
            } else if buf.is_empty() {
                Line::Eof
            } else {
                Line::Request(std::mem::take(buf))
            });
        }
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let consumed = done.unwrap_or(chunk.len());
        r.consume(consumed);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Request(std::mem::take(buf))
            });
        }
    }
}

async fn serve(stream: UnixStream, daemon: Arc<Daemon>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut conn = Connection::default();
    let mut buf = Vec::new();
    loop {
        let result = match read_line(&mut r, &mut buf, MAX_LINE).await {
            Ok(Line::Eof) | Err(_) => break,
            Ok(Line::TooLong) => Err(Error::BadRequest(format!(
                "invalid request: line longer than {MAX_LINE} bytes"
            ))),
            Ok(Line::Request(line)) => {
                let trimmed = line.strip_suffix(b"\r").unwrap_or(&line);
                if trimmed.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                log::trace!("request {}", String::from_utf8_lossy(trimmed));
                match protocol::parse_line(trimmed) {
                    Ok(req) => {
                        let name = format!("{req:?}");
                        let out = daemon.handle(req, &mut conn).await;
                        match &out {
                            Ok(_) => debug!("request-done {}", short(&name)),
                            Err(e) => info!("request-failed {} error={e}", short(&name)),
                        }
                        out
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if w.write_all(&protocol::reply_line(&result)).await.is_err() {
            break;
        }
    }
    daemon.disconnect(conn);
}

fn short(s: &str) -> &str {
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_with_a_cap() {
        let data: &[u8] = b"[\"ping\"]\nxxxxxxxxxxxxxxxxxxxx\n[\"list\"]";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            match read_line(&mut r, &mut buf, 10).await.unwrap() {
                Line::Eof => break,
                Line::TooLong => got.push("too long".to_string()),
                Line::Request(l) => got.push(String::from_utf8(l).unwrap()),
            }
        }
        assert_eq!(got, ["[\"ping\"]", "too long", "[\"list\"]"]);
    }
}

//! A blocking client of the wire protocol (DESIGN.md section 4), for the `warden` command and
//! for tests: one connection, one JSON array written per request, one reply line read back.
//! It knows the framing and the reply envelope, not the commands: callers build the request
//! array. No runtime, no threads; every call waits for its reply.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The socket the daemon listens on when its configuration does not say otherwise
/// (`server.unix_domain_path`).
pub fn default_socket() -> PathBuf {
    crate::config::Config::default().server.unix_domain_path
}

#[derive(Debug)]
pub enum Error {
    /// Nothing listens on the socket: no such file, or a socket left behind by a daemon that
    /// is gone.
    NotRunning { socket: PathBuf, source: io::Error },
    /// Any other failure to connect (permissions, not a socket, ...).
    Connect { socket: PathBuf, source: io::Error },
    /// The connection broke while writing a request or reading its reply.
    Io { op: &'static str, source: io::Error },
    /// The daemon closed the connection before it replied.
    Closed,
    /// The reply line is not `{"type":"object"|"error","payload":...}`.
    BadReply(String),
    /// The daemon answered with an error; the message is its payload.
    Daemon(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRunning { socket, source } => {
                let why = if source.kind() == io::ErrorKind::NotFound {
                    "there is no socket at"
                } else {
                    "nothing listens on"
                };
                write!(
                    f,
                    "the warden daemon is not running: {why} {} (start wardend, or name \
                     its socket with --socket or WARDEN_SOCKET)",
                    socket.display()
                )
            }
            Error::Connect { socket, source } => {
                write!(f, "cannot connect to {}: {source}", socket.display())
            }
            Error::Io { op, source } => {
                write!(f, "the connection to the daemon broke while {op}: {source}")
            }
            Error::Closed => f.write_str("the daemon closed the connection without a reply"),
            Error::BadReply(line) => write!(f, "the daemon sent a reply that is not one: {line}"),
            Error::Daemon(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    /// True when the connection can no longer be used (as opposed to an error reply, after
    /// which the connection goes on).
    pub fn is_connection_lost(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::Closed | Error::BadReply(_))
    }
}

/// One connection to the daemon.
pub struct Client {
    socket: PathBuf,
    stream: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client, Error> {
        match UnixStream::connect(socket) {
            Ok(s) => Ok(Client {
                socket: socket.to_path_buf(),
                stream: BufReader::new(s),
            }),
            Err(source) => {
                let socket = socket.to_path_buf();
                Err(match source.kind() {
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                        Error::NotRunning { socket, source }
                    }
                    _ => Error::Connect { socket, source },
                })
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` (a JSON array such as `["info", "0afe0000"]`) and returns the reply's
    /// payload, or `Error::Daemon` with the message of an error reply.
    pub fn call(&mut self, request: &Value) -> Result<Value, Error> {
        let mut line = serde_json::to_vec(request).expect("a Value serializes");
        line.push(b'\n');
        self.stream
            .get_mut()
            .write_all(&line)
            .map_err(|source| Error::Io {
                op: "sending the request",
                source,
            })?;
        let mut reply = String::new();
        let n = self
            .stream
            .read_line(&mut reply)
            .map_err(|source| Error::Io {
                op: "reading the reply",
                source,
            })?;
        if n == 0 {
            return Err(Error::Closed);
        }
        parse_reply(reply.trim_end_matches('\n'))
    }
}

/// The payload of one reply line, or its error message as `Error::Daemon`.
pub fn parse_reply(line: &str) -> Result<Value, Error> {
    let bad = || Error::BadReply(line.to_string());
    let Ok(Value::Object(mut reply)) = serde_json::from_str::<Value>(line) else {
        return Err(bad());
    };
    let payload = reply.remove("payload").ok_or_else(bad)?;
    match reply.get("type").and_then(Value::as_str) {
        Some("object") => Ok(payload),
        Some("error") => Err(Error::Daemon(match payload {
            Value::String(s) => s,
            other => other.to_string(),
        })),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::net::UnixListener;

    #[test]
    fn replies() {
        assert_eq!(
            parse_reply(r#"{"type":"object","payload":[0,"hi\n",""]}"#).unwrap(),
            json!([0, "hi\n", ""])
        );
        match parse_reply(r#"{"type":"error","payload":"unknown handle: x"}"#) {
            Err(Error::Daemon(m)) => assert_eq!(m, "unknown handle: x"),
            r => panic!("{r:?}"),
        }
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"type":"what","payload":1}"#,
            r#"{"type":"object"}"#,
        ] {
            assert!(matches!(parse_reply(bad), Err(Error::BadReply(_))), "{bad}");
        }
    }

    #[test]
    fn not_running_names_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let e = Client::connect(&path).err().unwrap();
        assert!(matches!(e, Error::NotRunning { .. }));
        assert!(e.to_string().contains(&*path.to_string_lossy()));
        // A socket file that nobody listens on any more.
        drop(UnixListener::bind(&path).unwrap());
        assert!(matches!(
            Client::connect(&path).err().unwrap(),
            Error::NotRunning { .. }
        ));
    }

    #[test]
    fn call_over_a_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "[\"ping\"]\n");
            r.get_mut()
                .write_all(b"{\"type\":\"object\",\"payload\":\"pong\"}\n")
                .unwrap();
            line.clear();
            r.read_line(&mut line).unwrap();
            r.get_mut()
                .write_all(b"{\"type\":\"error\",\"payload\":\"unknown command: \\\"x\\\"\"}\n")
                .unwrap();
            // Then hang up without answering the third request.
            line.clear();
            r.read_line(&mut line).unwrap();
        });
        let mut c = Client::connect(&path).unwrap();
        assert_eq!(c.call(&json!(["ping"])).unwrap(), json!("pong"));
        let e = c.call(&json!(["x"])).unwrap_err();
        assert!(!e.is_connection_lost());
        assert_eq!(e.to_string(), "unknown command: \"x\"");
        let e = c.call(&json!(["list"])).unwrap_err();
        assert!(e.is_connection_lost(), "{e:?}");
        server.join().unwrap();
    }
}

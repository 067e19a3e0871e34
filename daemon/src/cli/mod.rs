//! The `warden` command (bin `warden`): the grammar shared by the command line and the shell
//! (`args`), how replies are shown (`output`), the interactive shell (`shell`) and its word
//! splitting (`words`). It talks to the daemon only through `warden_daemon::client`, and it
//! never interprets a request beyond building it: the daemon is the one that validates.

pub mod args;
pub mod output;
pub mod shell;
pub mod words;

use std::path::{Path, PathBuf};

use serde_json::Value;
use warden_daemon::client::{self, Client};

/// The socket to use: `--socket`, else `WARDEN_SOCKET`, else the daemon's default.
pub fn socket_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("WARDEN_SOCKET")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(client::default_socket)
}

/// A connection made when the first request needs it, and made again after it broke.
pub struct Session {
    socket: PathBuf,
    conn: Option<Client>,
}

impl Session {
    pub fn new(socket: &Path) -> Session {
        Session {
            socket: socket.to_path_buf(),
            conn: None,
        }
    }

    pub fn call(&mut self, request: &Value) -> Result<Value, client::Error> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Client::connect(&self.socket)?),
        };
        let r = conn.call(request);
        if matches!(&r, Err(e) if e.is_connection_lost()) {
            self.conn = None;
        }
        r
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The daemon answered; for `run` and `link`, the job's exit status.
    Done(u8),
    /// The daemon answered with an error, or could not be reached.
    Failed,
    /// The command was not well formed; nothing was sent.
    Usage,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Done(c) => c,
            Outcome::Failed => 1,
            Outcome::Usage => 2,
        }
    }
}

/// Sends `cmd` on `session` and shows the reply on stdout and stderr. `grammar` formats
/// usage errors that clap could not catch alone.
pub fn execute(
    session: &mut Session,
    cmd: &args::Cmd,
    json: bool,
    stdin: args::Stdin<'_>,
    grammar: clap::Command,
) -> Outcome {
    let request = match cmd.request(stdin) {
        Ok(r) => r,
        Err(message) => {
            let _ = args::usage_error(grammar, cmd, &message).print();
            return Outcome::Usage;
        }
    };
    let payload = match session.call(&request) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let shown = output::show(cmd, &payload, json, &mut stdout.lock(), &mut stderr.lock());
    match shown.and_then(|code| std::io::Write::flush(&mut stdout.lock()).map(|_| code)) {
        Ok(code) => Outcome::Done(code),
        // A closed pipe (`warden list | head -1`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Failed,
        Err(e) => {
            eprintln!("error: writing the output: {e}");
            Outcome::Failed
        }
    }
}

//! warden: the command-line client of wardend. `warden COMMAND ARGS…` sends one request and
//! shows its reply; `warden` alone (or `warden shell`) opens an interactive shell. The
//! grammar, the output and the shell live in `src/cli/`; the protocol client is the library's
//! `warden_daemon::client`.
#![deny(unsafe_code)]

#[path = "../cli/mod.rs"]
mod cli;

use std::process::ExitCode;

use clap::FromArgMatches;

use cli::args::{cli_command, Cli, Cmd, Stdin};

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0 (clap's conventions).
    let args = cli_command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
        .unwrap_or_else(|e| e.exit());
    let socket = cli::socket_path(args.socket);
    let json = args.output.json;
    let code = match args.command {
        None | Some(Cmd::Shell) => cli::shell::run(&socket, json),
        Some(cmd) => {
            let mut session = cli::Session::new(&socket);
            let mut stdin = std::io::stdin().lock();
            cli::execute(
                &mut session,
                &cmd,
                json,
                Stdin::Reader(&mut stdin),
                cli_command(),
            )
            .code()
        }
    };
    ExitCode::from(code)
}

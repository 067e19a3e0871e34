//! `wsh`: runs a command in a running container through its wshd socket.
//! The relay is `warden_helper::wsh`.
#![deny(unsafe_code)]

use clap::Parser;

fn main() {
    let args = warden_helper::wsh::Args::parse();
    match warden_helper::wsh::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("wsh: {e}");
            std::process::exit(255);
        }
    }
}

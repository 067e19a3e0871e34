//! `wshd`: starts a container on a prepared container directory and becomes its PID 1.
//! The recipe is `warden_helper::stage`.
#![deny(unsafe_code)]

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = warden_helper::args::Args::parse();
    if let Err(e) = warden_helper::stage::run(&args) {
        eprintln!("wshd: {e}");
        std::process::exit(1);
    }
}

//! The interactive shell: `warden` with no command, or `warden shell`. Each line is split into
//! words (`words`), parsed by the same clap grammar as the command line (`args::shell_command`)
//! and sent on one connection that lives as long as the shell, so the containers it names
//! keep being referenced (the grace timer starts when the shell ends).
//!
//! Line editing and history are rustyline's; history lives in `~/.warden_history` and is
//! kept only for a terminal. Tab completion is derived from the grammar: command names,
//! flags, fixed values (`in`/`out`, `mem`) and, for every HANDLE argument, the handles the
//! daemon lists at that moment (asked on a connection of its own).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::FromArgMatches;
use rustyline::completion::{Completer, Pair};
use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use serde_json::json;
use warden_daemon::client::Client;

use super::args::{shell_command, Cmd, ShellLine, Stdin};
use super::{execute, words, Outcome, Session};

/// Runs the shell until `exit`, Ctrl-D or the end of its input; returns the exit status of
/// the last command (as a shell script would).
pub fn run(socket: &Path, json: bool) -> u8 {
    let mut grammar = shell_command();
    grammar.build();
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_space(true)
        .build();
    let mut editor: Editor<ShellHelper, FileHistory> = match Editor::with_config(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the line editor: {e}");
            return 1;
        }
    };
    editor.set_helper(Some(ShellHelper {
        socket: socket.to_path_buf(),
        grammar: grammar.clone(),
    }));
    let interactive = std::io::stdin().is_terminal();
    let history = if interactive { history_path() } else { None };
    if let Some(p) = &history {
        // A first session has no history yet.
        let _ = editor.load_history(p);
    }
    if interactive {
        println!(
            "warden shell on {}: `help` lists the commands, Tab completes, Ctrl-D leaves.",
            socket.display()
        );
    }
    let prompt = format!("warden {}> ", socket.display());
    let mut session = Session::new(socket);
    let mut status = 0;
    loop {
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: reading the command line: {e}");
                return 1;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(p) = &history {
            if editor.add_history_entry(line.as_str()).unwrap_or(false) {
                if let Err(e) = editor.append_history(p) {
                    eprintln!("warning: cannot write the history to {}: {e}", p.display());
                }
            }
        }
        match one_line(&line, &mut grammar, &mut session, json) {
            Some(code) => status = code,
            None => break,
        }
    }
    status
}

/// `$HOME/.warden_history`, when there is a home.
fn history_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".warden_history"))
}

/// Carries out one line; `None` to leave the shell.
fn one_line(
    line: &str,
    grammar: &mut clap::Command,
    session: &mut Session,
    json: bool,
) -> Option<u8> {
    let words = match words::words(line) {
        Ok(w) if w.is_empty() => return Some(0),
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return Some(2);
        }
    };
    let matches = match grammar.try_get_matches_from_mut(&words) {
        Ok(m) => m,
        Err(e) => {
            // Also `help` and `--help`, which clap reports as "errors" on stdout.
            let _ = e.print();
            return Some(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if matches.subcommand_name() == Some("exit") {
        return None;
    }
    let parsed = match ShellLine::from_arg_matches(&matches) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.print();
            return Some(2);
        }
    };
    if parsed.command == Cmd::Shell {
        eprintln!("already in the shell");
        return Some(0);
    }
    let json = json || parsed.output.json;
    let outcome = execute(
        session,
        &parsed.command,
        json,
        Stdin::Unavailable,
        grammar.clone(),
    );
    if let Outcome::Done(code @ 1..) = outcome {
        if matches!(parsed.command, Cmd::Run { .. } | Cmd::Link { .. }) && !json {
            eprintln!("[exit status {code}]");
        }
    }
    Some(outcome.code())
}

/// Completion from the grammar; no hints, highlighting or multi-line validation.
pub struct ShellHelper {
    socket: PathBuf,
    /// Built (`Command::build`), so that `help` and the global flags are in every command.
    grammar: clap::Command,
}

impl Helper for ShellHelper {}
impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let split = words::split(&line[..pos]);
        if split.open_quote.is_some() {
            // Inside a quoted script: nothing to offer.
            return Ok((pos, Vec::new()));
        }
        let (before, partial, start) = match split.open_word_start {
            Some(start) => {
                let (last, before) = split.words.split_last().expect("an open word");
                (before, last.as_str(), start)
            }
            None => (&split.words[..], "", pos),
        };
        let pairs = candidates(&self.grammar, before, partial, || {
            live_handles(&self.socket)
        })
        .into_iter()
        .filter(|c| c.starts_with(partial))
        .map(|c| Pair {
            replacement: format!("{c} "),
            display: c,
        })
        .collect();
        Ok((start, pairs))
    }
}

/// The handles of live containers, asked on a connection of its own; none when the daemon
/// cannot be reached (completion must never print or fail).
fn live_handles(socket: &Path) -> Vec<String> {
    let Ok(mut c) = Client::connect(socket) else {
        return Vec::new();
    };
    match c.call(&json!(["list"])) {
        Ok(serde_json::Value::Array(hs)) => hs
            .into_iter()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// What may come after the words `before`, for a word that starts as `partial` (the caller
/// keeps those that match). Walks the grammar: the command name first, then its positional
/// arguments in order, skipping flags and the values of flags that take one.
pub fn candidates(
    grammar: &clap::Command,
    before: &[String],
    partial: &str,
    handles: impl FnOnce() -> Vec<String>,
) -> Vec<String> {
    let mut words = before.iter().skip_while(|w| w.starts_with('-'));
    let Some(name) = words.next() else {
        return if partial.starts_with('-') {
            long_flags(grammar)
        } else {
            command_names(grammar)
        };
    };
    let Some(sub) = grammar.find_subcommand(name) else {
        return Vec::new();
    };
    let rest: Vec<&String> = words.collect();
    if sub.get_name() == "help" {
        return if rest.is_empty() {
            command_names(grammar)
        } else {
            Vec::new()
        };
    }
    let mut positional = 0;
    let mut flag_value_next = false;
    for w in rest {
        if flag_value_next {
            flag_value_next = false;
        } else if let Some(long) = w.strip_prefix("--") {
            flag_value_next = !long.contains('=')
                && sub
                    .get_arguments()
                    .find(|a| a.get_long() == Some(long))
                    .is_some_and(|a| a.get_action().takes_values());
        } else if !(w.starts_with('-') && w.len() > 1) {
            positional += 1;
        }
    }
    if flag_value_next {
        return Vec::new();
    }
    if partial.starts_with('-') {
        return long_flags(sub);
    }
    let Some(arg) = sub.get_positionals().nth(positional) else {
        return Vec::new();
    };
    if arg.get_id() == "handle" {
        return handles();
    }
    arg.get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect()
}

fn command_names(grammar: &clap::Command) -> Vec<String> {
    grammar
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect()
}

fn long_flags(cmd: &clap::Command) -> Vec<String> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .map(|l| format!("--{l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(line: &str) -> Vec<String> {
        let mut g = shell_command();
        g.build();
        let split = words::split(line);
        let (before, partial) = match split.open_word_start {
            Some(_) => {
                let (last, before) = split.words.split_last().unwrap();
                (before.to_vec(), last.clone())
            }
            None => (split.words.clone(), String::new()),
        };
        let handles = || vec!["0afe8000".to_string(), "0afe8004".to_string()];
        let mut c: Vec<String> = candidates(&g, &before, &partial, handles)
            .into_iter()
            .filter(|c| c.starts_with(&partial))
            .collect();
        c.sort();
        c
    }

    #[test]
    fn completes_from_the_grammar() {
        assert_eq!(complete("li"), ["limit", "link", "list"]);
        assert_eq!(complete("des"), ["destroy"]);
        assert!(complete("").contains(&"help".to_string()));
        assert!(complete("").contains(&"exit".to_string()));
        assert!(!complete("").contains(&"shell".to_string()));
        assert_eq!(complete("info 0afe800"), ["0afe8000", "0afe8004"]);
        assert_eq!(complete("run 0afe8000 "), Vec::<String>::new());
        assert_eq!(complete("net 0afe8000 "), ["in", "out"]);
        assert_eq!(complete("copy 0afe8000 o"), ["out"]);
        assert_eq!(complete("limit 0afe8000 "), ["mem"]);
        assert_eq!(complete("help ru"), ["run"]);
        assert_eq!(
            complete("create --disk"),
            ["--disk-size-mb"],
            "flags of the command"
        );
        // The value of a flag is not a positional.
        assert_eq!(complete("create --grace-time "), Vec::<String>::new());
        assert_eq!(
            complete("copy --owner a:b 0afe8000 "),
            ["in", "out"],
            "--owner's value skipped"
        );
        assert_eq!(complete("--json inf"), ["info"]);
        assert_eq!(complete("frob "), Vec::<String>::new());
    }
}

//! Everything the CLI prints to stdout goes through here, so that a reader that went away
//! (`claudemesh inbox --json | head -3`) ends the program quietly instead of with a panic.
//!
//! Rust starts programs with SIGPIPE ignored (and `unsafe_code` is forbidden here, so it stays
//! that way): a write into a closed pipe fails with [`std::io::ErrorKind::BrokenPipe`], on which
//! `println!` panics. [`outln!`] and [`out!`] return [`Closed`] instead; verbs pass it up with `?`
//! and `main` exits with [`BROKEN_PIPE_EXIT`], printing nothing.
//!
//! Peers choose names, summaries and bodies, so everything written here first goes through
//! [`claudemesh_protocol::text::terminal`]: no escape sequence (an OSC 52 clipboard write, a
//! screen clear, a colour), control character or bidi override of a peer reaches the terminal.
//! `--json` output goes through [`json`], which writes such characters as `\uXXXX` escapes so
//! the data stays whole.

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use claudemesh_protocol::text;

/// The exit code after stdout's reader went away: 141 = 128 + SIGPIPE, what a shell reports for
/// `cat` or `git` ended by a closed pipe, so `set -o pipefail` scripts see what they see with
/// those tools.
pub const BROKEN_PIPE_EXIT: u8 = 141;

/// stdout's reader went away: not a failure to report, the end of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// Writes `args` to stdout, cleaned for a terminal ([`text::terminal`]), and flushes; a closed
/// pipe is [`Closed`], any other failure an error naming stdout.
pub fn write(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let clean = text::terminal(&args.to_string());
    write_raw(&clean)
}

/// Writes `s` as it is: only for text this program made whole (clap's help).
fn write_raw(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed.into()),
        Err(e) => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
    }
}

/// Prints `value` as pretty JSON (the `--json` output of every verb), with DEL, C1 controls and
/// bidi controls written as `\uXXXX` escapes (serde escapes C0 already): the data is exact and
/// nothing in it acts on the terminal.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(value)?;
    write_raw(&format!("{}\n", json_escaped(&s)))
}

/// `s` (JSON text) with the characters [`text::terminal`] would drop escaped instead; they can
/// only stand inside JSON strings, where an escape means the same character.
fn json_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_control() && c != '\n' && c != '\t') || text::is_bidi_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints to stdout without a newline (flushed at once, e.g. for a prompt); use with `?`.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

/// Prints a line to stdout; use with `?` so that a closed pipe ends the verb quietly.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// The exit code for a verb's error: quiet [`BROKEN_PIPE_EXIT`] for [`Closed`], otherwise the
/// error on stderr and 1.
pub fn exit_for(e: &anyhow::Error) -> ExitCode {
    if is_closed(e) {
        return ExitCode::from(BROKEN_PIPE_EXIT);
    }
    // Error text can carry a peer's words (a name the agent could not resolve).
    eprintln!("error: {}", text::terminal(&format!("{e:#}")));
    ExitCode::FAILURE
}

/// Whether `e` is, or was caused by, a closed stdout.
pub fn is_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Closed>())
}

/// What to do with a command line clap did not turn into a command: `--help` and `--version`
/// are written through [`write`] (so `claudemesh --help | head -1` ends quietly too); usage
/// errors go to stderr as clap prints them.
pub fn clap_exit(e: &clap::Error) -> ExitCode {
    if e.use_stderr() {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.render();
    let text = if std::io::stdout().is_terminal() { text.ansi().to_string() } else { text.to_string() };
    match write_raw(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => exit_for(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_is_found_behind_context() {
        let e = anyhow::Error::new(Closed).context("printing the inbox");
        assert!(is_closed(&e));
        assert!(!is_closed(&anyhow::anyhow!("stdout was closed by its reader")), "decided by type, not text");
    }

    #[test]
    fn json_keeps_data_and_escapes_what_acts_on_a_terminal() {
        let v = serde_json::json!({"name": "a\u{1b}]52;c;x\u{07}\u{9b}2J\u{202e}b\u{7f}\n"});
        let s = json_escaped(&serde_json::to_string_pretty(&v).unwrap());
        assert!(!s.chars().any(|c| c.is_control() && c != '\n' || text::is_bidi_control(c)), "{s:?}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }
}

//! Verb dispatch: one module per CLI verb.

mod invite_inspect;

use std::process::ExitCode;

use crate::cli::{Cli, Command, InviteCommand};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Invite(InviteCommand::Inspect(args)) => invite_inspect::run(&args),
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

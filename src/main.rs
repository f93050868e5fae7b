//! The `claudemesh` binary: parse the command line, dispatch to a verb, map errors to an exit code.

mod broker_url;
mod claude_hooks;
mod claude_settings;
mod cli;
mod cmd;
mod hook;
mod launch_entries;
mod mcp;
mod out;
mod when;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return out::clap_exit(&e),
    };
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => out::exit_for(&e),
    }
}

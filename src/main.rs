//! The `claudemesh` binary: parse the command line, dispatch to a verb, map errors to an exit code.

mod claude_hooks;
mod claude_settings;
mod cli;
mod cmd;
mod hook;
mod mcp;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

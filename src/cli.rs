//! The command-line surface of `claudemesh` (DESIGN §12), declared with clap.

use clap::{Args, Parser, Subcommand};

/// Claude Code sessions on different machines talk to each other through a mesh.
#[derive(Debug, Parser)]
#[command(name = "claudemesh", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run and manage the local agent that holds broker connections and keys.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Work with invite links.
    #[command(subcommand)]
    Invite(InviteCommand),
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Run the agent in the foreground (what the service unit and auto-start run).
    Run,
    /// Start the agent in the background (logs to agent.log in the config dir).
    Start(JsonArg),
    /// Stop the running agent.
    Stop(JsonArg),
    /// Show the agent, its meshes, links, sessions, inbox and outbox.
    Status(JsonArg),
    /// Install a systemd user unit (Linux) or launchd agent (macOS) that keeps the agent running.
    Install(JsonArg),
    /// Remove what `agent install` installed.
    Uninstall(JsonArg),
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Verify an invite link's signature and expiry and show what it grants.
    Inspect(InviteInspectArgs),
}

#[derive(Debug, Args)]
pub struct InviteInspectArgs {
    /// The invite: claudemesh://join/<token>, https://<host>/join/<token>, or the bare token.
    pub link: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

//! `claudemesh status`: the agent (started if needed), meshes, links and unread counts.

use std::process::ExitCode;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    // Make sure an agent runs, then show what `agent status` shows.
    drop(super::agent().await?);
    super::agent_status::run(json).await
}

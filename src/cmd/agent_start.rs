//! `claudemesh agent start`: start the agent in the background, or report the running one.

use std::process::ExitCode;

use crate::out::outln;
use claudemesh_agent::{AgentClient, ClientError, connect_or_start};
use claudemesh_protocol::local::AgentCall;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let was_running = match AgentClient::connect(&paths, "cli").await {
        Ok(_) => true,
        Err(ClientError::NotRunning(_)) => false,
        Err(ClientError::VersionMismatch { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let exe = std::env::current_exe()?;
    let mut c = connect_or_start(&paths, "cli", &exe).await?;
    let st = c.call(AgentCall::Status).await?;
    if json {
        outln!(
            "{}",
            serde_json::json!({ "already_running": was_running, "pid": st["pid"], "log": paths.log() })
        )?;
    } else if was_running {
        outln!("agent already running (pid {}), config {}", st["pid"], paths.dir.display())?;
    } else {
        outln!("agent started (pid {}); log: {}", st["pid"], paths.log().display())?;
    }
    Ok(ExitCode::SUCCESS)
}

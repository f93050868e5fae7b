//! `claudemesh agent stop`: ask the agent to exit and wait until its socket is gone.

use std::process::ExitCode;
use std::time::Duration;

use crate::out::outln;
use claudemesh_agent::{AgentClient, ClientError};
use claudemesh_protocol::local::AgentCall;

pub async fn run(json: bool) -> anyhow::Result<ExitCode> {
    let paths = super::paths();
    let mut c = match AgentClient::connect(&paths, "cli").await {
        Ok(c) => c,
        Err(ClientError::NotRunning(_)) => {
            if json {
                outln!("{}", serde_json::json!({ "stopped": false, "running": false }))?;
            } else {
                outln!("no agent running for {}", paths.dir.display())?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e.into()),
    };
    c.call(AgentCall::Shutdown).await?;
    drop(c);
    for _ in 0..100 {
        if !paths.socket().exists() && !paths.pid().exists() {
            if json {
                outln!("{}", serde_json::json!({ "stopped": true }))?;
            } else {
                outln!("agent stopped")?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the agent did not stop within 5 s; see {}", paths.log().display())
}

//! `claudemesh peers`: sessions online in your meshes (from the agent's cache).

use std::process::ExitCode;

use claudemesh_protocol::local::AgentCall;

use crate::cli::MeshArgs;
use crate::out::outln;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let peers = c.call(AgentCall::Peers { mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&peers)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = peers.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("nobody online (check `claudemesh status` for the link state)")?;
    }
    for p in list {
        let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
        let me = if p["me"] == true { " (you)" } else { "" };
        let summary = p["summary"].as_str().map(|x| format!(" — {x}")).unwrap_or_default();
        outln!(
            "{:<12} {:<24} {:<8} {}{me}{summary}",
            s("mesh"),
            s("display_name"),
            s("status"),
            s("hostname")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

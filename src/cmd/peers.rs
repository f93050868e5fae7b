//! `claudemesh peers`: sessions online in your meshes (from the agent's cache).

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, PeerEntry};

use crate::cli::MeshArgs;
use crate::out::outln;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let peers: Vec<PeerEntry> = c.request(AgentCall::Peers { mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&peers)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if peers.is_empty() {
        outln!("nobody online (check `claudemesh status` for the link state)")?;
    }
    for p in &peers {
        let s = &p.peer.session;
        let me = if p.me { " (you)" } else { "" };
        let summary = s.summary.as_deref().map(|x| format!(" — {x}")).unwrap_or_default();
        outln!(
            "{:<12} {:<24} {:<8} {}{me}{summary}",
            p.mesh,
            s.display_name,
            super::word(&s.status),
            s.hostname.as_deref().unwrap_or("")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

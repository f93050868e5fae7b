//! `claudemesh peers`: sessions online in your meshes (from the agent's cache). A session shows
//! as its member's directory name and short id with the session's own name as a quoted claim
//! (`protocol::text::sender`); peer-chosen fields are folded to one line and capped.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, PeerEntry};
use claudemesh_protocol::text;

use crate::cli::MeshArgs;
use crate::out::outln;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let peers: Vec<PeerEntry> = c.request(AgentCall::Peers { mesh: a.mesh }).await?;
    if a.json {
        crate::out::json(&peers)?;
        return Ok(ExitCode::SUCCESS);
    }
    if peers.is_empty() {
        outln!(
            "no Claude Code sessions open (a session joins with `claudemesh launch`; `claudemesh \
             members` shows who is online, `claudemesh status` the link)"
        )?;
    }
    for p in &peers {
        let s = &p.peer.session;
        let me = if p.me { " (you)" } else { "" };
        let summary = s.summary.as_deref().map(|x| format!(" — {}", text::meta_value(x))).unwrap_or_default();
        let who =
            text::sender(p.member_name.as_deref().unwrap_or("?"), &p.peer.member_id, Some(&s.display_name));
        outln!(
            "{:<12} {:<24} {:<8} {}{me}{summary}",
            text::name(&p.mesh),
            who,
            super::word(&s.status),
            text::name(s.hostname.as_deref().unwrap_or(""))
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh members`: everyone in your meshes — name, short id, role, groups, online or not,
//! and the names of their open sessions (from the agent's directory and presence).

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, MemberEntry};
use claudemesh_protocol::text;

use crate::cli::MeshArgs;
use crate::out::outln;

/// `ops`, `ops:lead`, … or `-`.
fn groups(m: &MemberEntry) -> String {
    let g: Vec<String> = m.member.groups.iter().map(super::invite_inspect::group_text).collect();
    if g.is_empty() { "-".into() } else { g.join(",") }
}

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let list: Vec<MemberEntry> = c.request(AgentCall::Members { mesh: a.mesh }).await?;
    if a.json {
        crate::out::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        outln!("no members known yet (check `claudemesh status` for the link state)")?;
    }
    let mut mesh = "";
    for m in &list {
        if m.mesh != mesh {
            mesh = &m.mesh;
            outln!("{}:", text::name(mesh))?;
            outln!("  {:<24} {:<9} {:<7} {:<20} {:<8} SESSIONS", "NAME", "ID", "ROLE", "GROUPS", "STATE")?;
        }
        let name = format!("{}{}", text::name(&m.member.display_name), if m.me { " (you)" } else { "" });
        outln!(
            "  {:<24} {:<9} {:<7} {:<20} {:<8} {}",
            name,
            m.short_id,
            m.member.role.as_str(),
            groups(m),
            if m.member.online { "online" } else { "offline" },
            if m.sessions.is_empty() {
                "-".to_string()
            } else {
                m.sessions.iter().map(|s| text::name(s)).collect::<Vec<_>>().join(", ")
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

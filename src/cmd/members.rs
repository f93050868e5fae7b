//! `claudemesh members`: everyone in your meshes — name, short id, role, groups, online or not,
//! whether their key is verified, and the names of their open sessions (from the agent's
//! directory and presence); `--verify` shows safety codes to compare out of band.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, MemberEntry, TrustState};
use claudemesh_protocol::text;

use crate::cli::MembersArgs;
use crate::out::outln;

/// `ops`, `ops:lead`, … or `-`.
fn groups(m: &MemberEntry) -> String {
    let g: Vec<String> = m.member.groups.iter().map(super::invite_inspect::group_text).collect();
    if g.is_empty() { "-".into() } else { g.join(",") }
}

/// `verified`, `UNVERIFIED`, `KEY CHANGED`, `REMOVED`, with `!invite` when more members used
/// its invite than it allows.
fn trust(m: &MemberEntry) -> String {
    let Some(t) = &m.trust else { return "-".into() };
    let state = match t.state {
        TrustState::Verified => "verified",
        TrustState::Unverified => "UNVERIFIED",
        TrustState::KeyChanged => "KEY CHANGED",
        TrustState::Removed => "REMOVED",
    };
    if t.overused_invite { format!("{state} !invite") } else { state.into() }
}

/// `--verify`: each member's safety code and verdict, and below, why any is not verified.
fn verify(list: &[MemberEntry]) -> anyhow::Result<()> {
    let mut mesh = "";
    let mut notes = Vec::new();
    for m in list {
        if m.mesh != mesh {
            mesh = &m.mesh;
            outln!("{}:", text::name(mesh))?;
            outln!("  {:<24} {:<9} {:<18} KEY", "NAME", "ID", "SAFETY CODE")?;
        }
        let name = format!("{}{}", text::name(&m.member.display_name), if m.me { " (you)" } else { "" });
        let code = m.trust.as_ref().map_or("-", |t| t.safety_code.as_str());
        outln!("  {:<24} {:<9} {:<18} {}", name, m.short_id, code, trust(m))?;
        if let Some(d) = m.trust.as_ref().and_then(|t| t.detail.as_deref()) {
            notes.push(format!(
                "{} ({}): {}",
                text::name(&m.member.display_name),
                m.short_id,
                text::one_line(d)
            ));
        }
    }
    if !list.is_empty() {
        outln!(
            "Read your own code to each member over a channel you trust (voice, in person); theirs should match what you see here."
        )?;
    }
    for n in notes {
        outln!("! {n}")?;
    }
    Ok(())
}

pub async fn run(a: MembersArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let list: Vec<MemberEntry> = c.request(AgentCall::Members { mesh: a.mesh }).await?;
    if a.json {
        crate::out::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.verify {
        verify(&list)?;
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
            outln!(
                "  {:<24} {:<9} {:<7} {:<20} {:<8} {:<11} SESSIONS",
                "NAME",
                "ID",
                "ROLE",
                "GROUPS",
                "STATE",
                "KEY"
            )?;
        }
        let name = format!("{}{}", text::name(&m.member.display_name), if m.me { " (you)" } else { "" });
        outln!(
            "  {:<24} {:<9} {:<7} {:<20} {:<8} {:<11} {}",
            name,
            m.short_id,
            m.member.role.as_str(),
            groups(m),
            if m.member.online { "online" } else { "offline" },
            trust(m),
            if m.sessions.is_empty() {
                "-".to_string()
            } else {
                m.sessions.iter().map(|s| text::name(s)).collect::<Vec<_>>().join(", ")
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh member repin NAME|ID`: after comparing safety codes with a member whose key this
//! agent refuses as changed, accept the key the broker lists now. The agent forgets the old pin
//! and pins the current key, if the chain verifies it.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, MemberEntry, TrustState};

use crate::cli::MemberRepinArgs;
use crate::out::outln;

pub async fn run(a: MemberRepinArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    // Nothing to accept when the key is the pinned one: say so instead of asking.
    let list: Vec<MemberEntry> = c.request(AgentCall::Members { mesh: a.mesh.clone() }).await?;
    let hit = list
        .iter()
        .find(|m| m.member.member_id == a.member || m.member.display_name.eq_ignore_ascii_case(&a.member));
    if let Some(m) =
        hit.filter(|m| !m.me && m.trust.as_ref().is_some_and(|t| t.state == TrustState::Verified))
    {
        let code = m.trust.as_ref().map_or("-", |t| t.safety_code.as_str());
        outln!(
            "{} ({})'s key is verified and pinned (safety code {code}); nothing to do",
            m.member.display_name,
            m.short_id
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.yes {
        let question = format!(
            "Accept the key the broker now lists for {}? Do this only if the safety code {} reads \
             to you (`claudemesh members --verify`) equals the one shown for them here. Type the \
             name to confirm:",
            a.member, a.member
        );
        if !super::confirm(&question, &a.member, &format!("repinning {} needs confirmation", a.member))? {
            eprintln!("not confirmed; nothing changed");
            return Ok(ExitCode::from(1));
        }
    }
    let m: MemberEntry = c.request(AgentCall::MemberRepin { member: a.member, mesh: a.mesh }).await?;
    if a.json {
        crate::out::json(&m)?;
        return Ok(ExitCode::SUCCESS);
    }
    let trust = m.trust.as_ref();
    let code = trust.map_or("-", |t| t.safety_code.as_str());
    match trust.map(|t| t.state) {
        Some(TrustState::Verified) => {
            outln!("{} ({}) pinned again; safety code {code}", m.member.display_name, m.short_id)?
        }
        _ => outln!(
            "{} ({}): the old pin is gone, but the current key is not verified: {}",
            m.member.display_name,
            m.short_id,
            trust.and_then(|t| t.detail.as_deref()).unwrap_or("no verdict yet")
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

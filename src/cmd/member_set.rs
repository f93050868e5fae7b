//! `claudemesh member set NAME|ID [--role admin|member] [--group g[:role]]…`: an admin changes a
//! member's role and/or its granted groups (the list given replaces the old one).

use std::process::ExitCode;

use claudemesh_protocol::frames::Role;
use claudemesh_protocol::local::{AgentCall, MemberSetReply};

use crate::cli::MemberSetArgs;
use crate::out::outln;

pub async fn run(a: MemberSetArgs) -> anyhow::Result<ExitCode> {
    let role = a.role.as_deref().map(|r| if r == "admin" { Role::Admin } else { Role::Member });
    let groups =
        if a.groups.is_empty() { None } else { Some(super::invite_create::parse_groups(&a.groups)?) };
    if role.is_none() && groups.is_none() {
        anyhow::bail!("nothing to change: give --role admin|member and/or --group NAME[:ROLE]");
    }
    let mut c = super::agent().await?;
    let r: MemberSetReply =
        c.request(AgentCall::MemberSet { member: a.member, mesh: a.mesh, role, groups }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        let groups: Vec<String> = r.groups.iter().map(super::invite_inspect::group_text).collect();
        outln!(
            "{}: role {}, groups {}",
            r.display_name,
            r.role.as_str(),
            if groups.is_empty() { "none".to_string() } else { groups.join(", ") }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

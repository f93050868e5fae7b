//! `claudemesh member set NAME|ID [--role admin|member] [--group g[:role]]…`: an admin changes a
//! member's role and/or its granted groups (the list given replaces the old one).

use std::process::ExitCode;

use claudemesh_protocol::frames::Role;
use claudemesh_protocol::local::AgentCall;

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
    let r = c.call(AgentCall::MemberSet { member: a.member, mesh: a.mesh, role, groups }).await?;
    if a.json {
        outln!("{r}")?;
    } else {
        let groups: Vec<String> = r["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|g| match g["role"].as_str() {
                Some(role) => format!("{}:{role}", g["name"].as_str().unwrap_or("?")),
                None => g["name"].as_str().unwrap_or("?").to_string(),
            })
            .collect();
        outln!(
            "{}: role {}, groups {}",
            r["display_name"].as_str().unwrap_or("?"),
            r["role"].as_str().unwrap_or("?"),
            if groups.is_empty() { "none".to_string() } else { groups.join(", ") }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

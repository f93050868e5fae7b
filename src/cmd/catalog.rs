//! `claudemesh catalog`: the services you may use in your meshes, as a table (NAME MESH STATUS
//! TOOLS SCOPE DEPLOYER RESTARTS UPTIME); meshes whose broker could not answer are named on
//! stderr.

use std::collections::HashMap;
use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, CatalogReply, MemberEntry};
use claudemesh_protocol::text;

use super::service_args::uptime;
use crate::cli::MeshArgs;
use crate::out::outln;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: CatalogReply = c.request(AgentCall::ServiceCatalog { mesh: a.mesh.clone() }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Deployers by name where the directory knows them.
    let members: Vec<MemberEntry> = c.request(AgentCall::Members { mesh: a.mesh }).await.unwrap_or_default();
    let names: HashMap<(&str, &str), &str> = members
        .iter()
        .map(|m| ((m.mesh.as_str(), m.member.member_id.as_str()), m.member.display_name.as_str()))
        .collect();
    if r.services.is_empty() {
        outln!("no services you may use; deploy one with `claudemesh deploy NAME --npx PKG`")?;
    } else {
        outln!(
            "{:<20} {:<14} {:<10} {:>5}  {:<20} {:<14} {:>8}  UPTIME",
            "NAME",
            "MESH",
            "STATUS",
            "TOOLS",
            "SCOPE",
            "DEPLOYER",
            "RESTARTS"
        )?;
        for s in &r.services {
            let e = &s.entry;
            let deployer = names
                .get(&(s.mesh.as_str(), e.deployer.as_str()))
                .map(|n| text::name(n))
                .unwrap_or_else(|| text::short_member_id(&e.deployer).to_string());
            outln!(
                "{:<20} {:<14} {:<10} {:>5}  {:<20} {:<14} {:>8}  {}",
                text::name(&e.name),
                text::name(&s.mesh),
                super::word(&e.status),
                e.tools.len(),
                text::terminal(&e.scope.to_string()),
                deployer,
                e.restarts,
                uptime(e.started_at)
            )?;
        }
    }
    for err in &r.errors {
        eprintln!("warning: {}: {}", text::name(&err.mesh), text::terminal(&err.message));
    }
    Ok(ExitCode::SUCCESS)
}

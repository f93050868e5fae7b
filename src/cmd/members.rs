//! `claudemesh members`: everyone in your meshes — name, short id, role, groups, online or not,
//! and the names of their open sessions (from the agent's directory and presence).

use std::process::ExitCode;

use claudemesh_protocol::local::AgentCall;
use serde_json::Value;

use crate::cli::MeshArgs;
use crate::out::outln;

/// `ops`, `ops:lead`, … or `-`.
fn groups(m: &Value) -> String {
    let g: Vec<String> = m["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            let name = g["name"].as_str().unwrap_or("?");
            match g["role"].as_str() {
                Some(r) => format!("{name}:{r}"),
                None => name.to_string(),
            }
        })
        .collect();
    if g.is_empty() { "-".into() } else { g.join(",") }
}

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let v = c.call(AgentCall::Members { mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("no members known yet (check `claudemesh status` for the link state)")?;
    }
    let mut mesh = "";
    for m in &list {
        let this = m["mesh"].as_str().unwrap_or("?");
        if this != mesh {
            mesh = this;
            outln!("{mesh}:")?;
            outln!("  {:<24} {:<9} {:<7} {:<20} {:<8} SESSIONS", "NAME", "ID", "ROLE", "GROUPS", "STATE")?;
        }
        let name = format!(
            "{}{}",
            m["display_name"].as_str().unwrap_or("?"),
            if m["me"] == true { " (you)" } else { "" }
        );
        let sessions: Vec<&str> =
            m["sessions"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        outln!(
            "  {:<24} {:<9} {:<7} {:<20} {:<8} {}",
            name,
            m["short_id"].as_str().unwrap_or("?"),
            m["role"].as_str().unwrap_or("?"),
            groups(m),
            if m["online"] == true { "online" } else { "offline" },
            if sessions.is_empty() { "-".to_string() } else { sessions.join(", ") }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh invite list`: the mesh's invites, their uses and state (admins).

use std::process::ExitCode;

use claudemesh_protocol::local::AgentCall;

use crate::cli::MeshArgs;
use crate::out::outln;

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let v = c.call(AgentCall::InviteList { mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = super::now_unix();
    for i in v.as_array().cloned().unwrap_or_default() {
        let state = if i["revoked"] == true {
            "revoked"
        } else if i["expires_at"].as_u64().unwrap_or(0) <= now {
            "expired"
        } else if i["uses"] == i["max_uses"] {
            "used up"
        } else {
            "active"
        };
        outln!(
            "{}  {:<7} {}/{} uses  {}",
            i["invite_id"].as_str().unwrap_or("?"),
            state,
            i["uses"],
            i["max_uses"],
            i["role"].as_str().unwrap_or("?")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh invite list`: the mesh's invites, their uses and state, role, expiry date and
//! groups (admins).

use std::process::ExitCode;

use claudemesh_protocol::frames::GroupRole;
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
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("no invites yet: `claudemesh invite create`")?;
    }
    for i in list {
        let expires_at = i["expires_at"].as_u64().unwrap_or(0);
        let state = if i["revoked"] == true {
            "revoked"
        } else if expires_at <= now {
            "expired"
        } else if i["uses"] == i["max_uses"] {
            "used up"
        } else {
            "active"
        };
        let groups: Vec<GroupRole> = serde_json::from_value(i["groups"].clone()).unwrap_or_default();
        outln!(
            "{}  {:<7} {}/{} uses  {:<6}  {} {}  groups {}",
            i["invite_id"].as_str().unwrap_or("?"),
            state,
            i["uses"],
            i["max_uses"],
            i["role"].as_str().unwrap_or("?"),
            if expires_at <= now { "expired" } else { "expires" },
            crate::when::date_from_now(expires_at, now),
            super::invite_inspect::groups_text(&groups),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh invite list`: the mesh's invites, their uses and state, role, expiry date and
//! groups (admins).

use std::process::ExitCode;

use claudemesh_protocol::frames::InviteInfo;
use claudemesh_protocol::local::AgentCall;

use crate::cli::MeshArgs;
use crate::out::outln;

/// `revoked`, `expired`, `used up` or `active`, at `now` (Unix seconds).
fn state(i: &InviteInfo, now: u64) -> &'static str {
    if i.revoked {
        "revoked"
    } else if i.expires_at <= now {
        "expired"
    } else if i.uses >= i.max_uses {
        "used up"
    } else {
        "active"
    }
}

pub async fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let list: Vec<InviteInfo> = c.request(AgentCall::InviteList { mesh: a.mesh }).await?;
    if a.json {
        crate::out::json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = super::now_unix();
    if list.is_empty() {
        outln!("no invites yet: `claudemesh invite create`")?;
    }
    for i in &list {
        outln!(
            "{}  {:<7} {}/{} uses  {:<6}  {} {}  groups {}",
            i.invite_id,
            state(i, now),
            i.uses,
            i.max_uses,
            i.role.as_str(),
            if i.expires_at <= now { "expired" } else { "expires" },
            crate::when::date_from_now(i.expires_at, now),
            super::invite_inspect::groups_text(&i.groups),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh invite revoke <id>`: nobody else can join with that invite (admins).

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, RevokeReply};

use crate::cli::InviteRevokeArgs;
use crate::out::outln;

pub async fn run(a: InviteRevokeArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: RevokeReply = c.request(AgentCall::InviteRevoke { invite_id: a.invite_id, mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("revoked invite {}", r.revoked)?;
    }
    Ok(ExitCode::SUCCESS)
}

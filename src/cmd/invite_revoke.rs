//! `claudemesh invite revoke <id>`: nobody else can join with that invite (admins).

use std::process::ExitCode;

use claudemesh_protocol::local::AgentCall;

use crate::cli::InviteRevokeArgs;
use crate::out::outln;

pub async fn run(a: InviteRevokeArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let v = c.call(AgentCall::InviteRevoke { invite_id: a.invite_id.clone(), mesh: a.mesh }).await?;
    if a.json {
        outln!("{v}")?;
    } else {
        outln!("revoked invite {}", a.invite_id)?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh vault delete KEY`: delete one of this member's vault entries. Services already
//! deployed with it keep the sealed copy they were given until they are updated.

use std::process::ExitCode;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{AgentCall, VaultDeleteReply};
use claudemesh_protocol::text;

use crate::cli::VaultDeleteArgs;
use crate::out::outln;

pub async fn run(a: VaultDeleteArgs) -> anyhow::Result<ExitCode> {
    claudemesh_protocol::names::validate_vault_key(&a.key)
        .map_err(|e| anyhow::anyhow!("{e}; `claudemesh vault list` shows the keys you have set"))?;
    let mut c = super::agent().await?;
    let r: VaultDeleteReply =
        c.request(AgentCall::VaultDelete { key: a.key.clone(), mesh: a.mesh }).await.map_err(|e| {
            super::advise(e, |code| {
                (code == ErrorCode::NotFound)
                    .then(|| "`claudemesh vault list` shows the keys you have set".to_string())
            })
        })?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("deleted {} from {}", text::name(&r.key), text::name(&r.mesh))?;
    }
    Ok(ExitCode::SUCCESS)
}

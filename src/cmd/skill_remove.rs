//! `claudemesh skill remove NAME`: remove a shared skill (its author or a mesh admin).

use std::process::ExitCode;

use claudemesh_protocol::frames::ErrorCode;
use claudemesh_protocol::local::{AgentCall, SkillRemoveReply};
use claudemesh_protocol::text;

use crate::cli::SkillNameArgs;
use crate::out::outln;

pub async fn run(a: SkillNameArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let r: SkillRemoveReply =
        c.request(AgentCall::SkillRemove { name: a.name.clone(), mesh: a.mesh }).await.map_err(|e| {
            super::advise(e, |code| match code {
                ErrorCode::Forbidden => {
                    Some("only its author or a mesh admin may remove a skill; ask one of them".into())
                }
                ErrorCode::NotFound => Some("`claudemesh skill list` shows the mesh's skills".into()),
                _ => None,
            })
        })?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("removed skill {} from {}", text::name(&r.name), text::name(&r.mesh))?;
    }
    Ok(ExitCode::SUCCESS)
}

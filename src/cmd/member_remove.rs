//! `claudemesh member remove NAME|ID`: an admin removes a member; its key stops working at once
//! and its agent says it was removed. Asks on a terminal unless `--yes`.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, RemoveReply};

use crate::cli::MemberRemoveArgs;
use crate::out::outln;

pub async fn run(a: MemberRemoveArgs) -> anyhow::Result<ExitCode> {
    if !a.yes {
        let question = format!(
            "Remove member {} from the mesh? Its key stops working and it needs a new invite to come \
             back. Type the name to confirm:",
            a.member
        );
        if !super::confirm(&question, &a.member, &format!("removing {} cannot be undone", a.member))? {
            eprintln!("not confirmed; nothing changed");
            return Ok(ExitCode::from(1));
        }
    }
    let mut c = super::agent().await?;
    let r: RemoveReply = c.request(AgentCall::MemberRemove { member: a.member, mesh: a.mesh }).await?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!("removed {} ({})", r.display_name, claudemesh_agent::mesh::short_id(&r.removed))?;
    }
    Ok(ExitCode::SUCCESS)
}

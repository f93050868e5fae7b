//! `claudemesh inbox`: messages the agent received, unseen ones unless --all. Reading them here
//! does not mark them seen for your Claude Code sessions.

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, InboxParams};

use crate::cli::InboxArgs;
use crate::out::outln;

pub async fn run(a: InboxArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let v = c.call(AgentCall::Inbox(InboxParams { all: a.all, mesh: a.mesh, ..Default::default() })).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        outln!("{}", if a.all { "no messages" } else { "no unseen messages (--all shows every one)" })?;
    }
    for m in list {
        let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
        let mark = if m["seen"] == true { " " } else { "*" };
        match m["error"].as_str() {
            Some(e) => outln!(
                "{mark} [{}] from {} ({}): could not be read: {e}",
                s("mesh"),
                s("from_name"),
                s("priority")
            )?,
            None => outln!("{mark} [{}] {} ({}): {}", s("mesh"), s("from_name"), s("priority"), s("body"))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! `claudemesh inbox`: messages the agent received, unseen ones unless --all, each with when it was
//! sent and whether it came to you, to a `@group` or to everyone. Reading them here does not mark
//! them seen for your Claude Code sessions. `--json` keeps the raw fields (`target`, `sent_at` in
//! Unix milliseconds).

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, InboxParams};

use crate::cli::InboxArgs;
use crate::out::outln;

/// Who a message was sent to, from its wire target: `you` (a direct message, to your session or
/// member), `@group`, or `everyone (*)`.
fn addressed_to(target: &str) -> String {
    match target {
        "*" => "everyone (*)".into(),
        t if t.starts_with('@') => t.into(),
        _ => "you".into(),
    }
}

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
        let when = m["sent_at"].as_u64().map_or_else(|| "?".into(), crate::when::message_time);
        let head = format!(
            "{mark} {when} [{}] {} to {} ({})",
            s("mesh"),
            s("from_name"),
            addressed_to(&s("target")),
            s("priority")
        );
        match m["error"].as_str() {
            Some(e) => outln!("{head}: could not be read: {e}")?,
            // Later lines of a body are indented, so a multi-line message reads as one.
            None => outln!("{head}: {}", s("body").replace('\n', "\n    "))?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn direct_group_and_broadcast_read_differently() {
        assert_eq!(super::addressed_to("session:3f2a"), "you");
        assert_eq!(super::addressed_to("member:m_1"), "you");
        assert_eq!(super::addressed_to("@backend"), "@backend");
        assert_eq!(super::addressed_to("*"), "everyone (*)");
    }
}

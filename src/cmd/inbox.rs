//! `claudemesh inbox`: messages the agent received, unseen ones unless --all, each with when it was
//! sent and whether it came to you, to a `@group` or to everyone. Reading them here does not mark
//! them seen for your Claude Code sessions (nothing is taken: no session is named). `--json`
//! prints the messages as the agent stores them (`target`, `sent_at` in Unix milliseconds).

use std::process::ExitCode;

use claudemesh_protocol::local::{AgentCall, InboxMessage, InboxParams, InboxReply};
use claudemesh_protocol::text;

use crate::cli::InboxArgs;
use crate::out::outln;

/// Who a message was sent to, from its wire target: `you` (a direct message, to your session or
/// member), `@group`, or `everyone (*)`.
fn addressed_to(target: &str) -> String {
    match target {
        "*" => "everyone (*)".into(),
        t if t.starts_with('@') => text::name(t),
        _ => "you".into(),
    }
}

/// One message: unseen mark, when, mesh, sender as [`text::sender`] names it, whom it was for,
/// priority, then the body; later lines of a body are indented, so no body line can pass for
/// another message, and a name with punctuation is quoted, so it cannot pass for the body.
/// [`crate::out`] cleans it for the terminal.
fn line(m: &InboxMessage) -> String {
    let mark = if m.seen { " " } else { "*" };
    let head = format!(
        "{mark} {} [{}] {} to {} ({}):",
        crate::when::message_time(m.sent_at),
        text::name(&m.mesh),
        text::sender(&m.from_name, &m.from_member, m.session_name.as_deref()),
        addressed_to(&m.target),
        super::word(&m.priority)
    );
    match &m.error {
        Some(e) => format!("{head} could not be read: {}", text::one_line(e)),
        None => format!("{head} {}", text::indent(&m.body, "    ").trim_start_matches(' ')),
    }
}

/// Messages asked of the agent per page.
const PAGE: u32 = 500;

pub async fn run(a: InboxArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    // No session and no `take`: this reads the user's inbox and holds nothing under a lease.
    // Page by page, oldest first, so neither side ever holds a whole large inbox in one reply.
    let mut after = String::new();
    let mut all = Vec::new();
    let mut printed = 0usize;
    loop {
        let params = InboxParams {
            all: a.all,
            mesh: a.mesh.clone(),
            limit: Some(PAGE),
            after: Some(after.clone()),
            ..Default::default()
        };
        let r: InboxReply = c.request(AgentCall::Inbox(params)).await?;
        if a.json {
            all.extend(r.messages);
        } else {
            for m in &r.messages {
                outln!("{}", line(m))?;
            }
            printed += r.messages.len();
        }
        match r.next {
            // An agent from before paging answers without a cursor: that was the whole reply.
            Some(next) if next != after => after = next,
            _ => break,
        }
    }
    if a.json {
        crate::out::json(&all)?;
        return Ok(ExitCode::SUCCESS);
    }
    if printed == 0 {
        outln!("{}", if a.all { "no messages" } else { "no unseen messages (--all shows every one)" })?;
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

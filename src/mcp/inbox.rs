//! `check_messages`: a page of unseen messages (or history, or one message whole by id), taken
//! under a lease that is confirmed only once the result carrying them was written to stdout
//! (see [`super::confirm`]).

use claudemesh_protocol::limits::{CHECK_MESSAGES_DEFAULT_LIMIT, CHECK_MESSAGES_MAX_CHARS};
use claudemesh_protocol::local::{AgentCall, InboxParams, InboxReply};
use serde_json::Value;

use super::Shared;
use super::tools::{Args, Held, ToolResult, agent_error, ok, opt_str};

/// The result text for a page: the messages, then how many more wait.
pub fn page_text(reply: &InboxReply, msg_id: Option<&str>) -> String {
    if reply.messages.is_empty() {
        return match msg_id {
            Some(id) => format!("No message {} for this session.", claudemesh_protocol::text::one_line(id)),
            None if reply.more > 0 => {
                format!("No message fits one page; {} waiting: call check_messages again.", reply.more)
            }
            None => "No new messages.".into(),
        };
    }
    // The framing hooks and channel notifications use: a header line, the body indented.
    let text: Vec<String> = reply.messages.iter().map(crate::hook::message_text).collect();
    let mut out = format!("{} message(s):\n\n{}", reply.messages.len(), text.join("\n"));
    if reply.more > 0 {
        out.push_str(&format!("\n\n{} more waiting: call check_messages again.", reply.more));
    }
    out
}

pub async fn check_messages(link: &Shared, held: Held<'_>, args: &Args) -> ToolResult {
    let all = args.get("include_seen").and_then(Value::as_bool).unwrap_or(false);
    let msg_id = opt_str(args, "msg_id");
    let mut l = link.lock().await;
    let p = InboxParams {
        session: Some(l.session_id().to_string()),
        // One message by id, seen or not.
        all: all || msg_id.is_some(),
        take: true,
        limit: Some(if msg_id.is_some() { 1 } else { CHECK_MESSAGES_DEFAULT_LIMIT }),
        max_chars: Some(CHECK_MESSAGES_MAX_CHARS),
        msg_id: msg_id.clone(),
        ..Default::default()
    };
    let reply: InboxReply = l.request_retry(AgentCall::Inbox(p)).await.map_err(|e| agent_error(&e))?;
    drop(l);
    if let Some(lease) = reply.lease {
        // Confirmed by the stdout writer once this result is out; never if it is not.
        held.leases.hold(held.request, lease);
    }
    Ok(ok(page_text(&reply, msg_id.as_deref())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pages_say_how_many_more_wait() {
        let m = crate::hook::sample_message("deploy is green");
        let r = InboxReply { messages: vec![m.clone()], lease: Some(1), more: 3, next: None };
        let t = page_text(&r, None);
        assert!(t.starts_with(
            "1 message(s):\n\n[now] from alice (mem) (from_id: s-a, mesh: team, msg_id: m1):\n    deploy is green\n"
        ));
        assert!(t.ends_with("\n\n3 more waiting: call check_messages again."), "{t}");
        let r = InboxReply { messages: vec![m], lease: None, more: 0, next: None };
        assert!(!page_text(&r, None).contains("more waiting"));
        assert_eq!(page_text(&InboxReply::default(), None), "No new messages.");
        assert_eq!(page_text(&InboxReply::default(), Some("x")), "No message x for this session.");
    }
}

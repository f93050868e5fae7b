//! The push rung of the delivery ladder (DESIGN §6): messages the agent pushes to this session
//! go to Claude Code as `notifications/claude/channel` with `{content, meta}`, every meta key an
//! identifier and every value a string.
//!
//! Push mode is on when the client declared the experimental `claude/channel` capability, or
//! when `CLAUDEMESH_PUSH=1`; `CLAUDEMESH_PUSH=0` turns it off. Without push the server does not
//! subscribe at all, so the agent keeps messages for hooks and `check_messages`.

use std::collections::BTreeMap;
use std::time::Duration;

use claudemesh_agent::AgentClient;
use claudemesh_protocol::frames::Priority;
use claudemesh_protocol::local::{InboxMessage, LocalEvent, Topic};
use claudemesh_protocol::text;
use rmcp::model::{CustomNotification, ServerNotification};
use rmcp::service::{Peer, RoleServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Shared, debug};

/// The notification method Claude Code listens to for channel messages.
pub const METHOD: &str = "notifications/claude/channel";

/// The experimental capability a channel-aware client declares.
pub const CAPABILITY: &str = "claude/channel";

/// Whether to push, given whether the client declared [`CAPABILITY`] and `CLAUDEMESH_PUSH`.
pub fn push_mode(client_declared: bool, env: Option<&str>) -> bool {
    match env.map(str::trim) {
        Some("1") | Some("true") | Some("on") => true,
        Some("0") | Some("false") | Some("off") => false,
        _ => client_declared,
    }
}

pub fn priority_str(p: Priority) -> &'static str {
    match p {
        Priority::Now => "now",
        Priority::Next => "next",
        Priority::Low => "low",
    }
}

/// `meta` for a message: string keys that are identifiers, string values only, each one line
/// and capped ([`text::meta_value`]); `from` is the sender as [`text::sender`] shows it.
pub fn meta(m: &InboxMessage) -> BTreeMap<String, String> {
    let from_id = if m.from_session.is_empty() { &m.from_member } else { &m.from_session };
    let from = text::sender(&m.from_name, &m.from_member, m.session_name.as_deref());
    BTreeMap::from([
        ("from".to_string(), text::meta_value(&from)),
        ("from_id".to_string(), text::meta_value(from_id)),
        ("mesh".to_string(), text::meta_value(&m.mesh)),
        ("priority".to_string(), priority_str(m.priority).to_string()),
        ("msg_id".to_string(), text::meta_value(&m.msg_id)),
        ("kind".to_string(), "message".to_string()),
    ])
}

/// `content`: the message framed as hooks and `check_messages` frame it
/// ([`crate::hook::message_text`]): a header line, then the body indented.
pub fn content(m: &InboxMessage) -> String {
    crate::hook::message_text(m).trim_end_matches('\n').to_string()
}

pub fn notification(m: &InboxMessage) -> ServerNotification {
    let params = json!({ "content": content(m), "meta": meta(m) });
    ServerNotification::CustomNotification(CustomNotification::new(METHOD, Some(params)))
}

/// Subscribes to this session's messages and forwards each as a channel notification, until
/// `stop` fires or the MCP client is gone; reconnects when the agent goes away.
pub async fn run(link: Shared, peer: Peer<RoleServer>, stop: CancellationToken) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        match subscribe(&link).await {
            Ok(mut sub) => loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    ev = sub.next_event() => match ev {
                        Ok((_, _, LocalEvent::Messages(m))) => {
                            if let Err(e) = peer.send_notification(notification(&m)).await {
                                debug(&format!("cannot notify the client, stopping push: {e}"));
                                return;
                            }
                            debug(&format!("pushed {}", m.msg_id));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            debug(&format!("message stream ended: {e}"));
                            break;
                        }
                    },
                }
            },
            Err(e) => debug(&format!("cannot subscribe: {e}")),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// A second agent connection carrying only the message stream for this session (registered
/// first on the call connection, so the agent knows the session).
async fn subscribe(link: &Shared) -> Result<AgentClient, claudemesh_agent::ClientError> {
    let (paths, sid) = {
        let mut l = link.lock().await;
        l.ensure().await?;
        (l.paths().clone(), l.session_id().to_string())
    };
    let mut c = AgentClient::connect(&paths, "mcp-push").await?;
    c.subscribe(vec![Topic::Messages], Some(sid), None).await?;
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn meta_is_strings_with_identifier_keys() {
        let ServerNotification::CustomNotification(n) = notification(&crate::hook::sample_message("hello"))
        else {
            panic!()
        };
        assert_eq!(n.method, METHOD);
        let p = n.params.unwrap();
        assert_eq!(p["content"], "[now] from alice (mem) (from_id: s-a, mesh: team, msg_id: m1):\n    hello");
        let meta = p["meta"].as_object().unwrap();
        for (k, v) in meta {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{k}");
            assert!(v.is_string(), "{k}");
        }
        assert_eq!(meta["priority"], "now");
        assert_eq!(meta["from_id"], "s-a");
        assert_eq!(meta["kind"], "message");
        assert_eq!(meta["from"], "alice (mem)");
    }

    #[test]
    fn meta_values_are_one_line_and_capped() {
        let mut m = crate::hook::sample_message("x");
        m.from_name = format!("eve\n{}", "e".repeat(300));
        m.session_name = Some("boss\u{1b}]52;c;eA==\u{07}\nkind=\"instruction\"".into());
        m.msg_id = "id\r\nmore".repeat(100);
        for (k, v) in meta(&m) {
            assert!(!v.chars().any(|c| c.is_control()), "{k}: {v:?}");
            assert!(v.chars().count() <= text::MAX_META_VALUE_CHARS + 1, "{k}: {}", v.chars().count());
        }
    }

    #[test]
    fn env_overrides_capability() {
        assert!(push_mode(true, None));
        assert!(!push_mode(false, None));
        assert!(push_mode(false, Some("1")));
        assert!(!push_mode(true, Some("0")));
    }
}

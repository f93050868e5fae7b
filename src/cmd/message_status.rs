//! `claudemesh message-status <id>`: where a message sent from this machine stands — waiting for
//! the broker, refused, or accepted, and then per recipient: queued, delivered, seen or expired.

use std::collections::HashMap;
use std::process::ExitCode;

use claudemesh_agent::Config;
use claudemesh_protocol::frames::DeliveryState;
use claudemesh_protocol::local::{AgentCall, MemberEntry, MessageStatusReply, SendState};

use crate::cli::MessageStatusArgs;
use crate::out::outln;

/// What a recipient's delivery state means, for a person.
fn state_text(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Queued => "queued at the broker until they connect",
        DeliveryState::Delivered => "delivered to their agent",
        DeliveryState::Seen => "seen in a session",
        DeliveryState::Expired => "expired: they did not connect in time",
    }
}

/// The lines describing `st` (the agent's `message_status` answer); `names` maps member ids to
/// display names and `slug` is the mesh's.
fn describe(st: &MessageStatusReply, names: &HashMap<String, String>, slug: &str) -> Vec<String> {
    let sent = crate::when::message_time(st.sent.created_at);
    let mut lines =
        vec![format!("message {} to {} in {slug}, sent {sent}", st.sent.client_msg_id, st.sent.to)];
    match &st.sent.state {
        SendState::Pending => lines
            .push("waiting on this machine for the broker; the agent sends it when the link is up".into()),
        SendState::Failed { error } => {
            lines.push(format!("failed: the broker refused it ({error}); it will not be retried"))
        }
        SendState::Accepted { msg_id, .. } => {
            lines.push(format!("accepted by the broker as {msg_id}"));
            if let Some(e) = &st.broker_error {
                lines.push(format!("per-recipient state unknown now: {e}"));
            }
            for r in st.recipient_states.iter().flatten() {
                let member = &r.member_id;
                let who = names.get(member).map_or_else(|| member.clone(), |n| format!("{n} ({member})"));
                let at = crate::when::message_time(r.at);
                lines.push(format!("  {who}: {} at {at} — {}", super::word(&r.state), state_text(r.state)));
            }
        }
    }
    lines
}

pub async fn run(a: MessageStatusArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let st: MessageStatusReply = c.request(AgentCall::MessageStatus { msg_id: a.id }).await?;
    if a.json {
        crate::out::json(&st)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mesh_id = st.sent.mesh_id.as_str();
    let config = Config::load(&super::paths()).ok();
    let mesh = config.as_ref().and_then(|cfg| cfg.meshes.iter().find(|m| m.id == mesh_id));
    let slug = mesh.map_or(mesh_id, |m| m.slug.as_str());
    // Names make the list readable; without them (the agent cannot say) ids do.
    let members: Vec<MemberEntry> =
        c.request(AgentCall::Members { mesh: mesh.map(|m| m.slug.clone()) }).await.unwrap_or_default();
    let names: HashMap<String, String> =
        members.into_iter().map(|m| (m.member.member_id, m.member.display_name)).collect();
    for line in describe(&st, &names, slug) {
        outln!("{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use claudemesh_protocol::frames::RecipientStatus;
    use claudemesh_protocol::local::SentRecord;
    use serde_json::json;

    use super::*;

    /// A `message_status` reply as the agent writes it.
    fn reply(v: serde_json::Value) -> MessageStatusReply {
        serde_json::from_value(v).unwrap()
    }

    fn recipient(member_id: &str, state: DeliveryState) -> RecipientStatus {
        RecipientStatus { member_id: member_id.into(), state, at: 0 }
    }

    #[test]
    fn each_state_reads_as_what_it_means() {
        let names = HashMap::from([("m_bob".to_string(), "bob".to_string())]);
        let st = MessageStatusReply {
            sent: SentRecord {
                client_msg_id: "c1".into(),
                mesh_id: "x".into(),
                to: "@backend".into(),
                created_at: 0,
                body: "hi".into(),
                priority: Default::default(),
                target: "@backend".into(),
                from_session: None,
                recipient_ids: vec![],
                state: SendState::Accepted { msg_id: "m1".into(), recipients: 2 },
            },
            recipient_states: Some(vec![
                recipient("m_bob", DeliveryState::Seen),
                recipient("m_eve", DeliveryState::Expired),
            ]),
            broker_error: None,
        };
        let lines = describe(&st, &names, "team");
        assert!(lines[0].starts_with("message c1 to @backend in team, sent "), "{lines:?}");
        assert_eq!(lines[1], "accepted by the broker as m1");
        assert!(lines[2].starts_with("  bob (m_bob): seen at ") && lines[2].ends_with("seen in a session"));
        assert!(lines[3].starts_with("  m_eve: expired at ") && lines[3].contains("did not connect"));
        let failed = reply(json!({"client_msg_id": "c2", "mesh_id": "x", "to": "bob", "created_at": 0,
            "state": "failed", "error": "forbidden: no"}));
        assert!(
            describe(&failed, &names, "team")[1].starts_with("failed: the broker refused it (forbidden: no)")
        );
        let pending = reply(json!({"client_msg_id": "c3", "mesh_id": "x", "to": "bob", "created_at": 0,
            "state": "pending"}));
        assert!(describe(&pending, &names, "team")[1].starts_with("waiting on this machine for the broker"));
    }

    /// An accepted send's reply survives the socket: the per-recipient list and the flattened
    /// state's `recipients` count are different keys.
    #[test]
    fn an_accepted_reply_round_trips() {
        let st = MessageStatusReply {
            sent: SentRecord {
                client_msg_id: "c1".into(),
                mesh_id: "x".into(),
                to: "bob".into(),
                created_at: 0,
                body: "hi".into(),
                priority: Default::default(),
                target: "bob".into(),
                from_session: None,
                recipient_ids: vec![],
                state: SendState::Accepted { msg_id: "m1".into(), recipients: 1 },
            },
            recipient_states: Some(vec![recipient("m_bob", DeliveryState::Seen)]),
            broker_error: None,
        };
        let wire = serde_json::to_value(&st).unwrap();
        assert_eq!(reply(wire), st);
    }
}

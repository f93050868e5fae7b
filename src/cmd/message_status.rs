//! `claudemesh message-status <id>`: where a message sent from this machine stands — waiting for
//! the broker, refused, or accepted, and then per recipient: queued, delivered, seen or expired.

use std::collections::HashMap;
use std::process::ExitCode;

use claudemesh_agent::Config;
use claudemesh_protocol::local::AgentCall;
use serde_json::Value;

use crate::cli::MessageStatusArgs;
use crate::out::outln;

/// What a recipient's delivery state means, for a person.
fn state_text(state: &str) -> &'static str {
    match state {
        "queued" => "queued at the broker until they connect",
        "delivered" => "delivered to their agent",
        "seen" => "seen in a session",
        "expired" => "expired: they did not connect in time",
        _ => "in an unknown state",
    }
}

/// The lines describing `st` (the agent's `message_status` answer); `names` maps member ids to
/// display names and `slug` is the mesh's.
fn describe(st: &Value, names: &HashMap<String, String>, slug: &str) -> Vec<String> {
    let id = st["client_msg_id"].as_str().unwrap_or("?");
    let sent = st["created_at"].as_u64().map_or_else(|| "?".into(), crate::when::message_time);
    let mut lines =
        vec![format!("message {id} to {} in {slug}, sent {sent}", st["to"].as_str().unwrap_or("?"))];
    match st["state"].as_str() {
        Some("pending") => lines
            .push("waiting on this machine for the broker; the agent sends it when the link is up".into()),
        Some("failed") => lines.push(format!(
            "failed: the broker refused it ({}); it will not be retried",
            st["error"].as_str().unwrap_or("no reason given")
        )),
        Some("accepted") => {
            lines.push(format!("accepted by the broker as {}", st["msg_id"].as_str().unwrap_or("?")));
            if let Some(e) = st["broker_error"].as_str() {
                lines.push(format!("per-recipient state unknown now: {e}"));
            }
            for r in st["recipients"].as_array().into_iter().flatten() {
                let member = r["member_id"].as_str().unwrap_or("?");
                let who = names.get(member).map_or_else(|| member.to_string(), |n| format!("{n} ({member})"));
                let state = r["state"].as_str().unwrap_or("?");
                let at = r["at"].as_u64().map_or_else(|| "?".into(), crate::when::message_time);
                lines.push(format!("  {who}: {state} at {at} — {}", state_text(state)));
            }
        }
        other => lines.push(format!("state: {}", other.unwrap_or("?"))),
    }
    lines
}

pub async fn run(a: MessageStatusArgs) -> anyhow::Result<ExitCode> {
    let mut c = super::agent().await?;
    let st = c.call(AgentCall::MessageStatus { msg_id: a.id }).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&st)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mesh_id = st["mesh_id"].as_str().unwrap_or("");
    let config = Config::load(&super::paths()).ok();
    let mesh = config.as_ref().and_then(|cfg| cfg.meshes.iter().find(|m| m.id == mesh_id));
    let slug = mesh.map_or(mesh_id, |m| m.slug.as_str());
    // Names make the list readable; without them (the agent cannot say) ids do.
    let members = c.call(AgentCall::Members { mesh: mesh.map(|m| m.slug.clone()) }).await.unwrap_or_default();
    let names: HashMap<String, String> = members
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["member_id"].as_str()?.to_string(), m["display_name"].as_str()?.to_string())))
        .collect();
    for line in describe(&st, &names, slug) {
        outln!("{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_state_reads_as_what_it_means() {
        let names = HashMap::from([("m_bob".to_string(), "bob".to_string())]);
        let st = json!({"client_msg_id": "c1", "to": "@backend", "created_at": 0, "state": "accepted",
            "msg_id": "m1", "recipients": [
                {"member_id": "m_bob", "state": "seen", "at": 0},
                {"member_id": "m_eve", "state": "expired", "at": 0}]});
        let lines = describe(&st, &names, "team");
        assert!(lines[0].starts_with("message c1 to @backend in team, sent "), "{lines:?}");
        assert_eq!(lines[1], "accepted by the broker as m1");
        assert!(lines[2].starts_with("  bob (m_bob): seen at ") && lines[2].ends_with("seen in a session"));
        assert!(lines[3].starts_with("  m_eve: expired at ") && lines[3].contains("did not connect"));
        let failed = json!({"client_msg_id": "c2", "to": "bob", "state": "failed", "error": "forbidden: no"});
        assert!(
            describe(&failed, &names, "team")[1].starts_with("failed: the broker refused it (forbidden: no)")
        );
        let pending = json!({"client_msg_id": "c3", "to": "bob", "state": "pending"});
        assert!(describe(&pending, &names, "team")[1].starts_with("waiting on this machine for the broker"));
    }
}

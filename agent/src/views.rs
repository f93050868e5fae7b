//! The agent's views of what it knows (DESIGN §10): `status`, `meshes`, `peers`, `members`.

use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, PeerSession};
use claudemesh_protocol::local::{InboxMessage, LinkState};
use serde_json::{Value, json};

use crate::api::{ApiError, internal};
use crate::state::{Agent, LocalSession};

pub fn status(agent: &Agent) -> Value {
    let outbox = agent.store.outbox_count().unwrap_or_default();
    let inbox = agent.store.inbox_all().unwrap_or_default();
    let sessions = agent.sessions();
    let meshes = agent.meshes();
    let mut list: Vec<Value> = meshes
        .values()
        .map(|m| {
            let id = &m.config.id;
            let mine: Vec<&InboxMessage> =
                inbox.iter().filter(|r| &r.mesh_id == id).map(|r| &r.message).collect();
            // A link retries unless the broker said the member is removed or its key is in use
            // elsewhere; `retry_in_secs` counts down while it waits.
            let retrying = matches!(m.link, LinkState::Connecting | LinkState::Disconnected);
            let retry_in = m
                .retry_at
                .filter(|_| m.link == LinkState::Disconnected)
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as u64);
            json!({
                "slug": m.config.slug,
                "id": id,
                "broker_url": m.config.broker_url,
                "public_url": m.public_url,
                "member_id": m.config.member_id,
                "link": m.link,
                "detail": m.link_detail,
                "retrying": retrying,
                "retry_in_secs": retry_in,
                "refusal": m.refusal,
                "connected_secs": m.connected_since.map(|t| t.elapsed().as_secs()),
                "sessions": sessions.values().filter(|s| s.meshes.contains(id)).count(),
                "peers": m.peers.len(),
                "inbox": mine.len(),
                "unread": mine.iter().filter(|x| !x.seen).count(),
                "outbox": outbox.get(id).copied().unwrap_or(0),
            })
        })
        .collect();
    list.sort_by(|a, b| a["slug"].as_str().cmp(&b["slug"].as_str()));
    let mut local: Vec<Value> = sessions
        .values()
        .map(|s| {
            json!({
                "session_id": s.info.session_id,
                "display_name": s.info.display_name,
                "status": s.info.status,
                "claude_pid": s.claude_pid,
                "claude_session": s.claude_session,
                "stop_hook_waiting": s.waiting,
                "idle_secs": s.last_active.elapsed().as_secs(),
            })
        })
        .collect();
    local.sort_by(|a, b| a["display_name"].as_str().cmp(&b["display_name"].as_str()));
    json!({
        "agent_version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_secs": agent.started.elapsed().as_secs(),
        "config_dir": agent.paths.dir,
        "sessions": sessions.len(),
        "local_sessions": local,
        "meshes": list,
        "local_broker": *agent.local_broker.borrow(),
    })
}

pub fn meshes(agent: &Agent) -> Value {
    let m = agent.meshes();
    let mut v: Vec<Value> = m
        .values()
        .map(|m| json!({"slug": m.config.slug, "id": m.config.id, "broker_url": m.config.broker_url, "member_id": m.config.member_id, "role": m.config.role, "display_name": m.config.display_name, "link": m.link}))
        .collect();
    v.sort_by(|a, b| a["slug"].as_str().cmp(&b["slug"].as_str()));
    Value::Array(v)
}

fn selected(agent: &Agent, mesh: Option<&str>) -> Result<Vec<String>, ApiError> {
    match mesh {
        Some(_) => agent.resolve_mesh(mesh).map(|m| vec![m]).map_err(|e| (ErrorCode::NotFound, e)),
        None => Ok(agent.meshes().keys().cloned().collect()),
    }
}

pub fn peers(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let ids = selected(agent, mesh)?;
    let local: Vec<LocalSession> = agent.sessions().values().cloned().collect();
    let meshes = agent.meshes();
    let mut out = Vec::new();
    for id in ids {
        let Some(v) = meshes.get(&id) else { continue };
        // This agent's own sessions are listed at once, before the broker's batched presence
        // echoes them back.
        let unechoed = local
            .iter()
            .filter(|s| s.meshes.contains(&id) && !v.peers.contains_key(&s.info.session_id))
            .map(|s| PeerSession {
                member_id: v.config.member_id.clone(),
                session: s.info.clone(),
                connected_since: 0,
            })
            .collect::<Vec<_>>();
        for p in v.peers.values().chain(unechoed.iter()) {
            let mut j = serde_json::to_value(p).map_err(internal)?;
            j["mesh"] = json!(v.config.slug);
            j["member_name"] = json!(v.members.get(&p.member_id).map(|m| m.display_name.clone()));
            j["me"] = json!(p.member_id == v.config.member_id);
            out.push(j);
        }
    }
    out.sort_by(|a, b| {
        (a["mesh"].as_str(), a["display_name"].as_str())
            .cmp(&(b["mesh"].as_str(), b["display_name"].as_str()))
    });
    Ok(Value::Array(out))
}

/// Every current member of the selected meshes, with its short id, whether it is online, and
/// the names of its open sessions (this agent's own included before the broker echoes them).
pub fn members(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let ids = selected(agent, mesh)?;
    let local: Vec<LocalSession> = agent.sessions().values().cloned().collect();
    let meshes = agent.meshes();
    let mut out = Vec::new();
    for id in ids {
        let Some(v) = meshes.get(&id) else { continue };
        for m in v.members.values() {
            let me = m.member_id == v.config.member_id;
            let mut sessions: Vec<String> = v
                .peers
                .values()
                .filter(|p| p.member_id == m.member_id)
                .map(|p| p.session.display_name.clone())
                .collect();
            if me {
                sessions.extend(
                    local
                        .iter()
                        .filter(|s| s.meshes.contains(&id) && !v.peers.contains_key(&s.info.session_id))
                        .map(|s| s.info.display_name.clone()),
                );
            }
            sessions.sort();
            let mut j = serde_json::to_value(m).map_err(internal)?;
            j["mesh"] = json!(v.config.slug);
            j["me"] = json!(me);
            j["short_id"] = json!(crate::members::short_id(&m.member_id));
            // Our own member is online whenever our link is, whatever the cached directory says.
            j["online"] = json!(m.online || !sessions.is_empty() || (me && v.link == LinkState::Connected));
            j["sessions"] = json!(sessions);
            out.push(j);
        }
    }
    out.sort_by(|a, b| {
        (a["mesh"].as_str(), a["display_name"].as_str())
            .cmp(&(b["mesh"].as_str(), b["display_name"].as_str()))
    });
    Ok(Value::Array(out))
}

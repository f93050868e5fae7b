//! Local sessions (DESIGN §6, §10): `session_register`, `session_update`, `session_close`.
//! A session opens on its meshes' broker links, takes the messages waiting for it, and closes
//! when the last client holding it goes away.

use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, SessionPatch};
use claudemesh_protocol::local::SessionRegister;
use serde_json::{Value, json};

use crate::api::{ApiError, internal};
use crate::inbox::{adopt_pending, push_deliverable, reroute};
use crate::state::{Agent, LocalSession};
use crate::uplink::UplinkCmd;

pub fn register(agent: &Agent, r: SessionRegister, registered: &mut Vec<String>) -> Result<Value, ApiError> {
    if r.session.session_id.is_empty() {
        return Err((ErrorCode::Invalid, "session_id is required".into()));
    }
    if r.session.session_id.len() > 256 || r.session.session_id.chars().any(char::is_control) {
        return Err((
            ErrorCode::Invalid,
            "session_id must be at most 256 characters, none of them control characters".into(),
        ));
    }
    let mut mesh_ids = Vec::new();
    for m in &r.meshes {
        mesh_ids.push(agent.resolve_mesh(Some(m)).map_err(|e| (ErrorCode::NotFound, e))?);
    }
    if mesh_ids.is_empty() {
        mesh_ids = agent.meshes().keys().cloned().collect();
    }
    let sid = r.session.session_id.clone();
    {
        let mut sessions = agent.sessions();
        let old = sessions.get(&sid);
        let holders = old.map_or(0, |s| s.holders);
        let claude_session = old.and_then(|s| s.claude_session.clone());
        let waiter = old.map_or(0, |s| s.waiter);
        let waiting = old.is_some_and(|s| s.waiting);
        sessions.insert(
            sid.clone(),
            LocalSession {
                info: r.session.clone(),
                meshes: mesh_ids.clone(),
                claude_pid: r.claude_pid,
                claude_session,
                waiter,
                waiting,
                last_active: Instant::now(),
                holders: holders + 1,
            },
        );
    }
    registered.push(sid.clone());
    let meshes = agent.meshes();
    let mut slugs = Vec::new();
    for id in &mesh_ids {
        if let Some(v) = meshes.get(id) {
            let _ = v.uplink.try_send(UplinkCmd::SessionOpen(r.session.clone()));
            slugs.push(v.config.slug.clone());
        }
    }
    drop(meshes);
    let adopted = adopt_pending(agent, &sid).map_err(internal)?;
    agent.bump();
    Ok(json!({ "session_id": sid, "meshes": slugs, "waiting": adopted }))
}

pub fn update(agent: &Agent, sid: &str, patch: SessionPatch) -> Result<Value, ApiError> {
    let mesh_ids = {
        let mut sessions = agent.sessions();
        let s = sessions
            .get_mut(sid)
            .ok_or_else(|| (ErrorCode::NotFound, format!("no session {sid} registered with this agent")))?;
        patch.apply(&mut s.info);
        s.last_active = Instant::now();
        s.meshes.clone()
    };
    let meshes = agent.meshes();
    for id in &mesh_ids {
        if let Some(v) = meshes.get(id) {
            let _ = v.uplink.try_send(UplinkCmd::SessionUpdate(sid.to_string(), patch.clone()));
        }
    }
    drop(meshes);
    // A session turning idle may now take `next` messages.
    let pushed = push_deliverable(agent, sid).map_err(internal)?;
    agent.bump();
    Ok(json!({ "session_id": sid, "pushed": pushed }))
}

/// Drops one holder of a session; the last one closes it on every mesh.
pub fn close_session(agent: &Agent, sid: &str) {
    let gone = {
        let mut sessions = agent.sessions();
        match sessions.get_mut(sid) {
            Some(s) if s.holders > 1 => {
                s.holders -= 1;
                None
            }
            Some(_) => sessions.remove(sid),
            None => None,
        }
    };
    if let Some(s) = gone {
        // What it never saw waits for the next matching session (DESIGN §6).
        let released = {
            let _held = agent.delivery_lock();
            agent.store.inbox_release(Some(sid))
        };
        match released {
            Ok(recs) if recs.is_empty() => {}
            Ok(recs) => {
                tracing::info!(
                    session = sid,
                    messages = recs.len(),
                    "closed with unseen messages; routing them again"
                );
                if let Err(e) = reroute(agent, recs) {
                    tracing::warn!(session = sid, error = %e, "cannot route the closed session's unseen messages");
                }
            }
            Err(e) => {
                tracing::warn!(session = sid, error = %e, "cannot release the closed session's unseen messages")
            }
        }
        agent.bump();
        let meshes = agent.meshes();
        for id in &s.meshes {
            if let Some(v) = meshes.get(id) {
                let _ = v.uplink.try_send(UplinkCmd::SessionClose(sid.to_string()));
            }
        }
    }
}

//! Local sessions (DESIGN §6, §10): `session_register` (with its name checked, and a default
//! name made distinct: `repo`, `repo-2`), `session_update`, `session_close`.
//! A session opens on its meshes' broker links, takes the messages waiting for it, and closes
//! when the last client holding it goes away.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use claudemesh_protocol::frames::{ErrorCode, SessionPatch};
use claudemesh_protocol::limits::MAX_DISPLAY_NAME_CHARS;
use claudemesh_protocol::local::SessionRegister;
use claudemesh_protocol::names::validate_display_name;
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
    let mut info = r.session.clone();
    {
        let mut sessions = agent.sessions();
        // Named under the same lock as the insert, so two sessions never get the same name.
        info.display_name = session_name(&sessions, &r, &mesh_ids)?;
        let old = sessions.get(&sid);
        let holders = old.map_or(0, |s| s.holders);
        let claude_session = old.and_then(|s| s.claude_session.clone());
        let waiter = old.map_or(0, |s| s.waiter);
        let waiting = old.is_some_and(|s| s.waiting);
        sessions.insert(
            sid.clone(),
            LocalSession {
                info: info.clone(),
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
            let _ = v.uplink.try_send(UplinkCmd::SessionOpen(info.clone()));
            slugs.push(v.config.slug.clone());
        }
    }
    drop(meshes);
    let adopted = adopt_pending(agent, &sid).map_err(internal)?;
    agent.bump();
    Ok(json!({ "session_id": sid, "display_name": info.display_name, "meshes": slugs, "waiting": adopted }))
}

/// A session name as people see it: checked like a join name (so a bad chosen name is refused
/// with the rule it breaks).
fn check_name(name: &str) -> Result<(), ApiError> {
    validate_display_name(name).map_err(|e| {
        (
            ErrorCode::Invalid,
            format!("session name {name:?}: {e}; choose another (launch --name, CLAUDEMESH_NAME)"),
        )
    })
}

/// `base` with `-n` appended, shortened so that the whole stays a valid name.
fn with_suffix(base: &str, n: u32) -> String {
    let suffix = format!("-{n}");
    let keep = MAX_DISPLAY_NAME_CHARS.saturating_sub(suffix.chars().count());
    let head: String = base.chars().take(keep).collect();
    format!("{}{suffix}", head.trim_end())
}

/// The name a registering session gets. A chosen name is used as given, if valid. A default
/// one (derived from the directory or the configured name) is made valid and distinct from
/// the names of this member's other open sessions on the same meshes: `repo`, `repo-2`,
/// `repo-3`. The same session registering again (a second client, a reconnect) keeps its name.
fn session_name(
    sessions: &HashMap<String, LocalSession>,
    r: &SessionRegister,
    mesh_ids: &[String],
) -> Result<String, ApiError> {
    let sid = &r.session.session_id;
    if !r.default_name {
        check_name(&r.session.display_name)?;
        return Ok(r.session.display_name.clone());
    }
    if let Some(old) = sessions.get(sid) {
        return Ok(old.info.display_name.clone());
    }
    let cleaned: String = r.session.display_name.chars().filter(|c| !c.is_control()).collect();
    let mut base: String = cleaned.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    base = base.trim().to_string();
    if validate_display_name(&base).is_err() {
        base = "claude".into();
    }
    let taken: HashSet<String> = sessions
        .values()
        .filter(|s| &s.info.session_id != sid && s.meshes.iter().any(|m| mesh_ids.contains(m)))
        .map(|s| s.info.display_name.to_lowercase())
        .collect();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name.to_lowercase()) {
        n += 1;
        name = with_suffix(&base, n);
    }
    Ok(name)
}

pub fn update(agent: &Agent, sid: &str, patch: SessionPatch) -> Result<Value, ApiError> {
    if let Some(n) = &patch.display_name {
        check_name(n)?;
    }
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

#[cfg(test)]
mod tests {
    use claudemesh_protocol::frames::SessionInfo;

    use super::*;

    fn reg(sid: &str, name: &str, default_name: bool) -> SessionRegister {
        SessionRegister {
            meshes: vec![],
            session: SessionInfo { session_id: sid.into(), display_name: name.into(), ..Default::default() },
            claude_pid: None,
            default_name,
        }
    }

    fn open(sessions: &mut HashMap<String, LocalSession>, sid: &str, name: &str, mesh: &str) {
        let info = SessionInfo { session_id: sid.into(), display_name: name.into(), ..Default::default() };
        sessions.insert(
            sid.into(),
            LocalSession {
                info,
                meshes: vec![mesh.into()],
                claude_pid: None,
                claude_session: None,
                waiter: 0,
                waiting: false,
                last_active: Instant::now(),
                holders: 1,
            },
        );
    }

    #[test]
    fn default_names_are_made_distinct_per_mesh_and_chosen_ones_are_checked() {
        let mut s = HashMap::new();
        let team = vec!["team".to_string()];
        assert_eq!(session_name(&s, &reg("a", "repo", true), &team).unwrap(), "repo");
        open(&mut s, "a", "repo", "team");
        assert_eq!(session_name(&s, &reg("b", "Repo", true), &team).unwrap(), "Repo-2");
        open(&mut s, "b", "repo-2", "team");
        assert_eq!(session_name(&s, &reg("c", "repo", true), &team).unwrap(), "repo-3");
        assert_eq!(session_name(&s, &reg("a", "repo", true), &team).unwrap(), "repo", "same session");
        assert_eq!(session_name(&s, &reg("d", "repo", true), &["other".into()]).unwrap(), "repo");
        assert_eq!(session_name(&s, &reg("e", "repo", false), &team).unwrap(), "repo", "chosen: as given");
        let e = session_name(&s, &reg("f", " bad", false), &team).unwrap_err();
        assert_eq!(e.0, ErrorCode::Invalid);
        assert!(e.1.contains("whitespace"), "{e:?}");
        assert_eq!(session_name(&s, &reg("g", "\u{7}", true), &team).unwrap(), "claude");
        let long = "x".repeat(80);
        let n = with_suffix(&long, 12);
        assert!(n.ends_with("-12") && n.chars().count() == MAX_DISPLAY_NAME_CHARS, "{n}");
    }
}

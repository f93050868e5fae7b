//! `session_open`, `session_update`, `session_close`: presence of a member's sessions,
//! multiplexed on its connection, and the sweep that ends sessions whose reconnect grace ran out.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{ErrorCode, Event, ServerFrame, SessionInfo, SessionPatch};
use claudemesh_protocol::limits::{MAX_GROUPS, MAX_SHORT_TEXT_BYTES, MAX_SUMMARY_CHARS};
use claudemesh_protocol::names::{validate_display_name, validate_group_name};

use crate::conn::Conn;
use crate::hub::{Hub, Mesh, SessionEntry};
use crate::ids::now_ms;
use crate::store::{MEMBERS, SESSION_OWNERS, key};

fn check_text(field: &str, v: &Option<String>, max: usize) -> Result<(), String> {
    match v {
        Some(s) if s.len() > max => Err(format!("{field} is {} bytes, at most {max} allowed", s.len())),
        _ => Ok(()),
    }
}

/// Validates the fields a session may set.
fn validate_patch(p: &SessionPatch) -> Result<(), String> {
    if let Some(n) = &p.display_name {
        validate_display_name(n).map_err(|e| e.to_string())?;
    }
    for (f, v) in [("cwd", &p.cwd), ("channel", &p.channel), ("model", &p.model)] {
        check_text(f, v, MAX_SHORT_TEXT_BYTES)?;
    }
    if let Some(s) = &p.summary
        && s.chars().count() > MAX_SUMMARY_CHARS
    {
        return Err(format!("summary is longer than {MAX_SUMMARY_CHARS} characters"));
    }
    if let Some(gs) = &p.groups {
        if gs.len() > MAX_GROUPS {
            return Err(format!("at most {MAX_GROUPS} groups"));
        }
        for g in gs {
            validate_group_name(&g.name).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn validate_session(s: &SessionInfo) -> Result<(), String> {
    if s.session_id.is_empty() || s.session_id.len() > 128 || s.session_id.contains(crate::store::SEP) {
        return Err("session_id must be 1-128 characters".into());
    }
    check_text("hostname", &s.hostname, MAX_SHORT_TEXT_BYTES)?;
    validate_patch(&SessionPatch {
        display_name: Some(s.display_name.clone()),
        cwd: s.cwd.clone(),
        channel: s.channel.clone(),
        model: s.model.clone(),
        groups: Some(s.groups.clone()),
        status: Some(s.status),
        summary: s.summary.clone(),
    })
}

/// Persists a member's declared groups (remembered while it is offline) in the background,
/// and tells the mesh: senders encrypt `@group` messages against this directory.
fn persist_declared(conn: &Conn, mesh: &Arc<Mesh>, member: &str) {
    {
        let st = mesh.lock();
        let Some(rec) = st.members.get(member) else { return };
        st.presence(&Event::MemberUpdated(st.member_info(rec)));
    }
    let store = conn.hub.store.clone();
    let (mesh, member) = (mesh.clone(), member.to_string());
    tokio::spawn(async move {
        let written = store
            .write(move |tx, _| {
                // The record as it is when the write runs, not when the groups changed: a removal
                // or role change committed in between must not be overwritten by a stale copy.
                let Some(rec) = mesh.lock().members.get(&member).cloned() else { return Ok(()) };
                tx.put(MEMBERS, &key(&[&mesh.id, &member]), &rec)
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(error = %e, "declared groups not persisted");
        }
    });
}

pub async fn open(conn: &mut Conn, req: u64, session: SessionInfo) {
    let Some(a) = conn.auth.clone() else { return };
    if let Err(msg) = validate_session(&session) {
        return conn.error(Some(req), ErrorCode::Invalid, msg);
    }
    let cfg = &conn.hub.config;
    let sid = session.session_id.clone();
    let (event, new_owner, groups_changed) = {
        let mut st = a.mesh.lock();
        let mut new_owner = false;
        let event = match st.sessions.get_mut(&sid) {
            Some(e) if e.member_id != a.member_id => {
                drop(st);
                return conn.error(
                    Some(req),
                    ErrorCode::Conflict,
                    format!("session {sid} belongs to another member"),
                );
            }
            Some(e) => {
                // The same peer coming back (reconnect within grace): no leave/join flapping.
                e.offline_since = None;
                if e.info != session {
                    e.info = session;
                    Some(Event::PeerUpdated(e.peer()))
                } else {
                    None
                }
            }
            None => {
                let mine = st.sessions.values().filter(|s| s.member_id == a.member_id).count();
                if mine >= cfg.max_sessions_per_member {
                    drop(st);
                    return conn.error(
                        Some(req),
                        ErrorCode::Limit,
                        format!("at most {} sessions per member", cfg.max_sessions_per_member),
                    );
                }
                if st.sessions.len() >= cfg.max_sessions_per_mesh {
                    drop(st);
                    return conn.error(
                        Some(req),
                        ErrorCode::Limit,
                        format!("mesh has its maximum of {} sessions", cfg.max_sessions_per_mesh),
                    );
                }
                if st.session_owner.get(&sid) != Some(&a.member_id) {
                    if st.session_owner.contains_key(&sid) {
                        drop(st);
                        return conn.error(
                            Some(req),
                            ErrorCode::Conflict,
                            format!("session {sid} belongs to another member"),
                        );
                    }
                    st.session_owner.insert(sid.clone(), a.member_id.clone());
                    new_owner = true;
                }
                let entry = SessionEntry {
                    member_id: a.member_id.clone(),
                    info: session,
                    connected_since: now_ms(),
                    offline_since: None,
                };
                let ev = Event::PeerJoined(entry.peer());
                st.sessions.insert(sid.clone(), entry);
                conn.hub.metrics.sessions.fetch_add(1, Relaxed);
                Some(ev)
            }
        };
        let groups_changed = st.refresh_declared_groups(&a.member_id).is_some();
        if let Some(ev) = &event {
            st.presence(ev);
        }
        (event, new_owner, groups_changed)
    };
    let _ = event;
    if new_owner {
        let store = conn.hub.store.clone();
        let (k, member) = (key(&[&a.mesh.id, &sid]), a.member_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.write(move |tx, _| tx.put_raw(SESSION_OWNERS, &k, member.as_bytes())).await
            {
                tracing::warn!(error = %e, "session owner not persisted");
            }
        });
    }
    if groups_changed {
        persist_declared(conn, &a.mesh, &a.member_id);
    }
    conn.reply(&ServerFrame::Ok { req });
}

pub async fn update(conn: &mut Conn, req: u64, session_id: String, patch: SessionPatch) {
    let Some(a) = conn.auth.clone() else { return };
    if let Err(msg) = validate_patch(&patch) {
        return conn.error(Some(req), ErrorCode::Invalid, msg);
    }
    let groups_changed = {
        let mut st = a.mesh.lock();
        let Some(e) = st.sessions.get_mut(&session_id).filter(|e| e.member_id == a.member_id) else {
            drop(st);
            return conn.error(
                Some(req),
                ErrorCode::NotFound,
                format!("no open session {session_id} of yours"),
            );
        };
        let before = e.info.clone();
        patch.apply(&mut e.info);
        let ev = (e.info != before).then(|| Event::PeerUpdated(e.peer()));
        let changed = st.refresh_declared_groups(&a.member_id).is_some();
        if let Some(ev) = ev {
            st.presence(&ev);
        }
        changed
    };
    if groups_changed {
        persist_declared(conn, &a.mesh, &a.member_id);
    }
    conn.reply(&ServerFrame::Ok { req });
}

pub async fn close(conn: &mut Conn, req: u64, session_id: String) {
    let Some(a) = conn.auth.clone() else { return };
    let mut st = a.mesh.lock();
    if st.sessions.get(&session_id).is_none_or(|e| e.member_id != a.member_id) {
        drop(st);
        return conn.error(Some(req), ErrorCode::NotFound, format!("no open session {session_id} of yours"));
    }
    st.sessions.remove(&session_id);
    conn.hub.metrics.sessions.fetch_sub(1, Relaxed);
    st.presence(&Event::PeerLeft { member_id: a.member_id.clone(), session_id });
    drop(st);
    conn.reply(&ServerFrame::Ok { req });
}

/// Ends sessions whose connection has been gone longer than the reconnect grace.
pub fn sweep_gone_sessions(hub: &Hub) {
    let grace = hub.config.reconnect_grace;
    for mesh in hub.meshes() {
        let mut st = mesh.lock();
        let gone: Vec<(String, String)> = st
            .sessions
            .iter()
            .filter(|(_, s)| s.offline_since.is_some_and(|t| t.elapsed() >= grace))
            .map(|(id, s)| (id.clone(), s.member_id.clone()))
            .collect();
        for (sid, member_id) in gone {
            st.sessions.remove(&sid);
            hub.metrics.sessions.fetch_sub(1, Relaxed);
            st.presence(&Event::PeerLeft { member_id, session_id: sid });
        }
    }
}

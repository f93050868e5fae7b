//! `session_open`, `session_update`, `session_close`: presence of a member's sessions,
//! multiplexed on its connection, validated by `protocol::names` and held to a per-member
//! byte budget; `list_peers` in pages; and the sweep that ends sessions whose reconnect grace
//! ran out.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{ErrorCode, Event, ServerFrame, SessionInfo, SessionPatch};
use claudemesh_protocol::limits::{MAX_FRAME_BYTES, MAX_PEERS_PAGE};
use claudemesh_protocol::names::{presence_bytes, validate_session, validate_session_patch};

use crate::conn::Conn;
use crate::hub::{Hub, Mesh, SessionEntry};
use crate::ids::now_ms;
use crate::store::{MEMBERS, SESSION_OWNERS, key};

/// The presence bytes `member` holds over its sessions, not counting `except`.
fn member_presence_bytes(st: &crate::hub::MeshState, member: &str, except: &str) -> usize {
    st.sessions
        .iter()
        .filter(|(id, e)| e.member_id == member && id.as_str() != except)
        .map(|(_, e)| presence_bytes(&e.info))
        .sum()
}

/// Refuses (`limit`) a session that would take its member's presence over the budget,
/// naming the session's largest field.
fn over_budget(conn: &Conn, others: usize, s: &SessionInfo) -> Option<String> {
    let max = conn.hub.config.max_presence_bytes_per_member;
    let total = others + presence_bytes(s);
    if total <= max {
        return None;
    }
    let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
    let fields = [
        ("summary", opt(&s.summary)),
        ("cwd", opt(&s.cwd)),
        ("hostname", opt(&s.hostname)),
        ("groups", s.groups.iter().map(|g| g.name.len() + g.role.as_ref().map_or(0, String::len)).sum()),
        ("channel", opt(&s.channel)),
        ("model", opt(&s.model)),
        ("display_name", s.display_name.len()),
    ];
    let (field, _) = fields.iter().max_by_key(|(_, n)| *n).copied().unwrap_or(("summary", 0));
    Some(format!(
        "presence budget: this member's sessions would hold {total} bytes, at most {max} allowed; \
         shorten {field} (the largest field of session {}) or close sessions",
        s.session_id
    ))
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
    if let Err(e) = validate_session(&session) {
        return conn.error(Some(req), e.code(), format!("session_open: {e}"));
    }
    let cfg = &conn.hub.config;
    let sid = session.session_id.clone();
    let (event, new_owner, groups_changed) = {
        let mut st = a.mesh.lock();
        // Removed while this frame was being handled: its sessions never appear again.
        if st.members.get(&a.member_id).is_none_or(|m| m.removed) {
            drop(st);
            return conn.error(Some(req), ErrorCode::Revoked, format!("member {} was removed", a.member_id));
        }
        if let Some(msg) = over_budget(conn, member_presence_bytes(&st, &a.member_id, &sid), &session) {
            drop(st);
            return conn.error(Some(req), ErrorCode::Limit, msg);
        }
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
                    // A session id never seen before is remembered for good: its member may
                    // create them only at `new_session_rate`.
                    if let Err(wait) = st.take(&a.member_id, crate::rate::Budget::NewSession, cfg) {
                        drop(st);
                        return conn.reply(&ServerFrame::Error(claudemesh_protocol::frames::ErrorFrame {
                            req: Some(req),
                            code: ErrorCode::RateLimited,
                            message: format!(
                                "opening new session ids too fast; retry in {wait} ms or reuse a session id"
                            ),
                            retry_after_ms: Some(wait),
                        }));
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
    // A new id's owner is durable before `ok` (at most 0.2 new ids/s per member): a send naming
    // the session is accepted after a broker restart only if its owner survived it.
    if new_owner {
        let (k, member) = (key(&[&a.mesh.id, &sid]), a.member_id.clone());
        if let Err(e) =
            conn.hub.store.write(move |tx, _| tx.put_raw(SESSION_OWNERS, &k, member.as_bytes())).await
        {
            tracing::warn!(mesh = %a.mesh.slug, session = %sid, error = %e, "session owner not persisted");
        }
    }
    if groups_changed {
        persist_declared(conn, &a.mesh, &a.member_id);
    }
    conn.reply(&ServerFrame::Ok { req });
}

pub async fn update(conn: &mut Conn, req: u64, session_id: String, patch: SessionPatch) {
    let Some(a) = conn.auth.clone() else { return };
    if let Err(e) = validate_session_patch(&patch) {
        return conn.error(Some(req), e.code(), format!("session_update: {e}"));
    }
    let groups_changed = {
        let mut st = a.mesh.lock();
        let others = member_presence_bytes(&st, &a.member_id, &session_id);
        let Some(e) = st.sessions.get_mut(&session_id).filter(|e| e.member_id == a.member_id) else {
            drop(st);
            return conn.error(
                Some(req),
                ErrorCode::NotFound,
                format!("no open session {session_id} of yours"),
            );
        };
        let before = e.info.clone();
        let mut after = before.clone();
        patch.apply(&mut after);
        if let Some(msg) = over_budget(conn, others, &after) {
            drop(st);
            return conn.error(Some(req), ErrorCode::Limit, msg);
        }
        e.info = after;
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

/// `list_peers`: one page of presence in `session_id` order, after `cursor`, at most `limit`
/// (default and cap [`MAX_PEERS_PAGE`]) sessions and never a frame over [`MAX_FRAME_BYTES`];
/// `next` is set when more follow. A client that sends neither gets the first page.
pub fn list_peers(conn: &mut Conn, req: u64, cursor: Option<String>, limit: Option<u32>) {
    let Some(a) = conn.auth.clone() else { return };
    let limit = limit.map_or(MAX_PEERS_PAGE, |l| (l as usize).clamp(1, MAX_PEERS_PAGE));
    // Room for the frame's own fields and `next` around the sessions.
    let room = MAX_FRAME_BYTES - 1024;
    if cursor.is_none() {
        conn.presence_listed();
    }
    let st = a.mesh.lock();
    let mut ids: Vec<&String> =
        st.sessions.keys().filter(|id| cursor.as_ref().is_none_or(|c| id.as_str() > c.as_str())).collect();
    ids.sort_unstable();
    let mut sessions = Vec::new();
    let mut bytes = 0;
    let mut next = None;
    for id in ids {
        let Some(peer) = st.sessions.get(id).map(SessionEntry::peer) else { continue };
        let size = claudemesh_protocol::frames::encode(&peer).len() + 1;
        if sessions.len() >= limit || bytes + size > room {
            next = sessions
                .last()
                .map(|p: &claudemesh_protocol::frames::PeerSession| p.session.session_id.clone());
            break;
        }
        bytes += size;
        sessions.push(peer);
    }
    drop(st);
    conn.reply(&ServerFrame::Peers { req, sessions, next });
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

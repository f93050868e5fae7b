//! Who is in a mesh: `list_members` (with former members), `member_remove` and `member_set`
//! (admins), `leave` (any member), and the one routine that takes a member out of a mesh,
//! whether an admin removed it or it left.
//!
//! Changes that could leave a mesh without an admin are checked and applied to the member
//! cache inside the store writer, so two of them in flight at once (two admins leaving) see
//! each other and cannot both pass.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use claudemesh_protocol::frames::{ErrorCode, Event, GroupRole, RemovalReason, Role, ServerFrame, encode};
use claudemesh_protocol::limits::{CLOSE_POLICY, MAX_GROUPS, MAX_MEMBERS_PAGE};
use claudemesh_protocol::names::validate_group_name;
use claudemesh_protocol::trust::SignedStatement;

use crate::conn::Conn;
use crate::handlers::admin::require_admin;
use crate::handlers::statements;
use crate::hub::{ConnHandle, Hub, Mesh, MeshState, Outgoing};
use crate::ids::now_ms;
use crate::store::{MEMBERS, MemberRecord, QUEUE, StoreError, key};

/// WebSocket close code of a normal closure, sent after `leave`.
pub const CLOSE_NORMAL: u16 = 1000;

/// A refused change: the code and the message for the caller.
type Refusal = (ErrorCode, String);

/// A member just taken out of its mesh.
#[derive(Debug)]
pub struct Removed {
    /// Its record as stored: `removed`, with reason and time.
    pub record: MemberRecord,
    /// Its live connection, already unregistered from the mesh; the caller says goodbye on it.
    pub conn: Option<ConnHandle>,
}

/// Up to five active member names other than `except`, for "make one of them admin" hints.
fn other_names(st: &MeshState, except: &str) -> String {
    let mut names: Vec<&str> =
        st.active_members().filter(|m| m.member_id != except).map(|m| m.display_name.as_str()).collect();
    names.sort_unstable();
    let more = names.len().saturating_sub(5);
    names.truncate(5);
    let mut s = names.join(", ");
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// Why `target` may not stop being an admin of the mesh (by `reason`, or by a demotion when
/// `reason` is `None`): it is the last admin. A last admin may still leave a mesh nobody else
/// is in.
fn last_admin_refusal(
    st: &MeshState,
    slug: &str,
    target: &MemberRecord,
    reason: Option<RemovalReason>,
) -> Option<String> {
    let other_admin = st.active_members().any(|m| m.role == Role::Admin && m.member_id != target.member_id);
    if target.role != Role::Admin || other_admin {
        return None;
    }
    let others = other_names(st, &target.member_id);
    let how = "make another member admin first with `claudemesh member set NAME --role admin`";
    match reason {
        Some(RemovalReason::Left) if others.is_empty() => None,
        Some(RemovalReason::Left) => Some(format!(
            "you are the last admin of mesh {slug} and other members remain ({others}); {how}, then leave again"
        )),
        Some(RemovalReason::Removed) => Some(format!("cannot remove the last admin of mesh {slug}; {how}")),
        None => Some(format!("cannot demote the last admin of mesh {slug}; {how}")),
    }
}

/// Replaces the cached record of `member_id` with the committed one, after a store batch that
/// had already changed the cache failed to commit.
async fn reload_member(hub: &Hub, mesh: &Arc<Mesh>, member_id: &str) {
    let (db, k) = (hub.store.db.clone(), key(&[&mesh.id, member_id]));
    let committed = tokio::task::spawn_blocking(move || db.read_get::<MemberRecord>(MEMBERS, &k)).await;
    match committed {
        Ok(Ok(Some(rec))) => {
            mesh.lock().members.insert(member_id.to_string(), rec);
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(member = %member_id, error = %e, "member cache not reloaded"),
        Err(e) => tracing::error!(member = %member_id, error = %e, "member cache not reloaded"),
    }
}

/// Takes `member_id` out of `mesh` for `reason`: persists the record (removed, reason, time),
/// drops its undeliverable queue, unregisters its connection (returned, for the caller to say
/// goodbye on), ends its sessions in presence, and tells the mesh `member_removed`. Refuses
/// with `not_found` for a member that is not active, and `conflict` when the mesh would lose
/// its last admin.
///
/// `statement` is the signed `removal` and the key that must have signed it (the admin's, or
/// the member's own for `left`); it is checked and kept with the record.
pub async fn remove_member(
    hub: &Hub,
    mesh: &Arc<Mesh>,
    member_id: &str,
    reason: RemovalReason,
    statement: Option<(SignedStatement, String)>,
) -> Result<Removed, Refusal> {
    let now = now_ms();
    let (mesh2, id) = (mesh.clone(), member_id.to_string());
    let written = hub
        .store
        .write(move |tx, state| -> Result<Result<(MemberRecord, usize), Refusal>, StoreError> {
            let rec = {
                let st = mesh2.lock();
                let Some(cur) = st.members.get(&id).filter(|m| !m.removed) else {
                    return Ok(Err((ErrorCode::NotFound, format!("no member {id} in mesh {}", mesh2.slug))));
                };
                if let Some(msg) = last_admin_refusal(&st, &mesh2.slug, cur, Some(reason)) {
                    return Ok(Err((ErrorCode::Conflict, msg)));
                }
                let mut rec = MemberRecord {
                    removed: true,
                    removed_reason: Some(reason),
                    removed_at: now,
                    ..cur.clone()
                };
                if let Some((s, signer)) = statement {
                    if let Err(refusal) = statements::check_removal(&s, &signer, cur, reason) {
                        return Ok(Err(refusal));
                    }
                    rec.keep_statement("removal", s);
                }
                rec
            };
            let k = key(&[&mesh2.id, &id]);
            tx.put(MEMBERS, &k, &rec)?;
            // Its queue can never be delivered: drop it so it does not hold space for 7 days.
            let rows = tx.scan(QUEUE, &k)?;
            for (qk, _) in &rows {
                tx.remove(QUEUE, qk)?;
            }
            state.add_depth(&mesh2.id, &id, -(rows.len() as i64));
            mesh2.lock().members.insert(id, rec.clone());
            Ok(Ok((rec, rows.len())))
        })
        .await;
    let (record, dropped) = match written {
        Ok(r) => r?,
        Err(e) => {
            reload_member(hub, mesh, member_id).await;
            return Err((
                ErrorCode::Internal,
                format!("member {member_id} could not be removed: {e}; nothing changed, try again"),
            ));
        }
    };
    hub.metrics.queue_depth.fetch_sub(dropped as i64, Relaxed);
    let mut st = mesh.lock();
    let conn = st.conns.remove(member_id);
    if conn.is_some() {
        hub.metrics.connections.fetch_sub(1, Relaxed);
    }
    let gone: Vec<String> =
        st.sessions.iter().filter(|(_, s)| s.member_id == member_id).map(|(id, _)| id.clone()).collect();
    for sid in gone {
        st.sessions.remove(&sid);
        hub.metrics.sessions.fetch_sub(1, Relaxed);
        st.presence(&Event::PeerLeft { member_id: member_id.to_string(), session_id: sid });
    }
    st.buckets.remove(member_id);
    st.key_use.remove(member_id);
    st.presence(&Event::MemberRemoved {
        member_id: member_id.to_string(),
        reason,
        display_name: record.display_name.clone(),
    });
    drop(st);
    tracing::info!(mesh = %mesh.slug, member = %member_id, ?reason, "member out of the mesh");
    Ok(Removed { record, conn })
}

/// `member_remove` (admins): the removed member's connection gets `revoked` and is closed.
pub async fn member_remove(conn: &mut Conn, req: u64, member_id: String, statement: Option<SignedStatement>) {
    let Some(a) = require_admin(conn, req) else { return };
    let statement = statement.map(|s| (s, own_key(&a.mesh, &a.member_id)));
    let removed = match remove_member(&conn.hub, &a.mesh, &member_id, RemovalReason::Removed, statement).await
    {
        Ok(r) => r,
        Err((code, msg)) => return conn.error(Some(req), code, msg),
    };
    conn.reply(&ServerFrame::Ok { req });
    if let Some(c) = removed.conn {
        let msg = format!("you were removed from mesh {} by an admin", a.mesh.slug);
        conn.hub.metrics.error(ErrorCode::Revoked);
        c.send(Outgoing::Frame(encode(&ServerFrame::error(None, ErrorCode::Revoked, msg)), "error"));
        c.send(Outgoing::Close(CLOSE_POLICY, "removed from mesh".into()));
        // Stop reading it now, however far behind its writer is.
        c.stop.cancel();
        if c.id == conn.out.id {
            conn.auth = None;
        }
    }
}

/// `leave`: the caller removes itself (reason `left`). It gets `ok`, then a normal close.
pub async fn leave(conn: &mut Conn, req: u64, statement: Option<SignedStatement>) {
    let Some(a) = conn.auth.clone() else { return };
    let statement = statement.map(|s| (s, own_key(&a.mesh, &a.member_id)));
    let removed = match remove_member(&conn.hub, &a.mesh, &a.member_id, RemovalReason::Left, statement).await
    {
        Ok(r) => r,
        Err((code, msg)) => return conn.error(Some(req), code, msg),
    };
    conn.reply(&ServerFrame::Ok { req });
    conn.out.send(Outgoing::Close(CLOSE_NORMAL, "left the mesh".into()));
    conn.auth = None;
    // A newer connection of the same member (it replaced this one meanwhile) goes too.
    if let Some(c) = removed.conn.filter(|c| c.id != conn.out.id) {
        c.send(Outgoing::Close(CLOSE_NORMAL, "left the mesh".into()));
    }
}

/// `member_set` (admins): a new role and/or granted groups. The last admin cannot be demoted.
pub async fn member_set(
    conn: &mut Conn,
    req: u64,
    member_id: String,
    role: Option<Role>,
    groups: Option<Vec<GroupRole>>,
    statement: Option<SignedStatement>,
) {
    let Some(a) = require_admin(conn, req) else { return };
    let signer = own_key(&a.mesh, &a.member_id);
    if let Some(gs) = &groups {
        if gs.len() > MAX_GROUPS {
            return conn.error(Some(req), ErrorCode::TooLarge, format!("at most {MAX_GROUPS} groups"));
        }
        if let Some(e) = gs.iter().find_map(|g| validate_group_name(&g.name).err()) {
            return conn.error(Some(req), ErrorCode::Invalid, e.to_string());
        }
    }
    let (mesh, id) = (a.mesh.clone(), member_id.clone());
    let written = conn
        .hub
        .store
        .write(move |tx, _| -> Result<Result<MemberRecord, Refusal>, StoreError> {
            let rec = {
                let st = mesh.lock();
                let Some(cur) = st.members.get(&id).filter(|m| !m.removed) else {
                    return Ok(Err((ErrorCode::NotFound, format!("no member {id} in mesh {}", mesh.slug))));
                };
                if role == Some(Role::Member)
                    && let Some(msg) = last_admin_refusal(&st, &mesh.slug, cur, None)
                {
                    return Ok(Err((ErrorCode::Conflict, msg)));
                }
                // The cached record keeps the groups its sessions declared meanwhile.
                let mut rec = cur.clone();
                rec.role = role.unwrap_or(rec.role);
                rec.groups = groups.unwrap_or(rec.groups);
                if let Some(s) = statement {
                    if let Err(refusal) = statements::check_role(&s, &signer, &rec) {
                        return Ok(Err(refusal));
                    }
                    rec.keep_statement("role", s);
                }
                rec
            };
            tx.put(MEMBERS, &key(&[&mesh.id, &id]), &rec)?;
            mesh.lock().members.insert(id, rec.clone());
            Ok(Ok(rec))
        })
        .await;
    let rec = match written {
        Ok(Ok(rec)) => rec,
        Ok(Err((code, msg))) => return conn.error(Some(req), code, msg),
        Err(e) => {
            reload_member(&conn.hub, &a.mesh, &member_id).await;
            return conn.error(Some(req), ErrorCode::Internal, format!("member could not be updated: {e}"));
        }
    };
    let st = a.mesh.lock();
    st.presence(&Event::MemberUpdated(st.member_info(&rec)));
    drop(st);
    conn.reply(&ServerFrame::Ok { req });
}

/// The enrolled key of `member_id` (empty if unknown, which no statement matches).
fn own_key(mesh: &Mesh, member_id: &str) -> String {
    mesh.lock().members.get(member_id).map(|m| m.pubkey.clone()).unwrap_or_default()
}

/// `list_members`: the active members (the directory senders encrypt against) and the former
/// ones, newest first. With `limit` one page, in `member_id` order after `cursor`, of at most
/// `limit` (capped at [`MAX_MEMBERS_PAGE`]) members, `next` set when more follow and `former` on
/// the first page only; without, the whole directory (what agents before paging ask for).
pub fn list_members(conn: &mut Conn, req: u64, cursor: Option<String>, limit: Option<u32>) {
    let Some(a) = conn.auth.clone() else { return };
    if cursor.is_none() {
        conn.presence_listed();
    }
    let st = a.mesh.lock();
    let Some(limit) = limit else {
        let members = st.active_members().map(|m| st.member_info(m)).collect();
        let former = st.former_members();
        drop(st);
        conn.reply(&ServerFrame::Members { req, members, former, next: None });
        return;
    };
    let limit = (limit as usize).clamp(1, MAX_MEMBERS_PAGE);
    let mut after: Vec<&MemberRecord> = st
        .active_members()
        .filter(|m| cursor.as_ref().is_none_or(|c| m.member_id.as_str() > c.as_str()))
        .collect();
    after.sort_unstable_by(|x, y| x.member_id.cmp(&y.member_id));
    let next = (after.len() > limit).then(|| after[limit - 1].member_id.clone());
    let members = after.iter().take(limit).map(|m| st.member_info(m)).collect();
    let former = if cursor.is_none() { st.former_members() } else { Vec::new() };
    drop(st);
    conn.reply(&ServerFrame::Members { req, members, former, next });
}

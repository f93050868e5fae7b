//! Admin verbs: `mesh_create` (broker admin token), and for mesh admins `invite_register`,
//! `invite_revoke`, `invite_list`; `mesh_info` for members. Member changes are in
//! [`super::membership`].

use std::sync::Arc;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::ed25519_pk_to_x25519;
use claudemesh_protocol::frames::{ErrorCode, InviteInfo, MeshRef, Role, Secret, ServerFrame};
use claudemesh_protocol::invite::{InviteError, parse_invite};
use claudemesh_protocol::names::{validate_display_name, validate_mesh_slug};

use crate::conn::{Authed, Conn};
use crate::hub::Mesh;
use crate::ids::{now_ms, prefixed};
use crate::store::{
    INVITES, InviteRecord, MEMBERS, MESHES, MemberRecord, MeshRecord, SLUGS, StoreError, key,
};

/// Constant-time comparison, so the admin token cannot be guessed byte by byte.
pub(crate) fn token_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates a mesh and its first (admin) member. Used by the frame and by
/// `claudemesh-broker mesh create` on the host.
pub fn create_mesh_records(
    slug: &str,
    pubkey: &str,
    display_name: &str,
) -> Result<(MeshRecord, MemberRecord), (ErrorCode, String)> {
    validate_mesh_slug(slug).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    validate_display_name(display_name).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    let valid = from_hex_array::<32>("pubkey", pubkey).ok().is_some_and(|k| ed25519_pk_to_x25519(&k).is_ok());
    if !valid {
        return Err((
            ErrorCode::Invalid,
            "pubkey is not a valid ed25519 public key (64 hex characters)".into(),
        ));
    }
    let now = now_ms();
    let mesh = MeshRecord { id: prefixed("mesh"), slug: slug.to_string(), created_at: now };
    let member = MemberRecord {
        mesh_id: mesh.id.clone(),
        member_id: prefixed("m"),
        pubkey: pubkey.to_ascii_lowercase(),
        display_name: display_name.to_string(),
        role: Role::Admin,
        groups: vec![],
        declared_groups: vec![],
        removed: false,
        removed_reason: None,
        removed_at: 0,
        created_at: now,
        invite_id: None,
        statements: vec![],
    };
    Ok((mesh, member))
}

/// Writes a new mesh unless the slug is taken. Returns `Ok(false)` on a taken slug.
pub fn store_mesh(
    tx: &crate::store::Tx<'_>,
    mesh: &MeshRecord,
    member: &MemberRecord,
) -> Result<bool, StoreError> {
    if tx.exists(SLUGS, &mesh.slug)? {
        return Ok(false);
    }
    tx.put_raw(SLUGS, &mesh.slug, mesh.id.as_bytes())?;
    tx.put(MESHES, &mesh.id, mesh)?;
    tx.put(MEMBERS, &key(&[&mesh.id, &member.member_id]), member)?;
    Ok(true)
}

pub async fn mesh_create(
    conn: &mut Conn,
    req: u64,
    slug: String,
    admin_token: Secret,
    pubkey: String,
    display_name: String,
) {
    if !token_eq(&admin_token.0, &conn.hub.admin_token) {
        return conn.error(
            Some(req),
            ErrorCode::Unauthorized,
            "wrong broker admin token (see --admin-token-file on the broker host)",
        );
    }
    let (mesh, member) = match create_mesh_records(&slug, &pubkey, &display_name) {
        Ok(v) => v,
        Err((code, msg)) => return conn.error(Some(req), code, msg),
    };
    let (m2, mem2) = (mesh.clone(), member.clone());
    match conn.hub.store.write(move |tx, _| store_mesh(tx, &m2, &mem2)).await {
        Ok(true) => {}
        Ok(false) => {
            return conn.error(
                Some(req),
                ErrorCode::Conflict,
                format!("a mesh named {slug} already exists on this broker"),
            );
        }
        Err(e) => {
            return conn.error(Some(req), e.code(), format!("mesh could not be stored: {e}"));
        }
    }
    let m = Arc::new(Mesh::new(&mesh));
    m.lock().members.insert(member.member_id.clone(), member.clone());
    conn.hub.add_mesh(m);
    tracing::info!(mesh = %mesh.slug, id = %mesh.id, "mesh created");
    conn.reply(&ServerFrame::MeshCreated {
        req,
        mesh: MeshRef { id: mesh.id, slug: mesh.slug },
        member_id: member.member_id,
        role: Role::Admin,
    });
}

/// The caller's identity if it is an admin of its mesh; otherwise answers `forbidden`.
pub(crate) fn require_admin(conn: &Conn, req: u64) -> Option<Authed> {
    let a = conn.auth.clone()?;
    let is_admin =
        a.mesh.lock().members.get(&a.member_id).is_some_and(|m| m.role == Role::Admin && !m.removed);
    if is_admin {
        Some(a)
    } else {
        conn.error(Some(req), ErrorCode::Forbidden, "only an admin of this mesh can do that");
        None
    }
}

pub async fn invite_register(conn: &mut Conn, req: u64, invite: String) {
    let Some(a) = require_admin(conn, req) else { return };
    let inv = match parse_invite(&invite) {
        Ok(i) => i,
        Err(InviteError::BadSignature) => {
            return conn.error(Some(req), ErrorCode::BadSignature, InviteError::BadSignature.to_string());
        }
        Err(e) => return conn.error(Some(req), ErrorCode::Invalid, e.to_string()),
    };
    let p = inv.payload.clone();
    if p.mesh_id != a.mesh.id {
        return conn.error(Some(req), ErrorCode::Invalid, "invite is for another mesh");
    }
    let issuer = {
        let st = a.mesh.lock();
        st.members
            .values()
            .find(|m| !m.removed && m.role == Role::Admin && m.pubkey == p.issuer_pubkey)
            .map(|m| m.member_id.clone())
    };
    let Some(issuer) = issuer else {
        return conn.error(Some(req), ErrorCode::Forbidden, "invite is not signed by an admin of this mesh");
    };
    if let Err(e) = inv.check_expiry(now_ms() / 1000) {
        return conn.error(Some(req), ErrorCode::Expired, e.to_string());
    }
    let ikey = key(&[&p.mesh_id, &p.invite_id]);
    let rec = InviteRecord { payload: p, uses: 0, revoked: false, issuer, registered_at: now_ms() };
    let r = conn
        .hub
        .store
        .write(move |tx, _| {
            if let Some(old) = tx.get::<InviteRecord>(INVITES, &ikey)? {
                return Ok(old.payload == rec.payload);
            }
            tx.put(INVITES, &ikey, &rec)?;
            Ok(true)
        })
        .await;
    match r {
        Ok(true) => conn.reply(&ServerFrame::Ok { req }),
        Ok(false) => conn.error(
            Some(req),
            ErrorCode::Conflict,
            "another invite with this invite_id is already registered",
        ),
        Err(e) => conn.error(Some(req), e.code(), format!("invite could not be stored: {e}")),
    }
}

pub async fn invite_revoke(conn: &mut Conn, req: u64, invite_id: String) {
    let Some(a) = require_admin(conn, req) else { return };
    let ikey = key(&[&a.mesh.id, &invite_id]);
    let r = conn
        .hub
        .store
        .write(move |tx, _| {
            let Some(mut rec) = tx.get::<InviteRecord>(INVITES, &ikey)? else { return Ok(false) };
            rec.revoked = true;
            tx.put(INVITES, &ikey, &rec)?;
            Ok(true)
        })
        .await;
    match r {
        Ok(true) => conn.reply(&ServerFrame::Ok { req }),
        Ok(false) => {
            conn.error(Some(req), ErrorCode::NotFound, format!("no invite {invite_id} in this mesh"))
        }
        Err(e) => conn.error(Some(req), e.code(), format!("invite could not be revoked: {e}")),
    }
}

pub async fn invite_list(conn: &mut Conn, req: u64) {
    let Some(a) = require_admin(conn, req) else { return };
    let rows = match conn.hub.store.scan_blocking(INVITES, a.mesh.id.clone()).await {
        Ok(r) => r,
        Err(e) => {
            return conn.error(Some(req), ErrorCode::Internal, format!("invites could not be read: {e}"));
        }
    };
    let invites = rows
        .iter()
        .filter_map(|(_, v)| serde_json::from_slice::<InviteRecord>(v).ok())
        .map(|r| InviteInfo {
            invite_id: r.payload.invite_id,
            role: r.payload.role,
            groups: r.payload.groups,
            expires_at: r.payload.expires_at,
            max_uses: r.payload.max_uses,
            uses: r.uses,
            revoked: r.revoked,
            issuer: r.issuer,
        })
        .collect();
    conn.reply(&ServerFrame::Invites { req, invites });
}

pub fn mesh_info(conn: &mut Conn, req: u64) {
    let Some(a) = conn.auth.clone() else { return };
    let st = a.mesh.lock();
    let frame = ServerFrame::MeshInfo {
        req,
        mesh: MeshRef { id: a.mesh.id.clone(), slug: a.mesh.slug.clone() },
        created_at: a.mesh.created_at,
        members: st.active_members().count() as u32,
        online_members: st.conns.len() as u32,
        sessions: st.sessions.len() as u32,
        services: 0,
    };
    drop(st);
    conn.reply(&frame);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd"));
        assert!(!token_eq("abc", "abcd"));
        assert!(!token_eq("", "a"));
    }
}

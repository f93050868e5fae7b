//! `hello` (challenge-signed login of an enrolled member) and `enroll` (joining with an
//! admin-signed invite, uses counted atomically in the store writer).

use std::collections::HashSet;
use std::sync::Arc;

use claudemesh_protocol::codec::from_hex_array;
use claudemesh_protocol::crypto::{ed25519_pk_to_x25519, verify_enroll, verify_hello};
use claudemesh_protocol::frames::{Enroll, ErrorCode, Event, Hello, MeshRef, Role, ServerFrame};
use claudemesh_protocol::invite::{InviteError, parse_invite};
use claudemesh_protocol::limits::MAX_DISPLAY_NAME_CHARS;
use claudemesh_protocol::names::validate_display_name;
use claudemesh_protocol::trust::member_id_for;

use crate::conn::Conn;
use crate::hub::{Mesh, MeshState};
use crate::ids::{now_ms, prefixed};
use crate::store::{INVITES, InviteRecord, MEMBERS, MemberRecord, StoreError, key};

/// Longest agent instance id a hello may carry.
const MAX_INSTANCE_ID_BYTES: usize = 128;

/// `hello`: an enrolled member logs in. An unknown mesh or member is `not_found`, which an agent
/// may treat as transient (a broker restored from an older backup); a removed member is
/// `revoked` and a key that is not the member's is `unauthorized`, both final.
pub async fn hello(conn: &mut Conn, h: Hello) {
    if let Some(msg) = crate::handlers::statements::outdated(h.protocol) {
        return conn.refuse(ErrorCode::Invalid, msg);
    }
    let Some(mesh) = conn.hub.mesh(&h.mesh_id) else {
        return conn.refuse(
            ErrorCode::NotFound,
            format!(
                "this broker does not know mesh {}; if the broker was just restored from a backup this \
                 may pass, otherwise join the mesh again with a new invite",
                h.mesh_id
            ),
        );
    };
    if let Some(i) = &h.instance
        && (i.id.is_empty() || i.id.len() > MAX_INSTANCE_ID_BYTES)
    {
        return conn.refuse(
            ErrorCode::Invalid,
            format!(
                "instance.id must be 1-{MAX_INSTANCE_ID_BYTES} bytes (the agent draws 32 hex characters)"
            ),
        );
    }
    let member = mesh.lock().members.get(&h.member_id).cloned();
    let Some(member) = member else {
        return conn.refuse(
            ErrorCode::NotFound,
            format!(
                "mesh {} on this broker has no member {}; if the broker was just restored from a backup \
                 this may pass, otherwise join again with a new invite",
                mesh.slug, h.member_id
            ),
        );
    };
    if member.removed {
        return conn.refuse(
            ErrorCode::Revoked,
            format!("member {} was removed from mesh {}", member.member_id, mesh.slug),
        );
    }
    if !member.pubkey.eq_ignore_ascii_case(&h.pubkey) {
        return conn.refuse(ErrorCode::Unauthorized, "this key is not the key enrolled for that member");
    }
    if verify_hello(&h.mesh_id, &h.member_id, &h.pubkey, &conn.challenge, &h.signature).is_err() {
        return conn.refuse(ErrorCode::BadSignature, "hello signature does not verify against the challenge");
    }
    if let Err((code, msg)) = conn.bind(mesh.clone(), member.member_id.clone(), h.instance) {
        return conn.refuse(code, msg);
    }
    conn.reply(&ServerFrame::HelloAck {
        member_id: member.member_id,
        role: member.role,
        mesh: MeshRef { id: mesh.id.clone(), slug: mesh.slug.clone() },
        public_url: conn.hub.config.public_url.clone(),
        services: vec![],
        runner_pubkey: None,
    });
}

/// `None` when no active member of the mesh holds `name` (compared case-insensitively);
/// otherwise a free name to suggest instead: `bob-2`, `bob-3`, …, within the length limit.
fn taken_name_suggestion(st: &MeshState, name: &str) -> Option<String> {
    let taken: HashSet<String> = st.active_members().map(|m| m.display_name.to_lowercase()).collect();
    if !taken.contains(&name.to_lowercase()) {
        return None;
    }
    (2u32..)
        .map(|n| {
            let suffix = format!("-{n}");
            let base: String = name.chars().take(MAX_DISPLAY_NAME_CHARS - suffix.len()).collect();
            format!("{base}{suffix}")
        })
        .find(|candidate| !taken.contains(&candidate.to_lowercase()))
}

/// Why an enrollment was refused inside the store transaction.
enum Refusal {
    Code(ErrorCode, String),
}

pub async fn enroll(conn: &mut Conn, e: Enroll) {
    if let Some(msg) = crate::handlers::statements::outdated(e.protocol) {
        return conn.refuse(ErrorCode::Invalid, msg);
    }
    let invite = match parse_invite(&e.invite) {
        Ok(i) => i,
        Err(InviteError::BadSignature) => {
            return conn.refuse(ErrorCode::BadSignature, InviteError::BadSignature.to_string());
        }
        Err(err) => return conn.refuse(ErrorCode::Invalid, err.to_string()),
    };
    let p = invite.payload.clone();
    if let Err(err) = validate_display_name(&e.display_name) {
        return conn.refuse(ErrorCode::Invalid, err.to_string());
    }
    let valid_key =
        from_hex_array::<32>("pubkey", &e.pubkey).ok().is_some_and(|k| ed25519_pk_to_x25519(&k).is_ok());
    if !valid_key {
        return conn
            .refuse(ErrorCode::Invalid, "pubkey is not a valid ed25519 public key (64 hex characters)");
    }
    if verify_enroll(&p.invite_id, &e.pubkey, &conn.challenge, &e.signature).is_err() {
        return conn
            .refuse(ErrorCode::BadSignature, "enroll signature does not verify against the challenge");
    }
    let Some(mesh) = conn.hub.mesh(&p.mesh_id) else {
        return conn.refuse(
            ErrorCode::NotFound,
            format!("mesh {} ({}) does not exist on this broker", p.mesh_slug, p.mesh_id),
        );
    };
    let now = now_ms();
    let pubkey = e.pubkey.to_ascii_lowercase();
    let pubkey_for_rollback = pubkey.clone();
    let display_name = e.display_name.clone();
    let statement = e.statement.clone();
    let mesh2: Arc<Mesh> = mesh.clone();
    let result = conn
        .hub
        .store
        .write(move |tx, _| -> Result<Result<(MemberRecord, bool), Refusal>, StoreError> {
            // Idempotent: the same key enrolling again gets its member back, burning no use.
            let existing = {
                let st = mesh2.lock();
                st.members.values().find(|m| m.pubkey == pubkey).cloned()
            };
            if let Some(m) = existing {
                if m.removed {
                    return Ok(Err(Refusal::Code(
                        ErrorCode::Revoked,
                        "this key was removed from the mesh".into(),
                    )));
                }
                return Ok(Ok((m, false)));
            }
            let ikey = key(&[&p.mesh_id, &p.invite_id]);
            let Some(mut rec) = tx.get::<InviteRecord>(INVITES, &ikey)? else {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Forbidden,
                    "invite is not registered with the broker; ask the admin to create it again".into(),
                )));
            };
            if rec.payload != p {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Forbidden,
                    "invite does not match the one the admin registered".into(),
                )));
            }
            if rec.revoked {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Revoked,
                    "invite was revoked; ask an admin for a new one".into(),
                )));
            }
            let issuer_is_admin = {
                let st = mesh2.lock();
                st.members
                    .values()
                    .any(|m| !m.removed && m.role == Role::Admin && m.pubkey == p.issuer_pubkey)
            };
            if !issuer_is_admin {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Forbidden,
                    "invite was not signed by a current admin of this mesh".into(),
                )));
            }
            if now / 1000 >= p.expires_at {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Expired,
                    InviteError::Expired { expires_at: p.expires_at }.to_string(),
                )));
            }
            if rec.uses >= p.max_uses {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Limit,
                    format!(
                        "invite has been used {} of {} times; ask an admin for a new one",
                        rec.uses, p.max_uses
                    ),
                )));
            }
            // Checked here, against the cache the writer keeps current, so two enrollments with
            // one name cannot both win. Removed and departed members do not hold their names.
            if let Some(free) = taken_name_suggestion(&mesh2.lock(), &display_name) {
                return Ok(Err(Refusal::Code(
                    ErrorCode::Conflict,
                    format!(
                        "the name {display_name} is taken in mesh {}; choose another with --name, e.g. {free}",
                        mesh2.slug
                    ),
                )));
            }
            rec.uses += 1;
            // Protocol 2: the id is derived from the key, and the member's own statement
            // (checked below, before anything is written) names it.
            let member_id = if statement.is_some() { member_id_for(&pubkey) } else { prefixed("m") };
            let mut member = MemberRecord {
                mesh_id: p.mesh_id.clone(),
                member_id,
                pubkey,
                display_name,
                role: p.role,
                groups: p.groups.clone(),
                declared_groups: vec![],
                removed: false,
                removed_reason: None,
                removed_at: 0,
                created_at: now,
                invite_id: Some(p.invite_id.clone()),
                statements: vec![],
            };
            if let Some(st) = statement {
                if let Err((code, msg)) = crate::handlers::statements::check_member(&st, &member) {
                    return Ok(Err(Refusal::Code(code, msg)));
                }
                member.keep_statement("member", st);
            }
            tx.put(INVITES, &ikey, &rec)?;
            tx.put(MEMBERS, &key(&[&member.mesh_id, &member.member_id]), &member)?;
            // Insert into the cache inside the writer so a concurrent enroll of the same key in
            // this batch sees it.
            mesh2.lock().members.insert(member.member_id.clone(), member.clone());
            Ok(Ok((member, true)))
        })
        .await;
    let (member, new) = match result {
        Ok(Ok(v)) => v,
        Ok(Err(Refusal::Code(code, msg))) => return conn.refuse(code, msg),
        Err(err) => {
            // The cache insert above ran ahead of a commit that failed: drop it again.
            mesh.lock().members.retain(|_, m| !(m.pubkey == pubkey_for_rollback && m.created_at == now));
            tracing::error!(error = %err, "enroll could not be stored");
            return conn
                .refuse(ErrorCode::Internal, format!("enrollment could not be stored: {err}; try again"));
        }
    };
    if new {
        let ev = {
            let st = mesh.lock();
            Event::MemberJoined(st.member_info(&member))
        };
        mesh.lock().presence(&ev);
        tracing::info!(mesh = %mesh.slug, member = %member.member_id, "member enrolled");
    }
    if let Err((code, msg)) = conn.bind(mesh.clone(), member.member_id.clone(), None) {
        return conn.refuse(code, msg);
    }
    conn.reply(&ServerFrame::Enrolled {
        member_id: member.member_id,
        role: member.role,
        mesh: MeshRef { id: mesh.id.clone(), slug: mesh.slug.clone() },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(names: &[(&str, bool)]) -> MeshState {
        let mut st = MeshState::default();
        for (i, (name, removed)) in names.iter().enumerate() {
            let member_id = format!("m_{i}");
            st.members.insert(
                member_id.clone(),
                MemberRecord {
                    mesh_id: "mesh_x".into(),
                    member_id,
                    pubkey: String::new(),
                    display_name: (*name).into(),
                    role: Role::Member,
                    groups: vec![],
                    declared_groups: vec![],
                    removed: *removed,
                    removed_reason: None,
                    removed_at: 0,
                    created_at: 0,
                    invite_id: None,
                    statements: vec![],
                },
            );
        }
        st
    }

    #[test]
    fn taken_names_get_a_free_suggestion() {
        let st = state(&[("Bob", false), ("bob-2", false), ("carol", true)]);
        assert_eq!(taken_name_suggestion(&st, "alice"), None);
        assert_eq!(taken_name_suggestion(&st, "carol"), None, "a removed member's name is free");
        assert_eq!(taken_name_suggestion(&st, "BOB").as_deref(), Some("BOB-3"));
        let long = "x".repeat(MAX_DISPLAY_NAME_CHARS);
        let st = state(&[(&long, false)]);
        let s = taken_name_suggestion(&st, &long).unwrap();
        assert_eq!(s.chars().count(), MAX_DISPLAY_NAME_CHARS);
        assert!(s.ends_with("x-2") && validate_display_name(&s).is_ok(), "{s}");
    }
}

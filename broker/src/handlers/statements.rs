//! Signed statements at the broker (protocol 2): `statement` (a member publishes its own
//! enrollment proof) and the checks `member_set`, `member_remove` and `leave` run on the
//! statements they carry. The broker cannot make a statement; it checks what it relays so an
//! honest broker never relays a wrong one, and agents check again without trusting it.

use claudemesh_protocol::frames::{ErrorCode, Event, RemovalReason, ServerFrame};
use claudemesh_protocol::invite::parse_invite;
use claudemesh_protocol::limits::PROTOCOL_VERSION;
use claudemesh_protocol::trust::{SignedStatement, Statement};

use crate::conn::Conn;
use crate::store::{MEMBERS, MemberRecord, StoreError, key};

/// A refused statement: the code and the message for the caller.
pub type Refusal = (ErrorCode, String);

/// The refusal for a client that speaks an older protocol, or `None`.
pub fn outdated(protocol: u32) -> Option<String> {
    (protocol < PROTOCOL_VERSION).then(|| {
        format!(
            "this broker speaks claudemesh protocol {PROTOCOL_VERSION} and this client speaks {protocol}: \
             upgrade claudemesh on this machine, then run `claudemesh agent stop` (the next command starts the new agent)"
        )
    })
}

fn invalid(msg: impl Into<String>) -> Refusal {
    (ErrorCode::Invalid, msg.into())
}

fn verified(s: &SignedStatement) -> Result<Statement, Refusal> {
    s.verify().map_err(|e| (ErrorCode::BadSignature, format!("statement refused: {e}")))
}

/// Checks that `s` is a statement about `target` (mesh, member id and key) signed by `signer`.
fn about(st: &Statement, target: &MemberRecord, signer: &str) -> Result<(), Refusal> {
    let (mesh, id, pk) = st.subject();
    if mesh != target.mesh_id || id != target.member_id || !pk.eq_ignore_ascii_case(&target.pubkey) {
        return Err(invalid(format!(
            "statement is not about member {} of mesh {} with its enrolled key",
            target.member_id, target.mesh_id
        )));
    }
    if !st.signer().eq_ignore_ascii_case(signer) {
        return Err(invalid("statement must be signed by the key of the member making the change"));
    }
    Ok(())
}

/// A `member` statement `target` publishes about itself: its own key, its enrolled name, and
/// the invite it enrolled with (when the broker knows which).
pub fn check_member(s: &SignedStatement, target: &MemberRecord) -> Result<(), Refusal> {
    let st = verified(s)?;
    about(&st, target, &target.pubkey)?;
    let Statement::Member { display_name, invite, .. } = &st else {
        return Err(invalid("a `statement` frame carries the member's own `member` statement"));
    };
    if display_name != &target.display_name {
        return Err(invalid(format!(
            "statement names {display_name:?}, but the member enrolled as {:?}",
            target.display_name
        )));
    }
    match (invite, &target.invite_id) {
        (Some(token), known) => {
            let inv = parse_invite(token).map_err(|e| invalid(format!("statement's invite: {e}")))?;
            if inv.payload.mesh_id != target.mesh_id
                || known.as_ref().is_some_and(|k| k != &inv.payload.invite_id)
            {
                return Err(invalid("statement's invite is not the one this member enrolled with"));
            }
        }
        (None, Some(_)) => {
            return Err(invalid("this member enrolled with an invite; its statement must carry it"));
        }
        (None, None) => {}
    }
    Ok(())
}

/// A `role` statement by the admin `signer` giving `after` (the record as it will be) its role
/// and groups.
pub fn check_role(s: &SignedStatement, signer: &str, after: &MemberRecord) -> Result<(), Refusal> {
    let st = verified(s)?;
    about(&st, after, signer)?;
    match &st {
        Statement::Role { role, groups, display_name, .. }
            if *role == after.role && *groups == after.groups && *display_name == after.display_name =>
        {
            Ok(())
        }
        Statement::Role { .. } => {
            Err(invalid("role statement does not say the role, groups and name this change gives"))
        }
        _ => Err(invalid("member_set carries a `role` statement")),
    }
}

/// A `removal` statement for `target` signed by `signer` for `reason`.
pub fn check_removal(
    s: &SignedStatement,
    signer: &str,
    target: &MemberRecord,
    reason: RemovalReason,
) -> Result<(), Refusal> {
    let st = verified(s)?;
    about(&st, target, signer)?;
    match st {
        Statement::Removal { reason: r, .. } if r == reason => Ok(()),
        _ => Err(invalid(format!("this change carries a `removal` statement with reason {reason:?}"))),
    }
}

/// `statement`: the caller publishes its own `member` statement; the mesh hears of it as a
/// `member_updated`. Publishing the same statement again changes nothing.
pub async fn publish(conn: &mut Conn, req: u64, s: SignedStatement) {
    let Some(a) = conn.auth.clone() else { return };
    let Some(cur) = a.mesh.lock().members.get(&a.member_id).cloned() else {
        return conn.error(Some(req), ErrorCode::Revoked, "this member is no longer in the mesh");
    };
    if let Err((code, msg)) = check_member(&s, &cur) {
        return conn.error(Some(req), code, msg);
    }
    if cur.statements.contains(&s) {
        return conn.reply(&ServerFrame::Ok { req });
    }
    let (mesh, id) = (a.mesh.clone(), a.member_id.clone());
    let written = conn
        .hub
        .store
        .write(move |tx, _| -> Result<Option<MemberRecord>, StoreError> {
            let Some(mut rec) = mesh.lock().members.get(&id).filter(|m| !m.removed).cloned() else {
                return Ok(None);
            };
            rec.keep_statement("member", s);
            tx.put(MEMBERS, &key(&[&mesh.id, &id]), &rec)?;
            mesh.lock().members.insert(id, rec.clone());
            Ok(Some(rec))
        })
        .await;
    match written {
        Ok(Some(rec)) => {
            let st = a.mesh.lock();
            st.presence(&Event::MemberUpdated(st.member_info(&rec)));
            drop(st);
            conn.reply(&ServerFrame::Ok { req });
        }
        Ok(None) => conn.error(Some(req), ErrorCode::Revoked, "this member is no longer in the mesh"),
        Err(e) => conn.error(
            Some(req),
            ErrorCode::Internal,
            format!("statement could not be stored: {e}; try again"),
        ),
    }
}

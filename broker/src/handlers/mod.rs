//! Frame handlers, one file per family, and the dispatch of authenticated frames to them.

pub mod admin;
pub mod auth;
pub mod expiry;
pub mod membership;
pub mod messaging;
pub mod send;
pub mod services;
pub mod sessions;
pub mod skills;
pub mod statements;
pub mod vault;

use claudemesh_protocol::frames::{ClientFrame, ErrorCode};

use crate::conn::Conn;
use crate::rate::Budget;

/// The per-member budget a frame spends before it is handled (`send` spends its own in
/// [`send::send`], after its checks): lists and presence changes cost the broker work for
/// every peer, so a member asking faster than its rule gets `rate_limited`.
fn budget(frame: &ClientFrame) -> Option<Budget> {
    use ClientFrame as C;
    match frame {
        C::ListPeers { .. }
        | C::ListMembers { .. }
        | C::MeshInfo { .. }
        | C::MessageStatus { .. }
        | C::InviteList { .. }
        | C::VaultList { .. }
        | C::SkillList { .. } => Some(Budget::Query),
        C::SessionOpen { .. } | C::SessionUpdate { .. } | C::SessionClose { .. } => Some(Budget::Presence),
        _ => None,
    }
}

/// Handles a frame on an authenticated connection.
pub async fn dispatch(conn: &mut Conn, frame: ClientFrame) {
    use ClientFrame as C;
    if let Some(b) = budget(&frame)
        && conn.rate_limited(b, frame.req())
    {
        return;
    }
    match frame {
        C::Hello(_) | C::Enroll(_) => {
            conn.error(None, ErrorCode::Invalid, "this connection is already authenticated")
        }
        C::SessionOpen { req, session } => sessions::open(conn, req, session).await,
        C::SessionUpdate { req, session_id, patch } => sessions::update(conn, req, session_id, patch).await,
        C::SessionClose { req, session_id } => sessions::close(conn, req, session_id).await,
        C::Send(s) => send::send(conn, s).await,
        C::ClientAck { msg_ids } => messaging::client_ack(conn, msg_ids).await,
        C::Receipt { msg_ids, state } => messaging::receipt(conn, msg_ids, state).await,
        C::MessageStatus { req, msg_id } => messaging::message_status(conn, req, msg_id).await,
        C::ListPeers { req, cursor, limit } => sessions::list_peers(conn, req, cursor, limit),
        C::ListMembers { req, cursor, limit } => membership::list_members(conn, req, cursor, limit),
        C::MeshCreate { req, slug, admin_token, pubkey, display_name } => {
            admin::mesh_create(conn, req, slug, admin_token, pubkey, display_name).await
        }
        C::InviteRegister { req, invite } => admin::invite_register(conn, req, invite).await,
        C::InviteRevoke { req, invite_id } => admin::invite_revoke(conn, req, invite_id).await,
        C::InviteList { req } => admin::invite_list(conn, req).await,
        C::MemberRemove { req, member_id, statement } => {
            membership::member_remove(conn, req, member_id, statement).await
        }
        C::MemberSet { req, member_id, role, groups, statement } => {
            membership::member_set(conn, req, member_id, role, groups, statement).await
        }
        C::Leave { req, statement } => membership::leave(conn, req, statement).await,
        C::Statement { req, statement } => statements::publish(conn, req, statement).await,
        C::MeshInfo { req } => admin::mesh_info(conn, req),
        C::VaultSet { req, key, ciphertext, nonce, sealed_key, kind, mount_path, description } => {
            let f = vault::SetFrame { key, ciphertext, nonce, sealed_key, kind, mount_path, description };
            vault::set(conn, req, f).await
        }
        C::VaultGet { req, key } => vault::get(conn, req, key).await,
        C::VaultList { req } => vault::list(conn, req).await,
        C::VaultDelete { req, key } => vault::delete(conn, req, key).await,
        C::SkillShare { req, skill } => skills::share(conn, req, skill).await,
        C::SkillGet { req, name } => skills::get(conn, req, name).await,
        C::SkillList { req, query } => skills::list(conn, req, query).await,
        C::SkillRemove { req, name } => skills::remove(conn, req, name).await,
        other => {
            if let Some(other) = services::dispatch(conn, other).await {
                // Every frame type has a handler above or in `services`; this is a frame a
                // newer protocol added that this broker does not serve.
                conn.error(
                    other.req(),
                    ErrorCode::Unavailable,
                    format!(
                        "{} is not supported by this broker version ({})",
                        other.type_name(),
                        env!("CARGO_PKG_VERSION")
                    ),
                )
            }
        }
    }
}

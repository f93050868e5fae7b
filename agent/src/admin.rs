//! Admin work through the agent: signing and registering invites, listing and revoking them.
//! The member key never leaves the agent; the broker re-checks that its holder is an admin.

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, Role, ServerFrame};
use claudemesh_protocol::invite::{INVITE_VERSION, InvitePayload};
use claudemesh_protocol::local::InviteCreate;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::api::ApiError;
use crate::state::Agent;
use crate::uplink::UplinkCmd;

/// Sends a request over a mesh's link and waits for its reply (15 s; a broker `error` becomes
/// its code and message, no answer becomes `unavailable`).
pub(crate) async fn request(
    agent: &Agent,
    mesh_id: &str,
    build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
) -> Result<ServerFrame, ApiError> {
    let uplink = agent
        .meshes()
        .get(mesh_id)
        .map(|v| v.uplink.clone())
        .ok_or((ErrorCode::NotFound, "mesh not joined".to_string()))?;
    let (tx, rx) = oneshot::channel();
    uplink
        .send(UplinkCmd::Request { build, reply: tx })
        .await
        .map_err(|_| (ErrorCode::Unavailable, "the mesh link is shutting down".to_string()))?;
    match tokio::time::timeout(std::time::Duration::from_secs(15), rx).await {
        Ok(Ok(ServerFrame::Error(e))) => Err((e.code, e.message)),
        Ok(Ok(f)) => Ok(f),
        _ => Err((
            ErrorCode::Unavailable,
            "the broker is not reachable right now (see `claudemesh status`); try again".into(),
        )),
    }
}

fn mesh_of(agent: &Agent, mesh: Option<&str>) -> Result<String, ApiError> {
    agent.resolve_mesh(mesh).map_err(|e| (ErrorCode::NotFound, e))
}

pub async fn invite_create(agent: &Agent, p: InviteCreate) -> Result<Value, ApiError> {
    if p.max_uses == 0 || p.expires_in_secs == 0 {
        return Err((ErrorCode::Invalid, "an invite needs at least 1 use and a lifetime above 0".into()));
    }
    let mesh_id = mesh_of(agent, p.mesh.as_deref())?;
    let (payload, key) = {
        let meshes = agent.meshes();
        let v = meshes.get(&mesh_id).ok_or((ErrorCode::NotFound, "mesh not joined".to_string()))?;
        if v.config.role != Role::Admin {
            return Err((
                ErrorCode::Forbidden,
                format!("only admins of {} can create invites; ask one", v.config.slug),
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let payload = InvitePayload {
            v: INVITE_VERSION,
            broker_url: v.config.broker_url.clone(),
            mesh_id: v.config.id.clone(),
            mesh_slug: v.config.slug.clone(),
            invite_id: uuid::Uuid::new_v4().to_string(),
            role: p.role,
            groups: p.groups,
            expires_at: now + p.expires_in_secs,
            max_uses: p.max_uses,
            issuer_pubkey: v.key.public_hex(),
        };
        (payload, v.key.clone())
    };
    let invite = payload.sign(&key).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    let token = invite.token().to_string();
    request(agent, &mesh_id, Box::new(move |req| ClientFrame::InviteRegister { req, invite: token })).await?;
    let p = &invite.payload;
    Ok(json!({
        "invite_id": p.invite_id,
        "url": invite.claudemesh_url(),
        "token": invite.token(),
        "mesh": p.mesh_slug,
        "role": p.role,
        "max_uses": p.max_uses,
        "expires_at": p.expires_at,
    }))
}

pub async fn invite_list(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    match request(agent, &mesh_id, Box::new(|req| ClientFrame::InviteList { req })).await? {
        ServerFrame::Invites { invites, .. } => {
            serde_json::to_value(invites).map_err(|e| (ErrorCode::Internal, e.to_string()))
        }
        other => Err((ErrorCode::Internal, format!("unexpected reply {}", other.type_name()))),
    }
}

pub async fn invite_revoke(agent: &Agent, mesh: Option<&str>, invite_id: String) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    let id = invite_id.clone();
    request(agent, &mesh_id, Box::new(move |req| ClientFrame::InviteRevoke { req, invite_id: id })).await?;
    Ok(json!({ "revoked": invite_id }))
}

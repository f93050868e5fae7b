//! Admin work through the agent: signing and registering invites (carrying an address
//! teammates can reach), listing and revoking them. The member key never leaves the agent; the
//! broker re-checks that its holder is an admin.

use claudemesh_protocol::frames::{ClientFrame, ErrorCode, Role, ServerFrame};
use claudemesh_protocol::invite::{INVITE_VERSION, InvitePayload};
use claudemesh_protocol::local::InviteCreate;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::api::ApiError;
use crate::core::calls::to_value;
use crate::mesh::UplinkCmd;
use crate::shared::Agent;

/// Sends a request over a mesh's link and waits for its reply (15 s; a broker `error` becomes
/// its code and message, no answer becomes `unavailable`).
pub(crate) async fn request(
    agent: &Agent,
    mesh_id: &str,
    build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
) -> Result<ServerFrame, ApiError> {
    match request_raw(agent, mesh_id, build).await? {
        ServerFrame::Error(e) => Err((e.code, e.message)),
        f => Ok(f),
    }
}

/// As [`request`], but a broker `error` comes back as the frame it is, so that a caller can
/// tell what the broker said from the broker not answering.
pub(crate) async fn request_raw(
    agent: &Agent,
    mesh_id: &str,
    build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
) -> Result<ServerFrame, ApiError> {
    request_raw_within(agent, mesh_id, build, REQUEST_TIMEOUT).await
}

/// How long a request waits for the broker's reply unless its caller says otherwise.
pub(crate) const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// As [`request_raw`], waiting up to `within` for the reply (a deploy runs `npm install`; a
/// service call lasts as long as the tool).
pub(crate) async fn request_raw_within(
    agent: &Agent,
    mesh_id: &str,
    build: Box<dyn FnOnce(u64) -> ClientFrame + Send>,
    within: std::time::Duration,
) -> Result<ServerFrame, ApiError> {
    let uplink = agent
        .view()
        .meshes
        .get(mesh_id)
        .map(|v| v.uplink.clone())
        .ok_or((ErrorCode::NotFound, "mesh not joined".to_string()))?;
    let (tx, rx) = oneshot::channel();
    uplink
        .send(UplinkCmd::Request { build, reply: tx })
        .await
        .map_err(|_| (ErrorCode::Unavailable, "the mesh link is shutting down".to_string()))?;
    match tokio::time::timeout(within, rx).await {
        Ok(Ok(f)) => Ok(f),
        _ => Err((
            ErrorCode::Unavailable,
            "the broker is not reachable right now (see `claudemesh status`); try again".into(),
        )),
    }
}

fn mesh_of(agent: &Agent, mesh: Option<&str>) -> Result<String, ApiError> {
    agent.view().resolve_mesh(mesh)
}

/// The host of a `ws://` or `wss://` URL, or why `url` is not one.
pub fn ws_host(url: &str) -> Result<&str, String> {
    let bad =
        |why: &str| format!("{url:?} is not a broker URL: {why}, e.g. ws://HOST:PORT/ws or wss://HOST/ws");
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))
        .ok_or_else(|| bad("it must start with ws:// or wss://"))?;
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    Ok(host)
}

/// Whether `host` is this machine only: `localhost`, 127.0.0.0/8 or ::1.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The broker URL an invite carries, and a warning when teammates elsewhere cannot use it:
/// an explicit `override_url`, else the broker's announced public URL, else the URL this member
/// uses.
fn invite_url(
    override_url: Option<String>,
    public_url: Option<&str>,
    own_url: &str,
) -> Result<(String, Option<String>), ApiError> {
    if let Some(u) = override_url {
        ws_host(&u).map_err(|e| (ErrorCode::Invalid, e))?;
        return Ok((u, None));
    }
    if let Some(u) = public_url {
        match ws_host(u) {
            Ok(_) => return Ok((u.to_string(), None)),
            Err(e) => tracing::warn!(error = %e, "ignoring the broker's public URL"),
        }
    }
    let warning = ws_host(own_url).is_ok_and(is_loopback).then(|| {
        format!(
            "this invite points at {own_url}, an address of this machine only: teammates on other machines \
             cannot reach it. Pass --broker-url ws://HOST:PORT/ws (an address they can reach), or start \
             the broker with --public-url"
        )
    });
    Ok((own_url.to_string(), warning))
}

pub async fn invite_create(agent: &Agent, p: InviteCreate) -> Result<Value, ApiError> {
    if p.max_uses == 0 || p.expires_in_secs == 0 {
        return Err((ErrorCode::Invalid, "an invite needs at least 1 use and a lifetime above 0".into()));
    }
    let mesh_id = mesh_of(agent, p.mesh.as_deref())?;
    let (payload, key, warning) = {
        let view = agent.view();
        let v = view.meshes.get(&mesh_id).ok_or((ErrorCode::NotFound, "mesh not joined".to_string()))?;
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
        let (broker_url, warning) = invite_url(p.broker_url, v.public_url.as_deref(), &v.config.broker_url)?;
        let payload = InvitePayload {
            v: INVITE_VERSION,
            broker_url,
            mesh_id: v.config.id.clone(),
            mesh_slug: v.config.slug.clone(),
            invite_id: uuid::Uuid::new_v4().to_string(),
            role: p.role,
            groups: p.groups,
            expires_at: now + p.expires_in_secs,
            max_uses: p.max_uses,
            issuer_pubkey: v.key.public_hex(),
        };
        (payload, v.key.clone(), warning)
    };
    let invite = payload.sign(&key).map_err(|e| (ErrorCode::Invalid, e.to_string()))?;
    let token = invite.token().to_string();
    request(agent, &mesh_id, Box::new(move |req| ClientFrame::InviteRegister { req, invite: token })).await?;
    let p = &invite.payload;
    to_value(&claudemesh_protocol::local::InviteReply {
        invite_id: p.invite_id.clone(),
        url: invite.claudemesh_url(),
        token: invite.token().to_string(),
        mesh: p.mesh_slug.clone(),
        broker_url: p.broker_url.clone(),
        warning,
        role: p.role,
        groups: p.groups.clone(),
        max_uses: p.max_uses,
        expires_at: p.expires_at,
    })
}

pub async fn invite_list(agent: &Agent, mesh: Option<&str>) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    match request(agent, &mesh_id, Box::new(|req| ClientFrame::InviteList { req })).await? {
        ServerFrame::Invites { invites, .. } => to_value(&invites),
        other => Err((ErrorCode::Internal, format!("unexpected reply {}", other.type_name()))),
    }
}

pub async fn invite_revoke(agent: &Agent, mesh: Option<&str>, invite_id: String) -> Result<Value, ApiError> {
    let mesh_id = mesh_of(agent, mesh)?;
    let id = invite_id.clone();
    request(agent, &mesh_id, Box::new(move |req| ClientFrame::InviteRevoke { req, invite_id: id })).await?;
    to_value(&claudemesh_protocol::local::RevokeReply { revoked: invite_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_and_loopback_hosts() {
        assert_eq!(ws_host("ws://127.0.0.1:7000/ws").unwrap(), "127.0.0.1");
        assert_eq!(ws_host("wss://mesh.example.com/ws").unwrap(), "mesh.example.com");
        assert_eq!(ws_host("ws://[::1]:7000/ws").unwrap(), "::1");
        for bad in ["http://x/ws", "mesh.example.com", "ws:///ws", "ws://a b/ws"] {
            assert!(ws_host(bad).is_err(), "{bad}");
        }
        for h in ["localhost", "127.0.0.1", "127.5.6.7", "::1"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["10.0.0.2", "mesh.example.com", "192.168.1.5"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn the_invite_url_prefers_the_override_then_the_public_url() {
        let own = "ws://127.0.0.1:7000/ws";
        let (u, w) = invite_url(None, None, own).unwrap();
        assert_eq!(u, own);
        assert!(w.unwrap().contains("--broker-url"));
        let (u, w) = invite_url(None, Some("wss://mesh.example.com/ws"), own).unwrap();
        assert_eq!((u.as_str(), w), ("wss://mesh.example.com/ws", None));
        let (u, w) = invite_url(Some("ws://10.0.0.2:7000/ws".into()), Some("wss://x/ws"), own).unwrap();
        assert_eq!((u.as_str(), w), ("ws://10.0.0.2:7000/ws", None));
        assert_eq!(invite_url(Some("http://x".into()), None, own).unwrap_err().0, ErrorCode::Invalid);
        assert!(invite_url(None, None, "wss://mesh.example.com/ws").unwrap().1.is_none());
    }
}

//! Joining a mesh: enroll a fresh key with an invite over a one-shot broker connection, then
//! record the mesh in `config.json` (the running agent picks it up through its config watch).

use std::time::Duration;

use claudemesh_protocol::crypto::{MemberKeypair, sign_enroll};
use claudemesh_protocol::frames::{ClientFrame, Enroll, ServerFrame, decode_server, encode};
use claudemesh_protocol::invite::SignedInvite;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, ConfigError, MeshConfig};
use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("you already joined mesh {0}; `claudemesh leave {0}` first to join it again")]
    AlreadyJoined(String),
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the broker refused to enroll you ({code}): {message}")]
    Refused { code: String, message: String },
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What the broker granted.
#[derive(Debug, Clone)]
pub struct Joined {
    pub mesh: MeshConfig,
}

async fn next(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    url: &str,
) -> Result<ServerFrame, JoinError> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .map_err(|_| JoinError::Unreachable { url: url.into(), reason: "no answer in 15 s".into() })?;
        match m {
            Some(Ok(Message::Text(t))) => {
                return decode_server(t.as_str()).map_err(|e| JoinError::Protocol(e.to_string()));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(JoinError::Protocol("connection closed before an answer".into()));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(JoinError::Unreachable { url: url.into(), reason: e.to_string() }),
        }
    }
}

/// Enrolls with `invite` under `display_name` and saves the mesh with its new key.
pub async fn join(paths: &Paths, invite: &SignedInvite, display_name: &str) -> Result<Joined, JoinError> {
    let p = &invite.payload;
    let mut config = Config::load(paths)?;
    if config.meshes.iter().any(|m| m.id == p.mesh_id) {
        return Err(JoinError::AlreadyJoined(p.mesh_slug.clone()));
    }
    let url = p.broker_url.clone();
    let connector = crate::tls::connector_from_env()
        .map_err(|reason| JoinError::Unreachable { url: url.clone(), reason })?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector),
    )
    .await
    .map_err(|_| JoinError::Unreachable { url: url.clone(), reason: "timed out".into() })?
    .map_err(|e| JoinError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    let challenge = match next(&mut ws, &url).await? {
        ServerFrame::Welcome { challenge, .. } => challenge,
        other => return Err(JoinError::Protocol(other.type_name().into())),
    };
    let key = MemberKeypair::generate();
    let frame = ClientFrame::Enroll(Enroll {
        invite: invite.token().into(),
        pubkey: key.public_hex(),
        display_name: display_name.into(),
        signature: sign_enroll(&key, &p.invite_id, &challenge),
    });
    ws.send(Message::Text(encode(&frame).into()))
        .await
        .map_err(|e| JoinError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    let (member_id, role, mesh) = match next(&mut ws, &url).await? {
        ServerFrame::Enrolled { member_id, role, mesh } => (member_id, role, mesh),
        ServerFrame::Error(e) => {
            return Err(JoinError::Refused { code: e.code.as_str().into(), message: e.message });
        }
        other => return Err(JoinError::Protocol(other.type_name().into())),
    };
    let _ = ws.close(None).await;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mc = MeshConfig {
        id: mesh.id,
        slug: mesh.slug,
        broker_url: url,
        member_id,
        role,
        secret_key: key.secret_hex().to_string(),
        display_name: display_name.into(),
        joined_at: now,
        extra: Default::default(),
    };
    // Re-read right before writing so a concurrent join by another process is not lost.
    config = Config::load(paths)?;
    if config.meshes.iter().any(|m| m.id == mc.id) {
        return Err(JoinError::AlreadyJoined(mc.slug));
    }
    config.meshes.push(mc.clone());
    config.save(paths)?;
    Ok(Joined { mesh: mc })
}

/// Creates a mesh on `broker_url` with the broker admin token and joins it as its first admin.
pub async fn create_mesh(
    paths: &Paths,
    broker_url: &str,
    slug: &str,
    display_name: &str,
    admin_token: &str,
) -> Result<Joined, JoinError> {
    let url = broker_url.to_string();
    let connector = crate::tls::connector_from_env()
        .map_err(|reason| JoinError::Unreachable { url: url.clone(), reason })?;
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, true, connector),
    )
    .await
    .map_err(|_| JoinError::Unreachable { url: url.clone(), reason: "timed out".into() })?
    .map_err(|e| JoinError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    match next(&mut ws, &url).await? {
        ServerFrame::Welcome { .. } => {}
        other => return Err(JoinError::Protocol(other.type_name().into())),
    }
    let key = MemberKeypair::generate();
    let frame = ClientFrame::MeshCreate {
        req: 1,
        slug: slug.into(),
        admin_token: claudemesh_protocol::frames::Secret(admin_token.into()),
        pubkey: key.public_hex(),
        display_name: display_name.into(),
    };
    ws.send(Message::Text(encode(&frame).into()))
        .await
        .map_err(|e| JoinError::Unreachable { url: url.clone(), reason: e.to_string() })?;
    let (mesh, member_id, role) = match next(&mut ws, &url).await? {
        ServerFrame::MeshCreated { mesh, member_id, role, .. } => (mesh, member_id, role),
        ServerFrame::Error(e) => {
            return Err(JoinError::Refused { code: e.code.as_str().into(), message: e.message });
        }
        other => return Err(JoinError::Protocol(other.type_name().into())),
    };
    let _ = ws.close(None).await;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mc = MeshConfig {
        id: mesh.id,
        slug: mesh.slug,
        broker_url: url,
        member_id,
        role,
        secret_key: key.secret_hex().to_string(),
        display_name: display_name.into(),
        joined_at: now,
        extra: Default::default(),
    };
    let mut config = Config::load(paths)?;
    config.meshes.push(mc.clone());
    config.save(paths)?;
    Ok(Joined { mesh: mc })
}
